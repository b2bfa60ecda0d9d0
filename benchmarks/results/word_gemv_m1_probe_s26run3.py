"""Session 26 scratch: what holds the word GEMV at M = 1 above the read floor. argv[1] = variant:
  base   the kernel as committed
  nodec  the chunk sums without the decoding: Σ words (as one int) × Σ x, plus the group params (all loads kept)
  noprm  full decoding, the int4 group scale / zero point constants (no parameter loads)
  bare   neither: words and x loaded, Σ words × Σ x
Times the 8B int4 / int8 shapes at M = 1 with the tuned configs (and a few others), kernels.py's graph timing.
Wrong outputs by design except base."""
import os, sys, json
sys.path[:0] = [os.getcwd(), os.path.join(os.getcwd(), "benchmarks")]
import torch, triton, triton.language as tl
variant = sys.argv.pop(1)
from accel.runtime.kernels import qlinear_kernels as qk
from accel.runtime.kernels import qlinear as kq
from accel.runtime import quant
from kernels import COPIES, graph_us

sys.path.insert(0, os.path.join(os.getcwd(), ".autotune"))
import m1_probe_kernels
m1_probe_kernels.patch(variant)

CFGS = {
 "int4_weight_only": {
   "up": [dict(BLOCK_M=1, BLOCK_N=4, BLOCK_K=4096, SPLIT_K=1, CHUNKS_FIRST=True, num_warps=4, num_stages=1, SUB=4, TILES=2),
          dict(BLOCK_M=1, BLOCK_N=4, BLOCK_K=2048, SPLIT_K=1, CHUNKS_FIRST=True, num_warps=2, num_stages=1, SUB=4)],
   "down": [dict(BLOCK_M=1, BLOCK_N=4, BLOCK_K=2048, SPLIT_K=1, CHUNKS_FIRST=True, num_warps=2, num_stages=1, SUB=4),
            dict(BLOCK_M=1, BLOCK_N=8, BLOCK_K=2048, SPLIT_K=2, CHUNKS_FIRST=True, num_warps=2, num_stages=1, SUB=4)]},
 "int8_weight_only": {
   "up": [dict(BLOCK_M=1, BLOCK_N=8, BLOCK_K=4096, SPLIT_K=1, CHUNKS_FIRST=True, num_warps=8, num_stages=1, SUB=4)],
   "down": [dict(BLOCK_M=1, BLOCK_N=4, BLOCK_K=2048, SPLIT_K=1, CHUNKS_FIRST=True, num_warps=4, num_stages=1, SUB=4)]}}
res = []
for scheme, shapes in CFGS.items():
    for label, n, k in (("up", 14336, 4096), ("down", 4096, 14336)):
        ws = [torch.randn(n, k, device="cuda", dtype=torch.bfloat16) / k ** 0.5 for _ in range(COPIES)]
        packed = [quant.quantize_weight(w, scheme, 128) for w in ws]
        x = torch.randn(1, k, device="cuda", dtype=torch.bfloat16)
        for cfg in shapes[label]:
            cfg = {"kernel": "gemv", **cfg}
            us = graph_us([lambda p=p: kq.qlinear(x, *p, None, scheme, 128, "identity", False, _config=cfg) for p in packed])
            res.append(dict(variant=variant, scheme=scheme[:4], shape=label, us=round(us, 2),
                            cfg={k_: v for k_, v in cfg.items() if k_ not in ("kernel", "BLOCK_M", "num_stages", "CHUNKS_FIRST")}))
            print(json.dumps(res[-1]), flush=True)
