"""Nsight Compute input: accel's tuned qlinear on the 8B MLP shapes, each case launched inside its own NVTX range.

    python benchmarks/ncu_qlinear.py --cases int8:up:16,int8:down:16,int8:up:1,int4:up:16      # tune, time
    ncu --clock-control none --nvtx --nvtx-include "profile/" --section WarpStateStats ... \\
        python benchmarks/ncu_qlinear.py --cases ... --profile

A case is SCHEME:SHAPE:M (SCHEME int8 / int4 weight-only, SHAPE up / down: the issue's 4096×14336 / 14336×4096).
Each case's config is the tuner's pick (``qlinear.select_config``, kept in the autotune cache, so a first run
without ``--profile`` tunes and times outside the profiler and the profiled run reuses its picks; a profiled run
that would have to tune stops instead, since timings taken under the profiler are not the kernels' own). Without
``--profile`` it prints each case's config and CUDA-graph time (``kernels.graph_us``: 4 rotating weight copies);
with it, each case's kernel(s) run once after a warm-up inside an NVTX range ``profile``, in the order of
``--cases``, so that the profiler's report lists them in that order. Nothing here changes the library.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import print_table, profile_once, write_result  # noqa: E402
from kernels import COPIES, QLINEAR_SHAPES, graph_us  # noqa: E402

from accel.runtime import autotune_cache, quant  # noqa: E402
from accel.runtime.kernels import qlinear as kq  # noqa: E402

SCHEMES = {"int8": "int8_weight_only", "int4": "int4_weight_only"}
SHAPES = {label.split()[-1]: (n, k) for label, n, k in QLINEAR_SHAPES}
GROUP = 128


def parse_cases(text: str) -> list[tuple[str, str, int]]:
    """'int8:up:16,int4:down:1' → [(scheme, shape, M)]; a message naming the bad case otherwise."""
    cases = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        parts = item.split(":")
        if len(parts) != 3 or parts[0] not in SCHEMES or parts[1] not in SHAPES or not parts[2].isdigit() \
                or int(parts[2]) < 1:
            raise SystemExit(f"--cases: {item!r} is not SCHEME:SHAPE:M with SCHEME in {sorted(SCHEMES)}, "
                             f"SHAPE in {sorted(SHAPES)} and M ≥ 1")
        cases.append((SCHEMES[parts[0]], parts[1], int(parts[2])))
    if not cases:
        raise SystemExit("--cases: no case given")
    return cases


def case_inputs(scheme: str, shape: str, m: int):
    """x [M, K], COPIES packed weights of the shape, and the split-K counters the compiled graphs pass."""
    n, k = SHAPES[shape]
    gen = torch.Generator(device="cuda").manual_seed(0)
    ws = [torch.randn(n, k, device="cuda", dtype=torch.bfloat16, generator=gen) / k ** 0.5 for _ in range(COPIES)]
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16, generator=gen)
    packed = [quant.quantize_weight(w, scheme, GROUP) for w in ws]
    counters = torch.zeros(n, dtype=torch.int32, device="cuda")
    return x, packed, counters


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="int8:up:16,int8:down:16,int8:up:1,int4:up:16")
    ap.add_argument("--profile", action="store_true", help="launch each case once inside an NVTX range 'profile'")
    args = ap.parse_args()
    cases = parse_cases(args.cases)
    rows = []
    for scheme, shape, m in cases:
        x, packed, counters = case_inputs(scheme, shape, m)

        def run(p=packed[0]):
            return kq.qlinear(x, *p, None, scheme, GROUP, "identity", False, counters=counters)

        ref = quant.qlinear_reference(x.float(), *packed[0], None, scheme, GROUP)
        stored = len(autotune_cache.get_cache())
        out = run()  # tunes on the first call for this shape (or reads the cache)
        if args.profile and len(autotune_cache.get_cache()) > stored:
            # timings taken under the profiler are not the kernels' own: the pick would not be the tuner's
            raise SystemExit(f"{scheme} {shape} M={m}: this case was tuned under --profile; run it once without "
                             "--profile first (same ACCEL_AUTOTUNE_CACHE, a file), so the profiled run reads its pick")
        err = ((out.float() - ref).norm() / ref.norm()).item()
        if err > 2e-2:
            raise SystemExit(f"{scheme} {shape} M={m}: relative error {err:.2e} against the reference")
        cfg = kq.select_config(x, *packed[0], None, scheme, GROUP, 0, False, counters=counters)
        name = autotune_cache.config_name(cfg)
        label = f"{scheme} {shape} M={m}"
        if args.profile:
            profile_once(run, f"{label}: {name}")
            continue
        us = graph_us([lambda p=p: kq.qlinear(x, *p, None, scheme, GROUP, "identity", False, counters=counters)
                       for p in packed])
        rows.append(dict(case=label, config=name, us=round(us, 2), rel_err=f"{err:.1e}"))
        print(rows[-1], flush=True)
    if rows:
        print_table(rows, ["case", "us", "rel_err", "config"])
        write_result("ncu_qlinear", {"rows": rows})


if __name__ == "__main__":
    main()
