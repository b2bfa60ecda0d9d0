"""Session 28 scratch: what the 1B int4 gate/up GEMV (8192 x 2 rows, K = 2048, RMSNorm in its prologue) spends on
its norm and on its gating: the same TILES configs with and without the norm (and its weight), gated against one
plain weight of 16384 rows (the same bytes), isolated, timed as kernels.py times qlinear."""
import json, os, sys
sys.path[:0] = [os.getcwd(), os.path.join(os.getcwd(), "benchmarks")]
import torch
from accel.runtime.kernels import qlinear as kq
from accel.runtime import quant
from kernels import graph_us

S, K = "int4_weight_only", 2048
DRY = os.environ.get("DRY") == "1"
DEV = "cpu" if DRY else "cuda"
if DRY:
    graph_us = lambda fns: [f() for f in fns] and 0.0  # noqa: E731
torch.manual_seed(0)
rows_total = 64 if DRY else 16384
copies = 1 if DRY else 14  # 14 x 17.8 MB: well past the 50 MB L2
packed = [quant.quantize_weight(torch.randn(rows_total, K, device=DEV, dtype=torch.bfloat16) / K ** 0.5, S, 128)
          for _ in range(copies)]
x = torch.randn(1, K, device=DEV, dtype=torch.bfloat16)
g = (1 + 0.1 * torch.randn(K, device=DEV)).to(torch.bfloat16)
rows = []
# (label, gated, norm: None / "norm" / "norm+w", [(rows a tile as weight rows, warps, SUB, TILES)])
for label, gated, norm in [("gated+norm+w", True, "norm+w"), ("gated+norm", True, "norm"), ("gated", True, None),
                           ("plain+norm+w", False, "norm+w"), ("plain", False, None)]:
    for wrows, warps, sub, tiles in [(4, 2, 4, 4), (8, 2, 4, 2), (4, 2, 4, 2), (8, 2, 4, 4)]:
        bn = wrows // 2 if gated else wrows
        cfg = dict(kernel="gemv", BLOCK_M=1, BLOCK_N=bn, BLOCK_K=K, SPLIT_K=1, CHUNKS_FIRST=kq.CHUNKS_FIRST,
                   num_warps=warps, num_stages=1, SUB=sub, TILES=tiles)
        eps = 1e-5 if norm else None
        gw = g if norm == "norm+w" else None
        act = "silu" if gated else "identity"

        def call(p, cfg=cfg, eps=eps, gw=gw, act=act, gated=gated):
            return kq.qlinear(x, *p, None, S, 128, act, gated, eps, gw, None, _config=cfg)
        ref = quant.qlinear_reference(x.float(), *packed[0], None, S, 128, act, gated, eps,
                                      None if gw is None else gw.float())
        out = call(packed[0])
        err = ((out.float() - ref).norm() / ref.norm()).item()
        assert err < 2e-2, (label, err)
        ts = [graph_us([lambda p=p: call(p) for p in packed]) for _ in range(3)]
        name = f"{wrows} weight rows a tile, {warps} warps, SUB {sub}, TILES {tiles}"
        rows.append(dict(kind=label, config=name, us=[round(t, 2) for t in ts]))
        print(f"{label:14s} {name:44s} " + " ".join(f"{t:7.2f}" for t in ts), flush=True)
json.dump({"device": "cpu" if DRY else torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows},
          open(os.path.join(os.environ.get("OUT", "."), "gateup_parts.json"), "w"), indent=1)
