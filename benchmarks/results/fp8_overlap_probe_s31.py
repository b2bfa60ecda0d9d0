"""Session 31 scratch probe (GPU; runs 7, 8 and 10, its two quantization kernels merged into one afterwards): can
W8A8 fp8's per-token quantization of x hide under the fp8 GEMM at M = 2048 (8B down: x 2048 x 14336)? A persistent
quantization kernel (every program resident at once: it lets the next kernel launch first thing,
griddepcontrol.launch_dependents) counts the finished rows of each 128-row block; the
GEMM, launched with PDL behind it, waits in each program on its row block's counter (acquire) instead of on the
whole grid, and the block's last program resets the counters. Against the same GEMM after the production
quantize_rows (serial), the production op's best tile and cuBLAS bf16; outputs checked against the reference."""
import json, os, sys, time
import torch, triton
import triton.language as tl
import torch.nn.functional as F
sys.path.insert(0, os.getcwd()); sys.path.insert(0, os.path.join(os.getcwd(), "benchmarks"))
from kernels import graph_us  # noqa: E402
from accel.runtime import quant  # noqa: E402
from accel.runtime.kernels import qlinear as kq, qlinear_kernels as qk  # noqa: E402

FP8 = tl.constexpr(kq.SCHEME_IDS["w8a8_fp8"])
INTERP = os.environ.get("TRITON_INTERPRET") == "1"


