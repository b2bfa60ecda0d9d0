"""A/B of one qlinear kernel switch on the issue's 8B MLP shapes (and the 1B decode step's, ``--shapes``): every
candidate of the autotuner that the switch applies to, timed with the switch on and off in the same process, next to
cuBLAS bf16.

    python benchmarks/qlinear_ab.py --flag PAIRS --scheme int4_weight_only --m 16,128
    python benchmarks/qlinear_ab.py --flag PRMT --m 1 --shapes 8b,1b
    python benchmarks/qlinear_ab.py --flag PRMT --scheme int8_weight_only --m 1 --shapes 8b
    python benchmarks/qlinear_ab.py --flag HALVES --m 1,2,4 --shapes 8b,1b --as-decoded
    python benchmarks/qlinear_ab.py --flag PREFETCH --scheme int8_weight_only --m 1 --shapes 8b,1b
    python benchmarks/qlinear_ab.py --flag TILES --m 1 --shapes 1b --as-decoded
    python benchmarks/qlinear_ab.py --flag MMA --m 1,8 --shapes 8b,1b --as-decoded
    python benchmarks/qlinear_ab.py --flag BF16X2 --m 1,2,4 --shapes 8b,1b --as-decoded

Switches: PAIRS (int4 tiles dequantized on packed bf16 / fp16 instructions, ``qlinear_kernels._dequant_int4_pairs``)
and SWAP (the weight tile as the MMA's first operand), over the tl.dot candidates; PRMT (int4 words decoded by byte
permutes, ``qlinear_kernels._decode_nibbles``, and int8 ones by ``_decode_bytes`` while ``qlinear.INT8_PRMT`` is on)
over the GEMV candidates, whose outputs with the switch on and off must agree to within the rounding of the output
(they differ only in the order of fp32 roundings); HALVES (int4 words decoded two codes an integer instruction,
``qlinear_kernels._decode_halves``, against byte permutes) over the GEMV candidates, each also with 2 and 4 tiles a
program where its K is one step, as the tuner refines them; PREFETCH (each K step's words loaded one step ahead) over
the word-GEMV candidates, bit-identical on and off: a candidate of one K step a program runs as it is in both
columns, so "on" is the best the tuner could pick with the switch; TILES over the word-GEMV candidates whose K is one
step: "off" runs them with the K loop (TILES = 0), "on" without it (``_words_tiles``) with 1, 2 or 4 tiles of weight
rows a program and x loaded once; "on" is the best of those and of the candidates it does not apply to. MMA (int4):
"off" is the best of the other Triton candidates (word GEMVs, tl.dot tiles), "on" the best of those and of the
tensor-core GEMVs (``qlinear_mma``), each of which must agree with the first other candidate's output to within a few
bf16 roundings; the row lists every MMA candidate's time. BF16X2 (int4 words summed on packed bf16 instructions,
``qlinear_kernels._bf16x2_words``; "on" is the best of its three modes: each word's products in bf16, or each chunk's
words too, or Σx on bf16 pairs too; the row's ``best_by_mode`` has each) over the word-GEMV candidates, with the TILES
twins as HALVES, against byte permutes with fp32 products; the outputs must agree to within 2e-2 of the largest output
(bf16 sums). Where the row has a norm, the candidates that cannot apply it in the kernel (``qlinear.fuses_norm``:
split-K, tl.dot) normalize x with torch ops first, timed as the tuner times them (eagerly: more than Inductor's fused
kernel costs). ``--as-decoded`` runs the 1B shapes as the decode graph does: the gate with its up rows (SiLU-gated), and
qkv and gate/up with the RMSNorm prologue. Timing is the autotuner's (``autotune_cache.measure_us``: CUDA graph, cold
L2). Each row: the best candidate with the switch off and on, and both against cuBLAS.
"""
from __future__ import annotations

import argparse
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import environment, print_table, write_result  # noqa: E402
from kernels import QLINEAR_SHAPES  # noqa: E402

from accel.runtime import autotune_cache, quant  # noqa: E402
from accel.runtime.kernels import qlinear as kq  # noqa: E402
from accel.runtime.kernels.utils import num_sms  # noqa: E402

