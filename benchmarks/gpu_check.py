"""The end-to-end model suite on CUDA in bf16, and proof that accel's Triton kernels are inside Inductor's
generated code.

    python benchmarks/gpu_check.py

For Llama, Qwen2, GPT-2, BERT and ViT (tiny configs, random weights) with eager and SDPA attention: the accel
output's relative L2 error against an fp32 run of the same weights must be at most 1.5x that of eager bf16
(plus 1e-3 slack for tiny outputs), exactly one attention and one FFN rewrite per layer, and the generated
module must launch accel kernels (their names found in Inductor's output code). Writes gpu_check_<card>.json.
"""
from __future__ import annotations

import copy
import os
import re
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import accel  # noqa: E402
from common import environment, print_table, write_result  # noqa: E402
from tests.e2e.hf_models import LAYERS, MODELS, build  # noqa: E402

KERNEL_NAME = re.compile(r"^def (_\w+_kernel)\(", re.M)


def accel_kernel_names() -> set[str]:
    names = set()
    kdir = os.path.join(ROOT, "accel", "runtime", "kernels")
    for f in os.listdir(kdir):
        if f.endswith(".py"):
            names |= set(KERNEL_NAME.findall(open(os.path.join(kdir, f)).read()))
    return names


def rel(a, b) -> float:
    a, b = a.float(), b.float()
    return ((a - b).norm() / b.norm()).item()


def main() -> None:
    assert torch.cuda.is_available(), "needs a CUDA device"
    ours = accel_kernel_names()
    rows = []
    for name in MODELS:
        for attn in ("eager", "sdpa"):
            model, kwargs = build(name, attn)
            kwargs = {k: v.cuda() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
            ref_model = copy.deepcopy(model).cuda().float()
            model = model.cuda().to(torch.bfloat16)
            if "pixel_values" in kwargs:
                kwargs_bf16 = {**kwargs, "pixel_values": kwargs["pixel_values"].bfloat16()}
            else:
                kwargs_bf16 = kwargs
            row = {"model": name, "attn": attn}
            try:
                torch._dynamo.reset()
                with torch.no_grad():
                    ref = ref_model(**kwargs)[0]
                    eager = model(**kwargs_bf16)[0]
                    backend = accel.AccelBackend({"strict": True})
                    out = torch.compile(model, backend=backend, fullgraph=True)(**kwargs_bf16)[0]
                report = backend.report
                code = "".join(open(p).read() for g in report.graphs for p in g.output_code)
                inlined = sorted(n for n in ours if re.search(rf"\b{n}\w*\s*=\s*async_compile\.triton", code)
                                 or f"def {n}(" in code)
                row.update(attention=report.counts["attention"], ffn=report.counts["ffn"],
                           linear=report.counts["linear"], eager_err=round(rel(eager, ref), 5),
                           accel_err=round(rel(out, ref), 5), kernels_inlined=",".join(inlined),
                           traced_kernels=len({k for g in report.graphs for k in g.kernels}))
                row["pass"] = bool(row["accel_err"] <= 1.5 * row["eager_err"] + 1e-3
                                   and row["attention"] == LAYERS and row["ffn"] == LAYERS and inlined)
            except Exception as e:
                row.update({"pass": False, "error": f"{type(e).__name__}: {str(e)[:300]}"})
            print(row, flush=True)
            rows.append(row)
    print()
    print_table(rows, ["model", "attn", "attention", "ffn", "linear", "eager_err", "accel_err", "pass",
                       "kernels_inlined", "error"])
    print(f"\n{sum(r['pass'] for r in rows)}/{len(rows)} passed on {environment()['device']}")
    print("wrote", write_result("gpu_check", {"rows": rows}))


if __name__ == "__main__":
    main()
