"""Session 31 scratch probe (GPU): layouts of the one-pass activation quantization at 2048 x 14336 (and 4096, 16 x
14336) against the production kernel: several rows a program, a persistent program that loads its next row while
it quantizes the current one, and streaming cache hints; every variant checked bit for bit against
quant.quantize_activation. Then W8A8 fp8 tl.dot tiles for the 8B down shape at M = 2048 (the whole op, quantization
included) against cuBLAS bf16."""
import json, os, sys
import torch, triton
import triton.language as tl
import torch.nn.functional as F
sys.path.insert(0, os.getcwd()); sys.path.insert(0, os.path.join(os.getcwd(), "benchmarks"))
from kernels import graph_us  # noqa: E402
from accel.runtime import quant  # noqa: E402
from accel.runtime.kernels import qlinear as kq, qlinear_kernels as qk  # noqa: E402


@triton.jit
def _rows_kernel(x_ptr, qx_ptr, scale_ptr, M, K, stride_xm, stride_qm, SCHEME: tl.constexpr, BLOCK_M: tl.constexpr,
                 BLOCK_K: tl.constexpr, HINTS: tl.constexpr):
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_k = tl.arange(0, BLOCK_K)[None, :]
    ok = (offs_m < M)[:, None] & (offs_k < K)
    if HINTS:
        x = tl.load(x_ptr + offs_m.to(tl.int64)[:, None] * stride_xm + offs_k, mask=ok, other=0.0,
                    eviction_policy="evict_first").to(tl.float32)
    else:
        x = tl.load(x_ptr + offs_m.to(tl.int64)[:, None] * stride_xm + offs_k, mask=ok, other=0.0).to(tl.float32)
    scale = qk._token_scale(tl.max(tl.abs(x), axis=1), SCHEME)
    tl.store(scale_ptr + offs_m, scale, mask=offs_m < M)
    q = qk._row_codes(x, scale[:, None], qk._scale_rcp(scale)[:, None], SCHEME, True, qx_ptr.dtype.element_ty)
    if HINTS:
        tl.store(qx_ptr + offs_m.to(tl.int64)[:, None] * stride_qm + offs_k, q, mask=ok, cache_modifier=".cs")
    else:
        tl.store(qx_ptr + offs_m.to(tl.int64)[:, None] * stride_qm + offs_k, q, mask=ok)


@triton.jit
def _persistent_kernel(x_ptr, qx_ptr, scale_ptr, M, K, stride_xm, stride_qm, SCHEME: tl.constexpr,
                       BLOCK_K: tl.constexpr):
    offs_k = tl.arange(0, BLOCK_K)
    k_ok = offs_k < K
    row = tl.program_id(0)
    step = tl.num_programs(0)
    x = tl.load(x_ptr + row.to(tl.int64) * stride_xm + offs_k, mask=k_ok & (offs_k * 0 + row < M), other=0.0)
    for r in range(tl.program_id(0), M, step):
        nxt = r + step
        x_next = tl.load(x_ptr + tl.cast(nxt, tl.int64) * stride_xm + offs_k, mask=k_ok & (offs_k * 0 + nxt < M), other=0.0)
        xf = x.to(tl.float32)
        scale = qk._token_scale(tl.max(tl.abs(xf), axis=0), SCHEME)
        tl.store(scale_ptr + r, scale)
        q = qk._row_codes(xf, scale, qk._scale_rcp(scale), SCHEME, True, qx_ptr.dtype.element_ty)
        tl.store(qx_ptr + tl.cast(r, tl.int64) * stride_qm + offs_k, q, mask=k_ok)
        x = x_next


