"""What BF16X2 (int4 word GEMVs summing their products on packed bf16 instructions, ``qlinear.INT4_BF16X2``) costs in
accuracy on real weights and activations, on the CPU: the kernel's arithmetic emulated in PyTorch, bf16 rounding by
bf16 rounding, against the exact int4 product (fp32 products, as the byte-permute GEMV computes them).

    python benchmarks/bf16x2_error_study.py                       # SQNR per linear of 6 SmolLM2 layers, 256 tokens
    python benchmarks/bf16x2_error_study.py --perplexity 1        # + perplexity on 1 window of 512 tokens

The emulation follows ``qlinear_kernels._bf16x2_words``: code v of an int32 word (8 codes along K) pairs with x[v]
in the low lane (v < 4) or the high lane (v ≥ 4); each lane's four products x·(u - 8) go into a bf16 sum, one
rounding a fused multiply-add (the product is exact in fp32: bf16 x times an integer of at most 4 bits), and with
modes 2 and 3 the SUB words of a chunk (SUB·8 codes) are added in bf16 too, in a tree; then the two lanes are added
in fp32, the zero point comes out as -(z - 8)·Σx and the group's scale multiplies, in fp32, as in the kernel. Σx
is an fp32 sum, except in mode 3, which adds x's bf16 pairs as the kernel does (``_bf16x2_x_sums``). x is
rounded to bf16 first (a bf16 model's activations). The weights are accel's int4 g128 asymmetric round to nearest.

Columns: SQNR (dB) of the exact int4 product against the unquantized fp32 product (int4's own error), of the
BF16X2 product against the same, and of the BF16X2 product against the exact int4 one (the added error alone).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import accuracy as A  # noqa: E402
from common import print_table, write_result  # noqa: E402

from accel.runtime import quant  # noqa: E402

G = 128


def _bf16(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.bfloat16).float()


def _tree_bf16(t: torch.Tensor) -> torch.Tensor:
    """Σ over the last axis (a power of two) by pairwise bf16 adds."""
    while t.shape[-1] > 1:
        t = _bf16(t[..., 0::2] + t[..., 1::2])
    return t[..., 0]


def bf16x2_linear(x: torch.Tensor, codes: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, sub: int = 4,
                  mode: int = 2, block: int = 64) -> torch.Tensor:
    """x [T, K] (bf16 values), int4 codes [N, K] with scale / zero [N, K / G] → [T, N] as the BF16X2 GEMV sums it."""
    T, K = x.shape
    N = codes.shape[0]
    chunk = 8 * sub
    assert K % chunk == 0 and G % chunk == 0
    xw = x.float().reshape(T, 1, K // 8, 8)
    if mode == 3:  # Σx per chunk as ``_bf16x2_x_sums`` adds x's pair words: a word's 4 in a tree, its chunk's SUB in
        # a tree, each add rounded to bf16, then the two lanes (x[2i], x[2i + 1]) in fp32
        lanes = xw.reshape(T, 1, K // chunk, sub, 4, 2)
        words = _bf16(_bf16(lanes[..., 0, :] + lanes[..., 1, :]) + _bf16(lanes[..., 2, :] + lanes[..., 3, :]))
        x_sum = _tree_bf16(words.transpose(-1, -2)).sum(-1)
    else:
        x_sum = x.float().reshape(T, 1, K // chunk, chunk).sum(-1)  # Σx per chunk, fp32
    out = torch.empty(T, N)
    for n0 in range(0, N, block):
        d = codes[n0:n0 + block].float().reshape(1, -1, K // 8, 8) - 8.0  # u - 8, exact
        p = xw * d  # [T, n, words, 8]: exact in fp32
        lanes = []
        for lane in (p[..., :4], p[..., 4:]):  # codes v and v + 4 of each word share a bf16 pair
            a = _bf16(lane[..., 0])
            for i in (1, 2, 3):
                a = _bf16(lane[..., i] + a)  # one rounding a fused multiply-add
            a = a.reshape(*a.shape[:2], K // chunk, sub)
            lanes.append(a.sum(-1) if mode == 1 else _tree_bf16(a))  # mode 1: the words' sums in fp32
        t = lanes[0] + lanes[1]  # [T, n, chunks]
        grp = torch.arange(K // chunk) * chunk // G
        s = scale[n0:n0 + block].float()[:, grp]
        z = zero[n0:n0 + block].float()[:, grp]
        out[:, n0:n0 + block] = ((t - (z - 8.0) * x_sum) * s).sum(-1)
    return out


def sqnr_db(ref: torch.Tensor, approx: torch.Tensor) -> float:
    return 10 * math.log10(ref.double().pow(2).sum().item() / max((ref - approx).double().pow(2).sum().item(), 1e-300))


def int4(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(codes [N, K], scale, zero, dequantized fp32 weight) of accel's int4 g128 asymmetric round to nearest."""
    q, s, z = quant.quantize_weight(w.float(), "int4_weight_only", G)
    K = w.shape[1]  # (accel pads K to whole groups)
    return quant.unpack_int4(q)[:, :K], s, z, quant.dequantize_weight(q, s, z, "int4_weight_only", G)[:, :K]


