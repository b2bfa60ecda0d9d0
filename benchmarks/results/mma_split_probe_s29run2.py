"""Session 29 run 2 (scratch probe): the tensor-core int8 / int4 GEMVs at M = 16 on the 8B MLP shapes, each tile
with K split 1-16 ways (not only the tuner's powers of two to half a wave and a wave), UNROLL 1 / 2 (int8), split-K
reduced in the kernel as a compiled graph does (counters). Run 1's Nsight Compute report showed the tuned int8 up
kernel with 448 programs on 132 SMs (3.4 a SM where registers allow 6; 20.6% achieved occupancy) and 71% of its
warps' time waiting on loads: more programs, evenly spread, may hide more latency.

    ACCEL_COMPILE_THREADS=16 python benchmarks/results/mma_split_probe_s29run2.py [--schemes int8,int4] [--m 16]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from accel.runtime import autotune_cache  # noqa: E402
from accel.runtime.kernels import qlinear as kq  # noqa: E402
from accel.runtime.kernels.utils import num_sms  # noqa: E402
from accel.runtime.progress import Progress  # noqa: E402

SHAPES = {"up": (14336, 4096), "down": (4096, 14336)}
SCHEMES = {"int8": "int8_weight_only", "int4": "int4_weight_only"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--schemes", default="int8")
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--splits", default="1,2,3,4,5,6,7,8,10,12,16")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    dev = torch.device("cuda")
    sms = num_sms(dev)
    M = args.m
    splits = [int(s) for s in args.splits.split(",")]
    out = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "sms": sms, "rows": []}
    for short in args.schemes.split(","):
        scheme = SCHEMES[short]
        tiles = kq.MMA_GEMV_TILES if short == "int4" else kq.MMA_GEMV_INT8_TILES
        for label, (N, K) in SHAPES.items():
            x = torch.randn(M, K, dtype=torch.bfloat16, device=dev)
            from accel.runtime import quant
            w = torch.randn(N, K, dtype=torch.bfloat16, device=dev) / K ** 0.5
            q, s, z = quant.quantize_weight(w, scheme, 128)
            counters = torch.zeros(N, dtype=torch.int32, device=dev)
            make = kq._measurement_inputs(x, q, s, z, None, scheme, 128, counters)
            tuned = kq.select_config(x, q, s, z, None, scheme, 128, 0, False, counters=counters)
            cands = []
            step = kq._mma_step(scheme)
            for rw, kw, rt in tiles:
                for unroll in ((1, 2) if short == "int8" else (1,)):
                    for split in splits:
                        cfg = kq.mma_config(M, scheme, rw, kw, rt)
                        cfg["SPLIT_K"] = split
                        if unroll > 1:
                            cfg["UNROLL"] = unroll
                        if K < split * step * kw * unroll:
                            continue
                        cands.append(cfg)
            if tuned not in cands:
                cands.append(tuned)
            with autotune_cache.real_mode(), Progress(len(cands), f"{short} {label}") as bar:
                autotune_cache._precompile(cands, lambda c: make(c, 0, False), bar)
                times = {}
                ref = quant.qlinear_reference(x.float(), q, s, z, None, scheme, 128)
                for cfg in cands:
                    try:
                        got = kq.launch(cfg, x, q, s, z, None, scheme, 128, 0, False, counters=counters).float()
                        err = ((got - ref).norm() / ref.norm()).item()
                        if err > 1e-2:
                            print(f"  WRONG {autotune_cache.config_name(cfg)}: rel err {err:.2e}", flush=True)
                            continue
                        ts = [autotune_cache.measure_us(make(cfg, 0, False)) for _ in range(args.reps)]
                    except Exception as e:  # noqa: BLE001
                        print(f"  {cfg}: {type(e).__name__}: {str(e)[:100]}", flush=True)
                        torch.cuda.synchronize()
                        continue
                    times[autotune_cache.config_name(cfg)] = (statistics.median(ts), cfg)
            ranked = sorted(times.values(), key=lambda v: v[0])
            tuned_us = times.get(autotune_cache.config_name(tuned), (None,))[0]
            print(f"== {short} {label} M={M}: tuned {autotune_cache.config_name(tuned)} {tuned_us}", flush=True)
            for us, cfg in ranked[:15]:
                progs = -(-N // cfg["BLOCK_N"]) * cfg["SPLIT_K"]
                print(f"   {us:7.2f} us  programs {progs:5d}  {autotune_cache.config_name(cfg)}", flush=True)
            out["rows"].append({"scheme": scheme, "shape": label, "M": M, "N": N, "K": K, "tuned": tuned,
                                "tuned_us": tuned_us,
                                "all": [{"us": round(us, 3), "cfg": cfg} for us, cfg in ranked]})
    path = os.path.join(os.environ.get("OUT", "."), "mma_split_probe_s29run2_h100_2026-11-28.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
