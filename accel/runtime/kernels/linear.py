"""``linear`` (y = x wᵀ + b) as Triton GEMV / GEMM kernels with a fused epilogue, chosen per shape.

Dataflow: x [M, K] and weight [N_w, K] (any strides: GPT-2's Conv1D weight arrives as a transposed view)
→ fp32 accumulators → epilogue act(acc + b), or act(acc_gate + b_gate) · (acc_up + b_up) when GATED
(weight rows [0, N) are the gate, [N, 2N) the up projection) → out [M, N] in x's dtype, rounded once.
With SPLIT_K > 1 the matmul kernels write fp32 partial sums to a workspace [SPLIT_K, M, N_w] instead,
and ``_epilogue_kernel`` adds them in a fixed order (deterministic, no atomics, nothing to zero before a
CUDA-graph replay), then applies the same epilogue.

Kernels, by M (the number of tokens):
- ``_gemv_kernel`` (batch-1 decode, M ≤ 4): CUDA-core dot products. Each program streams [BLOCK_N, BLOCK_K]
  weight tiles along K (one 16-byte vector per lane and row) for all its rows of x; products accumulate
  elementwise and are summed over K once after the loop. The weight is read exactly once.
- ``_gemm_kernel`` (tl.dot): skinny (BLOCK_M 16–64, optional split-K) for 4 < M ≤ 64; tiled with grouped
  program ordering for larger M.
- cuBLAS (``F.linear``); for FFNs followed by ``_epilogue_kernel`` as the act·mul kernel. It is the only
  path for a symbolic M.
``select_config`` measures the candidates of a static shape on the GPU (``autotune_cache.tune``) and falls
back to the first, heuristic, candidate. ``accel.runtime.kernels.ffn`` reuses all of this for ``ffn_up``.
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from accel.runtime import autotune_cache, reference
from accel.runtime.kernels.activations import apply_activation
from accel.runtime.kernels.utils import (early_trigger, next_pow2, num_sms, pdl_launch_dependents, pdl_wait,
                                         static_int, use_pdl, wrap_triton)

# ---------------------------------------------------------------------------------------------------------
# Configs: {"kernel": "gemv" | "gemm" | "cublas", meta-parameters..., "num_warps", "num_stages"}
# ---------------------------------------------------------------------------------------------------------

CUBLAS = {"kernel": "cublas"}
# The GEMV keeps fp32 accumulators for M·BLOCK_N weight rows per thread: past 4 rows of x too few weight
# rows fit in registers to keep enough loads in flight, while a 16-row tl.dot tile then wastes little.
GEMV_MAX_M = 4
SKINNY_MAX_M = 64  # above this the matmul is tiled (and, at M ≳ 300, compute-bound in bf16)
# GEMV tiles as (num_warps, weight rows per thread, 16-byte vectors per row and thread). BLOCK_K is that many
# vectors per lane of every warp, so the weight tile, the x tile and the accumulator all get the same layout
# (no shuffles in the loop) and each thread has rows × vectors independent 16-byte loads in flight per step.
# The list is the winners of a grid sweep on H200 (benchmarks/gemv_sweep.py, results/gemv_sweep_*): two
# vectors per row win the gated and the wide-K layers, 8 warps × 2 rows the small attention projections.
GEMV_TILES = [(4, 8, 1), (4, 4, 2), (4, 8, 2), (8, 2, 1), (2, 8, 2)]
GEMV_TILE_WIDE = (4, 16, 1)  # the one GEMV candidate for 4 < M ≤ 16 (16 rows of x share each weight vector)
# tl.dot tiles as (BLOCK_N, BLOCK_K, num_warps, num_stages); skinny tiles take BLOCK_M from M.
SKINNY_TILES = [(64, 128, 4, 3), (128, 128, 4, 3), (32, 256, 4, 3), (64, 256, 8, 3)]
TILED_TILES = [(128, 128, 64, 8, 3), (128, 256, 64, 8, 3), (64, 128, 64, 4, 4), (128, 64, 64, 4, 4)]
ACC_REGS_PER_THREAD = 128  # fp32 GEMV accumulators per thread (ptxas: ~100 registers in all at 64, ~160 at 128)
SMEM_BYTES = 160 * 1024  # for the tl.dot pipeline stages; H100 allows 227 KB per block, leave headroom
MAX_SPLIT_K = 16


def keep_config(cfg: dict, gated: bool, elem_size: int) -> bool:
    """The pruning predicate: does ``cfg`` fit in registers (GEMV) or shared memory (tl.dot)?"""
    n_w = 2 if gated else 1
    if cfg["kernel"] == "gemv":
        acc = cfg["BLOCK_M"] * cfg["BLOCK_N"] * cfg["BLOCK_K"] * n_w
        return acc <= ACC_REGS_PER_THREAD * 32 * cfg["num_warps"]
    if cfg["kernel"] == "gemm":
        tile = (cfg["BLOCK_M"] + n_w * cfg["BLOCK_N"]) * cfg["BLOCK_K"] * elem_size
        return cfg["num_stages"] * tile <= SMEM_BYTES
    return True


def _split_k(programs: int, M: int, K: int, block_k: int, elem_size: int, sms: int) -> int:
    """Smallest power of two that gives ≥ 4 programs per SM (one full wave at ~4 resident programs per SM),
    while every split keeps at least one whole BLOCK_K step and the fp32 workspace traffic (written and
    read back: 8·SPLIT_K·M bytes per output column) stays within 1/8 of the weight bytes (K·elem_size)."""
    split = 1
    while (programs * split < 4 * sms and split < MAX_SPLIT_K and K >= 2 * split * block_k
           and 2 * split * M * 64 <= K * elem_size):
        split *= 2
    return split


def _gemv_config(M: int, N: int, K: int, gated: bool, elem_size: int, tile: tuple, sms: int) -> dict:
    warps, rows, vectors = tile
    block_m = min(next_pow2(M), 16)
    block_k = min((16 // elem_size) * 32 * warps * vectors, max(16, next_pow2(K)))
    block_n = max(1, min(rows // (block_m * (2 if gated else 1)), next_pow2(N)))
    split = _split_k(triton.cdiv(N, block_n) * triton.cdiv(M, block_m), M, K, block_k, elem_size, sms)
    return {"kernel": "gemv", "BLOCK_M": block_m, "BLOCK_N": block_n, "BLOCK_K": block_k, "SPLIT_K": split,
            "num_warps": warps, "num_stages": 1}


def _gemm_config(M: int, N: int, K: int, elem_size: int, tile: tuple, sms: int, group_m: int) -> dict:
    block_m, block_n, block_k, warps, stages = tile
    block_n = min(block_n, max(16, next_pow2(N)))
    block_k = min(block_k, max(16, next_pow2(K)))
    programs = triton.cdiv(M, block_m) * triton.cdiv(N, block_n)
    split = _split_k(programs, M, K, block_k, elem_size, sms) if M <= SKINNY_MAX_M else 1
    return {"kernel": "gemm", "BLOCK_M": block_m, "BLOCK_N": block_n, "BLOCK_K": block_k, "SPLIT_K": split,
            "GROUP_M": group_m, "num_warps": warps, "num_stages": stages}


def candidate_configs(M: int, N: int, K: int, gated: bool, elem_size: int, sms: int, k_major: bool = True
                      ) -> list[dict]:
    """The configs worth measuring for out [M, N] from K, in order of preference: the first is the
    heuristic default (GEMV for M ≤ 4, skinny tl.dot for M ≤ 64, cuBLAS above). A weight that is not
    contiguous along K (GPT-2's Conv1D) defeats the GEMV's vector loads, so it starts with tl.dot."""
    if M > SKINNY_MAX_M:
        cands = [CUBLAS] + [_gemm_config(M, N, K, elem_size, t, sms, group_m=8) for t in TILED_TILES]
    else:
        block_m = max(16, next_pow2(M))
        skinny = [_gemm_config(M, N, K, elem_size, (block_m, *t), sms, group_m=1) for t in SKINNY_TILES]
        if skinny[0]["SPLIT_K"] > 1:  # split-K costs a second launch, which the smallest layers may not repay
            skinny.append({**skinny[0], "SPLIT_K": 1})
        gemv_first = M <= GEMV_MAX_M and k_major
        gemv_tiles = GEMV_TILES if gemv_first else [GEMV_TILE_WIDE]
        gemv = [_gemv_config(M, N, K, gated, elem_size, t, sms) for t in gemv_tiles]
        if gemv[0]["SPLIT_K"] > 1:
            gemv.insert(1, {**gemv[0], "SPLIT_K": 1})
        if gemv_first:
            cands = gemv + skinny[:2] + [CUBLAS]
        elif M <= 16:
            cands = skinny + gemv[:1] + [CUBLAS]
        else:
            cands = skinny + [CUBLAS]
    kept = []
    for c in cands:
        if keep_config(c, gated, elem_size) and c not in kept:
            kept.append(c)
    return kept


# ---------------------------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------------------------


@triton.jit
def _load_tile(ptrs, row_ok, k_ok, EVEN_K: tl.constexpr, EVICT: tl.constexpr):
    """A tile of x or w, zero outside the matrix. The row mask is loop-invariant; K needs a mask only when
    it is not a multiple of BLOCK_K."""
    if EVEN_K:
        tile = tl.load(ptrs, mask=row_ok, other=0.0, eviction_policy=EVICT)
    else:
        tile = tl.load(ptrs, mask=row_ok & k_ok, other=0.0, eviction_policy=EVICT)
    return tile


@triton.jit
def _first_step_ok(k_idx, limit, EVEN_K: tl.constexpr):
    """The K mask of the step that programmatic dependent launch peels off a GEMV's loop (k_idx: offsets within
    the step, limit: what is left of the split, ≤ 0 for an empty split). With EVEN_K every split holds whole steps,
    so the step is either all in range or empty: one predicate, uniform along K. A mask per element instead
    splits each 16-byte load into 4-byte ones (PTX: the int4 GEMV's 8 vector weight loads became 32 scalar ones,
    and a 1B layer's whole K is that one step)."""
    if EVEN_K:
        ok = tl.full(k_idx.shape, 0, tl.int32) < limit  # a splat: constant along K for Triton's axis analysis
    else:
        ok = k_idx < limit
    return ok


@triton.jit
def _dot(a, b, acc, FP32_IEEE: tl.constexpr):
    # fp32 operands: full fp32 like cuBLAS under torch's default; TF32 only where torch allows it
    if FP32_IEEE:
        acc = tl.dot(a, b, acc, input_precision="ieee")
    else:
        acc = tl.dot(a, b, acc)
    return acc


@triton.jit
def _epilogue(acc, acc_up, b_ptr, offs_n, N, HAS_BIAS: tl.constexpr, ACT: tl.constexpr, GATED: tl.constexpr):
    """act(acc + b[n]) [· (acc_up + b[N + n])] in fp32 for fp32 [rows, BLOCK_N] accumulators."""
    n_ok = offs_n < N
    if HAS_BIAS:
        acc += tl.load(b_ptr + offs_n, mask=n_ok, other=0.0).to(tl.float32)[None, :]
    out = apply_activation(acc, ACT)
    if GATED:
        if HAS_BIAS:
            acc_up += tl.load(b_ptr + N + offs_n, mask=n_ok, other=0.0).to(tl.float32)[None, :]
        out = out * acc_up
    return out


@triton.jit
def _write_back(acc, acc_up, offs_m, offs_n, pid_k, M, N, b_ptr, out_ptr, ws_ptr, stride_om, res_ptr, stride_rm,
                HAS_BIAS: tl.constexpr, ACT: tl.constexpr, GATED: tl.constexpr, SPLIT_K: tl.constexpr,
                HAS_RES: tl.constexpr):
    """Store the finished tile (plus the residual rows, when HAS_RES), or with split-K the raw partial sums into the
    workspace [SPLIT_K, M, N_w] (the residual is then added by ``_epilogue_kernel``)."""
    mask = (offs_m < M)[:, None] & (offs_n < N)[None, :]
    rows = offs_m.to(tl.int64)[:, None]
    if SPLIT_K > 1:
        if GATED:
            width = 2 * N
        else:
            width = N
        ws_ptrs = ws_ptr + (pid_k * M + rows) * width + offs_n[None, :]
        tl.store(ws_ptrs, acc, mask=mask)
        if GATED:
            tl.store(ws_ptrs + N, acc_up, mask=mask)
    else:
        out = _add_residual(_epilogue(acc, acc_up, b_ptr, offs_n, N, HAS_BIAS, ACT, GATED), res_ptr, rows, stride_rm,
                            offs_n, mask, HAS_RES)
        tl.store(out_ptr + rows * stride_om + offs_n[None, :], out.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _add_residual(out, res_ptr, rows, stride_rm, offs_n, mask, HAS_RES: tl.constexpr):
    """out [rows, BLOCK_N] fp32 plus the residual's rows (int64 [rows, 1]) and columns when HAS_RES."""
    if HAS_RES:
        out += tl.load(res_ptr + rows * stride_rm + offs_n[None, :], mask=mask, other=0.0).to(tl.float32)
    return out


@triton.jit
def _gemv_step(x, w, wu, acc, acc_up, squares, NORM: tl.constexpr, GATED: tl.constexpr):
    """One K step of the GEMV: products of x [BLOCK_M, 1, BLOCK_K] with the weight tiles [1, BLOCK_N, BLOCK_K]
    (gate and up when GATED) into the fp32 accumulators, and x² into ``squares`` when NORM."""
    x = x.to(tl.float32)
    if NORM:
        squares += x * x
    acc += x * w.to(tl.float32)
    if GATED:
        acc_up += x * wu.to(tl.float32)
    return acc, acc_up, squares


@triton.jit
def _gemv_kernel(
    # Pointers (res: the residual [M, N] when HAS_RES)
    x_ptr, w_ptr, b_ptr, out_ptr, ws_ptr, res_ptr,
    # Matrix dimensions (N: output columns; the weight has 2N rows when GATED) and the RMSNorm epsilon
    M, N, K, K_PER_SPLIT, eps,
    # Strides
    stride_xm, stride_xk, stride_wn, stride_wk, stride_om, stride_rm,
    # Meta-parameters
    HAS_BIAS: tl.constexpr, ACT: tl.constexpr, GATED: tl.constexpr, SPLIT_K: tl.constexpr,
    NORM: tl.constexpr, HAS_RES: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, EVEN_K: tl.constexpr, PDL: tl.constexpr,
    PDL_EARLY: tl.constexpr = False,
):
    """out[m, n] = epilogue(Σ_k x[m, k] · w[n, k]) [+ res[m, n]] on CUDA cores: no tensor-core minimum of 16
    rows, so at M = 1 no lane multiplies padding. acc[m, n, k] collects the products of the K positions k ≡ k'
    (mod BLOCK_K) and is reduced over its last axis only after the loop, so the loop has no cross-lane work.

    NORM (SPLIT_K = 1 only) projects x · rsqrt(mean(x²) + eps) without writing it (the norm's weight is folded
    into w's columns at compile time): the loop accumulates x² beside the products, and the row's rsqrt scales
    the sums after the loop (it is constant along K) — no separate norm kernel, no extra load in the loop."""
    if PDL_EARLY:  # pdl_early_trigger: the next kernel may launch now (else after the loop, below)
        pdl_launch_dependents(PDL)
    # -- map program ids to output columns, rows of x and a slice of K
    offs_m, offs_n, pid_k, k_start, k_end = _gemv_slice(K, K_PER_SPLIT, BLOCK_M, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    # -- create pointers as 3-D tiles, x [BLOCK_M, 1, BLOCK_K] and w [1, BLOCK_N, BLOCK_K], so that the loads
    # already have the accumulator's layout (row offsets in int64: an LM head can exceed 2^31 weights)
    m_ok = (offs_m < M)[:, None, None]
    n_ok = (offs_n < N)[None, :, None]
    k3 = (k_start + offs_k)[None, None, :]
    x_ptrs = x_ptr + offs_m.to(tl.int64)[:, None, None] * stride_xm + k3 * stride_xk
    w_ptrs = w_ptr + offs_n.to(tl.int64)[None, :, None] * stride_wn + k3 * stride_wk
    wu_ptrs = w_ptrs + tl.cast(N, tl.int64) * stride_wn
    # -- iterate over this split's K range; weights are streamed once, so they may leave L2 first
    acc = tl.zeros((BLOCK_M, BLOCK_N, BLOCK_K), dtype=tl.float32)
    acc_up = acc
    squares = tl.zeros((BLOCK_M, 1, BLOCK_K), dtype=tl.float32)
    k_loop = k_start
    if PDL:
        # the first step's weights are loaded before waiting for x (and the residual) from the kernels before, so
        # they stream while the kernel before drains; the step is then done outside the loop, in the same order.
        # Safe because no kernel of the graph writes a weight: accel routes only parameters and the tensors it
        # derives from them at compile time through this op.
        first_ok = _first_step_ok(offs_k[None, None, :], k_end - k_start, EVEN_K)  # this split may be empty
        w = tl.load(w_ptrs, mask=n_ok & first_ok, other=0.0, eviction_policy="evict_first")
        wu = w
        if GATED:
            wu = tl.load(wu_ptrs, mask=n_ok & first_ok, other=0.0, eviction_policy="evict_first")
        pdl_wait(PDL)
        x = tl.load(x_ptrs, mask=m_ok & first_ok, other=0.0)
        acc, acc_up, squares = _gemv_step(x, w, wu, acc, acc_up, squares, NORM, GATED)
        x_ptrs += BLOCK_K * stride_xk
        w_ptrs += BLOCK_K * stride_wk
        wu_ptrs += BLOCK_K * stride_wk
        k_loop += BLOCK_K
    for k in range(k_loop, k_end, BLOCK_K):
        k_ok = offs_k[None, None, :] < K - k
        x = _load_tile(x_ptrs, m_ok, k_ok, EVEN_K, "")
        w = _load_tile(w_ptrs, n_ok, k_ok, EVEN_K, "evict_first")
        wu = w
        if GATED:
            wu = _load_tile(wu_ptrs, n_ok, k_ok, EVEN_K, "evict_first")
            wu_ptrs += BLOCK_K * stride_wk
        acc, acc_up, squares = _gemv_step(x, w, wu, acc, acc_up, squares, NORM, GATED)
        x_ptrs += BLOCK_K * stride_xk
        w_ptrs += BLOCK_K * stride_wk
    if not PDL_EARLY:
        pdl_launch_dependents(PDL)  # the next kernel may set up and load its weights during this tail
    # -- normalize and write back
    acc_n = tl.sum(acc, axis=2)
    acc_up_n = tl.sum(acc_up, axis=2)
    if NORM:
        rstd = tl.rsqrt(tl.sum(squares, axis=2) / K + tl.cast(eps, tl.float32))  # [BLOCK_M, 1]; eps: fp64 under Inductor
        acc_n *= rstd
        acc_up_n *= rstd
    _write_back(acc_n, acc_up_n, offs_m, offs_n, pid_k, M, N, b_ptr, out_ptr, ws_ptr, stride_om, res_ptr, stride_rm,
                HAS_BIAS, ACT, GATED, SPLIT_K, HAS_RES)


@triton.jit
def _grouped_tile(M, N, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GROUP_M: tl.constexpr):
    """(row, column) of the output tile of program 0-axis id: GROUP_M rows of tiles are visited column by column,
    so a weight tile is still in L2 when the next row of tiles needs it."""
    pid = tl.program_id(0)
    per_group = GROUP_M * tl.cdiv(N, BLOCK_N)
    first_m = (pid // per_group) * GROUP_M
    rows_in_group = tl.minimum(tl.cdiv(M, BLOCK_M) - first_m, GROUP_M)
    return first_m + (pid % per_group) % rows_in_group, (pid % per_group) // rows_in_group


@triton.jit
def _gemv_slice(K, K_PER_SPLIT, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """(offs_m, offs_n, pid_k, k_start, k_end) of a GEMV program; grid (column blocks, K splits, row blocks)."""
    pid_k = tl.program_id(1)
    offs_m = tl.program_id(2) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    k_start = pid_k * K_PER_SPLIT
    return offs_m, offs_n, pid_k, k_start, tl.minimum(k_start + K_PER_SPLIT, K)


@triton.jit
def _dot_slice(M, N, K, K_PER_SPLIT, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GROUP_M: tl.constexpr):
    """(offs_m, offs_n, pid_k, k_start, k_end) of a tl.dot program: its tile in grouped order (``_grouped_tile``)
    on grid axis 0, its K split on axis 1."""
    pid_m, pid_n = _grouped_tile(M, N, BLOCK_M, BLOCK_N, GROUP_M)
    pid_k = tl.program_id(1)
    k_start = pid_k * K_PER_SPLIT
    return (pid_m * BLOCK_M + tl.arange(0, BLOCK_M), pid_n * BLOCK_N + tl.arange(0, BLOCK_N), pid_k, k_start,
            tl.minimum(k_start + K_PER_SPLIT, K))


@triton.jit
def _gemm_kernel(
    # Pointers (res: the residual [M, N] when HAS_RES)
    x_ptr, w_ptr, b_ptr, out_ptr, ws_ptr, res_ptr,
    # Matrix dimensions (N: output columns; the weight has 2N rows when GATED)
    M, N, K, K_PER_SPLIT,
    # Strides
    stride_xm, stride_xk, stride_wn, stride_wk, stride_om, stride_rm,
    # Meta-parameters
    HAS_BIAS: tl.constexpr, ACT: tl.constexpr, GATED: tl.constexpr, SPLIT_K: tl.constexpr, HAS_RES: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
    EVEN_K: tl.constexpr, FP32_IEEE: tl.constexpr,
):
    """out = epilogue(x wᵀ) with tl.dot on [BLOCK_M, BLOCK_N] tiles; when GATED the gate and up tiles of
    the same columns share each x tile. Skinny use: one row of tiles plus split-K; tiled use: GROUP_M rows of
    tiles are visited column by column, so their weight tiles are still in L2 when the next row needs them."""
    # -- map program ids to a tile (grouped ordering) and a slice of K
    offs_m, offs_n, pid_k, k_start, k_end = _dot_slice(M, N, K, K_PER_SPLIT, BLOCK_M, BLOCK_N, GROUP_M)
    offs_k = tl.arange(0, BLOCK_K)
    # -- create pointers: x tiles [BLOCK_M, BLOCK_K], wᵀ tiles [BLOCK_K, BLOCK_N] read through the strides
    m_ok = (offs_m < M)[:, None]
    n_ok = (offs_n < N)[None, :]
    x_ptrs = x_ptr + offs_m.to(tl.int64)[:, None] * stride_xm + (k_start + offs_k)[None, :] * stride_xk
    w_ptrs = w_ptr + offs_n.to(tl.int64)[None, :] * stride_wn + (k_start + offs_k)[:, None] * stride_wk
    wu_ptrs = w_ptrs + tl.cast(N, tl.int64) * stride_wn
    # -- iterate
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    acc_up = acc
    for k in range(k_start, k_end, BLOCK_K):
        x = _load_tile(x_ptrs, m_ok, offs_k[None, :] < K - k, EVEN_K, "")
        w = _load_tile(w_ptrs, n_ok, offs_k[:, None] < K - k, EVEN_K, "")
        acc = _dot(x, w, acc, FP32_IEEE)
        if GATED:
            w_up = _load_tile(wu_ptrs, n_ok, offs_k[:, None] < K - k, EVEN_K, "")
            acc_up = _dot(x, w_up, acc_up, FP32_IEEE)
            wu_ptrs += BLOCK_K * stride_wk
        x_ptrs += BLOCK_K * stride_xk
        w_ptrs += BLOCK_K * stride_wk
    # -- write back
    _write_back(acc, acc_up, offs_m, offs_n, pid_k, M, N, b_ptr, out_ptr, ws_ptr, stride_om, res_ptr, stride_rm,
                HAS_BIAS, ACT, GATED, SPLIT_K, HAS_RES)


@triton.jit
def _sum_splits(src_ptrs, stride_ss, N, mask, GATED: tl.constexpr, SPLITS: tl.constexpr, CACHE: tl.constexpr):
    """Σ_s src[s] (and the up half at +N when GATED) for one tile of the split-K workspace, in fp32 and in split
    order from 0, so that every path that reduces the workspace gives the same bits."""
    acc = tl.zeros(src_ptrs.shape, dtype=tl.float32)
    acc_up = acc
    for s in tl.static_range(SPLITS):
        acc += tl.load(src_ptrs + s * stride_ss, mask=mask, other=0.0, cache_modifier=CACHE).to(tl.float32)
        if GATED:
            acc_up += tl.load(src_ptrs + s * stride_ss + N, mask=mask, other=0.0, cache_modifier=CACHE).to(tl.float32)
    return acc, acc_up


@triton.jit
def _reduce_if_last(offs_m, offs_n, M, N, b_ptr, out_ptr, ws_ptr, stride_om, res_ptr, stride_rm, cnt_ptr,
                    HAS_BIAS: tl.constexpr, ACT: tl.constexpr, GATED: tl.constexpr, SPLIT_K: tl.constexpr,
                    HAS_RES: tl.constexpr):
    """Split-K without a second launch: call after this program stored its partial sums (``_write_back``).
    The programs of one output tile count themselves in at ``cnt_ptr`` (one int32 per tile, zero before the
    launch); the last to arrive sums the workspace as ``_epilogue_kernel`` would (same order, same bits),
    applies the epilogue and the residual, writes the tile and sets the count back to zero for the next launch.
    This is the serial split-K of CUTLASS's semaphore: a barrier so that the whole program's partials are
    issued, one acquire-release atomic (gpu scope) per program, and L2 reads (.cg) of the other programs'
    partials."""
    tl.debug_barrier()
    arrived = tl.atomic_add(cnt_ptr, 1, sem="acq_rel", scope="gpu")
    if arrived == SPLIT_K - 1:
        mask = (offs_m < M)[:, None] & (offs_n < N)[None, :]
        rows = offs_m.to(tl.int64)[:, None]
        width = N
        if GATED:
            width = 2 * N
        src_ptrs = ws_ptr + rows * width + offs_n[None, :]
        acc, acc_up = _sum_splits(src_ptrs, M * width, N, mask, GATED, SPLIT_K, ".cg")
        out = _add_residual(_epilogue(acc, acc_up, b_ptr, offs_n, N, HAS_BIAS, ACT, GATED), res_ptr, rows,
                            stride_rm, offs_n, mask, HAS_RES)
        tl.store(out_ptr + rows * stride_om + offs_n[None, :], out.to(out_ptr.dtype.element_ty), mask=mask)
        tl.atomic_xchg(cnt_ptr, 0, sem="relaxed", scope="gpu")


@triton.jit
def _epilogue_kernel(
    # Pointers
    src_ptr, b_ptr, out_ptr, res_ptr,
    # Matrix dimensions
    M, N,
    # Strides (src is [SPLITS, M, N_w] with unit column stride)
    stride_ss, stride_sm, stride_om, stride_rm,
    # Meta-parameters
    HAS_BIAS: tl.constexpr, ACT: tl.constexpr, GATED: tl.constexpr, SPLITS: tl.constexpr,
    HAS_RES: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """out[m, n] = epilogue(Σ_s src[s, m, n]) for one row and BLOCK_N columns. Two uses: the split-K
    reduction (fp32 partials, summed in split order, so results do not depend on scheduling) and, with
    SPLITS = 1, the act·mul after a cuBLAS GEMM (src = h [M, 2N] with the bias already added)."""
    offs_m = tl.program_id(0) + tl.arange(0, 1)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask = (offs_m < M)[:, None] & (offs_n < N)[None, :]
    src_ptrs = src_ptr + offs_m.to(tl.int64)[:, None] * stride_sm + offs_n[None, :]
    acc, acc_up = _sum_splits(src_ptrs, stride_ss, N, mask, GATED, SPLITS, "")
    rows = offs_m.to(tl.int64)[:, None]
    out = _add_residual(_epilogue(acc, acc_up, b_ptr, offs_n, N, HAS_BIAS, ACT, GATED), res_ptr, rows, stride_rm,
                        offs_n, mask, HAS_RES)
    out_ptrs = out_ptr + rows * stride_om + offs_n[None, :]
    tl.store(out_ptrs, out.to(out_ptr.dtype.element_ty), mask=mask)


# ---------------------------------------------------------------------------------------------------------
# Launchers
# ---------------------------------------------------------------------------------------------------------


def _alloc(shape, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # every output and workspace comes from here; the tests swap in a NaN-filled version to prove that
    # each element is written
    return torch.empty(shape, dtype=dtype, device=device)


def _launch_epilogue(src, bias, out, act: int, gated: bool, splits: int, residual=None) -> None:
    M, N = out.shape
    n = static_int(N)
    block_n = 1024 if n is None else min(1024, max(16, next_pow2(n)))
    wrap_triton(_epilogue_kernel)[(M, triton.cdiv(N, block_n))](
        src, bias if bias is not None else src, out,  # b_ptr is never read without a bias
        residual if residual is not None else src,
        M, N,
        src.stride(0) if src.dim() == 3 else 0, src.stride(-2), out.stride(0),
        residual.stride(0) if residual is not None else 0,
        HAS_BIAS=bias is not None, ACT=act, GATED=gated, SPLITS=splits, HAS_RES=residual is not None,
        BLOCK_N=block_n, num_warps=4,
    )


def fuses_norm(cfg: dict) -> bool:
    """Can ``cfg`` apply an RMSNorm to x in its prologue? The GEMV without split-K: each program sees whole rows."""
    return cfg["kernel"] == "gemv" and cfg["SPLIT_K"] == 1


def library_epilogue(h: torch.Tensor, act: int, gated: bool, residual: torch.Tensor | None) -> torch.Tensor:
    """A library matmul's output h [M, N_w] (bias added) through the rest of the epilogue: act(h) or act(gate)·up
    (N = N_w / 2), + residual, in one kernel where there is more than the residual to add."""
    if act == 0 and not gated:
        return h if residual is None else h + residual
    M, n_rows = h.shape
    out = _alloc((M, n_rows // 2 if gated else n_rows), h.dtype, h.device)
    _launch_epilogue(h, None, out, act, gated, 1, residual)
    return out


def launch(cfg: dict, x: torch.Tensor, w: torch.Tensor, bias, act: int, gated: bool, norm_eps: float | None = None,
           residual: torch.Tensor | None = None) -> torch.Tensor:
    """Run ``cfg`` for out [M, N] = epilogue(x' [M, K] · w [N_w, K]ᵀ) [+ residual], N_w = 2N when gated, where
    x' = ``reference.rms_norm(x, norm_eps)`` when ``norm_eps`` is given: (1) check, (2) allocate
    output and split-K workspace, (3) launch the matmul and, if needed, the epilogue kernel. The GEMV applies the
    norm in its prologue (``fuses_norm``); other configs normalize x first with torch ops (Inductor fuses them into
    one kernel). Every Triton config adds the residual in its epilogue; cuBLAS adds it after."""
    torch._check(x.dim() == 2 and w.dim() == 2, lambda: "linear: x and weight must be 2-D")
    torch._check(x.shape[1] == w.shape[1], lambda: f"linear: x {tuple(x.shape)} vs weight {tuple(w.shape)}")
    torch._check(x.dtype == w.dtype, lambda: f"linear: x is {x.dtype} but the weight is {w.dtype}")
    M, K = x.shape
    n_rows = w.shape[0]
    N = n_rows // 2 if gated else n_rows
    if bias is not None:
        torch._check(bias.dim() == 1 and bias.shape[0] == n_rows, lambda: "linear: bias must be [N_w]")
    if norm_eps is not None and not fuses_norm(cfg):
        x, norm_eps = reference.rms_norm(x, norm_eps), None
    if residual is not None:
        torch._check(residual.shape == (M, N) and residual.dtype == x.dtype,
                     lambda: f"linear: the residual must be [{M}, {N}] in {x.dtype}")
        if static_int(residual.stride(1)) != 1:
            residual = residual.contiguous()
    if cfg["kernel"] == "cublas":
        return library_epilogue(F.linear(x, w, bias), act, gated, residual)

    out = _alloc((M, N), x.dtype, x.device)
    split, block_k = cfg["SPLIT_K"], cfg["BLOCK_K"]
    # each split covers whole BLOCK_K steps (the last splits may be empty and store zero partials), so only
    # a K that is not a multiple of BLOCK_K needs masks
    k_per_split = triton.cdiv(triton.cdiv(K, split), block_k) * block_k
    k = static_int(K)
    even_k = k is not None and k % block_k == 0
    # unused pointer arguments get a read-only tensor: passing ``out`` twice would make it an aliased
    # input of the functionalized kernel and cost a copy in Inductor's reinplacing
    ws = _alloc((split, M, n_rows), torch.float32, x.device) if split > 1 else x
    res_in_kernel = residual if split == 1 else None  # with split-K the epilogue kernel adds it
    res_arg = res_in_kernel if res_in_kernel is not None else w
    stride_rm = res_in_kernel.stride(0) if res_in_kernel is not None else 0
    meta = dict(HAS_BIAS=bias is not None, ACT=act, GATED=gated, SPLIT_K=split, HAS_RES=res_in_kernel is not None,
                BLOCK_N=cfg["BLOCK_N"], BLOCK_K=block_k, EVEN_K=even_k, num_warps=cfg["num_warps"],
                num_stages=cfg["num_stages"])
    strides = (x.stride(0), x.stride(1), w.stride(0), w.stride(1), out.stride(0), stride_rm)
    b_arg = bias if bias is not None else w
    if cfg["kernel"] == "gemv":
        m = static_int(M)
        block_m = cfg.get("BLOCK_M") or (16 if m is None else min(next_pow2(m), 16))
        grid = (triton.cdiv(N, cfg["BLOCK_N"]), split, triton.cdiv(M, block_m))
        wrap_triton(_gemv_kernel)[grid](x, w, b_arg, out, ws, res_arg,
                                        M, N, K, k_per_split, norm_eps if norm_eps is not None else 0.0, *strides,
                                        NORM=norm_eps is not None, BLOCK_M=block_m, PDL=use_pdl(x.device),
                                        PDL_EARLY=early_trigger(x.device, grid, cfg["num_warps"], num_sms(x.device)),
                                        **meta)
    else:
        fp32_ieee = x.dtype == torch.float32 and not torch.backends.cuda.matmul.allow_tf32
        grid = (triton.cdiv(M, cfg["BLOCK_M"]) * triton.cdiv(N, cfg["BLOCK_N"]), split)
        wrap_triton(_gemm_kernel)[grid](x, w, b_arg, out, ws, res_arg, M, N, K, k_per_split, *strides,
                                        BLOCK_M=cfg["BLOCK_M"], GROUP_M=cfg["GROUP_M"], FP32_IEEE=fp32_ieee, **meta)
    if split > 1:
        _launch_epilogue(ws, bias, out, act, gated, split, residual)
    return out


# ---------------------------------------------------------------------------------------------------------
# Dispatch
# ---------------------------------------------------------------------------------------------------------


@functools.cache
def _sources() -> str:
    # everything that changes what a stored config means or how fast it runs
    return autotune_cache.source_hash(_gemv_kernel, _gemv_step, _first_step_ok, _gemm_kernel, _grouped_tile,
                                      _gemv_slice, _dot_slice, _epilogue_kernel, _sum_splits, _write_back,
                                      _add_residual, _epilogue, _load_tile, _dot, apply_activation, candidate_configs,
                                      _gemv_config, _gemm_config, _split_k, launch, fuses_norm, reference.rms_norm,
                                      # the candidate lists and the limits that prune them (as in qlinear._sources)
                                      GEMV_MAX_M, SKINNY_MAX_M, GEMV_TILES, GEMV_TILE_WIDE, SKINNY_TILES, TILED_TILES,
                                      ACC_REGS_PER_THREAD, SMEM_BYTES, MAX_SPLIT_K)


def _measurement_inputs(x, w, bias, norm: bool = False):
    """make_runner for ``tune``: random inputs with the real shapes, dtype and weight layout, made once; with
    ``norm`` the GEMVs are timed with their norm prologue."""
    made: dict = {}

    def make(cfg, act, gated):
        if not made:
            M, K = (int(s) for s in x.shape)
            n_rows = int(w.shape[0])
            transposed = w.stride(1) != 1
            wr = torch.randn((K, n_rows) if transposed else (n_rows, K), dtype=x.dtype, device=x.device)
            made["x"] = torch.randn(M, K, dtype=x.dtype, device=x.device)
            made["w"] = (wr.t() if transposed else wr) / math.sqrt(K)
            made["b"] = None if bias is None else torch.randn(n_rows, dtype=x.dtype, device=x.device)
        return lambda: launch(cfg, made["x"], made["w"], made["b"], act, gated, 1e-6 if norm else None)

    return make


def select_config(name: str, x: torch.Tensor, w: torch.Tensor, bias, act: int, gated: bool, norm: bool = False
                  ) -> dict:
    """The config for this call: cuBLAS for symbolic or empty shapes, else the fastest measured candidate on
    CUDA (cached per shape, dtype and weight layout), else the heuristic default. With ``norm`` (an RMSNorm to
    apply to x) the split-K GEMVs, which cannot fuse it, are left out and the GEMVs are timed with the norm."""
    M, n_rows, K = (static_int(s) for s in (x.shape[0], w.shape[0], x.shape[1]))
    if M is None or n_rows is None or K is None or min(M, n_rows, K) == 0:
        return CUBLAS
    N = n_rows // 2 if gated else n_rows
    k_major = static_int(w.stride(1)) == 1
    cands = candidate_configs(M, N, K, gated, x.element_size(), num_sms(x.device), k_major)
    if norm:
        cands = [c for c in cands if c["kernel"] != "gemv" or fuses_norm(c)] or cands
        name += ".norm"
    if x.device.type != "cuda":
        return cands[0]
    key = autotune_cache.make_key(name, _sources(), (M, N, K, bias is not None, k_major), x.dtype, x.device)
    make = _measurement_inputs(x, w, bias, norm)
    return autotune_cache.tune(key, cands, lambda cfg: make(cfg, act, gated), default=cands[0])


def linear(x2d: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, norm_eps: float | None = None,
           residual: torch.Tensor | None = None, *, _config: dict | None = None) -> torch.Tensor:
    """x2d [M, K] @ weight[N, K]ᵀ + bias[N] [+ residual [M, N]] -> [M, N] (contiguous, x's dtype), with x2d first
    RMS-normalized when ``norm_eps`` is given (``reference.rms_norm``; a norm weight is expected folded into
    ``weight``). ``_config`` forces a config (tests and benchmarks)."""
    cfg = _config if _config is not None else select_config("linear", x2d, weight, bias, 0, False,
                                                             norm_eps is not None)
    return launch(cfg, x2d, weight, bias, 0, False, norm_eps, residual)
