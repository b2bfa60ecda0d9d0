"""Each accel kernel against its baseline, per shape, as it runs inside a CUDA graph with a cold L2.

    python benchmarks/kernels.py --shapes 1b,8b --m 1,4,16,64,256,2048

linear (Llama 1B and 8B projection shapes) vs cuBLAS bf16 (column baseline_us) (``F.linear``, which is also what Inductor emits for
these matmuls without max-autotune); ffn_up (gate/up GEMM + SiLU·mul) vs cuBLAS + Inductor's fused act·mul;
decode attention over a static KV cache vs SDPA; qlinear (``--ops qlinear``: int8 / int4 weight-only, W8A8 int8 /
fp8) on the 8B MLP shapes vs cuBLAS bf16 and, when torchao is importable, its int8wo / int4wo (tinygemm) / int8
dynamic / fp8 row-wise linears under ``torch.compile``. Four rotating weight copies so L2 does not flatter; each
timing is the median of CUDA-graph replays. Correctness is checked before timing.

    python benchmarks/kernels.py --ops qlinear --m 1,16,128,2048
"""
from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import accel_from_argv, add_accel_from, environment, print_table, use_accel_from, write_result  # noqa: E402

use_accel_from(accel_from_argv())  # before accel is imported

from accel.runtime.kernels import attention as ka  # noqa: E402
from accel.runtime.kernels import ffn as kf  # noqa: E402
from accel.runtime.kernels import linear as kl  # noqa: E402
from accel.runtime.kernels import qlinear as kq  # noqa: E402
from accel.runtime import quant  # noqa: E402

SHAPES = {  # name -> [(label, N, K)] with weight [N, K]
    "1b": [("qkv", 3072, 2048), ("o", 2048, 2048), ("down", 2048, 8192), ("lm_head", 128256, 2048)],
    "8b": [("qkv", 6144, 4096), ("o", 4096, 4096), ("down", 4096, 14336)],
}
GATE_UP = {"1b": (8192, 2048), "8b": (14336, 4096)}
COPIES = 4
QLINEAR_SHAPES = [("8b up", 14336, 4096), ("8b down", 4096, 14336)]  # the 4096x14336 and 14336x4096
QSCHEMES = ("int8_weight_only", "int4_weight_only", "w8a8_int8", "w8a8_fp8")
# torchao's counterpart of each scheme (config factories, imported lazily: torchao is optional)
TORCHAO = {"int8_weight_only": "int8wo", "int4_weight_only": "int4wo_g128", "w8a8_int8": "int8dq",
           "w8a8_fp8": "fp8dq_row"}


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


def torchao_linear(kind: str, w: torch.Tensor):
    """A compiled ``nn.Linear`` holding ``w`` quantized by torchao's ``kind``, or the reason it is unavailable."""
    try:
        from torchao.quantization import (Float8DynamicActivationFloat8WeightConfig,
                                          Int4WeightOnlyConfig, Int8DynamicActivationInt8WeightConfig,
                                          Int8WeightOnlyConfig, PerRow, quantize_)
        from torchao.quantization.quantize_.workflows import Int4PackingFormat
    except Exception as e:  # noqa: BLE001  (absent, or built for another torch)
        return f"torchao unavailable: {type(e).__name__}"
    configs = {"int8wo": Int8WeightOnlyConfig, "int8dq": Int8DynamicActivationInt8WeightConfig,
               "fp8dq_row": lambda: Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()),
               "int4wo_g128": lambda: Int4WeightOnlyConfig(
                   group_size=128, int4_packing_format=Int4PackingFormat.TILE_PACKED_TO_4D)}
    lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=False, device=w.device, dtype=w.dtype)
    lin.weight.data.copy_(w)
    quantize_(lin, configs[kind]())
    return torch.compile(lin, dynamic=False)


