"""Where does the host's time per decode step go? With CUDA graphs the GPU replays the whole step, so a step costs
max(host time, GPU time); once the GPU is fast enough, the host's Python bounds decode speed.

    python benchmarks/host_profile.py --config 1b --variants inductor,accel-int8-head --steps 200

For each variant: the host time per step (position advanced on the device, as ``decode.py --pos device``; time
until the last step is enqueued), the step time of the same loop up to a final synchronize, and the functions with
the most own time under cProfile.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import pin_to_cpu  # noqa: E402
from decode_model import build_model, make_step, prefilled_cache  # noqa: E402


def loop(step, model, cache, tok, pos, steps: int) -> tuple[float, float]:
    """(host seconds until the last step is enqueued, seconds until the GPU finished) for ``steps`` steps."""
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        pos = pos + 1
        torch.compiler.cudagraph_mark_step_begin()
        tok = step(model, cache, tok, pos).clone()
    host = time.perf_counter() - t0
    torch.cuda.synchronize()
    return host, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="1b")
    ap.add_argument("--variants", default="inductor,accel-int8-head")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--context", type=int, default=128)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--pin", type=int, default=None, metavar="CPU", help="run on this CPU only (common.pin_to_cpu)")
    args = ap.parse_args()
    pin_to_cpu(args.pin)

    model, cfg = build_model(args.config, torch.bfloat16, "cuda")
    for variant in args.variants.split(","):
        torch._dynamo.reset()
        step = make_step(variant, cudagraphs=True)
        cache = prefilled_cache(model, cfg, args.context, args.context + 2 * args.steps + 64)
        tok = torch.randint(0, cfg.vocab_size, (1, 1), device="cuda")
        pos = torch.tensor([args.context], device="cuda")
        with torch.no_grad():
            loop(step, model, cache, tok, pos, 8)  # compile, record, warm
            host, wall = loop(step, model, cache, tok, pos, args.steps)
            prof = cProfile.Profile()
            prof.enable()
            loop(step, model, cache, tok, pos + args.steps, args.steps // 2)
            prof.disable()
        print(f"== {variant}: host {host / args.steps * 1e6:.0f} us/step, wall {wall / args.steps * 1e6:.0f} us/step"
              f" ({args.steps} steps, device position)")
        for sort in ("tottime", "cumulative"):
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats(sort).print_stats(args.top)
            text = out.getvalue()
            print(f"-- by {sort} ({args.steps // 2} steps)\n" + text[text.find("ncalls"):])


if __name__ == "__main__":
    main()
