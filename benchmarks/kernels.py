"""Each accel kernel against its baseline, per shape, as it runs inside a CUDA graph with a cold L2.

    python benchmarks/kernels.py --shapes 1b,8b --m 1,4,16,64,256,2048

linear (Llama 1B and 8B projection shapes) vs cuBLAS bf16 (column baseline_us) (``F.linear``, which is also what Inductor emits for
these matmuls without max-autotune); ffn_up (gate/up GEMM + SiLU·mul) vs cuBLAS + Inductor's fused act·mul;
decode attention over a static KV cache vs SDPA. Four rotating weight copies so L2 does not flatter; each
timing is the median of CUDA-graph replays. Correctness is checked before timing.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import environment, print_table, write_result  # noqa: E402

from accel.runtime.kernels import attention as ka  # noqa: E402
from accel.runtime.kernels import ffn as kf  # noqa: E402
from accel.runtime.kernels import linear as kl  # noqa: E402

SHAPES = {  # name -> [(label, N, K)] with weight [N, K]
    "1b": [("qkv", 3072, 2048), ("o", 2048, 2048), ("down", 2048, 8192), ("lm_head", 128256, 2048)],
    "8b": [("qkv", 6144, 4096), ("o", 4096, 4096), ("down", 4096, 14336)],
}
GATE_UP = {"1b": (8192, 2048), "8b": (14336, 4096)}
COPIES = 4


def graph_us(fns) -> float:
    """Median µs per call of cycling through ``fns`` (one per weight copy) in a CUDA graph."""
    for f in fns:
        f()
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(4):
            for f in fns:
                f()
    times = []
    for _ in range(9):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        g.replay()
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e) * 1e3 / (4 * len(fns)))
    return sorted(times)[len(times) // 2]


def rel(a, b) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def bench_linear(label, n, k, m, rows):
    ws = [torch.randn(n, k, device="cuda", dtype=torch.bfloat16) / k ** 0.5 for _ in range(COPIES)]
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    err = rel(kl.linear(x, ws[0], None), F.linear(x.float(), ws[0].float()))
    base = graph_us([lambda w=w: F.linear(x, w) for w in ws])
    ours = graph_us([lambda w=w: kl.linear(x, w, None) for w in ws])
    cfg = kl.select_config("linear", x, ws[0], None, 0, False)
    rows.append(dict(op="linear", shape=f"{label} {n}x{k}", M=m, baseline_us=round(base, 2), accel_us=round(ours, 2),
                     speedup=round(base / ours, 3), accel_gbs=round(n * k * 2 / ours / 1e3, 1), rel_err=f"{err:.1e}",
                     config=cfg.get("kernel")))


def bench_ffn_up(label, i, h, m, rows):
    ws = [torch.randn(2 * i, h, device="cuda", dtype=torch.bfloat16) / h ** 0.5 for _ in range(COPIES)]
    x = torch.randn(m, h, device="cuda", dtype=torch.bfloat16)

    @torch.compile(fullgraph=True)
    def inductor_ffn_up(x, w):
        g, u = F.linear(x, w).chunk(2, -1)
        return F.silu(g) * u

    ref = inductor_ffn_up(x.float(), ws[0].float())
    err = rel(kf.ffn_up(x, ws[0], None, "silu", True), ref)
    base = graph_us([lambda w=w: inductor_ffn_up(x, w) for w in ws])
    ours = graph_us([lambda w=w: kf.ffn_up(x, w, None, "silu", True) for w in ws])
    rows.append(dict(op="ffn_up", shape=f"{label} gate_up {2 * i}x{h}", M=m, baseline_us=round(base, 2),
                     accel_us=round(ours, 2), speedup=round(base / ours, 3), accel_gbs=round(2 * i * h * 2 / ours / 1e3, 1),
                     rel_err=f"{err:.1e}"))


def bench_decode_attention(hq, hkv, d, ctx, cache_len, rows):
    q = torch.randn(1, hq, 1, d, device="cuda", dtype=torch.bfloat16)
    ks = [torch.randn(1, hkv, cache_len, d, device="cuda", dtype=torch.bfloat16) for _ in range(COPIES)]
    vs = [torch.randn_like(k) for k in ks]
    mask = (torch.arange(cache_len, device="cuda") < ctx).view(1, 1, 1, cache_len)
    out = ka.attention(q, ks[0], vs[0], mask, d ** -0.5, False)
    ref = F.scaled_dot_product_attention(q.float(), ks[0].float(), vs[0].float(), attn_mask=mask, enable_gqa=True)
    err = rel(out, ref)
    base = graph_us([lambda k=k, v=v: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
                     for k, v in zip(ks, vs)])
    ours = graph_us([lambda k=k, v=v: ka.attention(q, k, v, mask, d ** -0.5, False) for k, v in zip(ks, vs)])
    rows.append(dict(op="attention_decode", shape=f"H{hq}/{hkv} D{d} ctx {ctx}/{cache_len}", M=1,
                     baseline_us=round(base, 2), accel_us=round(ours, 2), speedup=round(base / ours, 3),
                     rel_err=f"{err:.1e}"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="1b,8b")
    ap.add_argument("--m", default="1,4,16,64,256,2048")
    args = ap.parse_args()
    env = environment()
    print(f"{env['device']}  torch {env['torch']}  triton {env['triton']}")
    rows: list[dict] = []
    ms = [int(v) for v in args.m.split(",")]
    for name in args.shapes.split(","):
        for m in ms:
            for label, n, k in SHAPES[name]:
                bench_linear(f"{name} {label}", n, k, m, rows)
            bench_ffn_up(name, *GATE_UP[name], m, rows)
            print(rows[-1], flush=True)
    for d, hq, hkv in ((64, 32, 8), (128, 32, 8)):
        for ctx, cache_len in ((256, 4096), (4096, 4096)):
            bench_decode_attention(hq, hkv, d, ctx, cache_len, rows)
    print()
    print_table(rows, ["op", "shape", "M", "baseline_us", "accel_us", "speedup", "accel_gbs", "rel_err", "config"])
    print("wrote", write_result("kernels", {"rows": rows}))


if __name__ == "__main__":
    main()
