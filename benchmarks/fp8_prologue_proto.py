"""Prototypes (not accel's kernels) of where w8a8_fp8's activation quantization could go for the 8B down projection
at M = 2048, against the same GEMM on x quantized per token by a pass of its own, cuBLAS bf16 and cuBLAS fp8
(torch._scaled_mm); CUDA-event medians of single calls (warm L2), same process. GPU only.

- ``--modes prologue`` (session 25): x read as bf16, times 448 / amax per row, cast to e4m3 in registers, then
  tl.dot, given the per-token amax (which a producer's epilogue would supply). H100 (results/fp8_prologue_proto_
  s25run6_*): 128 × 256 × 128 (8 warps, 3 stages) took 188.8 µs on pre-quantized x and 285.7 µs quantizing it in
  the prologue, the best of the prologue configs (cuBLAS bf16 319.8, fp8 212.9 in this timing).
- ``--modes block,rescale`` (session 26): x in e4m3 with a scale per row and 128-column block, as the gated gate/up
  projection's epilogue could write it (it sees a tile of columns, not the row): the GEMM applies each block's
  scale at its K step, either to the step's product (``block``: acc += dot(a, b) · s) or by rescaling the
  accumulator to the step's scale before the product (``rescale``: acc = dot(a, b, acc · s_prev / s), one final
  multiply by the last scale).
"""
import os
import sys

import torch
import triton
import triton.language as tl

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import cuda_time_ms, write_result  # noqa: E402


MODES = {"token": 0, "prologue": 1, "block": 2, "rescale": 3}


