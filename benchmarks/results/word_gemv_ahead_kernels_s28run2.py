"""Session 28 scratch: word GEMV TILES configs at M = 1 with and without AHEAD (every tile's words loaded before x),
isolated, timed as kernels.py times qlinear (weight copies rotating in a CUDA graph, enough copies to leave L2)."""
import json, os, sys
sys.path[:0] = [os.getcwd(), os.path.join(os.getcwd(), "benchmarks")]
import torch
from accel.runtime.kernels import qlinear as kq
from accel.runtime import quant
from kernels import graph_us

S = "int4_weight_only"
DRY = os.environ.get("DRY") == "1"  # CPU check of the script itself (TRITON_INTERPRET=1): small N, no timing
DEV = "cpu" if DRY else "cuda"
if DRY:
    graph_us = lambda fns: [f() for f in fns] and 0.0  # noqa: E731
torch.manual_seed(0)
# (label, N, K, gated, norm, configs as (BLOCK_N, warps, SUB, TILES))
SHAPES = [
    ("8b-up", 14336, 4096, False, False, [(4, 4, 4, 2), (4, 4, 4, 4), (8, 4, 4, 2), (2, 4, 4, 4), (4, 2, 4, 2)]),
    ("1b-gateup+norm", 8192, 2048, True, True, [(2, 2, 4, 4), (4, 2, 4, 2), (2, 2, 4, 2), (4, 2, 4, 4), (4, 4, 2, 2)]),
    ("1b-head+norm", 128256, 2048, False, True, [(8, 2, 4, 4), (4, 2, 4, 4), (8, 2, 4, 2), (4, 2, 4, 2)]),
    ("1b-qkv+norm", 3072, 2048, False, True, [(4, 2, 4, 2), (4, 4, 2, 2), (8, 2, 4, 2), (2, 2, 4, 2)]),
    ("1b-o+res", 2048, 2048, False, False, [(4, 2, 4, 2), (2, 2, 4, 2), (4, 4, 2, 2)]),
    ("1b-down+res", 2048, 8192, False, False, []),
]
rows = []
for label, N, K, gated, norm, tiles in SHAPES:
    if DRY:
        N = 64
    n_rows = 2 * N if gated else N
    bytes_ = n_rows * K // 2 * 1.03
    copies = 1 if DRY else max(4, int(2e8 // bytes_) + 1)
    packed = [quant.quantize_weight(torch.randn(n_rows, K, device=DEV, dtype=torch.bfloat16) / K ** 0.5, S, 128)
              for _ in range(copies)]
    x = torch.randn(1, K, device=DEV, dtype=torch.bfloat16)
    g = (1 + 0.1 * torch.randn(K, device=DEV)).to(torch.bfloat16) if norm else None
    r = torch.randn(1, N, device=DEV, dtype=torch.bfloat16) if "res" in label else None
    act = "silu" if gated else "identity"
    eps = 1e-5 if norm else None
    ref = quant.qlinear_reference(x.float(), *packed[0], None, S, 128, act, gated, eps,
                                  None if g is None else g.float(), None if r is None else r.float())
    cands = kq.candidate_configs(1, N, K, S, 128, gated, 2, 132)
    cfgs = [("cand0", cands[0])]
    for bn, w, sub, t in tiles:
        base = dict(kernel="gemv", BLOCK_M=1, BLOCK_N=bn, BLOCK_K=K, SPLIT_K=1, CHUNKS_FIRST=kq.CHUNKS_FIRST,
                    num_warps=w, num_stages=1, SUB=sub, TILES=t)
        cfgs += [(f"bn{bn} w{w} sub{sub} t{t}", base), (f"bn{bn} w{w} sub{sub} t{t} AHEAD", {**base, "AHEAD": True})]
    for name, cfg in cfgs:
        def call(p, cfg=cfg):
            return kq.qlinear(x, *p, None, S, 128, act, gated, eps, g, r, _config=cfg)
        try:
            out = call(packed[0])
            err = ((out.float() - ref).norm() / ref.norm()).item()
            assert err < 2e-2, err
            ts = [graph_us([lambda p=p: call(p) for p in packed]) for _ in range(3)]
        except Exception as e:  # noqa: BLE001
            print(label, name, type(e).__name__, str(e)[:160], flush=True)
            continue
        rows.append(dict(shape=label, config=name, us=[round(t, 2) for t in ts], err=err))
        print(f"{label:16s} {name:28s} " + " ".join(f"{t:7.2f}" for t in ts), flush=True)
out = os.environ.get("OUT", ".")
json.dump({"device": "cpu" if DRY else torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows},
          open(os.path.join(out, "ahead_kernels.json"), "w"), indent=1)
