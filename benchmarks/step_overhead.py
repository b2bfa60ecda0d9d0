"""Is the decode step bound by the GPU or by the host? For each variant, after warm-up: host milliseconds per
step call (no synchronization, so the GPU runs behind), wall milliseconds per step with the GPU in the loop,
and the GPU's own time per step from one CUDA-graph-replayed step under the profiler (kernels and gaps).

    python benchmarks/step_overhead.py --config 1b --variants inductor,accel
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import print_table, write_result  # noqa: E402
from decode_model import CONFIGS, build_model, make_step  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="1b", choices=sorted(CONFIGS))
    ap.add_argument("--variants", default="inductor,accel")
    ap.add_argument("--steps", type=int, default=64)
    args = ap.parse_args()
    from transformers import StaticCache

    model, cfg = build_model(args.config, torch.bfloat16, "cuda")
    rows = []
    for variant in args.variants.split(","):
        torch._dynamo.reset()
        step = make_step(variant, cudagraphs=True)
        cache = StaticCache(config=cfg, max_cache_len=256 + args.steps * 3)
        tok = torch.randint(0, cfg.vocab_size, (1, 1), device="cuda")
        positions = [torch.tensor([128 + i], device="cuda") for i in range(args.steps * 3)]

        def run(i):
            torch.compiler.cudagraph_mark_step_begin()
            return step(model, cache, tok, positions[i]).clone()

        with torch.no_grad():
            for i in range(8):
                run(i)
            torch.cuda.synchronize()
            host = []
            for i in range(args.steps):  # host cost: calls return before the GPU finishes (until the queue fills)
                t0 = time.perf_counter()
                run(args.steps + i)
                host.append(time.perf_counter() - t0)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for i in range(args.steps):
                run(2 * args.steps + i)
            torch.cuda.synchronize()
            wall = (time.perf_counter() - t0) / args.steps
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
                run(0)
                torch.cuda.synchronize()
        kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        busy = sum(e.device_time_total for e in kernels)
        span = (max(e.time_range.end for e in kernels) - min(e.time_range.start for e in kernels)) if kernels else 0
        host.sort()
        rows.append(dict(variant=variant, host_ms_per_call=round(host[len(host) // 2] * 1e3, 3),
                         wall_ms_per_step=round(wall * 1e3, 3), gpu_busy_ms=round(busy / 1e3, 3),
                         gpu_span_ms=round(span / 1e3, 3), kernels=len(kernels)))
        print(rows[-1], flush=True)
    print_table(rows, ["variant", "host_ms_per_call", "wall_ms_per_step", "gpu_busy_ms", "gpu_span_ms", "kernels"])
    print("wrote", write_result(f"step_overhead_{args.config}", {"rows": rows}))


if __name__ == "__main__":
    main()
