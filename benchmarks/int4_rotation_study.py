"""Would a Hadamard rotation along K help accel's int4 g128? A fake-quantization study on the real-weight models of
``accuracy.py``, in plain PyTorch (no accel compile, no kernels).

Each linear's weight W [N, K] (K zero-padded to whole 128-groups, as accel pads) is replaced by its int4 g128
asymmetric round trip through ``accel.runtime.quant`` — round to nearest on the clipped grid, or GPTQ with the
Hessian of the unquantized model's inputs on the calibration text — either as is or rotated: W·B quantized and
rotated back, B = blockdiag(H₁₂₈) the orthonormal Hadamard matrix per group (GPTQ then sees BᵀXᵀXB). Rotating
spreads a group's outlier weights over the group (QuaRot, QuIP#); a deployment would rotate x online, B·x.

    python benchmarks/int4_rotation_study.py --model minilm     # embedding cosine against fp32, 512 sentences
    python benchmarks/int4_rotation_study.py --model smollm2    # perplexity, accuracy.py's 16 windows

Hessians are captured once from the unquantized model (not layer by layer as the compiled model sees them), so the
GPTQ rows approximate accel's own ``accuracy.py`` rows; compare rotated against unrotated within one run.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import accuracy as A  # noqa: E402

from accel.runtime import quant  # noqa: E402

G = 128


def hadamard(n: int) -> torch.Tensor:
    h = torch.ones(1, 1)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h / math.sqrt(n)


H = hadamard(G)


def blockrot(a: torch.Tensor) -> torch.Tensor:
    """a · blockdiag(H) along the last dim (a multiple of G)."""
    return (a.reshape(*a.shape[:-1], a.shape[-1] // G, G) @ H).reshape(a.shape)


def linears(model) -> list[tuple[str, torch.nn.Linear]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and "lm_head" not in n]


def capture_hessians(model, run, only=None) -> dict[str, torch.Tensor]:
    """XᵀX of each linear's inputs over ``run(model)`` (of the linears named in ``only``, when given)."""
    hs: dict[str, torch.Tensor] = {}

    def hook(name):
        def record(mod, inp, out):
            x = inp[0].detach().float().reshape(-1, inp[0].shape[-1])
            hs[name] = hs.get(name, 0) + x.T @ x
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in linears(model) if only is None or n in only]
    with torch.no_grad():
        run(model)
    for h in handles:
        h.remove()
    return hs


def fake_quantize(model, rotate: bool, hessians: dict | None, only=None) -> None:
    """Each linear's weight (of those named in ``only``, when given) replaced by its int4 g128 round trip."""
    for name, mod in linears(model):
        if only is not None and name not in only:
            continue
        w0 = mod.weight.data.float()
        k0 = w0.shape[1]
        pad = -(-k0 // G) * G - k0
        w = torch.nn.functional.pad(w0, (0, pad))
        hess = None if hessians is None else torch.nn.functional.pad(hessians[name], (0, pad, 0, pad))
        if rotate:
            w = blockrot(w)
            hess = None if hess is None else blockrot(blockrot(hess).T).T  # B·H·B, B symmetric
        q, s, z = quant.quantize_weight(w, "int4_weight_only", G, hessian=hess)
        wq = quant.dequantize_weight(q, s, z, "int4_weight_only", G).float()
        mod.weight.data.copy_((blockrot(wq) if rotate else wq)[:, :k0])  # B·B = I


def _variants(model, calibration) -> list:
    """(label, quantize a fresh model) for round to nearest and GPTQ, each unrotated and rotated."""
    hessians = capture_hessians(model, lambda m: m(**calibration))
    return [(f"{'GPTQ' if gptq else 'RTN '} rotated={rotate!s:5}",
             lambda m, gptq=gptq, rotate=rotate: fake_quantize(m, rotate, hessians if gptq else None))
            for gptq in (False, True) for rotate in (False, True)]


def evaluate_minilm(articles: int, variants) -> None:
    """all-MiniLM-L6-v2 embedding cosine against fp32 (512 sentences, packed calibration) for each (label, quantize)
    of ``variants(model, calibration)``, each applied to a fresh model."""
    tok, model = A.load_minilm()
    batch, calibration = A.minilm_inputs(tok, articles, 512, "packed")
    ref = A.minilm_embed(model, batch)
    for label, quantize in variants(model, calibration):
        (_, m), t0 = A.load_minilm(), time.perf_counter()
        quantize(m)
        cos = torch.nn.functional.cosine_similarity(A.minilm_embed(m, batch), ref, dim=-1)
        print(f"all-MiniLM-L6-v2 int4 g128 {label}: cosine mean {cos.mean():.5f} min {cos.min():.5f}, "
              f"{time.perf_counter() - t0:.0f} s", flush=True)


def evaluate_smollm2(articles: int, variants) -> None:
    """SmolLM2-135M perplexity against fp32 (accuracy.py's 16 windows) for each (label, quantize) of
    ``variants(model, calibration)``, each applied to a fresh model."""
    tok, model = A.load_smollm2()
    windows, calibration = A.smollm2_inputs(tok, articles, 16, 512)
    base = A.perplexity(model, windows)
    print(f"SmolLM2-135M fp32 perplexity {base:.4f}", flush=True)
    for label, quantize in variants(model, calibration):
        (_, m), t0 = A.load_smollm2(), time.perf_counter()
        quantize(m)
        ppl = A.perplexity(m, windows)
        print(f"SmolLM2-135M int4 g128 {label}: perplexity {ppl:.4f} ({100 * (ppl / base - 1):+.2f}%), "
              f"{time.perf_counter() - t0:.0f} s", flush=True)


def smollm2_study(articles: int, window: int = 512):
    """(fp32 SmolLM2-135M, accuracy.py's 16 evaluation windows, the calibration articles' token ids, the fp32
    perplexity): the setup of the studies that calibrate on more tokens than accuracy.py's one batch."""
    tok, model = A.load_smollm2()
    evaluation, _ = A.smollm2_inputs(tok, articles, 16, window)
    calib_ids = tok("\n\n".join(A.wiki_text(articles, calibration=True)), return_tensors="pt").input_ids[0]
    return model, evaluation, calib_ids, A.perplexity(model, evaluation)


def cli(doc: str, variants, default: str) -> None:
    """A study's command line: ``--model minilm|smollm2`` and ``--articles``."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=("minilm", "smollm2"), default=default)
    ap.add_argument("--articles", type=int, default=400)
    args = ap.parse_args()
    torch.manual_seed(0)
    (evaluate_minilm if args.model == "minilm" else evaluate_smollm2)(args.articles, variants)


if __name__ == "__main__":
    cli(__doc__, _variants, "minilm")