# the 1B decode step's projections: qkv, o, gate (and up), down, LM head
SHAPES_1B = [("1b qkv", 3072, 2048), ("1b o", 2048, 2048), ("1b gate", 8192, 2048), ("1b down", 2048, 8192),
             ("1b head", 128256, 2048)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flag", required=True, choices=("PAIRS", "SWAP", "PRMT", "HALVES", "PREFETCH", "TILES", "MMA",
                                                            "BF16X2"))
    ap.add_argument("--as-decoded", action="store_true",
                    help="1B gate/up gated, qkv and gate/up with the RMSNorm prologue, as in the decode graph")
    ap.add_argument("--shapes", default="8b", help="8b (the issue's MLP shapes) and/or 1b (the 1B decode step's)")
    ap.add_argument("--scheme", default="int4_weight_only", choices=kq.WEIGHT_ONLY)
    ap.add_argument("--m", default="16,128")
    ap.add_argument("--values", default=None, help="BF16X2: the modes to time (default 0,1,2,3; 0 is off)")
    args = ap.parse_args()
    torch.manual_seed(0)
    dev = torch.device("cuda")
    sms = num_sms(dev)
    rows = []
    shapes = [sh for name in args.shapes.split(",") for sh in (QLINEAR_SHAPES if name == "8b" else SHAPES_1B)]
    for M in (int(m) for m in args.m.split(",")):
        for label, N, K in shapes:
            gated = args.as_decoded and label == "1b gate"
            norm = args.as_decoded and label in ("1b qkv", "1b gate")
            act = "silu" if gated else "identity"
            x = torch.randn(M, K, dtype=torch.bfloat16, device=dev)
            w = torch.randn(2 * N if gated else N, K, dtype=torch.bfloat16, device=dev) / math.sqrt(K)
            g = 1.0 + 0.1 * torch.randn(K, dtype=torch.bfloat16, device=dev)
            q, s, z = quant.quantize_weight(w, args.scheme, 128)
            xn = torch.nn.functional.rms_norm(x.float(), (K,), g.float(), 1e-5).bfloat16() if norm else x
            ref = torch.nn.functional.linear(xn, w)
            ref = torch.nn.functional.silu(ref[:, :N]) * ref[:, N:] if gated else ref
            cublas = autotune_cache.measure_us(lambda: torch.nn.functional.linear(x, w))  # noqa: B023
            best, by_value = {}, {}
            kinds = {"MMA": ("gemv", "gemm", "mma"), "PRMT": ("gemv",), "HALVES": ("gemv",), "PREFETCH": ("gemv",),
                     "TILES": ("gemv",), "BF16X2": ("gemv",)}.get(args.flag, ("gemm",))
            mma_us, word_out = {}, None
            for cfg in kq.candidate_configs(M, N, K, args.scheme, 128, gated, 2, sms):
                if cfg["kernel"] not in kinds or cfg.get("PREFETCH"):  # (the tuner's own PREFETCH twins)
                    continue
                if norm and args.flag != "MMA" and not kq.fuses_norm(cfg, args.scheme, K):
                    continue
                outs = {}
                for on, c in _variants(cfg, args.flag, K, args.values):
                    run = lambda: kq.qlinear(x, q, s, z, None, args.scheme, 128, act, gated,  # noqa: E731,B023
                                             1e-5 if norm else None, g if norm else None, _config=c)  # noqa: B023
                    out = run().float()
                    outs.setdefault(on, out)
                    err = ((out - ref.float()).norm() / ref.float().norm()).item()
                    assert err < 0.25, f"{c}: relative error {err}"  # int4 g128 on random weights: ~0.1
                    if args.flag == "MMA" and c["kernel"] != "mma" and word_out is None:
                        word_out = out
                    elif args.flag == "MMA" and c["kernel"] == "mma":  # other sums and roundings: a few bf16 ulps
                        diff = ((out - word_out).abs().max() / word_out.abs().max()).item()
                        assert diff < 8e-3, f"{c}: the MMA GEMV differs from the other kernels by {diff}"
                    if args.flag == "TILES":  # the K loop's sums; int4 byte permutes may round them in another
                        # order, which can flip a bf16 output by an ulp (seen: 1.1e-3 of max |out|, H100)
                        diff = ((out - outs[False]).abs().max() / outs[False].abs().max()).item()
                        assert diff < 8e-3, f"{c}: TILES changed the output by {diff}"
                    us = autotune_cache.measure_us(run)
                    if c["kernel"] == "mma":
                        mma_us[autotune_cache.config_name(c)] = round(us, 2)
                    if us < best.get(on, (math.inf,))[0]:
                        best[on] = (us, autotune_cache.config_name(c))
                    if args.flag == "BF16X2" and us < by_value.get(c["BF16X2"], (math.inf,))[0]:
                        by_value[c["BF16X2"]] = (round(us, 2), autotune_cache.config_name(c))
                if args.flag in ("PRMT", "HALVES", "BF16X2"):  # same sums, other roundings: a few bf16 ulps
                    diff = ((outs[True] - outs[False]).abs().max() / outs[False].abs().max()).item()
                    limit = 2e-2 if args.flag == "BF16X2" else 8e-3  # (BF16X2: products and sums in bf16)
                    assert diff < limit, f"{cfg}: {args.flag} on and off differ by {diff} (relative to max |out|)"
                if args.flag == "PREFETCH":
                    assert torch.equal(outs[True], outs[False]), f"{cfg}: PREFETCH changed the output"
            row = {"shape": label + (" (gated)" if gated else "") + (" + norm" if norm else ""), "M": M,
                   "scheme": args.scheme, "flag": args.flag, "cublas_us": round(cublas, 2),
                   "off_us": round(best[False][0], 2), "on_us": round(best[True][0], 2),
                   "on_vs_off": round(best[False][0] / best[True][0], 3),
                   "off_x_cublas": round(cublas / best[False][0], 3), "on_x_cublas": round(cublas / best[True][0], 3),
                   "off_config": best[False][1], "on_config": best[True][1], **({"mma_us": mma_us} if mma_us else {}),
                   **({"best_by_mode": {str(v): t for v, t in sorted(by_value.items())}} if by_value else {})}
            rows.append(row)
            print(row, flush=True)
    print_table(rows, ["shape", "M", "scheme", "flag", "cublas_us", "off_us", "on_us", "on_vs_off", "off_x_cublas",
                       "on_x_cublas"])
    path = write_result(f"qlinear_ab_{args.flag.lower()}", {"env": environment(), "rows": rows})
    print(f"wrote {path}")


