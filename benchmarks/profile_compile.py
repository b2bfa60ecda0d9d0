"""Where does compile time go? Compiles the decode step of each variant under cProfile, as decode.py times it
(two 4-token decodes: compile, CUDA-graph record, warm-up), and prints the seconds by package and the top
functions, so that compile-time work targets what costs.

    python benchmarks/profile_compile.py --config 1b --variants inductor,accel
    python benchmarks/profile_compile.py --config tiny --variants accel      # seconds on CPU

Time spent in Inductor's compile workers (other processes) shows here as waiting; Dynamo's own phase timers
(``torch._dynamo.utils.compile_times``) are printed as well.
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
from collections import defaultdict

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import write_result  # noqa: E402
from decode import run_decode  # noqa: E402
from decode_model import ACCEL_VARIANTS, CONFIGS, build_model, make_step  # noqa: E402

# (label, substring of the file path): the first that matches names the function's package
PACKAGES = (("accel.runtime (tuner, kernels)", "accel/runtime"), ("accel passes", "accel/"),
            ("inductor", "torch/_inductor"), ("dynamo", "torch/_dynamo"), ("aot_autograd/functorch", "torch/_functorch"),
            ("fx", "torch/fx"), ("triton", "triton/"), ("transformers", "transformers/"),
            ("torch (other)", "torch/"), ("builtins/other", ""))


def package_of(filename: str) -> str:
    path = filename.replace(os.sep, "/")
    return next(label for label, key in PACKAGES if key in path)


def summarize(stats: pstats.Stats, top: int) -> dict:
    """Own time (tottime) summed by package, and the ``top`` functions by cumulative time."""
    by_pkg: dict[str, float] = defaultdict(float)
    funcs = []
    for (filename, line, name), (_, _, tottime, cumtime, _) in stats.stats.items():
        by_pkg[package_of(filename)] += tottime
        funcs.append((cumtime, tottime, f"{filename.split('site-packages/')[-1]}:{line}({name})"))
    funcs.sort(reverse=True)
    return {"own_seconds_by_package": {k: round(v, 2) for k, v in sorted(by_pkg.items(), key=lambda kv: -kv[1])},
            "top_cumulative": [{"cum_s": round(c, 2), "own_s": round(t, 2), "function": f} for c, t, f in funcs[:top]]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="1b", choices=sorted(CONFIGS))
    ap.add_argument("--variants", default="inductor,accel")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--top", type=int, default=40)
    args = ap.parse_args()
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    model, cfg = build_model(args.config, dtype, args.device)
    prompt = torch.randint(0, cfg.vocab_size, (1, 16), device=args.device)
    rows = []
    for variant in args.variants.split(","):
        if variant not in ("inductor", *ACCEL_VARIANTS):
            raise SystemExit(f"unknown variant {variant!r}")
        torch._dynamo.reset()
        step = make_step(variant, cudagraphs=args.device == "cuda")
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.enable()
        for _ in range(2):
            run_decode(model, cfg, step, prompt, 4, args.device, 64)
        prof.disable()
        wall = time.perf_counter() - t0
        summary = summarize(pstats.Stats(prof), args.top)
        phases = torch._dynamo.utils.compile_times(repr="str", aggregate=True)
        row = {"variant": variant, "wall_s": round(wall, 1), **summary, "dynamo_compile_times": phases}
        if variant in ACCEL_VARIANTS:
            import accel

            row["kernel_analyses"] = [g.kernel_analyses for g in accel.last_report().graphs]
            print("kernel access analyses (asked, ran) per graph:", row["kernel_analyses"])
        rows.append(row)
        print(f"\n=== {variant}: {wall:.1f} s (under cProfile)")
        print("own time by package:", ", ".join(f"{k} {v}" for k, v in summary["own_seconds_by_package"].items()))
        for f in summary["top_cumulative"]:
            print(f"  {f['cum_s']:8.2f} {f['own_s']:8.2f}  {f['function']}")
        print(phases)
    path = write_result(f"profile_compile_{args.config}", {"args": vars(args), "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
