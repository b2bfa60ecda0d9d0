"""``qlinear``: linear layers on quantized weights (``accel.runtime.quant``'s formats) as Triton kernels with the
fused epilogue of ``linear``, chosen per shape.

Dataflow: x [M, K] (fp16 / bf16 / fp32) and a quantized weight [N_w, K] (int8, packed int4, fp8) → fp32
accumulators (int32 for w8a8_int8) → scales (weight rows after the K loop, int4 groups inside it, tokens for
W8A8) → epilogue act(acc + b), or act(gate)·up when GATED (rows [0, N) gate, [N, 2N) up) → out [M, N] in x's
dtype, rounded once; with SPLIT_K > 1 the scaled fp32 partial sums go through ``linear``'s workspace and
``_epilogue_kernel``. W8A8 quantizes x per token first (scale max|x|/127 or /448, round half to even).

Kernels (``qlinear_kernels.py``), by M:
- ``_qgemv_words_kernel`` (weight-only decode, M ≤ 4) and ``_qgemv_bytes_kernel`` (W8A8 decode, M ≤ 2): CUDA-core
  dot products with the weight decoded in registers; each weight byte is read once. W8A8 programs find their
  rows' max|x| themselves and quantize x as they load it, so decode needs no extra launch; w8a8_int8
  multiplies integers.
- ``qlinear_mma._qgemv_mma_kernel`` (int4 groups of 128) and ``_qgemv_mma_int8_kernel`` (int8, K a multiple of
  64), 16-bit x, 2 ≤ M ≤ 16: the GEMV on mma.sync, the codes decoded in registers as the MMA's A operand and x as
  its B; tuning candidates beside the GEMVs and tiles.
- ``_qgemm_kernel`` (tl.dot): skinny (BLOCK_M 16–64, split-K) for 4 < M ≤ 64, tiled with grouped ordering
  above. Weight-only tiles are dequantized to x's dtype before the MMA; W8A8 runs int8 (→ int32) or fp8 (→ fp32)
  MMAs on x quantized by ``_quantize_rows_kernel``.
- weight-only only: ``_dequantize_kernel`` to x's dtype, then cuBLAS through ``linear.launch`` (the default
  for large M, where the matmul is compute-bound and cuBLAS's bf16 GEMM beats an in-register dequantization).
``select_config`` measures the candidates of a static shape (``autotune_cache.tune``), then the ``refine`` step's
twins of the fastest word GEMVs (more tiles a program; for int4 with bf16 x, products summed on packed bf16
instructions, ``INT4_BF16X2``); without CUDA, or under ``ACCEL_AUTOTUNE=0``, the first (heuristic) candidate runs.
A symbolic M takes one tiled GEMM that serves any M.
"""
from __future__ import annotations

import functools
import math
import os

import torch
import triton

from accel import envs
from accel.runtime import autotune_cache, quant
from accel.runtime.activations import ACTIVATION_IDS, activation_fn
from accel.runtime.kernels import linear as kl
from accel.runtime.kernels import qlinear_kernels as qk
from accel.runtime.kernels import qlinear_mma as qm
from accel.runtime.kernels.activations import apply_activation
from accel.runtime.kernels.utils import (early_trigger, launch_options, next_pow2, num_sms, pdl_chain, static_int,
                                         use_pdl, wrap_triton)

SCHEME_IDS = {name: i for i, name in enumerate(quant.SCHEMES)}  # the kernels' SCHEME codes
WEIGHT_ONLY = ("int8_weight_only", "int4_weight_only")
WEIGHT_DTYPES = {"int8_weight_only": torch.int8, "int4_weight_only": torch.uint8, "w8a8_int8": torch.int8,
                 "w8a8_fp8": torch.float8_e4m3fn}
ACTIVATION_DTYPES = {"w8a8_int8": torch.int8, "w8a8_fp8": torch.float8_e4m3fn}

# ---------------------------------------------------------------------------------------------------------
# Configs: {"kernel": "gemv" | "mma" | "gemm" | "cublas" | "scaled_mm", meta-parameters..., "num_warps", "num_stages"};
# BLOCK_K counts K positions (int4: two per byte)
# ---------------------------------------------------------------------------------------------------------

