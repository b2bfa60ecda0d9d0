"""Session 31 scratch probe (GPU): _quantize_rows_kernel with the division by the activation scale as div_rn
(HEAD 7110b83, loaded from .autotune/base) against the reciprocal + fma correction (this tree), every
(BLOCK_K, passes, warps) variant, each checked bit for bit against quant.quantize_activation."""
import importlib.util, json, os, sys
import torch, triton
sys.path.insert(0, os.getcwd()); sys.path.insert(0, os.path.join(os.getcwd(), "benchmarks"))
from kernels import graph_us  # noqa: E402
from accel.runtime import quant  # noqa: E402
from accel.runtime.kernels import qlinear as kq, qlinear_kernels as qk  # noqa: E402
spec = importlib.util.spec_from_file_location("old_qk", ".autotune/base/accel/runtime/kernels/qlinear_kernels.py")
old = importlib.util.module_from_spec(spec); spec.loader.exec_module(old)
rows = []
for scheme in ("w8a8_fp8", "w8a8_int8"):
    shapes = ((2048, 14336), (2048, 4096), (128, 14336), (16, 14336)) if scheme == "w8a8_fp8" else ((2048, 14336),)
    for m, k in shapes:
        x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16) * 3
        x[0, :3] = torch.tensor([0.0, -0.0, 1e-38])
        ref_q, ref_s = quant.quantize_activation(x, scheme)
        qx = torch.empty(m, k, device="cuda", dtype=ref_q.dtype)
        scale = torch.empty(m, device="cuda", dtype=torch.float32)
        variants = [(triton.next_power_of_2(k), True, w) for w in (4, 8, 16)] + [
            (bk, False, w) for bk in (1024, 2048, 4096) for w in (4, 8, 16) if bk < k]
        for block_k, one_pass, warps in variants:
            for name, mod in (("div_rn", old), ("rcp+fma", qk)):
                def run(mod=mod, block_k=block_k, one_pass=one_pass, warps=warps):
                    mod._quantize_rows_kernel[(m,)](x, qx, scale, m, k, x.stride(0), qx.stride(0),
                                                    SCHEME=kq.SCHEME_IDS[scheme], BLOCK_K=block_k,
                                                    ONE_PASS=one_pass, HW_CAST=scheme == "w8a8_fp8", num_warps=warps)
                qx.zero_(); run()
                exact = torch.equal(qx.view(torch.uint8), ref_q.view(torch.uint8)) and torch.equal(scale, ref_s)
                us = min(graph_us([run]) for _ in range(3))
                row = dict(scheme=scheme, shape=f"{m}x{k}", division=name,
                           variant=f"{'one pass' if one_pass else 'two passes'} BLOCK_K={block_k} warps={warps}",
                           us=round(us, 2), exact=exact, tbs=round(3 * x.numel() / us / 1e6, 2))
                rows.append(row); print(row, flush=True)
json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
           "rows": rows}, open(os.path.join(os.environ.get("OUT", "."), "quant_rows_division_s31run2.json"), "w"), indent=1)
best = {}
for r in rows:
    key = (r["scheme"], r["shape"], r["division"])
    if r["exact"] and (key not in best or r["us"] < best[key]["us"]):
        best[key] = r
for key, r in sorted(best.items()):
    print(*key, r["variant"], r["us"], sep=" | ")