@triton.jit
def _gemm(x_ptr, xs_ptr, xinv_ptr, xbs_ptr, w_ptr, ws_ptr, out_ptr, M, N, K, sxm, swn, som,
          BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, GROUP_M: tl.constexpr, MODE: tl.constexpr):
    """out = x·wᵀ with w in e4m3 (row scales ws). MODE (``MODES``): 0 x in e4m3 with row scales xs; 1 x in bf16,
    quantized with the row factors xinv as it is loaded; 2 / 3 x in e4m3 with scales xbs per row and 128 columns
    [M, K / 128], applied to each step's product (2) or by rescaling the accumulator (3)."""
    pid = tl.program_id(0)
    num_m = tl.cdiv(M, BM)
    num_n = tl.cdiv(N, BN)
    width = GROUP_M * num_n
    first_m = (pid // width) * GROUP_M
    gsz = min(num_m - first_m, GROUP_M)
    pid_m = first_m + (pid % width) % gsz
    pid_n = (pid % width) // gsz
    offs_m = pid_m * BM + tl.arange(0, BM)
    offs_n = pid_n * BN + tl.arange(0, BN)
    offs_k = tl.arange(0, BK)
    x_ptrs = x_ptr + offs_m[:, None].to(tl.int64) * sxm + offs_k[None, :]
    w_ptrs = w_ptr + offs_n[None, :].to(tl.int64) * swn + offs_k[:, None]
    inv = tl.load(xinv_ptr + offs_m)[:, None]
    blocks = xbs_ptr + offs_m.to(tl.int64) * (K // 128)
    prev = tl.load(blocks)
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for k in range(0, K, BK):
        a = tl.load(x_ptrs)
        if MODE == 1:
            a = (a.to(tl.float32) * inv).to(tl.float8e4nv)
        b = tl.load(w_ptrs)
        if MODE == 2:
            acc += tl.dot(a, b) * tl.load(blocks + k // 128)[:, None]
        elif MODE == 3:
            s = tl.load(blocks + k // 128)
            acc = tl.dot(a, b, acc * (prev / s)[:, None])
            prev = s
        else:
            acc = tl.dot(a, b, acc)
        x_ptrs += BK
        w_ptrs += BK
    ws = tl.load(ws_ptr + offs_n)
    if MODE == 2:
        out = acc * ws[None, :]
    elif MODE == 3:
        out = acc * prev[:, None] * ws[None, :]
    else:
        out = acc * tl.load(xs_ptr + offs_m)[:, None] * ws[None, :]
    tl.store(out_ptr + offs_m[:, None].to(tl.int64) * som + offs_n[None, :], out.to(tl.bfloat16))


def bench(fn) -> float:
    """Median µs of single calls (``common.cuda_time_ms``: CUDA events, warm L2)."""
    return cuda_time_ms(fn, iters=60) * 1e3


def main():
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modes", default="token,prologue", help="any of " + ", ".join(MODES))
    ap.add_argument("--name", default="fp8_prologue_proto", help="result file name")
    args = ap.parse_args()
    torch.manual_seed(0)
    dev = "cuda"
    M, N, K = 2048, 4096, 14336  # 8B down
    x = torch.randn(M, K, device=dev, dtype=torch.bfloat16)
    w = (torch.randn(N, K, device=dev) / K ** 0.5).to(torch.bfloat16)
    f8 = torch.float8_e4m3fn
    ws = w.float().abs().amax(1) / 448.0
    wq = (w.float() / ws[:, None]).to(f8)
    amax = x.float().abs().amax(1)
    xs = amax / 448.0
    xinv = 448.0 / amax
    xq = (x.float() * xinv[:, None]).to(f8)
    xbs = x.float().view(M, K // 128, 128).abs().amax(2) / 448.0  # [M, K / 128]
    xbq = (x.float().view(M, K // 128, 128) / xbs[:, :, None]).to(f8).view(M, K)
    refs = {"token": (xq.float() @ wq.float().T) * xs[:, None] * ws[None, :],
            "block": ((xbq.float().view(M, K // 128, 128) * xbs[:, :, None]).view(M, K) @ wq.float().T) * ws[None, :]}
    rows = {}
    rows["cublas_bf16"] = bench(lambda: x @ w.T)
    rows["cublas_fp8_scaled_mm"] = bench(lambda: torch._scaled_mm(xq, wq.T, scale_a=xs[:, None], scale_b=ws[None, :],
                                                                  out_dtype=torch.bfloat16))
    out = torch.empty(M, N, device=dev, dtype=torch.bfloat16)
    cfgs = [(128, 256, 128, 8, 3), (128, 128, 128, 8, 4), (128, 256, 64, 8, 4), (64, 256, 128, 4, 4),
            (128, 128, 128, 4, 4), (256, 128, 128, 8, 3), (128, 256, 128, 8, 4)]
    for bm, bn, bk, nw, ns in cfgs:
        grid = (triton.cdiv(M, bm) * triton.cdiv(N, bn),)
        for mode in args.modes.split(","):
            xa = {"token": xq, "prologue": x}.get(mode, xbq)
            ref = refs["token" if mode in ("token", "prologue") else "block"]
            name = f"proto_{mode}_{bm}x{bn}x{bk}_w{nw}_s{ns}"
            try:
                run = lambda: _gemm[grid](xa, xs, xinv, xbs, wq, ws, out, M, N, K, xa.stride(0), wq.stride(0),  # noqa
                                          out.stride(0), BM=bm, BN=bn, BK=bk, GROUP_M=8, MODE=MODES[mode],
                                          num_warps=nw, num_stages=ns)
                run()
                torch.cuda.synchronize()
                err = ((out.float() - ref).abs().max() / ref.abs().max()).item()
                rows[name] = bench(run)
                print(f"{name}: {rows[name]:.1f} us  max rel err {err:.2e}", flush=True)
            except Exception as e:  # noqa: BLE001
                print(f"{name}: {type(e).__name__} {str(e)[:150]}", flush=True)
    for k, v in rows.items():
        print(f"{k:45s} {v:8.1f} us  {rows['cublas_bf16'] / v:5.2f}x cuBLAS bf16", flush=True)
    print("wrote", write_result(args.name, {"shape": [M, N, K], "us": rows}))


if __name__ == "__main__":
    main()
