"""The int4 word GEMVs a tuning chose, timed with each BF16X2 mode (``qlinear.INT4_BF16X2``): for every int4 M = 1
key of an autotune cache file, the fastest word-GEMV configs it measured (their BF16X2 key dropped) run with the
modes asked for, interleaved over several rounds, as the tuner times them (``autotune_cache.measure_us``: a CUDA
graph, cold L2); each mode's output is checked against mode 0's (byte permutes, fp32 products).

    python benchmarks/bf16x2_modes.py --cache benchmarks/results/autotune_qkernels_s31run6_h200_2026-11-28.json
    python benchmarks/bf16x2_modes.py --cache ... --modes 0,2,3 --top 3 --rounds 5

Why: a mode changes the instructions (``benchmarks/sass_stats.py``), and whether fewer instructions make a GEMV
faster has depended on the shape (sessions 21 and 30); this times the configs that matter, without retuning.
Columns: per key, each mode's median µs for the best config (and which), and the ratio of each mode to mode 0.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import accel_from_argv, add_accel_from, environment, print_table, use_accel_from, write_result  # noqa: E402

use_accel_from(accel_from_argv())  # before accel is imported

from accel.runtime import autotune_cache, quant  # noqa: E402
from accel.runtime.kernels import qlinear as kq  # noqa: E402


def parse_config(name: str) -> dict:
    """``autotune_cache.config_name``'s string back to the config."""
    cfg = {}
    for item in name.split(","):
        k, v = item.split("=", 1)
        cfg[k] = True if v == "True" else False if v == "False" else int(v) if v.lstrip("-").isdigit() else v
    return cfg


def cases(cache: dict, top: int) -> list[dict]:
    """Per int4 weight-only M = 1 shape and epilogue: its flags, shape and the ``top`` fastest word-GEMV configs
    (BF16X2 off). A shape tuned under several keys (other source hashes, with and without the split-K counters)
    counts once: the first key with counters (as a compiled graph tunes it), else the first."""
    out, where = [], {}
    for key, entry in sorted(cache.items(), key=lambda kv: ".rl|" not in kv[0]):
        name, _, dims = key.split("|")[:3]
        if not name.startswith("qlinear.int4_weight_only."):
            continue
        M, N, K, G, bias, zero = (int(v) for v in dims.split("x"))
        if M != 1:
            continue
        flags = name.split(".")[2:]
        shape = (tuple(f for f in flags if f != "rl"), N, K, G, bias, zero)
        if shape in where:
            continue
        where[shape] = key
        ranked, seen = [], []
        for cname, us in sorted(entry["us"].items(), key=lambda t: t[1]):
            cfg = parse_config(cname)
            if cfg.get("kernel") != "gemv" or "SUB" not in cfg or not math.isfinite(us):
                continue
            base = {k: v for k, v in cfg.items() if k != "BF16X2"}
            if base not in seen:
                seen.append(base)
                ranked.append(base)
        out.append({"name": name, "act": int(flags[0][3:]), "gated": "gated" in flags, "norm": "norm" in flags,
                    "counters": "rl" in flags, "N": N, "K": K, "G": G, "bias": bool(bias), "zero": bool(zero),
                    "configs": ranked[:top]})
    return out


def run_case(case: dict, modes: list[int], rounds: int) -> dict:
    dev = torch.device("cuda")
    N, K, G, gated, norm = case["N"], case["K"], case["G"], case["gated"], case["norm"]
    rows_w = 2 * N if gated else N
    w = torch.randn(rows_w, K, dtype=torch.bfloat16, device=dev) / math.sqrt(K)
    q, s, z = quant.quantize_weight(w, "int4_weight_only", G, symmetric=not case["zero"])
    x = torch.randn(1, K, dtype=torch.bfloat16, device=dev)
    b = torch.randn(rows_w, dtype=torch.bfloat16, device=dev) if case["bias"] else None
    g = 1.0 + 0.1 * torch.randn(K, dtype=torch.bfloat16, device=dev)
    cnt = torch.zeros(rows_w, dtype=torch.int32, device=dev) if case["counters"] else None
    act = next(a for a, i in kq.ACTIVATION_IDS.items() if i == case["act"])

    def runner(cfg):
        return lambda: kq.qlinear(x, q, s, z, b, "int4_weight_only", G, act, gated, 1e-6 if norm else None,
                                  g if norm else None, None, cnt, _config=cfg)

    variants = [(ci, m, {**cfg, "BF16X2": m}) for ci, cfg in enumerate(case["configs"]) for m in modes]
    ref = {}
    for ci, m, cfg in variants:  # compile, and check each mode against byte permutes with fp32 products
        out = runner(cfg)().float()
        if m == 0:
            ref[ci] = out
        else:
            base = ref.get(ci) if ci in ref else runner({**cfg, "BF16X2": 0})().float()
            diff = ((out - base).abs().max() / base.abs().max()).item()
            assert diff < 2e-2, f"{cfg}: BF16X2 {m} differs from byte permutes by {diff} of max |out|"
    times: dict = {}
    for _ in range(rounds):
        for ci, m, cfg in variants:
            times.setdefault((ci, m), []).append(autotune_cache.measure_us(runner(cfg)))
    med = {k: statistics.median(v) for k, v in times.items()}
    row = {"key": f"{case['name']} {N}x{K}", "configs": [autotune_cache.config_name(c) for c in case["configs"]],
           "median_us": {f"{ci}/{m}": round(t, 2) for (ci, m), t in med.items()}}
    for m in modes:
        ci, t = min(((ci, t) for (ci, mm), t in med.items() if mm == m), key=lambda p: p[1])
        row[f"mode{m}_us"], row[f"mode{m}_cfg"] = round(t, 2), ci
    for m in modes:
        if m and 0 in modes:
            row[f"mode{m}_vs_0"] = round(row["mode0_us"] / row[f"mode{m}_us"], 3)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", required=True, help="an autotune cache file (JSON) whose int4 M = 1 keys to time")
    ap.add_argument("--modes", default="0,2,3")
    ap.add_argument("--top", type=int, default=3, help="word-GEMV configs a key, fastest first")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--name", default="bf16x2_modes")
    add_accel_from(ap)
    args = ap.parse_args()
    torch.manual_seed(0)
    modes = [int(v) for v in args.modes.split(",")]
    with open(args.cache) as f:
        cache = json.load(f)[autotune_cache._TABLE]
    rows = []
    for case in cases(cache, args.top):
        rows.append(run_case(case, modes, args.rounds))
        print(json.dumps(rows[-1]), flush=True)
    cols = ["key"] + [f"mode{m}_us" for m in modes] + [f"mode{m}_vs_0" for m in modes if m and 0 in modes]
    print_table(rows, cols)
    print(f"wrote {write_result(args.name, {'env': environment(), 'args': vars(args), 'rows': rows})}")


if __name__ == "__main__":
    main()