def _variants(cfg: dict, flag: str, K: int, values: str | None = None) -> list[tuple[bool, dict]]:
    """(on, config) pairs to time for one candidate: the switch off, then on (where it does not apply, the
    candidate as it is counts as "on" too, so that "on" is the best the tuner could pick with the switch)."""
    if flag == "TILES":  # off: the K loop (TILES = 0, the default); on: no loop, 1, 2 or 4 tiles a program
        if not kq._one_step(cfg, K):
            return [(False, cfg), (True, cfg)]
        return [(False, {**cfg, "TILES": 0})] + [(True, {**cfg, "TILES": t}) for t in (1, 2, 4)]
    if flag == "MMA":  # off: the other Triton kernels; on: those and the MMA GEMVs
        return [(True, cfg)] if cfg["kernel"] == "mma" else [(False, cfg), (True, cfg)]
    if flag in ("HALVES", "BF16X2"):  # both, also with 2 and 4 tiles a program (TILES) where the tuner tries them
        tiles = (0, 2, 4) if kq._one_step(cfg, K) else (0,)
        modes = (False, True) if flag == "HALVES" else tuple(int(v) for v in (values or "0,1,2,3").split(","))
        return [(bool(v), {**cfg, "TILES": t, flag: v}) for t in tiles for v in modes]
    if flag == "PREFETCH" and kq._steps_per_split(cfg, K) < 2:
        return [(False, cfg), (True, cfg)]
    return [(False, {**cfg, flag: False}), (True, {**cfg, flag: True})]


if __name__ == "__main__":
    main()
