"""Would layer-sequential calibration help accel's int4 g128? A fake-quantization study on the real-weight models of
``accuracy.py``, in plain PyTorch (no accel compile, no kernels), with the helpers of ``int4_rotation_study.py``.

accel's GPTQ takes each linear's Hessian from the unquantized model's inputs, captured in one pass ("parallel").
GPTQ's authors quantize block by block instead, each block's Hessians captured with the blocks before it already
quantized ("sequential"), so that later layers correct for the error earlier ones made. Both rows run here, in the
same process, on the same calibration text and evaluation:

    python benchmarks/int4_sequential_study.py --model smollm2    # perplexity, accuracy.py's 16 windows
    python benchmarks/int4_sequential_study.py --model minilm     # embedding cosine against fp32, 512 sentences

Sequential capture runs the model once per decoder block, stopped after that block, so it costs about half a
forward pass of the calibration batch per block on top of GPTQ itself.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import accuracy as A  # noqa: E402
from int4_rotation_study import capture_hessians, fake_quantize, linears  # noqa: E402


class _Stop(Exception):
    """Raised after the block being calibrated: the rest of the forward pass is not needed."""


def blocks(model) -> list[tuple[str, torch.nn.Module]]:
    """The decoder (or encoder) blocks in order, with their module-name prefixes."""
    for prefix in ("model.layers", "encoder.layer"):
        try:
            seq = model.get_submodule(prefix)
        except AttributeError:
            continue
        return [(f"{prefix}.{i}.", b) for i, b in enumerate(seq)]
    raise ValueError("no decoder or encoder blocks found")


def quantize(model, run, sequential: bool) -> None:
    """GPTQ int4 g128 of every linear (not the LM head), Hessians captured in one pass or block by block."""
    if not sequential:
        fake_quantize(model, False, capture_hessians(model, run))
        return
    for prefix, block in blocks(model):
        names = {n for n, _ in linears(model) if n.startswith(prefix)}

        def stop(mod, inp, out):
            raise _Stop

        handle = block.register_forward_hook(stop)
        hessians = {}
        try:
            hessians = capture_hessians(model, lambda m: _run_to_stop(m, run), only=names)
        finally:
            handle.remove()
        fake_quantize(model, False, hessians, only=names)


def _run_to_stop(model, run) -> None:
    try:
        run(model)
    except _Stop:
        pass


def minilm(articles: int) -> None:
    tok, model = A.load_minilm()
    batch, calibration = A.minilm_inputs(tok, articles, 512, "packed")
    ref = A.minilm_embed(model, batch)
    for sequential in (False, True):
        (_, m), t0 = A.load_minilm(), time.perf_counter()
        quantize(m, lambda mm: mm(**calibration), sequential)
        cos = torch.nn.functional.cosine_similarity(A.minilm_embed(m, batch), ref, dim=-1)
        print(f"all-MiniLM-L6-v2 int4 g128 GPTQ {'sequential' if sequential else 'parallel  '}: cosine mean "
              f"{cos.mean():.5f} min {cos.min():.5f}, {time.perf_counter() - t0:.0f} s", flush=True)


def smollm2(articles: int) -> None:
    tok, model = A.load_smollm2()
    windows, calibration = A.smollm2_inputs(tok, articles, 16, 512)
    base = A.perplexity(model, windows)
    print(f"SmolLM2-135M fp32 perplexity {base:.4f}", flush=True)
    for sequential in (False, True):
        (_, m), t0 = A.load_smollm2(), time.perf_counter()
        quantize(m, lambda mm: mm(**calibration), sequential)
        ppl = A.perplexity(m, windows)
        print(f"SmolLM2-135M int4 g128 GPTQ {'sequential' if sequential else 'parallel  '}: perplexity {ppl:.4f} "
              f"({100 * (ppl / base - 1):+.2f}%), {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=("minilm", "smollm2"), default="smollm2")
    ap.add_argument("--articles", type=int, default=400)
    args = ap.parse_args()
    torch.manual_seed(0)
    (minilm if args.model == "minilm" else smollm2)(args.articles)
