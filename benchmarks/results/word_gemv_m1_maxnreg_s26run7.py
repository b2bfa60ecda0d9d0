"""Session 26 scratch: the word GEMV at M = 1 compiled with a register cap (ptxas .maxnreg: more programs a SM, some
values spilled to local memory) against none, 8B int4 / int8 shapes, kernels.py's graph timing; outputs checked."""
import os, sys, json
sys.path[:0] = [os.getcwd(), os.path.join(os.getcwd(), "benchmarks")]
import torch
from accel.runtime.kernels import qlinear as kq, qlinear_kernels as qk
from accel.runtime import quant
from kernels import COPIES, graph_us
CAP = {"v": None}


def wrap(kernel):
    class Launcher:
        def __getitem__(self, grid):
            def run(*args, **kwargs):
                if kernel is qk._qgemv_words_kernel and CAP["v"]:
                    kwargs = {**kwargs, "maxnreg": CAP["v"]}
                return kernel[grid](*args, **kwargs)
            return run
    return Launcher()


kq.wrap_triton = wrap
CFGS = [("int4_weight_only", "up", 14336, 4096, dict(BLOCK_N=4, BLOCK_K=4096, num_warps=4, SUB=4, TILES=2)),
        ("int4_weight_only", "up", 14336, 4096, dict(BLOCK_N=4, BLOCK_K=2048, num_warps=2, SUB=4)),
        ("int4_weight_only", "up", 14336, 4096, dict(BLOCK_N=8, BLOCK_K=2048, num_warps=2, SUB=4)),
        ("int4_weight_only", "down", 4096, 14336, dict(BLOCK_N=4, BLOCK_K=2048, num_warps=2, SUB=4)),
        ("int4_weight_only", "down", 4096, 14336, dict(BLOCK_N=8, BLOCK_K=2048, num_warps=2, SUB=4)),
        ("int8_weight_only", "up", 14336, 4096, dict(BLOCK_N=8, BLOCK_K=4096, num_warps=8, SUB=4)),
        ("int8_weight_only", "down", 4096, 14336, dict(BLOCK_N=4, BLOCK_K=2048, num_warps=4, SUB=4))]
data = {}
for scheme, label, n, k, c in CFGS:
    if (scheme, n) not in data:
        ws = [torch.randn(n, k, device="cuda", dtype=torch.bfloat16) / k ** 0.5 for _ in range(COPIES)]
        packed = [quant.quantize_weight(w, scheme, 128) for w in ws]
        x = torch.randn(1, k, device="cuda", dtype=torch.bfloat16)
        data[(scheme, n)] = (packed, x, quant.qlinear_reference(x.float(), *packed[0], None, scheme, 128))
    packed, x, ref = data[(scheme, n)]
    cfg = dict(kernel="gemv", BLOCK_M=1, SPLIT_K=1, CHUNKS_FIRST=True, num_stages=1, **c)
    for cap in (None, 80, 72, 64, 56, 48):
        CAP["v"] = cap
        out = kq.qlinear(x, *packed[0], None, scheme, 128, "identity", False, _config=cfg)
        err = ((out.float() - ref).norm() / ref.norm()).item()
        assert err < 1e-2, err
        us = graph_us([lambda p=p: kq.qlinear(x, *p, None, scheme, 128, "identity", False, _config=cfg) for p in packed])
        print(json.dumps(dict(scheme=scheme[:4], shape=label, cfg=c, maxnreg=cap, us=round(us, 2))), flush=True)
