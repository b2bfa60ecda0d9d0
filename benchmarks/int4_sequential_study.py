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

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from int4_rotation_study import capture_hessians, cli, fake_quantize, linears  # noqa: E402


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


def _variants(model, calibration) -> list:
    """(label, quantize a fresh model) for Hessians captured in one pass and block by block."""
    return [(f"GPTQ {'sequential' if sequential else 'parallel  '}",
             lambda m, sequential=sequential: quantize(m, lambda mm: mm(**calibration), sequential))
            for sequential in (False, True)]


if __name__ == "__main__":
    cli(__doc__, _variants, "smollm2")
