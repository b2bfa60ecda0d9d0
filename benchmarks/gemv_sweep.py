"""Sweep of GEMV meta-parameters on decode shapes (M = 1): what the autotuner's candidate list leaves on the table.

    python benchmarks/gemv_sweep.py --shapes 1b,8b [--kinds bf16,int8,int4] [--m 1] [--budget-s 300]
    python benchmarks/gemv_sweep.py --shapes 8bmlp --kinds int8 --m 16 --grid mma   # tensor-core GEMV tiles
    ncu --clock-control none --nvtx --nvtx-include "profile/" --section SpeedOfLight ... \
        python benchmarks/gemv_sweep.py --replay gemv_sweep_<card>_<date>.json

For every projection of the 1B / 8B Llama shapes (the gated gate/up included) it times, with the tuner's own method
(``autotune_cache.measure_us``: CUDA graph, cold L2), the current candidate list and a wider grid — warps × weight
rows per thread × K vectors per thread × split-K at M = 1; above (``--m``) the ``tl.dot`` grid, SWAP on and off —
and prints per shape the tuned choice, the best of the grid and their bandwidth. ``--replay`` launches the tuned
and the best config of every row of a result file once each inside an NVTX range named ``profile`` (after a
warm-up outside it), for Nsight Compute. Results are research input for ``candidate_configs``; nothing here
changes the library.
"""
from __future__ import annotations

import argparse
import itertools
import math
import os
import random
import sys
import time

import torch
import triton

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (accel_from_argv, add_accel_from, environment, print_table, profile_once,  # noqa: E402
                    use_accel_from, write_result)

use_accel_from(accel_from_argv())  # before accel is imported
from kernels import QLINEAR_SHAPES  # noqa: E402

from accel.runtime import autotune_cache, quant  # noqa: E402
from accel.runtime.activations import ACTIVATION_IDS  # noqa: E402
from accel.runtime.kernels import linear as kl  # noqa: E402
from accel.runtime.kernels import qlinear as kq  # noqa: E402
from accel.runtime.kernels.utils import num_sms  # noqa: E402

SHAPES = {  # (label, N, K, gated); weight [N·(2 if gated), K]
    "1b": [("qkv", 3072, 2048, False), ("o", 2048, 2048, False), ("gate_up", 8192, 2048, True),
           ("down", 2048, 8192, False), ("lm_head", 128256, 2048, False)],
    "8b": [("qkv", 6144, 4096, False), ("o", 4096, 4096, False), ("gate_up", 14336, 4096, True),
           ("down", 4096, 14336, False)],
    # the K×N 4096×14336 / 14336×4096, as kernels.py and qlinear_ab.py time them
    "8bmlp": [(label.split()[-1], n, k, False) for label, n, k in QLINEAR_SHAPES],
}
DOT_BLOCK_NS, DOT_STAGES = (32, 64, 128, 256), (3, 4)  # the tl.dot grid's defaults (--block-n, --stages)
SCHEMES = {"int8": "int8_weight_only", "int4": "int4_weight_only"}


def bf16_grid(N: int, K: int, gated: bool) -> list[dict]:
    out = []
    n_w = 2 if gated else 1
    for warps, rows, kvec, split in itertools.product((2, 4, 8), (2, 4, 8, 16), (1, 2), (1, 2, 4, 8)):
        block_k = 8 * 32 * warps * kvec
        block_n = rows // n_w
        if block_n < 1 or block_k > K or K < 2 * split * block_k and split > 1:
            continue
        if rows * kvec * 8 > 256:  # fp32 accumulators per thread
            continue
        out.append({"kernel": "gemv", "BLOCK_M": 1, "BLOCK_N": block_n, "BLOCK_K": block_k, "SPLIT_K": split,
                    "num_warps": warps, "num_stages": 1})
    return out


