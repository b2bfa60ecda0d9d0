"""Session 29 run 4 (scratch probe): the int8 tensor-core GEMV with its loop as two passes an iteration
(``PINGPONG``, no register copies at the loop's end) against the committed loop, every tuner candidate both ways,
8B MLP shapes. Run 3's per-instruction stall samples (Nsight Compute) put 31% of the M = 16 up kernel's stalls on
the copies of the next pass's x into the loop-carried registers, which wait for the loads just issued.
The ``PINGPONG`` key exists only with ``int8_mma_pingpong_s29run4.patch`` applied (not committed).

    ACCEL_COMPILE_THREADS=16 python benchmarks/results/int8_mma_pingpong_probe_s29run4.py [--m 16,8]
"""
from __future__ import annotations

import argparse
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--m", default="16,8")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    dev = torch.device("cuda")
    sms = num_sms(dev)
    scheme = "int8_weight_only"
    out = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": []}
    for M in (int(m) for m in args.m.split(",")):
        for label, (N, K) in SHAPES.items():
            x = torch.randn(M, K, dtype=torch.bfloat16, device=dev)
            w = torch.randn(N, K, dtype=torch.bfloat16, device=dev) / K ** 0.5
            q, s, z = quant.quantize_weight(w, scheme, 128)
            counters = torch.zeros(N, dtype=torch.int32, device=dev)
            make = kq._measurement_inputs(x, q, s, z, None, scheme, 128, counters)
            base = [c for c in kq.candidate_configs(M, N, K, scheme, 128, False, 2, sms) if c["kernel"] == "mma"]
            cands = base + [{**c, "PINGPONG": True} for c in base]
            ref = quant.qlinear_reference(x.float(), q, s, z, None, scheme, 128)
            times = {}
            with autotune_cache.real_mode(), Progress(len(cands), f"M={M} {label}") as bar:
                autotune_cache._precompile(cands, lambda c: make(c, 0, False), bar)
                runs = {}
                for rep in range(args.reps):  # interleaved: each config once a round
                    for cfg in cands:
                        name = autotune_cache.config_name(cfg)
                        if rep == 0:
                            got = kq.launch(cfg, x, q, s, z, None, scheme, 128, 0, False, counters=counters).float()
                            err = ((got - ref).norm() / ref.norm()).item()
                            if err > 1e-2:
                                print(f"  WRONG {name}: rel err {err:.2e}", flush=True)
                                continue
                        elif name not in runs:
                            continue
                        runs.setdefault(name, ([], cfg))[0].append(autotune_cache.measure_us(make(cfg, 0, False)))
                times = {n: (statistics.median(ts), cfg) for n, (ts, cfg) in runs.items()}
            ranked = sorted(times.values(), key=lambda v: v[0])
            best = {pp: next((v for v in ranked if v[1].get("PINGPONG", False) == pp), None) for pp in (False, True)}
            print(f"== M={M} {label}: best committed {best[False][0]:.2f} us, best PINGPONG {best[True][0]:.2f} us",
                  flush=True)
            for us, cfg in ranked[:12]:
                print(f"   {us:7.2f} us  {autotune_cache.config_name(cfg)}", flush=True)
            pairs = []
            for c in base:
                a = times.get(autotune_cache.config_name(c))
                b = times.get(autotune_cache.config_name({**c, "PINGPONG": True}))
                if a and b:
                    pairs.append(b[0] / a[0])
            print(f"   PINGPONG / committed, same config: median {statistics.median(pairs):.3f}, "
                  f"min {min(pairs):.3f}, max {max(pairs):.3f} over {len(pairs)}", flush=True)
            out["rows"].append({"M": M, "shape": label, "N": N, "K": K,
                                "best_committed_us": best[False][0], "best_pingpong_us": best[True][0],
                                "all": [{"us": round(us, 3), "cfg": cfg} for us, cfg in ranked]})
    path = os.path.join(os.environ.get("OUT", "."), "int8_mma_pingpong_probe_s29run4_h100_2026-11-28.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
