"""Session 31 scratch probe (GPU): an int4 (g128, asymmetric) GEMV at M = 1 whose weight tiles come through TMA
(a host TensorDescriptor; the K loop pipelined by tl.range(num_stages), so the bytes in flight sit in shared memory,
not registers), summed as BF16X2 mode 2 with the production helpers, against the same kernel with plain loads and
against accel's tuned qlinear (4 rotating weight copies each, CUDA-graph replays)."""
import json, os, sys, itertools
import torch, triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor
sys.path.insert(0, os.getcwd()); sys.path.insert(0, os.path.join(os.getcwd(), "benchmarks"))
from kernels import graph_us  # noqa: E402
from accel.runtime import quant  # noqa: E402
from accel.runtime.kernels import qlinear as kq, qlinear_kernels as qk  # noqa: E402


@triton.jit
def _gemv_kernel(x_ptr, w_desc, w_ptr, s_ptr, z_ptr, out_ptr, N, K, stride_wn, stride_sn,
                 BLOCK_N: tl.constexpr, BLOCK_W: tl.constexpr, SUB: tl.constexpr, STAGES: tl.constexpr,
                 TMA: tl.constexpr, MODE: tl.constexpr):
    CH: tl.constexpr = BLOCK_W // SUB  # chunks of SUB words (8·SUB codes, in one group) a step
    n0 = tl.program_id(0) * BLOCK_N
    offs_n = n0 + tl.arange(0, BLOCK_N)
    acc = tl.zeros((BLOCK_N, CH), tl.float32)
    for kw in tl.range(0, K // 8, BLOCK_W, num_stages=STAGES):
        if TMA:
            w = w_desc.load([n0, kw])
        else:
            w = tl.load(w_ptr + offs_n[:, None].to(tl.int64) * stride_wn + kw + tl.arange(0, BLOCK_W)[None, :])
        w = tl.reshape(w, (BLOCK_N, CH, SUB))
        x = tl.load(x_ptr + kw * 8 + tl.arange(0, BLOCK_W * 8)).to(tl.float32)
        x = tl.reshape(x, (1, CH, SUB, 8))
        x_sum = tl.sum(tl.sum(x, axis=3), axis=2)
        if MODE == 2:
            t = qk._bf16x2_sum(tl.reduce(qk._bf16x2_words(x, w), 2, qk._bf16x2_add))
        elif MODE == 1:
            t = tl.sum(qk._bf16x2_sum(qk._bf16x2_words(x, w)), axis=2)
        else:  # plain fp32 decoding (the interpreter's check of the indexing)
            u = (w[:, :, :, None] >> (4 * tl.arange(0, 8))[None, None, None, :]) & 15
            t = tl.sum(tl.sum(x * (u.to(tl.float32) - 8.0), axis=3), axis=2)
        grp = (kw * 8 + tl.arange(0, CH) * (SUB * 8)) // 128
        sz = offs_n[:, None] * stride_sn + grp[None, :]
        s = tl.load(s_ptr + sz).to(tl.float32)
        z = tl.load(z_ptr + sz).to(tl.float32)
        acc += (t - (z - 8.0) * x_sum) * s
    tl.store(out_ptr + offs_n, tl.sum(acc, axis=1).to(out_ptr.dtype.element_ty))


def main():
    rows = []
    shapes = [("8b up", 14336, 4096), ("8b down", 4096, 14336), ("1b gate/up rows", 16384, 2048),
              ("1b head", 128256, 2048), ("1b down", 2048, 8192)]
    configs = [dict(BLOCK_N=bn, BLOCK_W=bw, STAGES=st, num_warps=w, MODE=mode)
               for bn, bw, st, w, mode in itertools.product((8, 16), (64, 128), (3, 4), (2, 4), (2,))]
    budget = float(os.environ.get("PROBE_BUDGET_S", "400"))
    import time
    t0 = time.time()
    for label, n, k in shapes:
        ws = [torch.randn(n, k, device="cuda", dtype=torch.bfloat16) / k ** 0.5 for _ in range(4)]
        x = torch.randn(1, k, device="cuda", dtype=torch.bfloat16)
        packed = [quant.quantize_weight(w, "int4_weight_only", 128) for w in ws]
        ref = quant.qlinear_reference(x.float(), *packed[0], None, "int4_weight_only", 128)[0]
        counters = torch.zeros(n, dtype=torch.int32, device="cuda")
        prod = graph_us([lambda p=p: kq.qlinear(x, *p, None, "int4_weight_only", 128, "identity", False,
                                                counters=counters) for p in packed])
        cfg = kq.select_config(x, *packed[0], None, "int4_weight_only", 128, 0, False, counters=counters)
        rows.append(dict(shape=label, variant="accel tuned", us=round(prod, 2), config=str(cfg)))
        print(rows[-1], flush=True)
        out = torch.empty(n, device="cuda", dtype=torch.bfloat16)
        for c in configs:
            if time.time() - t0 > budget:
                break
            for tma in (True, False):
                if not tma and c["STAGES"] != 3:
                    continue  # plain loads: one stage count (tl.range stages cp.async them otherwise)
                c2 = dict(c, STAGES=c["STAGES"] if tma else 1)
                try:
                    descs = [TensorDescriptor.from_tensor(p[0].view(torch.int32), [c["BLOCK_N"], c["BLOCK_W"]])
                             for p in packed]

                    def run(i, c2=c2, tma=tma):
                        p = packed[i]
                        _gemv_kernel[(n // c2["BLOCK_N"],)](
                            x, descs[i], p[0].view(torch.int32), p[1], p[2], out, n, k, k // 8, p[1].stride(0),
                            BLOCK_N=c2["BLOCK_N"], BLOCK_W=c2["BLOCK_W"], SUB=4, STAGES=c2["STAGES"], TMA=tma,
                            MODE=c2["MODE"], num_warps=c2["num_warps"])
                    run(0)
                    err = ((out.float() - ref).norm() / ref.norm()).item()
                    us = graph_us([lambda i=i: run(i) for i in range(4)])
                except Exception as e:  # noqa: BLE001
                    err, us = f"{type(e).__name__}: {str(e)[:160]}", float("nan")
                rows.append(dict(shape=label, variant=("tma " if tma else "plain ") + str(c2), us=round(us, 2),
                                 rel_err=err))
                print(rows[-1], flush=True)
    json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
               "rows": rows}, open(os.path.join(os.environ.get("OUT", "."), "tma_gemv_s31run5.json"), "w"), indent=1)
    for label, *_ in shapes:
        rs = [r for r in rows if r["shape"] == label and isinstance(r.get("rel_err", 0), float) and r["us"] == r["us"]]
        acc = [r for r in rows if r["shape"] == label and r["variant"] == "accel tuned"]
        for kind in ("tma", "plain"):
            best = min((r for r in rs if r["variant"].startswith(kind)), key=lambda r: r["us"], default=None)
            if best:
                print(label, "|", kind, best["us"], best["variant"], "| accel", acc[0]["us"] if acc else None)


if __name__ == "__main__":
    main()