def bench_qlinear(label, n, k, m, scheme, rows, baselines: dict):
    """accel's qlinear for ``scheme`` vs cuBLAS bf16 and torchao's counterpart, same weights and inputs."""
    group = 128
    ws = [torch.randn(n, k, device="cuda", dtype=torch.bfloat16) / k ** 0.5 for _ in range(COPIES)]
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    packed = [quant.quantize_weight(w, scheme, group) for w in ws]
    ref = quant.qlinear_reference(x.float(), *packed[0], None, scheme, group)  # fp32 output: our rounding shows
    # split-K reduced in the last program, as a compiled graph does (option reduce_splits_in_kernel, on by default)
    counters = torch.zeros(n, dtype=torch.int32, device="cuda")
    out = kq.qlinear(x, *packed[0], None, scheme, group, "identity", False, counters=counters)
    err = rel(out, ref)
    key = (label, m)
    if key not in baselines:
        baselines[key] = graph_us([lambda w=w: F.linear(x, w) for w in ws])
    cublas = baselines[key]
    ours = graph_us([lambda p=p: kq.qlinear(x, *p, None, scheme, group, "identity", False, counters=counters)
                     for p in packed])
    cfg = kq.select_config(x, *packed[0], None, scheme, group, 0, False, counters=counters)
    row = dict(op="qlinear", shape=f"{label} {n}x{k}", M=m, scheme=scheme, cublas_bf16_us=round(cublas, 2),
               accel_us=round(ours, 2), speedup=round(cublas / ours, 3), rel_err=f"{err:.1e}",
               config=cfg.get("kernel"))
    if scheme == "w8a8_int8":  # refuses M <= 16 and fails inside a graph capture above (poisoning later ones)
        row["torchao"] = "int8dq: not graph-capturable"
        rows.append(row)
        print(row, flush=True)
        return
    ao = [torchao_linear(TORCHAO[scheme], w) for w in ws]
    if isinstance(ao[0], str):
        row["torchao"] = ao[0]
    else:
        try:
            row["torchao_us"] = round(graph_us([lambda f=f: f(x) for f in ao]), 2)
            row["vs_torchao"] = round(row["torchao_us"] / ours, 3)
        except Exception as e:  # noqa: BLE001  (torchao's int8 dynamic refuses M <= 16)
            row["torchao"] = f"{type(e).__name__}: {str(e)[:80]}"
    rows.append(row)
    print(row, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="1b,8b")
    add_accel_from(ap)
    ap.add_argument("--m", default="1,4,16,64,256,2048")
    ap.add_argument("--ops", default="linear,attention", help="any of linear (incl. ffn_up), attention, qlinear")
    ap.add_argument("--schemes", default=",".join(QSCHEMES), help="qlinear schemes")
    args = ap.parse_args()
    ops = args.ops.split(",")
    env = environment()
    print(f"{env['device']}  torch {env['torch']}  triton {env['triton']}")
    rows: list[dict] = []
    ms = [int(v) for v in args.m.split(",")]
    for name in args.shapes.split(",") if "linear" in ops else ():
        for m in ms:
            for label, n, k in SHAPES[name]:
                bench_linear(f"{name} {label}", n, k, m, rows)
            bench_ffn_up(name, *GATE_UP[name], m, rows)
            print(rows[-1], flush=True)
    for d, hq, hkv in ((64, 32, 8), (128, 32, 8)) if "attention" in ops else ():
        for ctx, cache_len in ((256, 4096), (4096, 4096)):
            bench_decode_attention(hq, hkv, d, ctx, cache_len, rows)
    qrows: list[dict] = []
    baselines: dict = {}
    for m in ms if "qlinear" in ops else ():
        for label, n, k in QLINEAR_SHAPES:
            for scheme in args.schemes.split(","):
                try:
                    bench_qlinear(label, n, k, m, scheme, qrows, baselines)
                except Exception as e:  # noqa: BLE001  (report and keep going)
                    qrows.append(dict(op="qlinear", shape=label, M=m, scheme=scheme,
                                      error=f"{type(e).__name__}: {str(e)[:200]}"))
                    print(qrows[-1], flush=True)
    print()
    if rows:
        print_table(rows, ["op", "shape", "M", "baseline_us", "accel_us", "speedup", "accel_gbs", "rel_err",
                           "config"])
    if qrows:
        print_table(qrows, ["shape", "M", "scheme", "cublas_bf16_us", "accel_us", "speedup", "torchao_us",
                            "vs_torchao", "rel_err", "config", "torchao", "error"])
    name = "kernels" if "qlinear" not in ops else ("qlinear_kernels" if not rows else "kernels_all")
    print("wrote", write_result(name, {"rows": rows + qrows}))


if __name__ == "__main__":
    main()
