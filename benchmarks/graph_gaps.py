"""The idle time between the kernels of a CUDA graph, by what else the graph holds.

    python benchmarks/graph_gaps.py            # CUDA only; prints a table, writes graph_gaps_<card>_<date>.json

Why: in ``profile_decode.py --timeline`` the int4 decode step's graph (whose GEMVs decode codes with inline PTX)
idles 0.42 µs between every pair of kernels, the int8 step's 0.26 µs, even between two kernels that are the same in
both graphs. Session 12's L2-prefetch prototype (inline PTX in the int8 GEMVs) moved int8's gaps to 0.42 µs too.
This script builds graphs of small kernels that differ in one thing and measures each graph's gaps between two
plain kernels (a Triton kernel that adds one to 1,024 int32s) and its time per replay:

- ``plain``: plain kernels only;
- ``asm_once``: the same with one of them replaced by the same kernel with a no-op inline-PTX ``mov``;
- ``asm_every_other``: every other kernel has the ``mov``;
- ``int8_gemv`` / ``int4_gemv`` / ``int4_gemv_noprmt``: every other kernel is accel's word GEMV (M = 1,
  2048 × 2048, int4 with and without its byte-permute decode), the rest plain.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys

import torch
import triton
import triton.language as tl

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import print_table, write_result  # noqa: E402
from profile_decode import launch_gaps  # noqa: E402

KERNELS = 64  # per graph
REPLAYS = 50


@triton.jit
def _add_one(x_ptr, n, ASM: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs, mask=offs < n)
    if ASM:  # a no-op: the kernel differs from the plain one only in carrying inline PTX
        x = tl.inline_asm_elementwise("mov.b32 $0, $1;", "=r,r", [x], dtype=tl.int32, is_pure=True, pack=1)
    tl.store(x_ptr + offs, x + 1, mask=offs < n)


def _plain(buf, asm: bool = False):
    return lambda: _add_one[(1,)](buf, buf.numel(), ASM=asm, BLOCK=1024, num_warps=4)


def _gemv(scheme: str, config: dict):
    from accel.runtime import quant
    from accel.runtime.kernels import qlinear as kq
    x = torch.randn(1, 2048, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(2048, 2048, device="cuda", dtype=torch.bfloat16)
    q, s, z = quant.quantize_weight(w, scheme, 128, symmetric=scheme != "int4_weight_only")
    cfg = {**kq.candidate_configs(1, 2048, 2048, scheme, 128, False, 2, 132)[0], **config}
    return lambda: kq.qlinear(x, q, s, z, None, scheme, 128, "identity", False, _config=cfg)


def compositions(buf) -> dict[str, list]:
    plain, asm = _plain(buf), _plain(buf, asm=True)
    every_other = lambda other: [other if i % 2 else plain for i in range(KERNELS)]  # noqa: E731
    return {
        "plain": [plain] * KERNELS,
        "asm_once": [asm if i == KERNELS // 2 else plain for i in range(KERNELS)],
        "asm_every_other": every_other(asm),
        "int8_gemv": every_other(_gemv("int8_weight_only", {})),
        "int4_gemv": every_other(_gemv("int4_weight_only", {})),
        "int4_gemv_noprmt": every_other(_gemv("int4_weight_only", {"PRMT": False})),
    }


def measure(launches: list) -> dict:
    """Median gap between two plain kernels, median of all gaps, and microseconds per replay."""
    for f in launches:  # compile and warm outside the capture
        f()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for f in launches:
            f()
    graph.replay()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(REPLAYS):
        graph.replay()
    end.record()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(REPLAYS):
            graph.replay()
        torch.cuda.synchronize()
    all_gaps = launch_gaps(prof)
    gaps = [g for g, _, _ in all_gaps]
    plain_gaps = [g for g, before, after in all_gaps if "_add_one" in before and "_add_one" in after]
    return {"median_gap_us": statistics.median(gaps) if gaps else None,
            "median_plain_gap_us": statistics.median(plain_gaps) if plain_gaps else None,
            "us_per_replay": start.elapsed_time(end) * 1e3 / REPLAYS, "kernels": len(launches)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=None, help="comma-separated compositions")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("graph_gaps.py measures CUDA graphs: it needs a GPU")
    buf = torch.zeros(1024, dtype=torch.int32, device="cuda")
    rows = []
    for name, launches in compositions(buf).items():
        if not args.only or name in args.only.split(","):
            rows.append({"graph": name, **measure(launches)})
            print(rows[-1], flush=True)
    print_table(rows, ["graph", "median_plain_gap_us", "median_gap_us", "us_per_replay", "kernels"])
    print("wrote", write_result("graph_gaps", {"rows": rows}))


if __name__ == "__main__":
    main()
