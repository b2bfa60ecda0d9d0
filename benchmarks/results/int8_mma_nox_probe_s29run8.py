"""Session 29 run 8 (scratch probe, wrong outputs by design where NOX): what the int8 tensor-core GEMV's x loads
cost. ``NOX`` (patch ``int8_mma_nox_s29run8.patch``) sums every loop pass against the first pass's x: the loop keeps
its weight loads, decoding and MMAs and loses its x loads. Every tuner candidate both ways, 8B MLP shapes, medians of
3 interleaved ``measure_us`` timings; the committed side's outputs checked. Run 7 counted 293.7 MB of global-load
sectors through L1 for a 58.9 MB weight at M = 16, most of it x.

    ACCEL_COMPILE_THREADS=16 python benchmarks/results/int8_mma_nox_probe_s29run8.py [--m 16,8]

Run 9 used it with ``--key NODEC --run s29run9`` (patch ``int8_mma_nodec_s29run9.patch``): the raw weight words as
the MMAs' operand, no decoding (232 → 125 SASS instructions a loop pass for the tuned tile), x loaded as committed.
For ``int8_mma_deep_s29.patch`` (a correct variant, not run on a GPU in session 29): ``--key DEEP --value 4 --check
--run s30runN`` (and ``--value 2``) checks the variant's outputs too.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from accel.runtime import autotune_cache, quant  # noqa: E402
from accel.runtime.kernels import qlinear as kq  # noqa: E402
from accel.runtime.kernels.utils import num_sms  # noqa: E402
from accel.runtime.progress import Progress  # noqa: E402

SHAPES = {"up": (14336, 4096), "down": (4096, 14336)}
SCHEME = "int8_weight_only"


def time_shape(M: int, N: int, K: int, sms: int, reps: int, key: str, value, check: bool) -> dict:
    x = torch.randn(M, K, dtype=torch.bfloat16, device="cuda")
    q, s, z = quant.quantize_weight(torch.randn(N, K, dtype=torch.bfloat16, device="cuda") / K ** 0.5, SCHEME, 128)
    counters = torch.zeros(N, dtype=torch.int32, device="cuda")
    make = kq._measurement_inputs(x, q, s, z, None, SCHEME, 128, counters)
    base = [c for c in kq.candidate_configs(M, N, K, SCHEME, 128, False, 2, sms) if c["kernel"] == "mma"]
    ref = quant.qlinear_reference(x.float(), q, s, z, None, SCHEME, 128)
    # DEEP replaces the UNROLL loop: its variants come from the UNROLL 1 configs only
    cands = base + [{**c, key: value} for c in base if key != "DEEP" or c.get("UNROLL", 1) == 1]
    for cfg in cands if check else base:
        got = kq.launch(cfg, x, q, s, z, None, SCHEME, 128, 0, False, counters=counters).float()
        assert ((got - ref).norm() / ref.norm()).item() < 1e-2, cfg
    runs: dict = {}
    with autotune_cache.real_mode(), Progress(len(cands), f"M={M} {N}x{K}") as bar:
        autotune_cache._precompile(cands, lambda c: make(c, 0, False), bar)
        for _ in range(reps):
            for cfg in cands:
                runs.setdefault(autotune_cache.config_name(cfg), ([], cfg))[0].append(
                    autotune_cache.measure_us(make(cfg, 0, False)))
    return {name: (statistics.median(ts), cfg) for name, (ts, cfg) in runs.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--m", default="16,8")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--key", default="NOX", help="the probe's config key (NOX or NODEC, with its patch)")
    ap.add_argument("--run", default="s29run8", help="names the result file")
    ap.add_argument("--value", default="True", help="the key's value: True, or an integer")
    ap.add_argument("--check", action="store_true", help="check the variant's outputs too (a correct variant)")
    args = ap.parse_args()
    sms = num_sms(torch.device("cuda"))
    out = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": []}
    for M in (int(m) for m in args.m.split(",")):
        for label, (N, K) in SHAPES.items():
            value = True if args.value == "True" else int(args.value)
            times = time_shape(M, N, K, sms, args.reps, args.key, value, args.check)
            ranked = sorted(times.values(), key=lambda v: v[0])
            best = {f: min(us for us, c in ranked if (args.key in c) == f) for f in (False, True)}
            print(f"== M={M} {label}: best committed {best[False]:.2f} us, best with {args.key} {best[True]:.2f} us",
                  flush=True)
            for us, cfg in ranked[:10]:
                print(f"   {us:7.2f} us  {autotune_cache.config_name(cfg)}", flush=True)
            out["rows"].append({"M": M, "shape": label, "best_us": best[False], "best_nox_us": best[True],
                                "all": [{"us": round(us, 3), "cfg": cfg} for us, cfg in ranked]})
    card = torch.cuda.get_device_name().replace("NVIDIA ", "").split()[0].lower()
    name = f"int8_mma_{args.key.lower()}_probe_{args.run}_{card}_{datetime.date.today().isoformat()}.json"
    with open(os.path.join(os.environ.get("OUT", "."), name), "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