def q_grid(N: int, K: int, gated: bool, scheme: str) -> list[dict]:
    out = []
    n_w = 2 if gated else 1
    per_word = 8 if scheme == "int4_weight_only" else 4
    for warps, rows, sub, split in itertools.product((2, 4, 8), (4, 8, 16, 32), (1, 2, 4), (1, 2, 4)):
        chunk = sub * per_word
        block_k = chunk * 32 * warps
        block_n = rows // n_w
        if block_n < 1 or block_k > K or (split > 1 and K < 2 * split * block_k):
            continue
        cfg = {"kernel": "gemv", "BLOCK_M": 1, "BLOCK_N": block_n, "BLOCK_K": block_k, "SPLIT_K": split,
               "CHUNKS_FIRST": kq.CHUNKS_FIRST, "num_warps": warps, "num_stages": 1, "SUB": sub}
        if kq.keep_config(cfg, scheme, gated, 2):
            out.append(cfg)
    return out


def dot_grid(M: int, N: int, K: int, scheme: str, sms: int, block_ns=DOT_BLOCK_NS, stages=DOT_STAGES) -> list[dict]:
    """tl.dot tiles for M > 1: BLOCK_N × BLOCK_K × warps × stages × split-K (whole BLOCK_K steps per split) ×
    SWAP (weight-only: the weight tile as the MMA's first operand); BLOCK_M from M up to 64, 64 and 128 above."""
    out = []
    block_ms = [max(16, 1 << (M - 1).bit_length())] if M <= 64 else [64, 128]
    swaps = (False, True) if scheme in kq.WEIGHT_ONLY else (False,)
    for bm, bn, bk, warps, n_stages, split, swap in itertools.product(block_ms, block_ns, (64, 128, 256), (4, 8),
                                                                       stages, (1, 2, 4, 8), swaps):
        if scheme == "int4_weight_only" and bk > 128:  # one int4 group per step
            continue
        if K < split * bk or (warps == 8 and bn == 32) or (bn == 256 and bm * bn > 128 * 128):
            continue
        cfg = {"kernel": "gemm", "BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "SPLIT_K": split,
               "GROUP_M": 1 if M <= 64 else 8, "num_warps": warps, "num_stages": n_stages}
        if swap:
            cfg["SWAP"] = True
        if kq.keep_config(cfg, scheme, False, 2):
            out.append(cfg)
    return out


def mma_grid(M: int, N: int, K: int, scheme: str, gated: bool, sms: int, tiles: set | None = None,
             waves: tuple = (1,)) -> list[dict]:
    """Tensor-core GEMV tiles (``qlinear_mma``; int4 groups of 128 or int8) for M ≤ 16: warps along rows × warps
    along K (2-8 warps) × row tiles a warp × (int8) 64-k steps a loop pass, each unsplit and split to each of
    ``waves`` waves of 4 programs a SM. ``tiles``: only these (row warps, K warps, row tiles)."""
    out = []
    step = kq._mma_step(scheme)
    unrolls = (1, 2) if scheme == "int8_weight_only" else (1,)
    for rw, kw, rt, unroll in itertools.product((1, 2, 4), (1, 2, 4, 8), (1, 2), unrolls):
        if rw * kw not in (2, 4, 8) or (gated and rt > 1) or K % step or K < step * kw * unroll:
            continue
        if tiles is not None and (rw, kw, rt) not in tiles:
            continue
        cfg = kq.mma_config(M, scheme, rw, kw, rt)
        if unroll > 1:
            cfg["UNROLL"] = unroll
        splits = [kq._split_to(cfg, M, N, K, int(4 * w * sms)) for w in waves]
        for c in [cfg] + splits:
            if c not in out and K >= step * kw * unroll * c["SPLIT_K"] and kq.keep_config(c, scheme, gated, 2):
                out.append(c)
    return out