CUBLAS = kl.CUBLAS  # weight-only: dequantize to x's dtype, then F.linear
# w8a8_fp8 with bf16 x: x quantized per token by quantize_rows, then torch._scaled_mm with the row-wise scales and
# fast accumulation (the fp8 MMA's own accumulator for all of K, as accel's tl.dot tiles do: on an H100 the outputs
# were bit-identical). H100, 8B MLP shapes (results/scaled_mm_probe_s21run3_*): M = 2048 up 165 µs against the best
# tl.dot tile's 179 (both + 12 µs of quantization), down 165 against 159 (+ 48); M = 512 49 / 45 µs against 54 / 54.
# A tuning candidate from SCALED_MM_MIN_M rows of x on (the tuner times it with its quantization).
SCALED_MM = {"kernel": "scaled_mm"}
SCALED_MM_MIN_M = 16
# Default GEMV up to this M (as in linear: past it a 16-row MMA tile wastes little). W8A8 stops at 2 rows, as
# GemLite's 8-bit GEMV does: its integer or fp8 products cost more CUDA-core instructions per weight, and its
# int8 / fp8 MMAs are cheap.
GEMV_MAX_M = {"weight_only": 4, "w8a8": 2}
GEMV_CANDIDATE_MAX_M = 8  # still measured up to here
SKINNY_MAX_M = 64
# Weight-only above this M defaults to dequantize + cuBLAS: the ridge M of int8 (int4) weights on H100 is ≈150
# (≈80) rows, and a few hundred rows later the bf16 MMA time dwarfs one extra pass over the weight.
CUBLAS_FIRST_M = 512
# GEMV tiles as (num_warps, weight rows per thread, weight words per thread). Weight-only GEMVs read SUB int32
# words (4·SUB int8 or 8·SUB int4 codes: 16-byte loads at SUB = 4) per row and step, W8A8 ones 16 bytes of x
# and as many weight bytes; BLOCK_K = 32·num_warps such chunks (fewer for a small K).
# The list after a grid sweep of int4 on H200 (benchmarks/gemv_sweep.py): 2 warps × 4–8 rows × 4 words won the
# attention projections, the gate/up and the LM head by 5–28%. The last two come from an H100 sweep of the 1B step
# (results/gemv_sweep_s12_h100_*: int8 qkv 5.56 µs against the list's 5.97, down 10.08 against 11.49) and won most
# of the 1B tunings that followed (int8 o / down, int4 qkv / o / down).
GEMV_TILES = [(4, 16, 4), (4, 8, 4), (2, 4, 4), (2, 8, 4), (4, 4, 4), (8, 8, 4), (4, 8, 1), (4, 4, 2), (8, 4, 2)]
# Narrow GEMV tiles (at most this many weight rows a program) are also tried unsplit where their own programs fill
# two a SM: the same sweep's best int8 and int4 down projections (K = 8192) were unsplit 4-row tiles that the
# split-K rule splits.
GEMV_UNSPLIT_MAX_ROWS = 4
# The first this many word-GEMV candidates with at least two K steps a program (whose registers allow it) are also
# tried with PREFETCH: each step's loads issued one step ahead (qlinear_kernels._qgemv_words_kernel). None by
# default. On one H100 (results/qlinear_ab_prefetch_*_s13run3_*) it took the int8 8B down projection from 23.5 to
# 21.9 µs and the 1B qkv from 6.0 to 5.5 µs, and lost on the int4 8B shapes (16.3 → 17.3 µs). On the next H100
# (results/autotune_8b_s13run4_*) the 8B down's winning twin lost to its plain tile (27.1 against 26.6 µs), and the
# tunings of sessions 12-13 chose a twin 0 times in 83 timings (benchmarks/autotune_wins.py on
# results/autotune_cache_s13run4_*): each twin is one more kernel to compile and time on the first compile for a gain
# the two cards do not agree on. qlinear_ab.py --flag PREFETCH measures it.
GEMV_PREFETCH_TWINS = 0
# A word GEMV whose K is one unsplit step can run without its K loop, TILES tiles of weight rows a program
# (qlinear_kernels._words_tiles): x and its norm loaded once for all of them, the next tile's words in flight while
# one is summed. The tuner tries each of these tile counts on the GEMV_TILE_TWINS fastest such candidates (the
# ``refine`` step of autotune_cache.tune), where the fewer programs still fill the SMs once. H100, 1B decode
# shapes (results/qlinear_ab_tiles_*_s14*): TILES = 2 took the int4 gate/up with its norm from 15.1 to 12.7 µs and
# the int8 o projection from 4.6 to 3.7 µs; elsewhere within ±1%. Without the loop and with one tile (TILES = 1) the
# int4 qkv with its norm lost (4.5 → 5.4 µs), so the K loop stays the default. TILES = 4 (session 17, H100): the int4
# LM head with the final norm 61.5 → 60.2 µs in the tuner, the 1B int4 + head step 534 → 524 µs (same machine,
# results/profile_decode_1b_tiles_s17run2_*); TILES = 8 was tried there too and never won.
GEMV_TILE_COUNTS: tuple[int, ...] = (2, 4)
GEMV_TILE_TWINS = 3
# HALVES: int4 word GEMVs decode two codes an integer instruction (``qlinear_kernels._decode_halves``) and sum each
# word's products in one FMA chain, in place of byte permutes (PRMT); a config's {"HALVES": ...} overrides it. Off:
# a fifth of the loop's integer-pipe instructions fewer moved the M = 1 GEMVs by -5% to +6% by shape (H100,
# results/qlinear_ab_halves_m1_*_s21run1_*), so the tuner does not try it.
HALVES = False
# INT4_BF16X2: int4 word GEMVs with bf16 x decode two codes an integer instruction and multiply-add them on packed bf16
# instructions (``qlinear_kernels._bf16x2_words``: 15 instructions a word of 8 codes and 3 to leave bf16, where byte
# permutes take 11 and fp32 products 8 more and their adds), each word's products summed in bf16 before fp32 (2: each
# chunk's words; 3: also Σx, on x's bf16 pairs, and x's pairs taken from its own bf16 words by byte permutes where x is
# not normalized in the kernel: 498 → 451 SASS instructions a pass of the 8B up tile); a config's {"BF16X2": ...}
# overrides it. Compiled only (inline PTX). Off by default; the tuner's refine step times mode GEMV_BF16X2_TWIN_MODE on
# the GEMV_BF16X2_TWINS fastest int4 word GEMVs and on their tile twins (``refine``), so a shape gets it only where it
# measured faster. Mode 3 against 2, the configs session 31's tunings chose, same process
# (results/bf16x2_modes_*_s32run1_*, H200): 8B up 14.90 → 14.70 µs, down 16.37 → 15.56 (byte permutes 15.08), 1B head +
# norm 50.12 → 49.42, gate/up + norm 11.35 → 11.10, qkv + norm 4.39 → 4.40; the 1B int4 + head step with those picks in
# mode 3 (session 32 run 2, alternating processes): 525-526 → 520-522 µs busy; with the norm's weight on packed bf16
# fmas too (x stays bf16 in the norm GEMVs: run 4): 525-526 → 497 µs busy, qkv + norm 4.38 → 4.32, gate/up + norm 11.31
# → 10.72, head + norm 50.08 → 48.95 µs. Σx in bf16 errs by ≤ 2^-9·(2 + log2 SUB) of the chunk's Σ|x|, times |z - 8|·s.
# Session 30: H200, best of every candidate off → on, either mode (results/qlinear_ab_bf16x2_m1_*_s30run3_*): 8B up
# 15.55 → 14.65 µs, 1B qkv + norm 4.70 → 4.39, 1B gate/up + norm 12.04 → 11.18; 8B down 15.03 → 15.81 and 1B o 3.06 →
# 3.24 (slower: the byte permutes stay there). Tuned with the twins (run 4, one H200, a process each): the 1B head +
# norm 58.4 → 50.3 µs, gate/up + norm 12.4 → 11.1-11.3; mode 1 won one shape of six, by 2%. The whole int4 + head step
# with those tunings (session 31 run 1, a process each): 538 → 525 µs busy. SASS (sm_90, 8B up tile): 3.96 → 3.46 (1) /
# 3.18 (2) instructions a code, 128 → 92 / 80 registers. Each bf16 rounding errs by ≤ 2^-9 of the chunk's Σ|x·w| (the
# CUDA test's bound). On SmolLM2's real weights and activations (results/bf16x2_error_study_smollm2_cpu_*) the added
# error is 46-58 dB below the exact int4 product (int4 g128's own: 14-32 dB below fp32); perplexity 18.87 exact, 18.80
# with these sums (one window).
INT4_BF16X2 = 0
GEMV_BF16X2_TWINS = 2
GEMV_BF16X2_TWIN_MODE = 3  # the mode of those twins
# INT8_PRMT: int8 word GEMVs decode their codes by byte permutes (``qlinear_kernels._decode_bytes``: one PRMT a code
# where shifts and masks take three integer instructions); a config's {"PRMT": False} turns it off for one GEMV.
# The 1B int8 + head decode step, same tiles, one H100: 700 → 665 µs (results/profile_decode_1b_*_s22run2_*).
INT8_PRMT = True
# Axis order of the GEMV tiles (qlinear_kernels._chunks_first): Triton 3.6 needs the chunk axis first, 3.9 last
# (compiled for sm_90 and read back: otherwise every step converts the weight tile's layout through shared
# memory). Versions in between are a guess; the other order is always a tuning candidate.
CHUNKS_FIRST = tuple(int(v) for v in triton.__version__.split(".")[:2]) < (3, 9)
# Register estimate per thread (keep_config), fitted to ptxas's counts for the defaults (71-168, none spilled); an
# int4 tile estimated at 216 took 248, close to the 255 limit, and is pruned.
GEMV_REGS = 200
# tl.dot tiles as (BLOCK_N, BLOCK_K, num_warps, num_stages), BLOCK_M from M, and (BLOCK_M, ...) when tiled. int4
# clamps BLOCK_K to the group size; 8-bit MMAs want BLOCK_K ≥ 32 and prefer 128 (one 128-byte row per stage).
SKINNY_TILES = [(64, 128, 4, 3), (128, 128, 4, 3), (32, 256, 4, 3), (64, 256, 8, 3)]
TILED_TILES = {"weight_only": [(128, 128, 64, 8, 3), (128, 256, 64, 8, 3), (64, 128, 64, 4, 4), (128, 64, 64, 4, 4)],
               "w8a8": [(128, 128, 128, 8, 3), (128, 256, 128, 8, 3), (64, 128, 128, 4, 4), (128, 64, 128, 4, 4)]}
