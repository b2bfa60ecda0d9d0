"""Session 26 scratch: TILES (weight-row tiles a program, grid-strided; fewer programs) beyond (2, 4) on the 8B up
shape at M = 1 (K = 4096: one step), int4 and int8, next to the unsplit one-tile config; kernels.py's graph timing."""
import os, sys, json
sys.path[:0] = [os.getcwd(), os.path.join(os.getcwd(), "benchmarks")]
import torch
from accel.runtime.kernels import qlinear as kq
from accel.runtime import quant
from kernels import COPIES, graph_us
n, k = 14336, 4096
for scheme, bases in (("int4_weight_only", [(4, 4, 4), (2, 4, 4), (8, 4, 4), (4, 8, 2)]),
                      ("int8_weight_only", [(8, 8, 4), (4, 8, 4), (4, 4, 4)])):
    per_word = 8 if scheme == "int4_weight_only" else 4
    ws = [torch.randn(n, k, device="cuda", dtype=torch.bfloat16) / k ** 0.5 for _ in range(COPIES)]
    packed = [quant.quantize_weight(w, scheme, 128) for w in ws]
    x = torch.randn(1, k, device="cuda", dtype=torch.bfloat16)
    ref = quant.qlinear_reference(x.float(), *packed[0], None, scheme, 128)
    for bn, warps, sub in bases:
        if sub * per_word * 32 * warps != k:
            continue
        for tiles in (0, 2, 3, 4, 5, 6, 7, 8, 10, 12):
            cfg = dict(kernel="gemv", BLOCK_M=1, BLOCK_N=bn, BLOCK_K=k, SPLIT_K=1, CHUNKS_FIRST=True, num_warps=warps,
                       num_stages=1, SUB=sub, **({"TILES": tiles} if tiles else {}))
            out = kq.qlinear(x, *packed[0], None, scheme, 128, "identity", False, _config=cfg)
            err = ((out.float() - ref).norm() / ref.norm()).item()
            assert err < 1e-2, err
            us = graph_us([lambda p=p: kq.qlinear(x, *p, None, scheme, 128, "identity", False, _config=cfg) for p in packed])
            programs = -(-(-(-n // bn)) // max(tiles, 1))
            print(json.dumps(dict(scheme=scheme[:4], BLOCK_N=bn, warps=warps, SUB=sub, TILES=tiles, programs=programs,
                                  us=round(us, 2))), flush=True)