def replay(path: str) -> None:
    """Each row's tuned and best config, once inside an NVTX range ``profile`` after a warm-up launch."""
    import json

    rows = json.load(open(path))["rows"]
    dev = torch.device("cuda")
    torch.manual_seed(0)
    for row in rows:
        shape, label = row["shape"].split()
        _, N, K, gated = next(s for s in SHAPES[shape] if s[0] == label)
        M = row.get("M", 1)
        n_rows = N * (2 if gated else 1)
        x = torch.randn(M, K, dtype=torch.bfloat16, device=dev)
        w = torch.randn(n_rows, K, dtype=torch.bfloat16, device=dev) / math.sqrt(K)
        act = ACTIVATION_IDS["silu"] if gated else 0
        cfgs = {"tuned": row["tuned_cfg"], "best": row["best_cfg"]}
        for tag, cfg in cfgs.items():
            if row["kind"] == "bf16":
                run = lambda: kl.launch(cfg, x, w, None, act, gated)  # noqa: E731,B023
            else:
                scheme = SCHEMES[row["kind"]]
                q, s, z = quant.quantize_weight(w, scheme, 128)
                run = lambda: kq.launch(cfg, x, q, s, z, None, scheme, 128, act, gated)  # noqa: E731,B023
            run()  # the warm-up (compiles) outside the range
            profile_once(run, f"{row['kind']} {row['shape']} M={M} {tag}: {autotune_cache.config_name(cfg)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="1b,8b")
    add_accel_from(ap)
    ap.add_argument("--kinds", default="bf16", help="any of bf16, int8, int4")
    ap.add_argument("--m", type=int, default=1, help="rows of x (above 1: the tl.dot grid for int8 / int4)")
    ap.add_argument("--budget-s", type=float, default=300.0, help="stop sweeping a kind after this many seconds")
    ap.add_argument("--block-n", default=",".join(map(str, DOT_BLOCK_NS)), help="tl.dot grid: BLOCK_N values")
    ap.add_argument("--stages", default=",".join(map(str, DOT_STAGES)), help="tl.dot grid: num_stages values")
    ap.add_argument("--shape-budget-s", type=float, default=None,
                    help="stop timing more grid configs of one shape after this many seconds")
    ap.add_argument("--mma-tiles", default="", help="--grid mma: only these tiles, row warps x K warps x row tiles, "
                    "e.g. 2x2x1,1x4x1")
    ap.add_argument("--waves", default="1", help="--grid mma: split K to each of these waves of 4 programs a SM "
                    "(0.5: half a wave)")
    ap.add_argument("--replay", help="a result file of this script: launch its configs for a profiler")
    ap.add_argument("--grid", default="dot", choices=("dot", "mma", "both"),
                    help="above M = 1: the tl.dot grid, the tensor-core GEMV grid (M ≤ 16) or both")
    args = ap.parse_args()
    if args.replay:
        replay(args.replay)
        return
    M = args.m
    block_ns = tuple(int(v) for v in args.block_n.split(","))
    stages = tuple(int(v) for v in args.stages.split(","))
    result_name = "gemv_sweep" if M == 1 else f"gemv_sweep_m{M}"
    mma_tiles = {tuple(int(v) for v in t.split("x")) for t in args.mma_tiles.split(",") if t} or None
    waves = tuple(float(v) for v in args.waves.split(","))
    torch.manual_seed(0)
    dev = torch.device("cuda")
    sms = num_sms(dev)
    rows_out = []
    for kind in args.kinds.split(","):
        t_kind = time.perf_counter()
        for shape in args.shapes.split(","):
            for label, N, K, gated in SHAPES[shape]:
                if time.perf_counter() - t_kind > args.budget_s:
                    print(f"[{kind}] budget spent, skipping {shape} {label}", flush=True)
                    continue
                n_rows = N * (2 if gated else 1)
                x = torch.randn(M, K, dtype=torch.bfloat16, device=dev)
                w = torch.randn(n_rows, K, dtype=torch.bfloat16, device=dev) / math.sqrt(K)
                act = ACTIVATION_IDS["silu"] if gated else 0
                if kind == "bf16":
                    nbytes = w.numel() * 2
                    current = kl.candidate_configs(M, N, K, gated, 2, sms)
                    grid = bf16_grid(N, K, gated) if M == 1 else []
                    run = lambda cfg: (lambda: kl.launch(cfg, x, w, None, act, gated))  # noqa: E731
                else:
                    scheme = SCHEMES[kind]
                    q, s, z = quant.quantize_weight(w, scheme, 128)
                    nbytes = q.numel() * q.element_size() + s.numel() * s.element_size() + (
                        0 if z is None else z.numel() * z.element_size())
                    current = kq.candidate_configs(M, N, K, scheme, 128, gated, 2, sms)
                    if M == 1 and args.grid == "dot":
                        grid = q_grid(N, K, gated, scheme)
                    else:
                        grid = dot_grid(M, N, K, scheme, sms, block_ns, stages) if args.grid != "mma" else []
                        if args.grid != "dot" and M <= kq.MMA_GEMV_MAX_M:
                            grid += mma_grid(M, N, K, scheme, gated, sms, mma_tiles, waves)
                    if scheme == "int4_weight_only" and M > 1:  # the fp32 decoding, against packed pairs
                        grid = [{**c, "PAIRS": False} for c in current if c["kernel"] == "gemm"] + grid
                    run = lambda cfg: (lambda: kq.launch(cfg, x, q, s, z, None, scheme, 128, act, gated))  # noqa: E731,B023
                random.Random(0).shuffle(grid)  # a shape budget then samples the whole grid
                times = {}
                t0 = time.perf_counter()
                for cfg in current + [c for c in grid if c not in current]:
                    if cfg not in current and args.shape_budget_s and time.perf_counter() - t0 > args.shape_budget_s:
                        break
                    try:
                        times[autotune_cache.config_name(cfg)] = (autotune_cache.measure_us(run(cfg)), cfg in current)
                    except Exception as e:  # noqa: BLE001 - a config that does not compile is not a result
                        print(f"  {label} {cfg}: {type(e).__name__}: {str(e)[:120]}", flush=True)
                        torch.cuda.synchronize()
                tuned = min((v[0], k) for k, v in times.items() if v[1])
                best = min((v[0], k) for k, v in times.items())
                ranked = sorted((v[0], k) for k, v in times.items())[:5]
                by_swap = {flag: min((v[0] for k, v in times.items() if ("SWAP=True" in k) == flag), default=None)
                           for flag in (False, True)}
                cfg_of = {autotune_cache.config_name(c): c for c in current + grid}
                row = {"kind": kind, "shape": f"{shape} {label}", "M": M, "MB": nbytes / 1e6, "tuned_us": tuned[0],
                       "tuned_TBs": nbytes / tuned[0] / 1e6, "best_us": best[0], "best_TBs": nbytes / best[0] / 1e6,
                       "gain": tuned[0] / best[0], "tuned": tuned[1], "best": best[1], "top5": ranked,
                       "n_configs": len(times), "sweep_s": round(time.perf_counter() - t0, 1),
                       "tuned_cfg": cfg_of[tuned[1]], "best_cfg": cfg_of[best[1]],
                       "best_plain_us": by_swap[False], "best_swap_us": by_swap[True],
                       "all_us": {k: v[0] for k, v in sorted(times.items(), key=lambda kv: kv[1][0])}}
                rows_out.append(row)
                print(f"[{kind}] {shape} {label}: tuned {tuned[0]:.2f} us ({row['tuned_TBs']:.2f} TB/s) "
                      f"best {best[0]:.2f} us ({row['best_TBs']:.2f} TB/s) of {len(times)} in {row['sweep_s']} s",
                      flush=True)
                for us, name in ranked:
                    print(f"      {us:7.2f} us  {name}", flush=True)
                write_result(result_name, {"env": environment(), "rows": rows_out, "partial": True})
    print_table(rows_out, ["kind", "shape", "M", "MB", "tuned_us", "tuned_TBs", "best_us", "best_TBs", "gain",
                           "best_plain_us", "best_swap_us"])
    write_result(result_name, {"env": environment(), "rows": rows_out, "sms": sms})


if __name__ == "__main__":
    main()