# int4 tiled (M > 64) also tries this tile with the weight as the MMA's first operand (SWAP: Hopper's wgmma takes it
# from registers; otherwise the dequantized tile feeds mma.sync): H100, M = 128, up shape 57.4 µs against 66.1 for
# the best unswapped tile (benchmarks/results/gemv_sweep_m128_s8_h100_*). int8 and M ≤ 64 measured no gain.
INT4_SWAP_TILE = (128, 128, 128, 8, 3)
# int4 GEMV on mma.sync (qlinear_mma._qgemv_mma_kernel) for 2 ≤ M ≤ MMA_GEMV_MAX_M tokens (the MMA's 8 columns, or
# two MMAs a k slice past 8), groups of 128 and 16-bit x, as (warps along the rows, warps along K, row tiles of 16 a
# warp); each tried unsplit and split to MMA_SPLIT_PROGRAMS programs a SM. Compiled only: never under the
# interpreter.
# H100, 8B MLP shapes (results/qlinear_ab_mma_*_s19run*): the first three tiles won every shape at M = 8 and 16
# among six; at M = 1 none beat the word GEMV (8B up 17.8 against 16.4 µs, 1B o 5.7 against 3.8), so M = 1 leaves
# them out. Two row tiles a warp with 2 warps along K won the int4 8B shapes at M = 16 in a wider sweep: up 24.2 µs
# for 2 × 2 × 2 against the tuner's 26.6, down 24.9 for 1 × 2 × 2 split 4 against 26.4
# (results/gemv_sweep_m16_int4_mma_s24run11_*); kernels.py with them, M = 16: 23.4 / 22.5 µs, 1.83× / 2.00× cuBLAS
# (results/qlinear_kernels_int4_int8_m2_16_s24run12_*). With the weight words loaded 16 bytes a lane (session 25,
# qlinear_mma._step_weights): 21.1-21.4 / 21.0-21.5 µs, 2.01-2.02× / 2.10-2.15×, against 23.3 / 22.5 for the
# 8-byte loads in the same calls (results/qlinear_kernels_int4_v4_ab_*_s25run5_*).
MMA_GEMV_TILES = [(1, 4, 1), (1, 4, 2), (2, 2, 1), (2, 2, 2), (1, 2, 2)]
MMA_GEMV_MIN_M = 2
MMA_GEMV_MAX_M = 16
# The MMA GEMVs' weight loads ask the L2 for the whole 256-byte block around each lane's 16 bytes (``.L2::256B``,
# qlinear_mma._load_words). H100, kernels.py 8B shapes, fresh tunings, off / on in alternating processes
# (results/qlinear_kernels_l2pf_ab_*_s25run7_*): int4 M = 16 up 21.61, 21.26 → 20.54, 20.54 µs, down 20.7-20.8 both;
# int8 M = 16 up 26.49, 26.19 → 25.60, 25.64, down 26.93, 26.95 → 26.15, 25.97; int4 M = 8 17.76 / 17.87 → 16.34 /
# 16.49. Outputs bit-identical to the plain loads. It pays for this access pattern (a warp load reads 8 rows × 64
# bytes), not for contiguous streaming: the word GEMVs' chunks loaded the same way did not gain at M = 1 (patch and
# A/B in results/*word_l2pf*_s26run2*), and read-only kernels were slower with it (results/stream_floor_8b_s26run2_*).
MMA_L2PF = True
# K split to half a wave (2 programs a SM) and to a wave (4): at M = 16 the int4 8B down shape's best tile, 1 × 4
# warps with two row tiles, took 26.3 µs split 2 against 28.7 for the tuner's pick among the wave splits (H100,
# medians of 3, results/mma_token_split_ab_s24run7_*); kernels.py with it: 24.2 µs, 1.93× cuBLAS
# (results/qlinear_kernels_int4_int8_m4_16_s24run8_*).
MMA_SPLIT_PROGRAMS = (2, 4)
# The int8 weight-only GEMV on mma.sync (qlinear_mma._qgemv_mma_int8_kernel: the int4 kernel's lanes, a word of 4
# codes an MMA, K a multiple of 64) for 2 ≤ M ≤ 16, its tiles each also with two 64-k steps a loop pass (UNROLL).
# H100, 8B MLP shapes (results/qlinear_kernels_int8_mma_m1_16_s23run3_*): it won M = 4-16, the word GEMV M = 1 and
# 2; at M = 16 up 28.4 → 26.0 µs (tl.dot before), down 27.0 → 26.5. At M = 1 no tile came within 8% of the word
# GEMV. Its list extends int4's, so it also tries the two-row-tile tiles added in session 24; none won an int8 shape
# at M = 2-16 (results/qlinear_kernels_int4_int8_m2_16_s24run12_*).
MMA_GEMV_INT8 = True
MMA_GEMV_INT8_MIN_M = 2
MMA_GEMV_INT8_TILES = MMA_GEMV_TILES + [(2, 4, 1), (4, 2, 1)]
# The MMA GEMV can apply an RMSNorm in its prologue (Σx² from its own MMAs, the norm weight multiplied into x): off,
# because the 1B batch-8 int4 + head step was slower with it (H100, session 20, one machine: 1060 against 988 µs
# with the norm as a separate Inductor kernel; results/profile_decode_1b_batch8_norm*_s20run3_*). Standalone it costs
# 0.3-1.3 µs in qkv (against ~2 µs for Inductor's norm kernel) but 17-29 µs in the LM head, and in the step the
# gate/up projection ran ~2 µs slower with it (results/qlinear_mma_norm_cost_s20run3_*). With it in qkv only, the
# step was still slower: 1016 and 1013 against 1006 and 998 µs (results/profile_decode_1b_batch8_norm*_s20run6_*).
MMA_GEMV_NORM = False
SMEM_BYTES = kl.SMEM_BYTES
# fp8 tl.dot accumulation (qlinear_kernels._qdot): None keeps the sums in the MMA's own ~14-bit accumulator
# (fast, like cuBLAS's fast-accumulation mode), else they go into fp32 every FP8_PROMOTE_K products (whole
# tile steps, at least one). At M = 2048 on the 8B MLP shapes (H100, benchmarks/results/fp8_accumulation_s7*):
# None runs at int8's speed with 1.3e-3 / 2.9e-3 relative output error (K = 4096 / 14336) against fp32 sums;
# 512 costs 25-35% more time for 3.4e-4; 128 (every step, the MMA promoting itself) 35-45% for 1.3e-4. Rounding
# x and w to e4m3 already costs 3.7%.
FP8_PROMOTE_K: int | None = None
# W8A8's activation quantization holds a row in registers up to this (static) K a scheme and reads it once; longer
# rows go in two passes of QUANTIZE_BLOCK_K (8 warps). H100, bf16 x (benchmarks/results/fp8_accumulation_s7run*,
# --quantize-sweep): 2048 × 4096 in one pass 10.7-11.4 µs (two passes of 1024 with 4 warps, before: 13.0); 2048 ×
# 14336 in two passes of 2048 44.7-45.1 µs (one pass: 53-69, two of 1024 with 4 warps: 59), against ≈36 µs to read x
# and write qx at the 2.43 TB/s a copy reaches. fp8 codes come from the hardware's cast since session 21 (HW_CAST;
# bit-identical, results/quant_hwcast_s21run6_*): 12.7 → 11.2 µs and 46.6 → 41.6 µs (one pass of 16384 with 16
# warps: 47.6). Since session 31 x / scale is a multiply by the row's reciprocal and an fma correction
# (``_div_by_scale``, bit-identical) instead of a division an element; H200, same kernel old → new, best variant
# (results/quant_rows_division_s31run2.*): fp8 2048 × 14336 two passes of 2048 33.3 → 29.8 µs, one pass of 16384
# (8 warps) 53.4 → 26.7; 2048 × 4096 one pass 8.6 → 6.8 (4 warps); int8 2048 × 14336 two passes of 4096 44.2 →
# 33.3 (of 2048: 38.9 → 35.6; one pass 48-50). So fp8 rows up to 16384 go in one pass, int8's from 4096 in two.
QUANTIZE_ROW_MAX_K = {"w8a8_int8": 4096, "w8a8_fp8": 16384}
QUANTIZE_BLOCK_K = 4096
# int4 tl.dot tiles dequantize on packed bf16 / fp16 instructions (qlinear_kernels._dequant_int4_pairs, inline PTX)
# when the scales are in x's dtype, unless a config says {"PAIRS": False}; the Triton interpreter runs no PTX and
# takes the fp32 decoding.
_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


def _weight_bytes(scheme: str) -> float:
    return 0.5 if scheme == "int4_weight_only" else 1.0


