"""Session 26 scratch: word GEMV tiles at M = 1 on the 8B int4 shapes the candidate list never tries (1 or 2 weight
rows a program, 1 warp, two chunks a lane), next to its usual ones; kernels.py's graph timing."""
import os, sys, json, itertools
sys.path[:0] = [os.getcwd(), os.path.join(os.getcwd(), "benchmarks")]
import torch
from accel.runtime.kernels import qlinear as kq
from accel.runtime import quant
from kernels import COPIES, graph_us
scheme = sys.argv[1] if len(sys.argv) > 1 else "int4_weight_only"
per_word = 8 if scheme == "int4_weight_only" else 4
for label, n, k in (("up", 14336, 4096), ("down", 4096, 14336)):
    ws = [torch.randn(n, k, device="cuda", dtype=torch.bfloat16) / k ** 0.5 for _ in range(COPIES)]
    packed = [quant.quantize_weight(w, scheme, 128) for w in ws]
    x = torch.randn(1, k, device="cuda", dtype=torch.bfloat16)
    ref = quant.qlinear_reference(x.float(), *packed[0], None, scheme, 128)
    res = []
    for bn, warps, sub, kv, tiles in itertools.product((1, 2, 4), (1, 2, 4), (2, 4), (1, 2), (0, 2, 4)):
        bk = sub * per_word * 32 * warps * kv
        if bk > k or k % bk or (tiles and bk != k):
            continue
        cfg = dict(kernel="gemv", BLOCK_M=1, BLOCK_N=bn, BLOCK_K=bk, SPLIT_K=1, CHUNKS_FIRST=True, num_warps=warps,
                   num_stages=1, SUB=sub, **({"TILES": tiles} if tiles else {}))
        try:
            out = kq.qlinear(x, *packed[0], None, scheme, 128, "identity", False, _config=cfg)
            err = ((out.float() - ref).norm() / ref.norm()).item()
            assert err < 1e-2, err
            us = graph_us([lambda p=p: kq.qlinear(x, *p, None, scheme, 128, "identity", False, _config=cfg) for p in packed])
        except Exception as e:  # noqa: BLE001
            print(label, cfg, type(e).__name__, str(e)[:100], flush=True)
            continue
        res.append((round(us, 2), bn, warps, sub, kv, tiles))
        print(json.dumps(dict(shape=label, us=round(us, 2), BLOCK_N=bn, warps=warps, SUB=sub, kv=kv, TILES=tiles)), flush=True)
    res.sort()
    print("BEST", label, res[:8], flush=True)
