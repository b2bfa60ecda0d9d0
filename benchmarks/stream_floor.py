"""The read floor under the M = 1 quantized GEMV targets: how fast this card reads a weight's bytes once, timed as
``kernels.py`` times accel's qlinear, next to accel's qlinear on the same shapes.

At M = 1 a GEMV reads every weight byte once from HBM and reuses nothing, so no GEMV can beat a kernel that only
reads those bytes. This script times such kernels - Triton, each lane reading 16 bytes a load, sums written once a
program; a grid of words a load round (BLOCK), rounds issued before any is summed (DEPTH) and warps; each with
Triton's load (evict_first) and with the L2's 256-byte prefetch (``qlinear_mma._load_words``) - on buffers the
size of each scheme's packed weight (codes, scales, zero points), and accel's M = 1 qlinear on the same shapes.
Like ``kernels.py``, four copies rotate through a CUDA graph, so the L2 holds none of them, and each time is the
median of replays. It prints the best read of each size, its bandwidth, and the GEMV's time over it.

    python benchmarks/stream_floor.py --shapes up,down --schemes int4_weight_only,int8_weight_only
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys

import torch
import triton
import triton.language as tl

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import accel_from_argv, add_accel_from, environment, print_table, use_accel_from, write_result  # noqa: E402

use_accel_from(accel_from_argv())  # before accel is imported

from accel.runtime import quant  # noqa: E402
from accel.runtime.kernels import qlinear as kq  # noqa: E402
from accel.runtime.kernels.qlinear_mma import _load_words  # noqa: E402
from kernels import COPIES, QLINEAR_SHAPES, graph_us  # noqa: E402

GRID = dict(BLOCK=(512, 1024, 2048), DEPTH=(1, 2, 4, 8), num_warps=(2, 4, 8), L2PF=(False, True))


@triton.jit
def _read_kernel(src_ptr, out_ptr, n_words, BLOCK: tl.constexpr, DEPTH: tl.constexpr, L2PF: tl.constexpr):
    """Program p sums (wrapping int32) words [p·BLOCK·DEPTH, (p + 1)·BLOCK·DEPTH) of src, as DEPTH loads of BLOCK
    words (4 consecutive words a lane: one 16-byte load), and writes the sum to out[p]."""
    start = tl.program_id(0).to(tl.int64) * (BLOCK * DEPTH)
    lanes = tl.arange(0, BLOCK // 4)
    acc = tl.zeros((BLOCK // 4, 4), dtype=tl.int32)
    for d in tl.static_range(DEPTH):
        first = start + d * BLOCK + lanes * 4
        acc += _load_words(src_ptr + first[:, None] + tl.arange(0, 4)[None, :], first < n_words, L2PF)
    tl.store(out_ptr + tl.program_id(0), tl.sum(tl.sum(acc, axis=1), axis=0))


def read(src: torch.Tensor, out: torch.Tensor, cfg: dict) -> None:
    """One read of the int32 buffer ``src`` (its length a multiple of 4 words) with ``cfg``."""
    per_program = cfg["BLOCK"] * cfg["DEPTH"]
    _read_kernel[(triton.cdiv(src.numel(), per_program),)](src, out, src.numel(), BLOCK=cfg["BLOCK"],
                                                          DEPTH=cfg["DEPTH"], L2PF=cfg["L2PF"],
                                                          num_warps=cfg["num_warps"], num_stages=1)


def configs() -> list[dict]:
    """The read grid, less the tiles with fewer 16-byte vectors than lanes."""
    keys = list(GRID)
    grid = [dict(zip(keys, vals)) for vals in itertools.product(*GRID.values())]
    return [c for c in grid if c["BLOCK"] // 4 >= 32 * c["num_warps"]]


def read_floor(nbytes: int) -> list[dict]:
    """Every read config's µs on COPIES buffers of ``nbytes`` (rounded up to 16 bytes), fastest first; each read
    checked against torch's sum first."""
    words = -(-nbytes // 16) * 4
    bufs = [torch.randint(-2 ** 31, 2 ** 31 - 1, (words,), dtype=torch.int32, device="cuda") for _ in range(COPIES)]
    rows = []
    for cfg in configs():
        out = torch.zeros(triton.cdiv(words, cfg["BLOCK"] * cfg["DEPTH"]), dtype=torch.int32, device="cuda")
        read(bufs[0], out, cfg)
        want = bufs[0].sum(dtype=torch.int64) % 2 ** 32
        if out.sum(dtype=torch.int64) % 2 ** 32 != want:
            raise AssertionError(f"read {cfg} summed the buffer wrongly")
        us = graph_us([lambda b=b: read(b, out, cfg) for b in bufs])
        rows.append(dict(cfg, us=round(us, 2), gbs=round(words * 4 / us / 1e3, 1)))
    return sorted(rows, key=lambda r: r["us"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="up,down", help="of the 8B MLP: up (14336x4096), down (4096x14336)")
    ap.add_argument("--schemes", default="int4_weight_only,int8_weight_only")
    add_accel_from(ap)
    args = ap.parse_args()
    env = environment()
    print(f"{env['device']}  torch {env['torch']}  triton {env['triton']}")
    group = 128
    rows, reads = [], {}
    for label, n, k in QLINEAR_SHAPES:
        if label.split()[-1] not in args.shapes.split(","):
            continue
        for scheme in args.schemes.split(","):
            ws = [torch.randn(n, k, device="cuda", dtype=torch.bfloat16) / k ** 0.5 for _ in range(COPIES)]
            packed = [quant.quantize_weight(w, scheme, group) for w in ws]
            nbytes = sum(t.nbytes for t in packed[0] if isinstance(t, torch.Tensor))
            if nbytes not in reads:
                reads[nbytes] = read_floor(nbytes)
                for r in reads[nbytes][:5]:
                    print(f"  read {nbytes / 1e6:.2f} MB:", r, flush=True)
            best = reads[nbytes][0]
            best_plain = min(r["us"] for r in reads[nbytes] if not r["L2PF"])
            x = torch.randn(1, k, device="cuda", dtype=torch.bfloat16)
            counters = torch.zeros(n, dtype=torch.int32, device="cuda")
            ours = graph_us([lambda p=p: kq.qlinear(x, *p, None, scheme, group, "identity", False,
                                                    counters=counters) for p in packed])
            cfg = kq.select_config(x, *packed[0], None, scheme, group, 0, False, counters=counters)
            rows.append(dict(shape=f"{label} {n}x{k}", scheme=scheme, mb=round(nbytes / 1e6, 2),
                             read_us=best["us"], read_gbs=best["gbs"], read_plain_us=best_plain,
                             read_cfg=f"{best['BLOCK']}x{best['DEPTH']} w{best['num_warps']}"
                                      + (" l2pf" if best["L2PF"] else ""),
                             accel_us=round(ours, 2), accel_over_read=round(ours / best["us"], 3),
                             accel_cfg={k_: v for k_, v in cfg.items() if k_ != "kernel"}))
            print(rows[-1], flush=True)
    print()
    print_table(rows, ["shape", "scheme", "mb", "read_us", "read_gbs", "read_plain_us", "read_cfg", "accel_us",
                       "accel_over_read"])
    print("wrote", write_result("stream_floor", {"rows": rows,
                                                 "reads": {str(b): r for b, r in reads.items()}}))


if __name__ == "__main__":
    main()