def keep_config(cfg: dict, scheme: str, gated: bool, x_elem: int) -> bool:
    """The pruning predicate: does ``cfg`` fit in registers (GEMV) or shared memory (tl.dot), and does the
    scheme allow it (cuBLAS only for weight-only)?"""
    n_w = 2 if gated else 1
    if cfg["kernel"] == "cublas":
        return scheme in WEIGHT_ONLY
    if cfg["kernel"] == "scaled_mm":
        return scheme == "w8a8_fp8" and x_elem == 2
    if cfg["kernel"] == "mma":
        return (scheme in ("int4_weight_only", "int8_weight_only") and x_elem == 2
                and not (gated and cfg["ROW_TILES"] > 1))
    if cfg["kernel"] == "gemv":
        # the fp32 x chunk of every row of x (and as many decoded codes), then per weight row: its words in
        # flight, the sums and the pointers
        rows = cfg["BLOCK_N"] * n_w
        if "SUB" in cfg:
            regs = 2 * cfg["BLOCK_M"] * cfg["SUB"] * _per_word(scheme) + rows * (cfg["SUB"] + 2 * cfg["BLOCK_M"] + 3)
            if cfg.get("PREFETCH"):  # the next step's words and x (in x's dtype) in flight
                regs += rows * cfg["SUB"] + cfg["BLOCK_M"] * cfg["SUB"] * _per_word(scheme) * x_elem // 4
            if cfg.get("TILES", 1) > 1:  # the next tile's words in flight
                regs += rows * cfg["SUB"]
        else:
            chunk = 16 // x_elem
            regs = cfg["BLOCK_M"] * chunk + rows * (chunk // 4 + 2 * cfg["BLOCK_M"] + 2)
        return regs <= GEMV_REGS
    act_bytes = x_elem if scheme in WEIGHT_ONLY else 1
    stage = (cfg["BLOCK_M"] * act_bytes + n_w * cfg["BLOCK_N"] * _weight_bytes(scheme)) * cfg["BLOCK_K"]
    dequantized = n_w * cfg["BLOCK_N"] * cfg["BLOCK_K"] * x_elem if scheme in WEIGHT_ONLY else 0
    return cfg["num_stages"] * stage + dequantized <= SMEM_BYTES


def _per_word(scheme: str) -> int:
    return 8 if scheme == "int4_weight_only" else 4


def _gemv_reads_words(scheme: str, K: int | None) -> bool:
    """Weight-only GEMVs decode int32 words (int4's K is a multiple of 8; int8 needs K % 4 = 0)."""
    return scheme == "int4_weight_only" or (scheme == "int8_weight_only" and K is not None and K % 4 == 0)


def _gemv_config(M: int, N: int, K: int, scheme: str, gated: bool, x_elem: int, tile: tuple, sms: int) -> dict:
    warps, rows, sub = tile
    words = _gemv_reads_words(scheme, K)
    chunk = sub * _per_word(scheme) if words else 16 // x_elem
    block_m = min(next_pow2(M), GEMV_CANDIDATE_MAX_M)
    block_k = chunk * min(32 * warps, next_pow2(triton.cdiv(K, chunk)))
    block_n = max(1, min(rows // (2 if gated else 1), next_pow2(N)))
    programs = triton.cdiv(N, block_n) * triton.cdiv(M, block_m)
    split = kl._split_k(programs, M, K, block_k, _weight_bytes(scheme), sms)
    cfg = {"kernel": "gemv", "BLOCK_M": block_m, "BLOCK_N": block_n, "BLOCK_K": block_k, "SPLIT_K": split,
           "CHUNKS_FIRST": CHUNKS_FIRST, "num_warps": warps, "num_stages": 1}
    return {**cfg, "SUB": sub} if words else cfg


def _mma_step(scheme: str) -> int:
    """k a warp of the tensor-core GEMV covers in one step: an int4 group of 128, or 64 int8 codes (16 bytes a
    lane); K must be a multiple of it."""
    return 128 if scheme == "int4_weight_only" else 64


def mma_config(M: int, scheme: str, row_warps: int, k_warps: int, row_tiles: int) -> dict:
    """The unsplit tensor-core GEMV config of one tile (warps along rows, warps along K, 16-row tiles a warp) for
    M ≤ 16 rows of x: one token tile of 8, or two past 8."""
    token_tiles = triton.cdiv(M, 8)
    return {"kernel": "mma", "BLOCK_M": 8 * token_tiles, "TOKEN_TILES": token_tiles,
            "BLOCK_N": 16 * row_warps * row_tiles, "BLOCK_K": _mma_step(scheme), "SPLIT_K": 1,
            "ROW_WARPS": row_warps, "K_WARPS": k_warps, "ROW_TILES": row_tiles, "num_warps": row_warps * k_warps,
            "num_stages": 1}


def _mma_configs(M: int, N: int, K: int, scheme: str, group_size: int, gated: bool, x_elem: int,
                 sms: int) -> list[dict]:
    """The tensor-core GEMV candidates, where they apply: int4 groups of 128 (``MMA_GEMV_TILES``) or int8 with K a
    multiple of 64 (``MMA_GEMV_INT8_TILES``, each also with UNROLL = 2), 2 ≤ M ≤ 16, 16-bit x, compiled (not
    interpreted); each tile unsplit and split to half a wave and to a wave (``MMA_SPLIT_PROGRAMS``)."""
    int4 = scheme == "int4_weight_only"
    min_m = MMA_GEMV_MIN_M if int4 else MMA_GEMV_INT8_MIN_M
    if (not (int4 and group_size == 128 or scheme == "int8_weight_only" and MMA_GEMV_INT8)
            or not min_m <= M <= MMA_GEMV_MAX_M or x_elem != 2 or K % _mma_step(scheme) or _INTERPRET):
        return []
    out = []
    for row_warps, k_warps, row_tiles in MMA_GEMV_TILES if int4 else MMA_GEMV_INT8_TILES:
        if row_tiles > 1 and gated:
            continue
        cfg = mma_config(M, scheme, row_warps, k_warps, row_tiles)
        splits = sorted({_split_to(cfg, M, N, K, p * sms)["SPLIT_K"] for p in MMA_SPLIT_PROGRAMS} - {1})
        out += [cfg] + [{**cfg, "SPLIT_K": split} for split in splits]
    if not int4:  # two 64-k steps a loop pass: twice the bytes in flight
        out += [{**c, "UNROLL": 2} for c in out if K >= 2 * 64 * c["K_WARPS"] * c["SPLIT_K"]]
    return out


def _gemm_config(M: int | None, N: int | None, K: int | None, scheme: str, group_size: int, tile: tuple,
                 sms: int, group_m: int, skinny: bool) -> dict:
    block_m, block_n, block_k, warps, stages = tile
    if scheme == "int4_weight_only":
        block_k = min(block_k, group_size)  # one group per step (BLOCK_K divides G: both powers of two)
    if K is not None:
        block_k = min(block_k, max(16 if scheme in WEIGHT_ONLY else 32, next_pow2(K)))
    if N is not None:
        block_n = min(block_n, max(16, next_pow2(N)))
    split = 1
    if skinny:
        programs = triton.cdiv(M, block_m) * triton.cdiv(N, block_n)
        split = kl._split_k(programs, M, K, block_k, _weight_bytes(scheme), sms)
    return {"kernel": "gemm", "BLOCK_M": block_m, "BLOCK_N": block_n, "BLOCK_K": block_k, "SPLIT_K": split,
            "GROUP_M": group_m, "num_warps": warps, "num_stages": stages}


def _split_to(cfg: dict, M: int, N: int, K: int, programs_max: int) -> dict:
    """``cfg`` with K split (doubling) while twice its programs would stay within ``programs_max`` and each split
    keeps at least one BLOCK_K step. Unlike ``linear._split_k`` (the skinny default) the fp32
    workspace is not bounded against the weight bytes: these are extra candidates, kept only where faster.

    - ``_split_to_fill`` (programs_max = the SM count): a tiled GEMM with few tiles (a down projection's N = 4096 at
      M = 128 makes 32 of 128×128 for 132 SMs) leaves most SMs idle, and there the split-K workspace (fp32, read
      back by one more launch) costs less than the idle SMs do.
    - ``_split_to_wave`` (4 programs a SM, ``linear._split_k``'s wave): at M = 32-64 that rule's workspace bound stops
      int4 down projections at one split, 64 programs for 132 SMs (H100, M = 64: 109.3 µs against 46.7 with 8
      splits, benchmarks/results/gemv_sweep_m64_s8_h100_*)."""
    programs = triton.cdiv(M, cfg["BLOCK_M"]) * triton.cdiv(N, cfg["BLOCK_N"])
    split = 1
    while 2 * programs * split <= programs_max and split < kl.MAX_SPLIT_K and K >= 2 * split * cfg["BLOCK_K"]:
        split *= 2
    return {**cfg, "SPLIT_K": split}


def _split_to_fill(cfg: dict, M: int, N: int, K: int, sms: int) -> dict:
    return _split_to(cfg, M, N, K, sms)


def _split_to_wave(cfg: dict, M: int, N: int, K: int, sms: int) -> dict:
    return _split_to(cfg, M, N, K, 4 * sms)


def general_config(scheme: str, group_size: int, N: int | None = None, K: int | None = None) -> dict:
    """One tiled GEMM that is correct and reasonable for any M: the config of a symbolic M (no guard on it)."""
    tiles = TILED_TILES["weight_only" if scheme in WEIGHT_ONLY else "w8a8"]
    return _gemm_config(None, N, K, scheme, group_size, tiles[2], 0, group_m=8, skinny=False)


def _steps_per_split(cfg: dict, K: int) -> int:
    """K steps of one program of a GEMV or tl.dot config."""
    return triton.cdiv(triton.cdiv(K, cfg["SPLIT_K"]), cfg["BLOCK_K"])


def tile_twins(ranked: list[dict], M: int, N: int, K: int, sms: int) -> list[dict]:
    """The ``refine`` step of the qlinear tuning: the GEMV_TILE_TWINS fastest word-GEMV candidates whose K is one
    unsplit step (in this Triton version's axis order), each with GEMV_TILE_COUNTS tiles a program, where the
    programs left still fill the SMs once."""
    one_step = [c for c in ranked if _one_step(c, K) and c["CHUNKS_FIRST"] == CHUNKS_FIRST and "TILES" not in c]
    return [{**c, "TILES": t} for c in one_step[:GEMV_TILE_TWINS] for t in GEMV_TILE_COUNTS
            if triton.cdiv(triton.cdiv(N, c["BLOCK_N"]), t) * triton.cdiv(M, c["BLOCK_M"]) >= sms]


def refine(ranked: list[dict], M: int, N: int, K: int, sms: int, scheme: str, dtype: torch.dtype) -> list[dict]:
    """The qlinear tuning's ``refine`` step: ``tile_twins``, and for int4 word GEMVs with bf16 x (compiled)
    BF16X2 (mode GEMV_BF16X2_TWIN_MODE) twins of the GEMV_BF16X2_TWINS fastest ones and of their tile twins."""
    tiles = tile_twins(ranked, M, N, K, sms)
    if not GEMV_BF16X2_TWINS or not _bf16x2_applies(scheme == "int4_weight_only", dtype):
        return tiles
    top = [c for c in ranked if c["kernel"] == "gemv" and "SUB" in c and "BF16X2" not in c][:GEMV_BF16X2_TWINS]
    base = top + [t for t in tiles if {k: v for k, v in t.items() if k != "TILES"} in top]
    return tiles + [{**c, "BF16X2": GEMV_BF16X2_TWIN_MODE} for c in base]


def candidate_configs(M: int, N: int, K: int, scheme: str, group_size: int, gated: bool, x_elem: int,
                      sms: int) -> list[dict]:
    """The configs worth measuring for out [M, N] from K, in order of preference: the first is the heuristic
    default (GEMV for M ≤ 4 (W8A8: 2), skinny tl.dot for M ≤ 64, tiled tl.dot above, or dequantize + cuBLAS
    for weight-only M > CUBLAS_FIRST_M)."""
    weight_only = scheme in WEIGHT_ONLY
    if M > SKINNY_MAX_M:
        tiles = TILED_TILES["weight_only" if weight_only else "w8a8"]
        cands = [_gemm_config(M, N, K, scheme, group_size, t, sms, group_m=8, skinny=False) for t in tiles]
        if scheme == "int4_weight_only":
            cands.append({**_gemm_config(M, N, K, scheme, group_size, INT4_SWAP_TILE, sms, 8, False), "SWAP": True})
        cands += [c for c in (_split_to_fill(c, M, N, K, sms) for c in cands) if c["SPLIT_K"] > 1]
        if weight_only:
            cands = [CUBLAS] + cands if M > CUBLAS_FIRST_M else cands + [CUBLAS]
    else:
        block_m = max(16, next_pow2(M))
        skinny = [_gemm_config(M, N, K, scheme, group_size, (block_m, *t), sms, group_m=1, skinny=True)
                  for t in SKINNY_TILES]
        if skinny[0]["SPLIT_K"] > 1:  # split-K costs a second launch, which the smallest layers may not repay
            skinny.append({**skinny[0], "SPLIT_K": 1})
        for c in skinny[:2]:
            wave = _split_to_wave(c, M, N, K, sms)
            if wave["SPLIT_K"] > c["SPLIT_K"]:
                skinny.append(wave)
        gemv = []
        if M <= GEMV_CANDIDATE_MAX_M:
            gemv = [_gemv_config(M, N, K, scheme, gated, x_elem, t, sms) for t in GEMV_TILES]
            gemv = [c for c in gemv if keep_config(c, scheme, gated, x_elem)]
            gemv += [{**c, "SPLIT_K": 1} for c in gemv  # GEMV_UNSPLIT_MAX_ROWS
                     if c["SPLIT_K"] > 1 and c["BLOCK_N"] <= GEMV_UNSPLIT_MAX_ROWS
                     and triton.cdiv(N, c["BLOCK_N"]) * triton.cdiv(M, c["BLOCK_M"]) >= 2 * sms]
            if gemv and gemv[0]["SPLIT_K"] > 1:
                gemv.insert(1, {**gemv[0], "SPLIT_K": 1})
            if gemv:
                gemv.insert(1, {**gemv[0], "CHUNKS_FIRST": not CHUNKS_FIRST})
            if GEMV_PREFETCH_TWINS:
                ahead = [{**c, "PREFETCH": True} for c in gemv if "SUB" in c and c["CHUNKS_FIRST"] == CHUNKS_FIRST
                         and _steps_per_split(c, K) >= 2]
                gemv += [c for c in ahead if keep_config(c, scheme, gated, x_elem)][:GEMV_PREFETCH_TWINS]
        mma = _mma_configs(M, N, K, scheme, group_size, gated, x_elem, sms)
        gemv_first = M <= GEMV_MAX_M["weight_only" if weight_only else "w8a8"]
        cands = gemv + mma + skinny[:2] if gemv_first else skinny + gemv[:2] + mma
        if weight_only:
            cands.append(CUBLAS)
    if scheme == "w8a8_fp8" and M >= SCALED_MM_MIN_M and N % 16 == 0 and K % 16 == 0:  # (cuBLASLt's fp8 layouts)
        cands.append(SCALED_MM)
    kept = []
    for c in cands:
        if keep_config(c, scheme, gated, x_elem) and c not in kept:
            kept.append(c)
    return kept


# ---------------------------------------------------------------------------------------------------------
# Launchers
# ---------------------------------------------------------------------------------------------------------


def rms_norm(x: torch.Tensor, eps: float, weight: torch.Tensor | None = None) -> torch.Tensor:
    """``reference.rms_norm`` of x [M, K] (times ``weight`` [K]) as one Triton kernel: the norm before a config that
    cannot apply it in its prologue (``fuses_norm``). One launch, as Inductor's fused kernel for the torch ops would
    be, so that the tuner times what the compiled graph runs (the torch ops, timed eagerly, took ~20 µs)."""
    if static_int(x.stride(1)) != 1:
        x = x.contiguous()
    M, K = x.shape
    out = kl._alloc((M, K), x.dtype, x.device)
    block_k = min(max(16, next_pow2(static_int(K) or 4096)), 4096)
    wrap_triton(qk._rms_norm_kernel)[(M,)](
        x, weight if weight is not None else x, out, K, eps, x.stride(0), out.stride(0),
        HAS_W=weight is not None, BLOCK_K=block_k, num_warps=8 if block_k >= 2048 else 4,
    )
    return out


def quantize_rows(x: torch.Tensor, scheme: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(qx [M, K] int8 / float8_e4m3fn, scale [M] fp32) = ``quant.quantize_activation(x, scheme)``."""
    M, K = x.shape
    qx = kl._alloc((M, K), ACTIVATION_DTYPES[scheme], x.device)
    scale = kl._alloc((M,), torch.float32, x.device)
    k = static_int(K)
    one_pass = k is not None and k <= QUANTIZE_ROW_MAX_K[scheme]  # the whole row in registers
    block_k = max(16, next_pow2(k)) if one_pass else QUANTIZE_BLOCK_K
    fp8_one_pass = one_pass and scheme == "w8a8_fp8"  # (4 warps measured faster up to 4096, 8 above)
    wrap_triton(qk._quantize_rows_kernel)[(M,)](
        x, qx, scale,
        M, K,
        x.stride(0), qx.stride(0),
        SCHEME=SCHEME_IDS[scheme], BLOCK_K=block_k, ONE_PASS=one_pass, HW_CAST=scheme == "w8a8_fp8" and not _INTERPRET,
        num_warps=8 if block_k > (4096 if fp8_one_pass else 1024) else 4,
    )
    return qx, scale


def dequantize(qweight: torch.Tensor, scale: torch.Tensor, zero, scheme: str, group_size: int,
               dtype: torch.dtype) -> torch.Tensor:
    """``quant.dequantize_weight`` rounded to ``dtype``: [N_w, K]."""
    int4 = scheme == "int4_weight_only"
    n_rows, K = qweight.shape[0], qweight.shape[1] * (2 if int4 else 1)
    out = kl._alloc((n_rows, K), dtype, qweight.device)
    block_n, block_k = 32, group_size if int4 else 128
    wrap_triton(qk._dequantize_kernel)[(triton.cdiv(n_rows, block_n), triton.cdiv(K, block_k))](
        qweight, scale, zero if zero is not None else scale, out,
        n_rows, K,
        qweight.stride(0), scale.stride(0) if int4 else 0, out.stride(0),
        SCHEME=SCHEME_IDS[scheme], GROUP_SIZE=group_size if int4 else 1, HAS_ZERO=zero is not None,
        BLOCK_N=block_n, BLOCK_K=block_k, num_warps=4,
    )
    return out


def fuses_norm(cfg: dict, scheme: str, K) -> bool:
    """Can ``cfg`` apply an RMSNorm to x in its prologue? The weight-only word GEMV and (``MMA_GEMV_NORM``) the
    tensor-core GEMV, without split-K (each program sees whole rows of x); other configs normalize x first
    (``rms_norm``, one kernel)."""
    words = cfg["kernel"] == "gemv" and _gemv_reads_words(scheme, static_int(K))
    mma = cfg["kernel"] == "mma" and MMA_GEMV_NORM and scheme == "int4_weight_only"  # (no int8 norm prologue)
    return (words or mma) and cfg["SPLIT_K"] == 1


def _norm_weight_pairs(norm_weight: torch.Tensor | None, x: torch.Tensor) -> bool:
    """Can the tensor-core GEMV read ``norm_weight`` as x's pair words (x's dtype, an even element offset)?"""
    offset = None if norm_weight is None else static_int(norm_weight.storage_offset())
    return norm_weight is None or (norm_weight.dtype == x.dtype and offset is not None and offset % 2 == 0)


def launch(cfg: dict, x: torch.Tensor, qweight: torch.Tensor, scale: torch.Tensor, zero, bias, scheme: str,
           group_size: int, act: int, gated: bool, norm_eps: float | None = None,
           norm_weight: torch.Tensor | None = None, residual: torch.Tensor | None = None,
           counters: torch.Tensor | None = None) -> torch.Tensor:
    """Run ``cfg`` for out [M, N] (+ residual), x RMS-normalized first (times ``norm_weight``) when ``norm_eps``
    is given: (1) check the config against the int4 groups and make x contiguous along K for the Triton paths,
    (2) allocate output and split-K workspace (and, for W8A8 tiles, the quantized x), (3) launch the kernels. The
    inputs themselves are checked by ``qlinear``. The residual is added in the kernel's epilogue (for cuBLAS after
    the matmul). A split-K config reduces its workspace in the kernel, in each tile's last program, when
    ``counters`` (int32 zeros, one per output tile at least; left zero) is given and the tile count is static; else
    a second launch, the split-K epilogue kernel, does."""
    M, K = x.shape
    n_rows = qweight.shape[0]
    N = n_rows // 2 if gated else n_rows
    int4 = scheme == "int4_weight_only"
    if norm_eps is not None and not (fuses_norm(cfg, scheme, K)
                                     and (cfg["kernel"] != "mma" or _norm_weight_pairs(norm_weight, x))):
        x, norm_eps, norm_weight = rms_norm(x, norm_eps, norm_weight), None, None
    if residual is not None and static_int(residual.stride(1)) != 1:
        residual = residual.contiguous()
    if cfg["kernel"] == "cublas":
        w = dequantize(qweight, scale, zero, scheme, group_size, x.dtype)
        return kl.launch(kl.CUBLAS, x, w, None if bias is None else bias.to(x.dtype), act, gated, residual=residual)
    if static_int(x.stride(1)) != 1:
        x = x.contiguous()  # the kernels assume unit stride along K (vector loads)
    if cfg["kernel"] == "scaled_mm":
        torch._check(scheme == "w8a8_fp8" and x.dtype == torch.bfloat16,
                     lambda: f"qlinear: {cfg} is for w8a8_fp8 with bf16 x, got {scheme} with {x.dtype}")
        qx, x_scale = quantize_rows(x, scheme)
        h = torch._scaled_mm(qx, qweight.t(), scale_a=x_scale.view(-1, 1), scale_b=scale.view(1, -1),
                             bias=None if bias is None else bias.to(x.dtype), out_dtype=x.dtype, use_fast_accum=True)
        return kl.library_epilogue(h, act, gated, residual)
    split, block_k = cfg["SPLIT_K"], cfg["BLOCK_K"]
    if int4:  # a tl.dot step (or an MMA GEMV's), or a GEMV thread's chunk of 8·SUB codes, must lie in one group
        step = block_k if cfg["kernel"] in ("gemm", "mma") else 8 * cfg.get("SUB", 1)
        torch._check(group_size % step == 0, lambda: f"qlinear: {cfg} does not fit int4 groups of {group_size}")
    out = kl._alloc((M, N), x.dtype, x.device)
    # each split covers whole BLOCK_K steps; only a K that is not a multiple of BLOCK_K needs masks
    k_per_split = triton.cdiv(triton.cdiv(K, split), block_k) * block_k
    k = static_int(K)
    even_k = k is not None and k % block_k == 0
    # unused pointer arguments get read-only tensors (see linear.launch)
    ws = kl._alloc((split, M, n_rows), torch.float32, x.device) if split > 1 else x
    zero_arg = zero if zero is not None else scale
    bias_arg = bias if bias is not None else scale
    reduce_last = split > 1 and counters is not None and _tiles_fit(cfg, M, N, counters)
    res_in_kernel = residual if split == 1 or reduce_last else None  # else the epilogue kernel adds it
    res_arg = res_in_kernel if res_in_kernel is not None else scale
    cnt_arg = counters if reduce_last else scale
    stride_rm = res_in_kernel.stride(0) if res_in_kernel is not None else 0
    stride_sn = scale.stride(0) if int4 else 0
    meta = dict(SCHEME=SCHEME_IDS[scheme], GROUP_SIZE=group_size if int4 else 1, HAS_ZERO=zero is not None,
                HAS_BIAS=bias is not None, ACT=act, GATED=gated, SPLIT_K=split, BLOCK_N=cfg["BLOCK_N"],
                EVEN_K=even_k, HAS_RES=res_in_kernel is not None, REDUCE_LAST=reduce_last,
                num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])
    if cfg["kernel"] == "mma":
        int8 = scheme == "int8_weight_only"
        torch._check((int4 and group_size == 128 or int8) and x.dtype in (torch.float16, torch.bfloat16),
                     lambda: f"qlinear: {cfg} needs int8 or int4 groups of 128 and fp16 / bf16 x")
        torch._check(M <= 8 * cfg.get("TOKEN_TILES", 1), lambda: f"qlinear: {cfg} takes at most "
                     f"{8 * cfg.get('TOKEN_TILES', 1)} rows of x")
        torch._check(K % _mma_step(scheme) == 0, lambda: f"qlinear: {cfg} needs K a multiple of {_mma_step(scheme)}")
        stride, offset = static_int(x.stride(0)), static_int(x.storage_offset())
        if stride is None or offset is None or stride % 2 or offset % 2:
            x = x.clone(memory_format=torch.contiguous_format)  # read as int32 pairs
        meta["PDL"] = use_pdl(x.device)
        grid = (triton.cdiv(N, cfg["BLOCK_N"]), split, 1)
        meta["PDL_EARLY"] = early_trigger(x.device, grid, cfg["num_warps"], num_sms(x.device))
        meta.update(launch_options(meta["PDL"]))
        meta = {k: v for k, v in meta.items() if k not in ("SCHEME", "BLOCK_N", "EVEN_K")}  # int4 only, own tiles
        w = qweight.view(torch.int32)
        if int8:
            meta = {k: v for k, v in meta.items() if k not in ("GROUP_SIZE", "HAS_ZERO")}
            wrap_triton(qm._qgemv_mma_int8_kernel)[grid](
                x.view(torch.int32), w, scale, bias_arg, out, ws, res_arg, cnt_arg, M, N, K, k_per_split,
                x.stride(0) // 2, w.stride(0), out.stride(0), stride_rm, ROW_WARPS=cfg["ROW_WARPS"],
                K_WARPS=cfg["K_WARPS"], ROW_TILES=cfg["ROW_TILES"], TOKEN_TILES=cfg.get("TOKEN_TILES", 1),
                FP16=x.dtype == torch.float16, UNROLL=cfg.get("UNROLL", 1), L2PF=MMA_L2PF, **meta,
            )
        else:
            nw = norm_weight.view(torch.int32) if norm_weight is not None else w
            wrap_triton(qm._qgemv_mma_kernel)[grid](
                x.view(torch.int32), w, scale, zero_arg, bias_arg, out, ws, res_arg, cnt_arg, nw, M, N, K,
                k_per_split, norm_eps if norm_eps is not None else 0.0, x.stride(0) // 2, w.stride(0), stride_sn,
                out.stride(0), stride_rm, ROW_WARPS=cfg["ROW_WARPS"], K_WARPS=cfg["K_WARPS"],
                ROW_TILES=cfg["ROW_TILES"], TOKEN_TILES=cfg.get("TOKEN_TILES", 1), FP16=x.dtype == torch.float16,
                NORM=norm_eps is not None, HAS_NORM_W=norm_weight is not None, L2PF=MMA_L2PF, **meta,
            )
    elif cfg["kernel"] == "gemv":
        meta["PDL"] = use_pdl(x.device)
        block_m = _gemv_block_m(cfg, static_int(M))
        tiles = cfg.get("TILES", 0)
        if tiles:  # one load of x for TILES tiles of weight rows: needs all of K in one unsplit step
            torch._check(_one_step(cfg, k), lambda: f"qlinear: {cfg} needs K = {K} in one step")
        grid = (triton.cdiv(triton.cdiv(N, cfg["BLOCK_N"]), max(tiles, 1)), split, triton.cdiv(M, block_m))
        meta["PDL_EARLY"] = early_trigger(x.device, grid, cfg["num_warps"], num_sms(x.device))
        meta.update(launch_options(meta["PDL"]))
        if _gemv_reads_words(scheme, static_int(qweight.shape[1])):
            w = qweight.view(torch.int32)  # [N_w, K / per_word]: whole words for _decode_words
            chunk = cfg.get("SUB", 1) * _per_word(scheme)
            wrap_triton(qk._qgemv_words_kernel)[grid](
                x, w, scale, zero_arg, bias_arg, out, ws, res_arg, norm_weight if norm_weight is not None else scale,
                cnt_arg, M, N, K, k_per_split, norm_eps if norm_eps is not None else 0.0, 65536,
                x.stride(0), w.stride(0), stride_sn, out.stride(0), stride_rm,
                BLOCK_M=block_m, SUB=cfg.get("SUB", 1), NUM_CHUNKS=block_k // chunk, PER_WORD=_per_word(scheme),
                CHUNKS_FIRST=cfg.get("CHUNKS_FIRST", CHUNKS_FIRST), NORM=norm_eps is not None,
                HAS_NORM_W=norm_weight is not None, PRMT=_byte_permutes(cfg, int4),
                PREFETCH=cfg.get("PREFETCH", False), TILES=tiles, HALVES=int4 and cfg.get("HALVES", HALVES),
                BF16X2=_bf16x2(cfg, int4, x.dtype), **meta,
            )
        else:
            chunk = 16 // x.element_size()  # one 16-byte vector of x per thread and step
            meta = {k: v for k, v in meta.items() if k not in ("GROUP_SIZE", "HAS_ZERO")}  # no int4 here
            wrap_triton(qk._qgemv_bytes_kernel)[grid](
                x, qweight, scale, bias_arg, out, ws, res_arg, cnt_arg,
                M, N, K, k_per_split,
                x.stride(0), qweight.stride(0), out.stride(0), stride_rm,
                BLOCK_M=block_m, CHUNK=chunk, NUM_CHUNKS=block_k // chunk,
                CHUNKS_FIRST=cfg.get("CHUNKS_FIRST", CHUNKS_FIRST), **meta,
            )
    else:
        qx, x_scale = quantize_rows(x, scheme) if scheme in ACTIVATION_DTYPES else (x, scale)
        fp32_ieee = x.dtype == torch.float32 and not torch.backends.cuda.matmul.allow_tf32
        pairs = (int4 and cfg.get("PAIRS", True) and x.dtype in (torch.bfloat16, torch.float16)
                 and scale.dtype == x.dtype and not _INTERPRET)  # (the pairs hold s in x's dtype)
        grid = (triton.cdiv(M, cfg["BLOCK_M"]) * triton.cdiv(N, cfg["BLOCK_N"]), split)
        wrap_triton(qk._qgemm_kernel)[grid](
            qx, x_scale, qweight, scale, zero_arg, bias_arg, out, ws, res_arg, cnt_arg,
            M, N, K, k_per_split,
            qx.stride(0), qweight.stride(0), stride_sn, out.stride(0), stride_rm,
            BLOCK_M=cfg["BLOCK_M"], BLOCK_K=block_k, GROUP_M=cfg["GROUP_M"], FP32_IEEE=fp32_ieee,
            FP8_PROMOTE=0 if FP8_PROMOTE_K is None else max(1, FP8_PROMOTE_K // block_k), PAIRS=pairs,
            SWAP=cfg.get("SWAP", False) and scheme in WEIGHT_ONLY, **meta,
        )
    if split > 1 and not reduce_last:
        kl._launch_epilogue(ws, bias, out, act, gated, split, residual)
    return out


def _one_step(cfg: dict, K) -> bool:
    """Is a word-GEMV config's whole (static) K one step of one program (no split, no PREFETCH)? Such a GEMV
    may run without its K loop (``qlinear_kernels._words_tiles``, TILES ≥ 1)."""
    return (cfg["kernel"] == "gemv" and "SUB" in cfg and cfg["SPLIT_K"] == 1 and not cfg.get("PREFETCH")
            and isinstance(K, int) and K <= cfg["BLOCK_K"])


def _byte_permutes(cfg: dict, int4: bool) -> bool:
    """Whether a word GEMV decodes its codes by byte permutes (inline PTX: compiled only): int4 words
    (``qlinear_kernels._decode_nibbles``) always, int8 ones (``_decode_bytes``) while ``INT8_PRMT`` is on; unless the
    config says {"PRMT": False}. Only in this Triton version's axis order (``CHUNKS_FIRST``): in the other, Triton
    lays the decoded codes out differently in the step that programmatic dependent launch peels off the loop, so its
    sums round in another order than the plain kernel's."""
    return ((int4 or INT8_PRMT) and cfg.get("PRMT", True) and cfg.get("CHUNKS_FIRST", CHUNKS_FIRST) == CHUNKS_FIRST
            and not _INTERPRET)


def _bf16x2_applies(int4: bool, dtype: torch.dtype) -> bool:
    """Whether a word GEMV may sum on packed bf16 instructions: int4 words, bf16 x (x is rounded to bf16 for them),
    compiled (inline PTX)."""
    return int4 and dtype == torch.bfloat16 and not _INTERPRET


def _bf16x2(cfg: dict, int4: bool, dtype: torch.dtype) -> int:
    """How an int4 word GEMV sums its products on packed bf16 instructions (``INT4_BF16X2``, or the config's
    {"BF16X2": ...}; 0: it does not), where ``_bf16x2_applies``."""
    return int(cfg.get("BF16X2", INT4_BF16X2)) if _bf16x2_applies(int4, dtype) else 0


def _gemv_block_m(cfg: dict, m: int | None) -> int:
    """Rows of x per GEMV program: the config's, else up to 4 (4 for a symbolic M)."""
    return cfg.get("BLOCK_M") or (4 if m is None else min(next_pow2(m), 4))


def _tiles(cfg: dict, M, N) -> int | None:
    """How many output tiles ``cfg`` launches (programs per K split), or None when M or N is symbolic."""
    m, n = static_int(M), static_int(N)
    if m is None or n is None:
        return None
    if cfg["kernel"] == "gemv":
        return triton.cdiv(n, cfg["BLOCK_N"]) * triton.cdiv(m, _gemv_block_m(cfg, m))
    if cfg["kernel"] == "mma":
        return triton.cdiv(n, cfg["BLOCK_N"])
    return triton.cdiv(m, cfg["BLOCK_M"]) * triton.cdiv(n, cfg["BLOCK_N"])


def _tiles_fit(cfg: dict, M, N, counters: torch.Tensor) -> bool:
    tiles, have = _tiles(cfg, M, N), static_int(counters.numel())
    return tiles is not None and have is not None and tiles <= have


# ---------------------------------------------------------------------------------------------------------
# Dispatch
# ---------------------------------------------------------------------------------------------------------


@functools.cache
def _sources() -> str:
    # everything that changes what a stored config means or how fast it runs
    return autotune_cache.source_hash(
        qk._qgemv_words_kernel, qk._words_step, qk._words_tiles, qk._words_then_x, qk._row_ptrs, qk._norm_rstd,
        qk._qgemv_bytes_kernel, qk._qgemm_kernel, qk._quantize_rows_kernel, qk._dequantize_kernel, qk._codes_to_f32,
        qk._unpack_int4, qk._decode_words, qk._abs_max, qk._token_scale, qk._row_codes, qk._div_by_scale,
        qk._scale_rcp,
        qk._quantize, qk._dequant_tile, qk._decode_nibbles, qk._decode_bytes, qk.BYTES_ASM, qk._word_chunk_sums,
        qk._byte_chunk_sums, qk._apply_scales,
        qk._scale_and_write_back, qk._rms_norm_kernel, rms_norm, quantize_rows, QUANTIZE_ROW_MAX_K,
        QUANTIZE_BLOCK_K, qk._gemm_weight_tile, qk._dequant_int4_pairs,
        qk._qdot, qk._chunks_first, qk._decode_halves, qk._low_half_up, qk._split8,
        qk._halves_products, qk._bf16x2_words, qk._bf16x2_pack, qk._bf16x2_add, qk._bf16x2_sum, qk.BF16X2_ASM,
        qk.BF16X2_PACK_ASM, qk.BF16X2_ADD_ASM, qk._bf16x2_x_sums, qk._words_x, qk.BF16X2_MOV_ASM,
        qk._squares, qk._norm_weighted, qk._repack, qk.MMA_REPACK, qk.MUL_BF16, qk.MUL_F16,
        qk._group_params, qk._step_params,
        qm._qgemv_mma_kernel, qm._tile_loads, qm._tile_group, qm._word_mmas, qm._decode, qm._mma, qm._x_loads,
        qm._x_fragments4, qm._x_sums, qm._stack_tokens, qm._step_weights, qm._step_x, qm._token_tile,
        qm._x_fragments, qm._as_tile, qm._lanes, qm._accumulators, qm._tiles_out, qm._split4, qm._sum_mma,
        qm._token_rstd, qm._mul_pairs, qm._load_words, qm.L2PF_LOAD, MMA_L2PF, MMA_SPLIT_PROGRAMS,
        qm._qgemv_mma_int8_kernel, qm._decode_i8, qm.I8_DECODE_BF16, qm.I8_DECODE_F16, qm._i8_word_mma,
        qm._i8_tile_step, qm._i8_weights, qm._i8_x, qm._i8_chunk, _mma_step, MMA_GEMV_INT8, MMA_GEMV_INT8_MIN_M,
        MMA_GEMV_INT8_TILES,
        mma_config, _mma_configs, _norm_weight_pairs,
        MMA_GEMV_TILES, MMA_GEMV_MIN_M, MMA_GEMV_MAX_M, MMA_GEMV_NORM, HALVES, INT8_PRMT, _byte_permutes,
        INT4_BF16X2, _bf16x2, _bf16x2_applies,
        kl._write_back, kl._add_residual, kl._epilogue, kl._epilogue_kernel, kl._sum_splits, kl._reduce_if_last,
        kl._load_tile, kl._first_step_ok, kl._dot, kl._grouped_tile, kl._gemv_slice, kl._dot_slice, apply_activation,
        _measurement_inputs, chain_length,
        candidate_configs, keep_config, _gemv_reads_words, _gemv_config, _gemm_config, fuses_norm, launch,
        _gemv_block_m, _one_step, tile_twins, refine, GEMV_BF16X2_TWINS, GEMV_BF16X2_TWIN_MODE,
        # the candidate lists and the limits that prune them: a stored winner was only the best of those measured
        GEMV_TILES, GEMV_TILE_COUNTS, GEMV_TILE_TWINS, GEMV_PREFETCH_TWINS, GEMV_UNSPLIT_MAX_ROWS, SKINNY_TILES,
        TILED_TILES, INT4_SWAP_TILE, GEMV_MAX_M, GEMV_CANDIDATE_MAX_M, SKINNY_MAX_M, CUBLAS_FIRST_M, GEMV_REGS,
        SMEM_BYTES, kl.MAX_SPLIT_K, SCALED_MM_MIN_M, kl.library_epilogue)


def chain_length(x: torch.Tensor) -> int:
    """Launches of each candidate in one timing (``ACCEL_TUNE_CHAIN``, see ``utils.pdl_chain``): for decode shapes
    (at most ``MMA_GEMV_MAX_M`` rows) tuned for a compile that launches its GEMVs with PDL; else 1, each alone."""
    if not use_pdl(x.device) or (static_int(x.shape[0]) or 0) > MMA_GEMV_MAX_M:
        return 1
    return envs.ACCEL_TUNE_CHAIN()


def _measurement_inputs(x, qweight, scale, zero, bias, scheme: str, group_size: int, counters=None, chain: int = 1):
    """make_runner for ``tune``: random inputs in the real shapes and formats, made once (with ``counters``, a
    zeroed counter buffer as long, so that split-K candidates reduce in the kernel as they will). With ``chain`` > 1
    a runner launches its config ``chain`` times, each on its own copy of the weights, with the PDL attribute
    (``utils.pdl_chain``; the kernels are then timed as they follow each other in a decode step) and says so
    (``launches``: ``autotune_cache.measure_us`` times one launch)."""
    made: dict = {}

    def make(cfg, act, gated, norm=False):
        """A runner of ``cfg``; with ``norm``, x is RMS-normalized first (times a weight)."""
        if not made:
            M, K = (int(s) for s in x.shape)
            n_rows = int(qweight.shape[0])
            w_dtype = scale.dtype if scheme == "int4_weight_only" else x.dtype  # int4 keeps scales in w's dtype
            made["w"] = []
            for _ in range(chain):  # distinct weights: the copies' reads add up as the layers' do (no L2 reuse)
                w = torch.randn(n_rows, K, dtype=w_dtype, device=x.device) / math.sqrt(K)
                made["w"].append(quant.quantize_weight(w, scheme, group_size, symmetric=zero is None))
                del w
            made["x"] = torch.randn(M, K, dtype=x.dtype, device=x.device)
            made["b"] = None if bias is None else torch.randn(n_rows, dtype=bias.dtype, device=x.device)
            made["g"] = 1.0 + 0.1 * torch.randn(K, dtype=x.dtype, device=x.device)
            # (counters may be a fake tensor here: the op's body is traced; only its length is used)
            made["c"] = None if counters is None else torch.zeros(int(counters.numel()), dtype=torch.int32,
                                                                   device=x.device)

        def one(q, s, z):
            return launch(cfg, made["x"], q, s, z, made["b"], scheme, group_size, act, gated,
                          1e-6 if norm else None, made["g"] if norm else None, counters=made["c"])

        if chain == 1:
            return lambda: one(*made["w"][0])

        def run():
            with pdl_chain():
                return [one(*w) for w in made["w"]]

        run.launches = chain
        return run

    return make


def select_config(x, qweight, scale, zero, bias, scheme: str, group_size: int, act: int, gated: bool,
                  norm: bool = False, counters: torch.Tensor | None = None) -> dict:
    """The config for this call: the general GEMM for symbolic or empty shapes, else the fastest measured
    candidate on CUDA (cached per shape, scheme, dtype and epilogue; with ``norm``, each timed with its RMSNorm,
    in the kernel or before it; with ``counters``, split-K timed with its reduction in the kernel), else the
    heuristic default."""
    M, n_rows, K = (static_int(s) for s in (x.shape[0], qweight.shape[0], x.shape[1]))
    N = None if n_rows is None else n_rows // 2 if gated else n_rows
    if M is None or N is None or K is None or min(M, N, K) == 0:
        return general_config(scheme, group_size, N, K)
    sms = num_sms(x.device)
    cands = candidate_configs(M, N, K, scheme, group_size, gated, x.element_size(), sms)
    if x.device.type != "cuda":
        return cands[0]
    name = (f"qlinear.{scheme}.act{act}.{'gated' if gated else 'plain'}{'.norm' if norm else ''}"
            f"{'.rl' if counters is not None else ''}")
    chain = chain_length(x)
    shape = (M, N, K, group_size, bias is not None, zero is not None) + ((chain,) if chain > 1 else ())
    key = autotune_cache.make_key(name, _sources(), shape, x.dtype, x.device)
    make = _measurement_inputs(x, qweight, scale, zero, bias, scheme, group_size, counters, chain)
    return autotune_cache.tune(key, cands, lambda cfg: make(cfg, act, gated, norm), default=cands[0],
                               refine=lambda ranked: refine(ranked, M, N, K, sms, scheme, x.dtype))


def _check_inputs(x, qweight, scale, zero, bias, scheme: str, group_size: int, gated: bool) -> None:
    torch._check(x.dim() == 2 and qweight.dim() == 2, lambda: "qlinear: x and qweight must be 2-D")
    torch._check(x.dtype in (torch.float16, torch.bfloat16, torch.float32),
                 lambda: f"qlinear: x must be fp16, bf16 or fp32, got {x.dtype}")
    torch._check(qweight.dtype == WEIGHT_DTYPES[scheme],
                 lambda: f"qlinear: {scheme} stores {WEIGHT_DTYPES[scheme]} weights, got {qweight.dtype}")
    torch._check(qweight.stride(1) == 1, lambda: "qlinear: qweight must be contiguous along K")
    n_rows, K = qweight.shape[0], x.shape[1]
    if scheme == "int4_weight_only":
        torch._check(group_size in quant.GROUP_SIZES, lambda: f"qlinear: int4 group size {group_size}")
        torch._check(K == 2 * qweight.shape[1], lambda: f"qlinear: x {tuple(x.shape)} vs packed {tuple(qweight.shape)}")
        torch._check(K % group_size == 0, lambda: f"qlinear: K = {K} is not a multiple of {group_size}")
        groups = (n_rows, K // group_size)
        torch._check(tuple(scale.shape) == groups and scale.stride(1) == 1, lambda: "qlinear: int4 scale [N_w, K/G]")
        torch._check(zero is None or (zero.shape == scale.shape and zero.stride() == scale.stride()),
                     lambda: "qlinear: int4 zero must be laid out like scale")
    else:
        torch._check(K == qweight.shape[1], lambda: f"qlinear: x {tuple(x.shape)} vs weight {tuple(qweight.shape)}")
        torch._check(scale.dim() == 1 and scale.shape[0] == n_rows and scale.dtype == torch.float32,
                     lambda: "qlinear: the row scale must be fp32 [N_w]")
        torch._check(zero is None, lambda: f"qlinear: {scheme} has no zero point")
    if bias is not None:
        torch._check(bias.dim() == 1 and bias.shape[0] == n_rows, lambda: "qlinear: bias must be [N_w]")
    if gated:
        torch._check(n_rows % 2 == 0, lambda: f"qlinear: gated weights need an even row count, got {n_rows}")


def qlinear(x2d: torch.Tensor, qweight: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor | None,
            bias: torch.Tensor | None, scheme: str, group_size: int, activation: str, gated: bool,
            norm_eps: float | None = None, norm_weight: torch.Tensor | None = None,
            residual: torch.Tensor | None = None, counters: torch.Tensor | None = None, *,
            _config: dict | None = None) -> torch.Tensor:
    """act(x2d' [M, K] · dequant(qweight)ᵀ + bias) (or act(gate)·up) [+ residual] -> [M, N], contiguous in x's
    dtype, as ``quant.qlinear_reference``; x2d' is x2d RMS-normalized (times ``norm_weight`` [K] when given) when
    ``norm_eps`` is given. ``counters`` (int32 zeros, left zero; see ``launch``) lets split-K configs reduce in
    the kernel. ``_config`` forces a config (tests and benchmarks)."""
    quant.check_scheme(scheme)
    activation_fn(activation)  # raises ValueError naming the known activations
    act = ACTIVATION_IDS[activation]
    if scheme == "int4_weight_only" and 0 < 2 * qweight.shape[1] - x2d.shape[1] < group_size:
        if norm_eps is not None:  # normalize over the real K, before the padding
            x2d, norm_eps, norm_weight = rms_norm(x2d, norm_eps, norm_weight), None, None
        # K is not a multiple of the group: the packed weight is zero-padded to whole groups (quant.py), so pad x
        # with zeros to match — the padding products are exactly 0 (one small copy of x per call)
        x2d = torch.nn.functional.pad(x2d, (0, 2 * qweight.shape[1] - x2d.shape[1]))
    _check_inputs(x2d, qweight, scale, zero, bias, scheme, group_size, gated)
    if norm_weight is not None:
        torch._check(norm_eps is not None and norm_weight.shape == (x2d.shape[1],) and norm_weight.stride(0) == 1,
                     lambda: f"qlinear: norm_weight must be a contiguous [{x2d.shape[1]}] with norm_eps")
    if residual is not None:
        N = qweight.shape[0] // 2 if gated else qweight.shape[0]
        torch._check(residual.shape == (x2d.shape[0], N) and residual.dtype == x2d.dtype,
                     lambda: f"qlinear: the residual must be [{x2d.shape[0]}, {N}] in {x2d.dtype}")
    if counters is not None:
        torch._check(counters.dtype == torch.int32 and counters.dim() == 1 and counters.stride(0) == 1,
                     lambda: "qlinear: counters must be a contiguous int32 vector")
    if _config is None:
        _config = select_config(x2d, qweight, scale, zero, bias, scheme, group_size, act, gated,
                                norm=norm_eps is not None, counters=counters)
    return launch(_config, x2d, qweight, scale, zero, bias, scheme, group_size, act, gated, norm_eps, norm_weight,
                  residual, counters)
