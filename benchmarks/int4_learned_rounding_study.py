"""Does learning each int4 code's rounding, block by block, beat GPTQ on SmolLM2-135M at g128? A fake-quantization
study in plain PyTorch (as ``int4_rotation_study.py`` and ``int4_calibration_study.py``, whose helpers it uses).

The method is SignRound's (AutoRound): per decoder layer, every linear's weight is quantized to int4 g128
(asymmetric) as ``clamp(round(W / s + V) + z, 0, 15)`` with the group's grid from its range shrunk by learnable
factors α (max) and β (min) in [0.5, 1]; V in [-0.5, 0.5] moves each code's rounding. V, α and β take signed
gradient steps (rounding by the straight-through estimator) that shrink the mean squared error between the layer's
output with quantized weights and its output in fp32, both on the inputs that the already quantized layers before it
produce; then the layer keeps its quantized weights and its outputs feed the next. Calibration: windows of 512 tokens
of the calibration articles; evaluation: ``accuracy.py``'s 16 windows (perplexity against fp32). Rows: round to
nearest (the same code with no steps), GPTQ on the same calibration tokens (accel's quantizer, as the calibration
study), and the learned rounding.

    python benchmarks/int4_learned_rounding_study.py --windows 8 --iters 100
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch
from torch.nn.utils import parametrize

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import accuracy as A  # noqa: E402
from common import write_result  # noqa: E402
from int4_rotation_study import capture_hessians, fake_quantize, smollm2_study  # noqa: E402

WINDOW = 512
G = 128


def round_ste(x: torch.Tensor) -> torch.Tensor:
    return (x.round() - x).detach() + x


class LearnedInt4(torch.nn.Module):
    """W → its int4 g128 asymmetric round trip with learnable rounding offsets V and range factors α, β."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        n, k = w.shape
        groups = -(-k // G)  # K padded with zeros to whole groups, as the rotation study and accel's packing do
        self.v = torch.nn.Parameter(torch.zeros(n, groups, G))
        self.alpha = torch.nn.Parameter(torch.ones(n, groups, 1))
        self.beta = torch.nn.Parameter(torch.ones(n, groups, 1))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        k = w.shape[1]
        wg = torch.nn.functional.pad(w, (0, self.v.shape[1] * G - k)).reshape(*self.v.shape)
        hi = wg.amax(-1, keepdim=True).clamp_min(0) * self.alpha
        lo = wg.amin(-1, keepdim=True).clamp_max(0) * self.beta
        scale = ((hi - lo) / 15).clamp_min(1e-8)
        zero = round_ste(-lo / scale).clamp(0, 15)
        q = (round_ste(wg / scale + self.v) + zero).clamp(0, 15)
        return ((q - zero) * scale).reshape(w.shape[0], -1)[:, :k]


def layer_inputs(model, calib: torch.Tensor):
    """The first decoder layer's hidden-state inputs for each calibration batch, and its other arguments."""
    captured, kwargs = [], {}

    def hook(mod, args, kw):
        captured.append(args[0].detach() if args else kw["hidden_states"].detach())
        kwargs.update({k: v for k, v in kw.items() if k != "hidden_states"})
        raise StopIteration

    h = model.model.layers[0].register_forward_pre_hook(hook, with_kwargs=True)
    for batch in calib.split(A.BATCH):
        try:
            with torch.no_grad():
                model(input_ids=batch, use_cache=False)
        except StopIteration:
            pass
    h.remove()
    # one window a step: every window has the same positions, so the first window's arguments serve each
    one = {k: _first(v) for k, v in kwargs.items()}
    return [w for x in captured for w in x.split(1)], one


def _first(v):
    """``v`` (a tensor or a tuple of them, batch first) for the first window only."""
    if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == A.BATCH:
        return v[:1]
    if isinstance(v, tuple):
        return tuple(_first(t) for t in v)
    return v


def run_layer(layer, x, kwargs):
    out = layer(x, **kwargs)
    return out[0] if isinstance(out, tuple) else out


def learn_rounding(model, calib: torch.Tensor, iters: int, lr: float | None) -> None:
    """Quantize every decoder layer's linears in place, in order, with learned rounding (no steps: round to
    nearest)."""
    xs, kwargs = layer_inputs(model, calib)
    lr = lr if lr is not None else 1.0 / max(iters, 1)
    for i, layer in enumerate(model.model.layers):
        t0 = time.perf_counter()
        with torch.no_grad():
            targets = [run_layer(layer, x, kwargs) for x in xs]
        mods = [m for m in layer.modules() if isinstance(m, torch.nn.Linear)]
        for m in mods:
            m.weight.requires_grad_(False)
            parametrize.register_parametrization(m, "weight", LearnedInt4(m.weight))
        params = [p for m in mods for p in m.parametrizations.weight[0].parameters()]

        def mean_mse() -> float:
            with torch.no_grad():
                return sum(torch.nn.functional.mse_loss(run_layer(layer, x, kwargs), t).item()
                           for x, t in zip(xs, targets)) / len(xs)

        before = mean_mse() if iters else None
        for step in range(iters):
            j = step % len(xs)
            loss = torch.nn.functional.mse_loss(run_layer(layer, xs[j], kwargs), targets[j])
            for p in params:
                p.grad = None
            loss.backward()
            with torch.no_grad():
                for m in mods:
                    fq = m.parametrizations.weight[0]
                    fq.v.sub_(lr * fq.v.grad.sign()).clamp_(-0.5, 0.5)
                    fq.alpha.sub_(lr * fq.alpha.grad.sign()).clamp_(0.5, 1.0)
                    fq.beta.sub_(lr * fq.beta.grad.sign()).clamp_(0.5, 1.0)
        after = mean_mse() if iters else None
        for m in mods:
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
            m.weight.requires_grad_(False)
        with torch.no_grad():
            xs = [run_layer(layer, x, kwargs) for x in xs]
        if iters:
            print(f"  layer {i:2d}: output MSE over the calibration windows, round to nearest {before:.3e} -> "
                  f"learned {after:.3e} ({time.perf_counter() - t0:.1f} s)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--windows", type=int, default=8, help="calibration windows of 512 tokens")
    ap.add_argument("--iters", default="100", help="signed-gradient steps per layer, per variant (0: round to nearest)")
    ap.add_argument("--lr", type=float, default=None, help="step size (default 1 / iters)")
    ap.add_argument("--gptq", action="store_true", help="also GPTQ on the same calibration tokens")
    ap.add_argument("--articles", type=int, default=400)
    args = ap.parse_args()
    torch.manual_seed(0)
    model, evaluation, calib_ids, base = smollm2_study(args.articles, WINDOW)
    calib = calib_ids[: args.windows * WINDOW].reshape(args.windows, WINDOW)
    print(f"SmolLM2-135M fp32 perplexity {base:.4f}; calibration {args.windows * WINDOW} tokens", flush=True)
    rows = []

    def record(label: str, m, t0: float) -> None:
        ppl = A.perplexity(m, evaluation)
        rows.append(dict(variant=label, perplexity=round(ppl, 4), delta_pct=round(100 * (ppl / base - 1), 2),
                         seconds=round(time.perf_counter() - t0)))
        print(rows[-1], flush=True)

    if args.gptq:
        t0 = time.perf_counter()
        hessians = capture_hessians(model, lambda m: [m(input_ids=c, use_cache=False) for c in calib.split(A.BATCH)])
        _, m = A.load_smollm2()
        fake_quantize(m, rotate=False, hessians=hessians)
        record("GPTQ (accel's quantizer)", m, t0)
    for iters in (int(v) for v in args.iters.split(",")):
        t0 = time.perf_counter()
        _, m = A.load_smollm2()
        learn_rounding(m, calib, iters, args.lr)
        record("round to nearest" if iters == 0 else f"learned rounding, {iters} steps a layer", m, t0)
    print("wrote", write_result("int4_learned_rounding_study_smollm2",
                                {"fp32_perplexity": base, "windows": args.windows, "rows": rows}))


if __name__ == "__main__":
    main()
