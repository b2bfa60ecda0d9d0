"""What W8A8 fp8's accumulation costs: speed and error of each fp32 promotion interval, per tile, on the 8B MLP
shapes (GPU; Hopper's fp8 MMA accumulates with ~14 bits, see accel/runtime/kernels/qlinear.py FP8_PROMOTE_K).

    python benchmarks/fp8_accumulation.py --m 2048,128

For each shape, M, promotion interval (none = the MMA's own accumulator throughout; 128 = every tile step, the
MMA promoting itself; 512 = every 4 steps into a separate fp32 accumulator) and tl.dot tile: µs per call inside a
CUDA graph with 4 rotating weight copies (activation quantization included), the ratio to cuBLAS bf16, and the
output's relative error against ``quant.qlinear_reference`` (fp32 sums of the same quantized operands). W8A8 int8
with the same tiles is the speed ceiling (exact int32 sums). The activation-quantization kernel is timed alone too,
and ``--quantize-sweep`` times its variants (one pass with the row in registers or two passes, block and warps),
each checked bit for bit against ``quant.quantize_activation``.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.nn.functional as F
import triton

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import print_table, write_result  # noqa: E402
from kernels import COPIES, QLINEAR_SHAPES, graph_us, rel  # noqa: E402

from accel.runtime import quant  # noqa: E402
from accel.runtime.kernels import qlinear as kq  # noqa: E402
from accel.runtime.kernels import qlinear_kernels as qk  # noqa: E402

# (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages): qlinear's tiled W8A8 candidates and two 4-stage variants
TILES = [(128, 128, 128, 8, 3), (128, 128, 128, 8, 4), (128, 256, 128, 8, 3), (128, 256, 128, 8, 4),
         (64, 128, 128, 4, 4), (128, 64, 128, 4, 4)]
VARIANTS = [("int8", "w8a8_int8", None), ("fp8 none", "w8a8_fp8", None), ("fp8 512", "w8a8_fp8", 512),
            ("fp8 128", "w8a8_fp8", 128)]


def quantize_sweep(rows: list) -> None:
    """µs of each _quantize_rows_kernel variant on the shapes the 8B MLP feeds it."""
    for m, k in ((2048, 4096), (2048, 14336), (128, 14336), (4096, 14336)):
        x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
        ref_q, ref_s = quant.quantize_activation(x, "w8a8_fp8")
        qx = torch.empty(m, k, device="cuda", dtype=torch.float8_e4m3fn)
        scale = torch.empty(m, device="cuda", dtype=torch.float32)
        variants = [(triton.next_power_of_2(k), True, w) for w in (4, 8, 16)] + [
            (bk, False, w) for bk in (1024, 2048, 4096) for w in (4, 8, 16) if bk < k]
        for block_k, one_pass, warps in variants:
            def run(block_k=block_k, one_pass=one_pass, warps=warps):
                qk._quantize_rows_kernel[(m,)](x, qx, scale, m, k, x.stride(0), qx.stride(0),
                                               SCHEME=kq.SCHEME_IDS["w8a8_fp8"], BLOCK_K=block_k,
                                               ONE_PASS=one_pass, HW_CAST=True, num_warps=warps)
            run()
            exact = torch.equal(qx.view(torch.uint8), ref_q.view(torch.uint8)) and torch.equal(scale, ref_s)
            us = graph_us([run])
            row = dict(shape=f"quantize {m}x{k}", M=m, variant=f"{'one pass' if one_pass else 'two passes'} "
                       f"BLOCK_K={block_k} warps={warps}", us=round(us, 2), exact=exact,
                       tbs=round(3 * x.numel() / us / 1e6, 2))  # bf16 read + fp8 written
            rows.append(row)
            print(row, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--m", default="2048,128", help="comma-separated token counts (tiled path: M > 64)")
    ap.add_argument("--quantize-sweep", action="store_true", help="also time the activation-quantization variants")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("fp8_accumulation.py needs a CUDA GPU (sm_89+)")
    rows = []
    for label, n, k in QLINEAR_SHAPES:
        ws = [torch.randn(n, k, device="cuda", dtype=torch.bfloat16) / k ** 0.5 for _ in range(COPIES)]
        for m in [int(v) for v in args.m.split(",")]:
            x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
            cublas = graph_us([lambda w=w: F.linear(x, w) for w in ws])
            quantize_us = graph_us([lambda: kq.quantize_rows(x, "w8a8_fp8")])
            rows.append(dict(shape=f"{label} {n}x{k}", M=m, variant="cuBLAS bf16", us=round(cublas, 2)))
            rows.append(dict(shape=f"{label} {n}x{k}", M=m, variant="quantize_rows (fp8)", us=round(quantize_us, 2)))
            packed = {s: [quant.quantize_weight(w, s, 128) for w in ws] for s in ("w8a8_int8", "w8a8_fp8")}
            refs = {s: quant.qlinear_reference(x.float(), *p[0], None, s, 128) for s, p in packed.items()}
            default = kq.FP8_PROMOTE_K
            for name, scheme, promote in VARIANTS:
                kq.FP8_PROMOTE_K = promote
                try:
                    for t in TILES:
                        cfg = kq._gemm_config(m, n, k, scheme, 128, t, 0, group_m=8, skinny=False)
                        err = rel(kq.launch(cfg, x.float(), *packed[scheme][0], None, scheme, 128, 0, False),
                                  refs[scheme])
                        us = graph_us([lambda p=p: kq.launch(cfg, x, *p, None, scheme, 128, 0, False)
                                       for p in packed[scheme]])
                        row = dict(shape=f"{label} {n}x{k}", M=m, variant=name, tile="x".join(map(str, t)),
                                   us=round(us, 2), speedup=round(cublas / us, 3), rel_err=f"{err:.2e}")
                        rows.append(row)
                        print(row, flush=True)
                finally:
                    kq.FP8_PROMOTE_K = default
    if args.quantize_sweep:
        quantize_sweep(rows)
    print_table(rows, ["shape", "M", "variant", "tile", "us", "speedup", "rel_err", "exact", "tbs"])
    print("wrote", write_result("fp8_accumulation", {"rows": rows}))


if __name__ == "__main__":
    main()