@triton.jit
def _quant_counted_kernel(x_ptr, qx_ptr, scale_ptr, ready_ptr, M, K, stride_xm, stride_qm, BLOCK_K: tl.constexpr,
                          ROWS_PER_BLOCK: tl.constexpr, HW_CAST: tl.constexpr, PDL: tl.constexpr,
                          STAGES: tl.constexpr = None):
    """A persistent program a few rows at a time: each row's max, then its codes, then +1 on its row block's
    counter. STAGES (run 10): its two passes over a row pipelined by tl.range(num_stages), the loads in flight
    waiting in shared memory (cp.async), not in registers; None (runs 7-8): plain loops."""
    if PDL:
        tl.extra.cuda.gdc_launch_dependents()
    offs_k = tl.arange(0, BLOCK_K)
    for r in range(tl.program_id(0), M, tl.num_programs(0)):
        x_row = x_ptr + tl.cast(r, tl.int64) * stride_xm
        amax = tl.zeros((BLOCK_K,), tl.float32)
        for k in tl.range(0, K, BLOCK_K, num_stages=STAGES):
            amax = tl.maximum(amax, tl.abs(tl.load(x_row + k + offs_k, mask=offs_k < K - k, other=0.0).to(tl.float32)))
        scale = qk._token_scale(tl.max(amax, axis=0), FP8)
        tl.store(scale_ptr + r, scale)
        rcp = qk._scale_rcp(scale)
        for k in tl.range(0, K, BLOCK_K, num_stages=STAGES):
            x = tl.load(x_row + k + offs_k, mask=offs_k < K - k, other=0.0).to(tl.float32)
            q = qk._row_codes(x, scale, rcp, FP8, HW_CAST, qx_ptr.dtype.element_ty)
            tl.store(qx_ptr + tl.cast(r, tl.int64) * stride_qm + k + offs_k, q, mask=offs_k < K - k)
        tl.debug_barrier()  # every thread's stores of the row before the release
        tl.atomic_add(ready_ptr + r // ROWS_PER_BLOCK, 1, sem="release", scope="gpu")


@triton.jit
def _gemm_counted_kernel(qx_ptr, xs_ptr, w_ptr, ws_ptr, out_ptr, ready_ptr, passed_ptr, M, N, K, stride_qm, stride_wn,
                         stride_om, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                         WAIT: tl.constexpr, SLEEP: tl.constexpr = False):
    n_tiles = tl.cdiv(N, BLOCK_N)
    pid = tl.program_id(0)
    pid_m = pid // n_tiles  # row blocks in order: the first programs need the first rows
    pid_n = pid % n_tiles
    if WAIT:
        rows = tl.minimum(M - pid_m * BLOCK_M, BLOCK_M)
        seen = tl.atomic_add(ready_ptr + pid_m, 0, sem="acquire", scope="gpu")
        while seen < rows:
            if SLEEP:  # back off: leave the SM's issue slots to the quantization's programs
                seen = tl.inline_asm_elementwise("nanosleep.u32 256; mov.b32 $0, $1;", "=r,r", [seen], dtype=tl.int32,
                                                 is_pure=False, pack=1)
            seen = tl.atomic_add(ready_ptr + pid_m, 0, sem="acquire", scope="gpu")
        if tl.atomic_add(passed_ptr + pid_m, 1, sem="relaxed", scope="gpu") == n_tiles - 1:
            tl.atomic_xchg(ready_ptr + pid_m, 0, sem="relaxed", scope="gpu")  # the block's last reader: reset
            tl.atomic_xchg(passed_ptr + pid_m, 0, sem="relaxed", scope="gpu")
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    a_ptrs = qx_ptr + offs_m.to(tl.int64)[:, None] * stride_qm + offs_k[None, :]
    b_ptrs = w_ptr + offs_n.to(tl.int64)[None, :] * stride_wn + offs_k[:, None]
    acc = tl.zeros((BLOCK_M, BLOCK_N), tl.float32)
    for k in range(0, K, BLOCK_K):
        a = tl.load(a_ptrs + k, mask=(offs_m < M)[:, None], other=0.0)
        b = tl.load(b_ptrs + k, mask=(offs_n < N)[None, :], other=0.0)
        acc = tl.dot(a, b, acc)
    xs = tl.load(xs_ptr + offs_m, mask=offs_m < M, other=0.0)
    ws = tl.load(ws_ptr + offs_n, mask=offs_n < N, other=0.0)
    out = acc * xs[:, None] * ws[None, :]
    tl.store(out_ptr + offs_m.to(tl.int64)[:, None] * stride_om + offs_n[None, :], out.to(out_ptr.dtype.element_ty),
             mask=(offs_m < M)[:, None] & (offs_n < N)[None, :])


def main():
    dev = "cpu" if INTERP else "cuda"
    m, n, k = (256, 128, 512) if INTERP else (2048, 4096, 14336)
    bm, bn, bk = (128, 64, 64) if INTERP else (128, 256, 128)
    x = torch.randn(m, k, device=dev, dtype=torch.float32 if INTERP else torch.bfloat16)
    ws = [torch.randn(n, k, device=dev, dtype=torch.bfloat16) / k ** 0.5 for _ in range(1 if INTERP else 4)]
    packed = [quant.quantize_weight(w, "w8a8_fp8", 128) for w in ws]
    ref = quant.qlinear_reference(x.float(), *packed[0], None, "w8a8_fp8", 128)
    ref_q, ref_s = quant.quantize_activation(x, "w8a8_fp8")
    qx = torch.empty(m, k, device=dev, dtype=torch.float8_e4m3fn)
    xs = torch.empty(m, device=dev, dtype=torch.float32)
    out = torch.empty(m, n, device=dev, dtype=torch.bfloat16)
    blocks = triton.cdiv(m, bm)
    ready = torch.zeros(blocks, device=dev, dtype=torch.int32)
    passed = torch.zeros(blocks, device=dev, dtype=torch.int32)
    grid_gemm = (blocks * triton.cdiv(n, bn),)
    sms = 132 if INTERP else torch.cuda.get_device_properties(0).multi_processor_count
    rows = []

    def gemm(p, wait, pdl, stages=3, sleep=False):
        kw = dict(num_warps=8, num_stages=stages)
        if pdl:
            kw["launch_pdl"] = True
        _gemm_counted_kernel[grid_gemm](qx, xs, p[0], p[1], out, ready, passed, m, n, k, qx.stride(0), p[0].stride(0),
                                        out.stride(0), BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, WAIT=wait, SLEEP=sleep, **kw)

    def counted(p, per_sm, warps, block_k, pdl, sleep=False, alone=False):
        _quant_counted_kernel[(min(m, per_sm * sms),)](x, qx, xs, ready, m, k, x.stride(0), qx.stride(0),
                                                        BLOCK_K=block_k, ROWS_PER_BLOCK=bm, HW_CAST=not INTERP,
                                                        PDL=pdl, num_warps=warps)
        if alone:
            ready.zero_()
        else:
            gemm(p, True, pdl, sleep=sleep)

    def piped(p, per_sm, warps, block_k, stages, pdl, sleep=True, alone=False):
        _quant_counted_kernel[(min(m, per_sm * sms),)](x, qx, xs, ready, m, k, x.stride(0), qx.stride(0),
                                                        BLOCK_K=block_k, STAGES=stages, ROWS_PER_BLOCK=bm,
                                                        HW_CAST=not INTERP, PDL=pdl, num_warps=warps)
        if alone:
            ready.zero_()
        else:
            gemm(p, True, pdl, sleep=sleep)

    def serial(p):
        q, s = kq.quantize_rows(x, "w8a8_fp8")
        qx.copy_(q); xs.copy_(s)  # (the copies are timed too: a small overestimate of the serial path)
        gemm(p, False, False)

    def check(name):
        err = ((out.float() - ref).norm() / ref.norm()).item()
        exact = torch.equal(qx.view(torch.uint8), ref_q.view(torch.uint8)) and torch.equal(xs, ref_s)
        return err, exact

    variants = {"serial: quantize_rows, then the GEMM": lambda p: serial(p)}
    variants["GEMM alone (timing only: zero qx)"] = lambda p: gemm(p, False, False)
    for per_sm, warps, block_k, stages in [(1, 8, 2048, 4), (1, 8, 2048, 6), (1, 8, 1024, 8), (2, 4, 2048, 3),
                                           (2, 4, 1024, 6), (1, 16, 2048, 4)]:
        if INTERP:
            continue
        variants[f"piped alone {per_sm}/SM warps={warps} BLOCK_K={block_k} stages={stages}"] = (
            lambda p, a=(per_sm, warps, block_k, stages): piped(p, *a, False, alone=True))
        variants[f"piped counted {per_sm}/SM warps={warps} BLOCK_K={block_k} stages={stages} pdl sleep"] = (
            lambda p, a=(per_sm, warps, block_k, stages): piped(p, *a, True))
    if INTERP:
        variants["piped (interpreter)"] = lambda p: piped(p, 1, 4, 128, 2, False)
    for per_sm, warps, block_k in ([(2, 4, 2048)] if os.environ.get("PROBE_RUN10") else
                                   [(1, 8, 1024), (1, 8, 2048), (2, 4, 1024), (2, 4, 2048), (1, 4, 2048)]):
        if INTERP:
            continue
        variants[f"quantization alone {per_sm}/SM warps={warps} BLOCK_K={block_k}"] = (
            lambda p, a=(per_sm, warps, block_k): counted(p, *a, False, alone=True))
        for pdl, sleep in ((True, True),) if os.environ.get("PROBE_RUN10") else ((True, True), (True, False),
                                                                                 (False, True)):
            variants[f"counted {per_sm}/SM warps={warps} BLOCK_K={block_k} pdl={pdl} sleep={sleep}"] = (
                lambda p, a=(per_sm, warps, block_k, pdl, sleep): counted(p, *a))
    if INTERP:
        variants["counted (interpreter)"] = lambda p: counted(p, 1, 4, 128, False)
    for name, run in variants.items():
        qx.zero_(); xs.zero_(); out.zero_()
        try:
            run(packed[0])
            err, exact = check(name)
            ok_counters = int(ready.abs().sum().item()) == 0 and int(passed.abs().sum().item()) == 0
            us = float("nan") if INTERP else min(graph_us([lambda p=p: run(p) for p in packed]) for _ in range(2))
        except Exception as e:  # noqa: BLE001
            err, exact, ok_counters, us = f"{type(e).__name__}: {str(e)[:160]}", False, False, float("nan")
        rows.append(dict(variant=name, us=round(us, 2), rel_err=err, qx_exact=exact, counters_reset=ok_counters))
        print(rows[-1], flush=True)
    if not INTERP:
        cub = graph_us([lambda w=w: F.linear(x, w) for w in ws])
        prod_cfg = kq._gemm_config(m, n, k, "w8a8_fp8", 128, (128, 256, 128, 8, 3), 0, group_m=16, skinny=False)
        prod = graph_us([lambda p=p: kq.launch(prod_cfg, x, *p, None, "w8a8_fp8", 128, 0, False) for p in packed])
        rows.append(dict(variant="production op, tile 128x256x128 GROUP_M 16", us=round(prod, 2)))
        rows.append(dict(variant="cuBLAS bf16", us=round(cub, 2)))
        print(rows[-2:], flush=True)
        for r in rows:
            if r["us"] == r["us"]:
                print(f"{r['variant']:55s} {r['us']:8.2f} us  {cub / r['us']:.3f}x cuBLAS")
        json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
                   "rows": rows},
                  open(os.path.join(os.environ.get("OUT", "."), "fp8_overlap_s31run10.json" if os.environ.get(
                      "PROBE_RUN10") else "fp8_overlap_s31run8.json"), "w"),
                  indent=1)


if __name__ == "__main__":
    main()
