"""Where does a decode step's time go? Profiles one CUDA-graph-free compiled decode step per variant and prints
the top kernels, so that kernel work targets what the baselines actually spend time on.

    python benchmarks/profile_decode.py --config 1b --variants inductor,accel
"""
from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from decode_model import CONFIGS, build_model, make_step  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="1b", choices=sorted(CONFIGS))
    ap.add_argument("--variants", default="inductor")
    ap.add_argument("--context", type=int, default=160)
    args = ap.parse_args()
    from transformers import StaticCache

    model, cfg = build_model(args.config, torch.bfloat16, "cuda")
    for variant in args.variants.split(","):
        torch._dynamo.reset()
        step = make_step(variant, cudagraphs=False)
        cache = StaticCache(config=cfg, max_cache_len=args.context + 64)
        tok = torch.randint(0, cfg.vocab_size, (1, 1), device="cuda")
        with torch.no_grad():
            # prefill eagerly first: the cache's tensors are created (and marked static) on first use
            prompt = torch.randint(0, cfg.vocab_size, (1, args.context), device="cuda")
            model(input_ids=prompt, past_key_values=cache, cache_position=torch.arange(args.context, device="cuda"))
            for i in range(3):
                step(model, cache, tok, torch.tensor([args.context + i], device="cuda"))
            torch.cuda.synchronize()
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
                for i in range(5):
                    step(model, cache, tok, torch.tensor([args.context + 3 + i], device="cuda"))
                torch.cuda.synchronize()
        per_kernel = defaultdict(lambda: [0.0, 0])
        for ev in prof.events():
            if ev.device_type == torch.autograd.DeviceType.CUDA:
                k = per_kernel[ev.name[:90]]
                k[0] += ev.device_time_total / 5
                k[1] += 1
        total = sum(v[0] for v in per_kernel.values())
        print(f"== {variant}: {total:.0f} us of kernel time per step, {sum(v[1] for v in per_kernel.values()) // 5} launches")
        for name, (us, n) in sorted(per_kernel.items(), key=lambda kv: -kv[1][0])[:25]:
            print(f"  {us:8.1f} us  {n // 5:4d}x  {name}")


if __name__ == "__main__":
    main()