rows = []
sms = torch.cuda.get_device_properties(0).multi_processor_count
for m, k in ((2048, 14336), (2048, 4096), (16, 14336)):
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16) * 3
    ref_q, ref_s = quant.quantize_activation(x, "w8a8_fp8")
    qx = torch.empty(m, k, device="cuda", dtype=ref_q.dtype)
    scale = torch.empty(m, device="cuda", dtype=torch.float32)
    bk = triton.next_power_of_2(k)
    fp8 = kq.SCHEME_IDS["w8a8_fp8"]
    runs = {"production (quantize_rows)": lambda: kq.quantize_rows(x, "w8a8_fp8")}
    for bm in (1, 2, 4):
        for w in (4, 8, 16):
            for hints in (False, True):
                if bm * bk // (32 * w) > 256 or bm * bk // (32 * w) < 8:
                    continue
                runs[f"rows BLOCK_M={bm} warps={w} hints={hints}"] = (
                    lambda bm=bm, w=w, hints=hints: _rows_kernel[(triton.cdiv(m, bm),)](
                        x, qx, scale, m, k, x.stride(0), qx.stride(0), SCHEME=fp8, BLOCK_M=bm, BLOCK_K=bk,
                        HINTS=hints, num_warps=w))
    for per_sm in (1, 2, 4):
        for w in (8, 16):
            runs[f"persistent {per_sm}/SM warps={w}"] = (
                lambda per_sm=per_sm, w=w: _persistent_kernel[(min(m, per_sm * sms),)](
                    x, qx, scale, m, k, x.stride(0), qx.stride(0), SCHEME=fp8, BLOCK_K=bk, num_warps=w))
    for name, run in runs.items():
        try:
            qx.zero_(); scale.zero_()
            out = run()
            got_q, got_s = out if isinstance(out, tuple) else (qx, scale)
            exact = torch.equal(got_q.view(torch.uint8), ref_q.view(torch.uint8)) and torch.equal(got_s, ref_s)
            us = min(graph_us([run]) for _ in range(3))
        except Exception as e:  # noqa: BLE001
            exact, us = f"{type(e).__name__}: {str(e)[:120]}", float("nan")
        row = dict(shape=f"{m}x{k}", variant=name, us=round(us, 2), exact=exact,
                   tbs=round(3 * x.numel() / us / 1e6, 2))
        rows.append(row); print(row, flush=True)

# W8A8 fp8 tl.dot tiles, 8B down at M = 2048: the whole op (quantization included), 4 weight copies
m, n, k = 2048, 4096, 14336
x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
ws = [torch.randn(n, k, device="cuda", dtype=torch.bfloat16) / k ** 0.5 for _ in range(4)]
cublas = graph_us([lambda w=w: F.linear(x, w) for w in ws])
packed = [quant.quantize_weight(w, "w8a8_fp8", 128) for w in ws]
ref = quant.qlinear_reference(x.float(), *packed[0], None, "w8a8_fp8", 128)
rows.append(dict(shape="down 2048", variant="cuBLAS bf16", us=round(cublas, 2))); print(rows[-1], flush=True)
tiles = [(128, 256, 128, 8, s) for s in (3, 4)] + [(256, 128, 128, 8, s) for s in (3, 4)] + [
    (128, 128, 128, 8, s) for s in (3, 4, 5)] + [(128, 256, 64, 8, s) for s in (4, 5, 6)] + [
    (128, 128, 256, 8, s) for s in (2, 3)]
for t in tiles:
    for gm in (8, 16):
        try:
            cfg = kq._gemm_config(m, n, k, "w8a8_fp8", 128, t, 0, group_m=gm, skinny=False)
            out = kq.launch(cfg, x, *packed[0], None, "w8a8_fp8", 128, 0, False)
            err = ((out.float() - ref).norm() / ref.norm()).item()
            us = min(graph_us([lambda p=p: kq.launch(cfg, x, *p, None, "w8a8_fp8", 128, 0, False)
                               for p in packed]) for _ in range(2))
        except Exception as e:  # noqa: BLE001
            err, us = f"{type(e).__name__}: {str(e)[:120]}", float("nan")
        row = dict(shape="down 2048", variant=f"tile {t} GROUP_M={gm}", us=round(us, 2),
                   speedup=round(cublas / us, 3), rel_err=err)
        rows.append(row); print(row, flush=True)
SC = {"kernel": "scaled_mm"}
us = min(graph_us([lambda p=p: kq.launch(SC, x, *p, None, "w8a8_fp8", 128, 0, False) for p in packed]) for _ in range(2))
rows.append(dict(shape="down 2048", variant="scaled_mm", us=round(us, 2), speedup=round(cublas / us, 3)))
print(rows[-1], flush=True)
json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
           "rows": rows}, open(os.path.join(os.environ.get("OUT", "."), "quant_rows_layouts_s31run4.json"), "w"),
          indent=1)