def linear_inputs(model, ids: torch.Tensor, layers: list[int]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{name: (x [T, K] rounded to bf16, the weight)} of every nn.Linear in the given decoder layers, for ids."""
    got: dict = {}
    hooks = []
    for i in layers:
        for name, mod in model.model.layers[i].named_modules():
            if isinstance(mod, torch.nn.Linear):
                def keep(m, args, _out, key=f"{i}.{name}"):
                    got[key] = (_bf16(args[0].reshape(-1, args[0].shape[-1])), m.weight.detach())
                hooks.append(mod.register_forward_hook(keep))
    with torch.no_grad():
        model(ids[None])
    for h in hooks:
        h.remove()
    return got


class _Int4Linear(torch.nn.Module):
    """A linear on accel's int4 g128 weight, summed exactly (fp32, packed = 0) or as BF16X2 mode ``packed`` sums
    it."""

    def __init__(self, lin: torch.nn.Linear, packed: int):
        super().__init__()
        self.codes, self.scale, self.zero, self.w = int4(lin.weight.detach())
        self.bias, self.packed = lin.bias, packed

    def forward(self, x):
        x2 = _bf16(x.reshape(-1, x.shape[-1]))
        y = bf16x2_linear(x2, self.codes, self.scale, self.zero, mode=self.packed) if self.packed else x2 @ self.w.t()
        y = y if self.bias is None else y + self.bias
        return y.reshape(*x.shape[:-1], -1)


def perplexity_with(model, windows: torch.Tensor, packed: int) -> float:
    """Perplexity with every decoder linear int4 (exact sums, or BF16X2's), the LM head kept."""
    saved = []
    for layer in model.model.layers:
        for name, mod in list(layer.named_modules()):
            if isinstance(mod, torch.nn.Linear):
                parent = layer.get_submodule(name.rsplit(".", 1)[0]) if "." in name else layer
                setattr(parent, name.rsplit(".", 1)[-1], _Int4Linear(mod, packed))
                saved.append((parent, name.rsplit(".", 1)[-1], mod))
    try:
        return A.perplexity(model, windows)
    finally:
        for parent, attr, mod in saved:
            setattr(parent, attr, mod)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", default="0,6,12,18,24,29")
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--perplexity", type=int, default=0, help="also perplexity on this many 512-token windows")
    ap.add_argument("--articles", type=int, default=400)
    ap.add_argument("--mode", type=int, default=3, help="the BF16X2 mode of the perplexity run")
    ap.add_argument("--name", default="bf16x2_error_study_smollm2", help="the result file's name")
    args = ap.parse_args()
    torch.manual_seed(0)
    tok, model = A.load_smollm2()
    windows, _ = A.smollm2_inputs(tok, args.articles, 16, 512)
    rows = []
    t0 = time.time()
    layers = [int(v) for v in args.layers.split(",")]
    for name, (x, w) in linear_inputs(model, windows[0, :args.tokens], layers).items():
        codes, s, z, wq = int4(w)
        ref = x @ w.float().t()
        exact = (x.double() @ wq.double().t()).float()
        row = {"linear": name, "shape": f"{w.shape[0]}x{w.shape[1]}", "int4_db": round(sqnr_db(ref, exact), 2)}
        for mode in (1, 2, 3):
            packed = bf16x2_linear(x, codes, s, z, mode=mode)
            row[f"bf16x2_{mode}_db"] = round(sqnr_db(ref, packed), 2)
            row[f"added_{mode}_db"] = round(sqnr_db(exact, packed), 2)
        rows.append(row)
        print(row, flush=True)
    print_table(rows, ["linear", "shape", "int4_db", "bf16x2_1_db", "bf16x2_2_db", "bf16x2_3_db", "added_1_db",
                       "added_2_db", "added_3_db"])
    payload = {"args": vars(args), "rows": rows, "sqnr_seconds": round(time.time() - t0, 1)}
    if args.perplexity:
        ev = windows[:args.perplexity]
        payload["perplexity"] = {"fp32": A.perplexity(model, ev), "int4_exact": perplexity_with(model, ev, 0),
                                 f"int4_bf16x2_{args.mode}": perplexity_with(model, ev, args.mode)}
        print(payload["perplexity"], flush=True)
    print(f"wrote {write_result(args.name, payload)}")


if __name__ == "__main__":
    main()
