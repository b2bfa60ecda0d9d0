"""Flash attention for ``accel::attention``: a tiled prefill kernel and a split-KV decode kernel.

Dataflow: q, k, v, mask -> ``_attn_fwd_kernel`` -> out                                       (prefill)
          q, k, v, mask -> ``_attn_decode_kernel`` -> fp32 (max, sum, acc) per KV split
                        -> ``_attn_decode_reduce_kernel`` -> out                             (decode)

Both kernels share ``_attn_block``, which folds one BLOCK_N slice of keys into the running online-softmax
state (FlashAttention-2, arXiv 2307.08691): QKᵀ and PV on tensor cores with fp32 accumulation, exp2 with
scale·log2(e) folded in, P cast to V's dtype before the PV dot. With an additive mask the scores stay in
natural-log units and are multiplied by log2(e) only after the row max is subtracted: HF masks fp32 models
with finfo(fp32).min, and min·log2(e) overflows to -inf, which would turn a row masked entirely with min
(uniform softmax) into a fully masked row (zeros). Rows that see no key at all return 0, as SDPA does.

The decode kernel gives each program every query row of one KV group (GQA) and one contiguous chunk of
the keys, so K and V are read once per group; blocks that no row may attend are skipped before their K/V
loads, so decoding over a preallocated KV cache reads only the prefix its mask leaves visible.
Semantics and contract: ``accel.runtime.reference.attention``; notes in ``notes/attention-kernels.md``.
"""
from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from accel.runtime import autotune_cache, reference
from accel.runtime.kernels.utils import (ATTENTION, ATTENTION_PRE, next_pow2, num_sms, pdl_launch_dependents,
                                         pdl_launch_then_wait, pdl_wait, static_int, use_pdl, wrap_triton)

LOG2E = 1.4426950408889634  # 1/ln(2): exp(x) = exp2(x·log2(e))
MAX_HEAD_DIM = 256
DECODE_MAX_ROWS = 64  # GQA group × queries per KV group that the decode tile takes (see _use_decode)
MAX_SPLITS = 64  # the reduce kernel holds every split of a row in one tile
# a one-block rope_attention_append launch takes its ticket and cached rows before its PDL wait (PRE); False: after
PRELOAD = True

# ---------------------------------------------------------------------------------------------------------
# Configs. Each list starts with the heuristic default; the rest are measured by autotune_cache.tune. The
# defaults compile for sm_90 (triton 3.6 and 3.9) within 227 KB of smem and without register spills, except
# fp32 decode with 64 rows at D = 128 (a fp32 accumulator and Q of 64 × 128 do not fit).
# SKIP (only with a mask): 0 computes every key block; 1 predicates a block's K/V loads off when no row may
# attend any of its keys (no memory traffic, loop still software-pipelined); 2 also branches around the
# block's math (no work at all, but Triton then stops pipelining the K/V loads: no cp.async at all).


def _prefill_configs(head_dim: int, dtype: torch.dtype) -> list[dict]:
    """(BLOCK_M, BLOCK_N, num_warps, num_stages) candidates. BLOCK_M = 128 over two warpgroups halves K/V
    traffic per FLOP against 64; past D = 128 the fp32 accumulator needs smaller tiles. fp32 inputs use FMA
    dots (IEEE), whose operands live in registers, hence much smaller tiles."""
    if dtype == torch.float32:
        by_d = {64: [(32, 32, 4, 2), (64, 32, 8, 2)], 128: [(16, 64, 4, 2), (32, 64, 8, 2)],
                256: [(32, 32, 8, 2), (16, 32, 4, 2)]}
    else:
        by_d = {64: [(128, 64, 8, 3), (64, 64, 4, 3), (128, 64, 4, 3), (128, 128, 8, 2)],
                128: [(128, 64, 8, 3), (64, 64, 4, 3), (128, 32, 8, 3), (128, 128, 8, 2)],
                256: [(64, 32, 8, 2), (64, 64, 8, 2), (32, 32, 4, 2)]}
    tiles = by_d[64 if head_dim <= 64 else 128 if head_dim <= 128 else 256]
    return [dict(kernel="prefill", BLOCK_M=m, BLOCK_N=n, num_warps=w, num_stages=s, SKIP=0) for m, n, w, s in tiles]


def _decode_configs(head_dim: int, dtype: torch.dtype, rows: int) -> list[dict]:
    """Decode streams K/V: a BLOCK_N × D tile per stage (a quarter of the elements for fp32, whose FMA dots
    hold operands in registers), 3 stages in flight, and about ``waves`` programs per SM. SKIP = 1 by
    default: the math on a skipped block's zeros is free in a bandwidth-bound loop, losing pipelining is not."""
    n = max(16, min(64, (2048 if dtype == torch.float32 else 8192) // next_pow2(head_dim)))
    w = 4 if rows <= 32 else 8
    shapes = [(n, 3, 1, 2), (n, 3, 2, 2), (n, 3, 1, 4), (max(16, n // 2), 4, 1, 4)]
    if dtype != torch.float32:
        shapes.append((2 * n, 2, 1, 2))
    cfgs = [dict(kernel="decode", BLOCK_N=bn, num_warps=w, num_stages=st, SKIP=skip, waves=waves)
            for bn, st, skip, waves in shapes]
    # one split per KV head: fewer programs, but the kernel writes the output itself and the reduction launch goes
    # away; the tuner decides (on the 1B benchmark's cache it has not won: results/decode_1b_s4run*)
    return cfgs + [{**cfgs[0], "splits": 1}]


# ---------------------------------------------------------------------------------------------------------
# Kernels


@triton.jit
def _dot(a, b, acc, IEEE: tl.constexpr):
    # fp32 operands: IEEE keeps torch's default ("highest") fp32 matmul precision instead of TF32
    if IEEE:
        return tl.dot(a, b, acc, input_precision="ieee")
    else:
        return tl.dot(a, b, acc)


@triton.jit
def _exp2(x, NATURAL: tl.constexpr):
    """exp2 of a score difference; NATURAL differences (additive masks) are converted to log2 units first."""
    if NATURAL:
        x = x * 1.4426950408889634  # log2(e)
    return tl.exp2(x)


@triton.jit
def _attn_block(
    acc, l_i, m_i, q, q_pos, rows_ok,
    k_base, v_base, mask_rows, start_n, n_end,
    stride_kn, stride_kd, stride_vn, stride_vd, stride_mn,
    sm_scale, qk_scale,
    HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    EDGE: tl.constexpr, IS_CAUSAL: tl.constexpr, MASK_KIND: tl.constexpr, SKIP: tl.constexpr,
    IEEE: tl.constexpr,
):
    """Fold keys [start_n, start_n + BLOCK_N) into the running (acc, l_i, m_i) of every row of ``q``.

    m_i is the row max of the scores, l_i = Σ exp(s - m_i), acc = Σ exp(s - m_i) v. EDGE blocks may cross
    ``n_end`` or the causal diagonal (row r sees key j iff j <= q_pos[r]); interior blocks skip those checks.
    MASK_KIND: 0 none, 1 bool (True = attend), 2 additive (any float dtype, added in fp32).
    """
    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    n_ok = offs_n < n_end
    d_ok = offs_d < HEAD_DIM
    k_mask = d_ok[:, None]
    v_mask = d_ok[None, :]
    if EDGE:
        k_mask = k_mask & n_ok[None, :]
        v_mask = v_mask & n_ok[:, None]
    keep, bias = _block_keep(q_pos, rows_ok, mask_rows, offs_n, n_ok, stride_mn, EDGE, IS_CAUSAL, MASK_KIND)
    if MASK_KIND != 0:
        if SKIP != 0:
            # one scalar per block: may any row attend any key of it? If not, its K/V are never read
            block_seen = tl.max(tl.where(keep, 1, 0)) > 0
            # (where, not &: the interpreter gives `tensor & 0-d tensor` an int32 payload that tl.load rejects)
            k_mask = tl.where(block_seen, k_mask, False)
            v_mask = tl.where(block_seen, v_mask, False)

    # K/V loads stay outside any branch so that Triton software-pipelines them (cp.async); a predicated-off
    # load issues no memory traffic
    k = tl.load(k_base + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd, mask=k_mask, other=0.0)
    v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd, mask=v_mask, other=0.0)
    if SKIP == 2:
        if block_seen:
            acc, l_i, m_i = _attn_update(acc, l_i, m_i, q, k, v, keep, bias, sm_scale, qk_scale, EDGE, MASK_KIND, IEEE)
    else:
        acc, l_i, m_i = _attn_update(acc, l_i, m_i, q, k, v, keep, bias, sm_scale, qk_scale, EDGE, MASK_KIND, IEEE)
    return acc, l_i, m_i


@triton.jit
def _block_keep(q_pos, rows_ok, mask_rows, offs_n, n_ok, stride_mn,
                EDGE: tl.constexpr, IS_CAUSAL: tl.constexpr, MASK_KIND: tl.constexpr):
    """(keep, bias) of a key block: the (row, key) pairs that may attend, [ROWS, BLOCK_N] once a key condition is
    added, and the additive mask's fp32 values (0.0 unless MASK_KIND is 2)."""
    keep = rows_ok[:, None]
    if EDGE:
        keep = keep & n_ok[None, :]
        if IS_CAUSAL:
            keep = keep & (offs_n[None, :] <= q_pos[:, None])
    bias = 0.0
    if MASK_KIND != 0:
        mv = tl.load(mask_rows[:, None] + offs_n[None, :] * stride_mn, mask=rows_ok[:, None] & n_ok[None, :], other=0)
        if MASK_KIND == 1:
            keep = keep & (mv != 0)
        else:
            bias = mv.to(tl.float32)
            keep = keep & (bias != float("-inf"))
    return keep, bias


@triton.jit
def _attn_update(
    acc, l_i, m_i, q, k, v, keep, bias, sm_scale, qk_scale,
    EDGE: tl.constexpr, MASK_KIND: tl.constexpr, IEEE: tl.constexpr,
):
    """The online-softmax step of ``_attn_block``: score, rescale the running state, accumulate PV."""
    qk = _dot(q, k, tl.zeros((q.shape[0], k.shape[1]), dtype=tl.float32), IEEE)
    if MASK_KIND == 2:
        s = qk * sm_scale + bias  # natural-log units (module docstring)
    else:
        s = qk * qk_scale  # log2 units
    if EDGE:
        s = tl.where(keep, s, float("-inf"))
    elif MASK_KIND == 1:
        s = tl.where(keep, s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 1))
    # a row that has seen no key yet keeps m = -inf; subtract 0 instead so that exp2(-inf - -inf) is not NaN
    m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
    alpha = _exp2(m_i - m_use, MASK_KIND == 2)
    p = _exp2(s - m_use[:, None], MASK_KIND == 2)
    l_i = l_i * alpha + tl.sum(p, 1)
    # P in V's dtype for the tensor-core PV dot, as FlashAttention does (a no-op for fp32)
    acc = _dot(p.to(v.dtype), v, acc * alpha[:, None], IEEE)
    return acc, l_i, m_new


@triton.jit
def _attn_fwd_kernel(
    # Pointers
    Q, K, V, Mask, Out,
    # Matrix dimensions
    Hq, GROUP, Sq, Skv,
    # Strides
    stride_qb, stride_qh, stride_qm, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_mb, stride_mh, stride_mm, stride_mn,
    stride_ob, stride_oh, stride_om, stride_od,
    # Scale of q·k in natural-log and in log2 units
    sm_scale, qk_scale,
    # Meta-parameters
    HEAD_DIM: tl.constexpr, IS_CAUSAL: tl.constexpr, MASK_KIND: tl.constexpr, SKIP: tl.constexpr,
    IEEE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """out[b, h, i] = softmax_j(q_i·k_j·scale + mask_ij) v_j for BLOCK_M queries i of one (b, h)."""
    # Inductor hands Python floats to user kernels as fp64 scalars: keep the softmax math (and acc) in fp32
    sm_scale, qk_scale = tl.cast(sm_scale, tl.float32), tl.cast(qk_scale, tl.float32)
    # -- map pid to block; query head h reads KV head h // GROUP
    start_m = tl.program_id(0) * BLOCK_M
    bh = tl.program_id(1)
    b = (bh // Hq).to(tl.int64)  # int64: batch offsets into a KV cache can pass 2^31 elements
    h = (bh % Hq).to(tl.int64)
    kvh = h // GROUP

    # -- create pointers
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    rows_ok = offs_m < Sq
    q_ptrs = Q + b * stride_qb + h * stride_qh + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd
    q = tl.load(q_ptrs, mask=rows_ok[:, None] & (offs_d < HEAD_DIM)[None, :], other=0.0)
    k_base = K + b * stride_kb + kvh * stride_kh
    v_base = V + b * stride_vb + kvh * stride_vh
    mask_rows = Mask + b * stride_mb + h * stride_mh + offs_m * stride_mm

    # -- iterate: interior blocks lie below the diagonal and inside Skv, so they need no bounds checks
    hi = Skv
    interior_end = Skv
    if IS_CAUSAL:
        hi = tl.minimum(Skv, start_m + BLOCK_M)
        interior_end = tl.minimum(Skv, start_m + 1)
    interior_end = interior_end // BLOCK_N * BLOCK_N
    m_i = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)
    l_i = tl.zeros((BLOCK_M,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_M, BLOCK_D), dtype=tl.float32)
    for start_n in range(0, interior_end, BLOCK_N):
        acc, l_i, m_i = _attn_block(
            acc, l_i, m_i, q, offs_m, rows_ok, k_base, v_base, mask_rows, start_n, Skv,
            stride_kn, stride_kd, stride_vn, stride_vd, stride_mn, sm_scale, qk_scale,
            HEAD_DIM, BLOCK_N, BLOCK_D, False, IS_CAUSAL, MASK_KIND, SKIP, IEEE,
        )
    for start_n in range(interior_end, hi, BLOCK_N):
        acc, l_i, m_i = _attn_block(
            acc, l_i, m_i, q, offs_m, rows_ok, k_base, v_base, mask_rows, start_n, Skv,
            stride_kn, stride_kd, stride_vn, stride_vd, stride_mn, sm_scale, qk_scale,
            HEAD_DIM, BLOCK_N, BLOCK_D, True, IS_CAUSAL, MASK_KIND, SKIP, IEEE,
        )

    # -- write back; l = 0 only for rows that see no key, which SDPA defines as 0
    out = acc / tl.where(l_i == 0.0, 1.0, l_i)[:, None]
    o_ptrs = Out + b * stride_ob + h * stride_oh + offs_m[:, None] * stride_om + offs_d[None, :] * stride_od
    tl.store(o_ptrs, out.to(Out.dtype.element_ty), mask=rows_ok[:, None] & (offs_d < HEAD_DIM)[None, :])


@triton.jit
def _rope_load(ptrs, offs_d, stride_d, mask, cos, sin, HEAD_DIM: tl.constexpr):
    """Rows at ``ptrs`` (pointer tiles along ``offs_d``) rotated as ``reference.rope`` does, in fp32: element d
    takes x_d·cos_d − x_(d+D/2)·sin_d in the first half and x_d·cos_d + x_(d−D/2)·sin_d in the second."""
    half = HEAD_DIM // 2
    first = offs_d < half
    partner = tl.where(first, offs_d + half, offs_d - half)
    x = tl.load(ptrs, mask=mask, other=0.0).to(tl.float32)
    xp = tl.load(ptrs + (partner - offs_d) * stride_d, mask=mask, other=0.0).to(tl.float32)
    return x * cos + tl.where(first, -xp, xp) * sin


@triton.jit
def _ticket(Len):
    """A one-split launch's read of its int64 counter: each program adds a ticket of 1 << 32 (relaxed: only the
    atomics' own order on Len matters), the row is Len's low 32 bits, and the program that draws the last ticket
    (every program has read Len then) sets Len to row + 1."""
    seen = tl.atomic_add(Len, 4294967296, sem="relaxed")  # 1 << 32 (an int64 literal)
    tickets = seen >> 32
    row = seen - (tickets << 32)
    if tickets == tl.num_programs(0) - 1:
        tl.atomic_xchg(Len, row + 1, sem="relaxed")
    return row


@triton.jit
def _attn_decode_kernel(
    # Pointers (PartAcc [B·Hkv, NUM_SPLITS, ROWS, HEAD_DIM], PartMax / PartSum [B·Hkv, NUM_SPLITS, ROWS]; with
    # APPEND, Knew / Vnew [B, Hkv, 1, D] the new token's k and v, Cos / Sin [B, 1, 1, D], Len the cache's counter)
    Q, K, V, Mask, PartAcc, PartMax, PartSum, Out, Knew, Vnew, Cos, Sin, Len,
    # Matrix dimensions
    Hkv, Skv, NUM_SPLITS,
    # Strides
    stride_qb, stride_qh, stride_qm, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_mb, stride_mh, stride_mm, stride_mn,
    stride_ob, stride_oh, stride_om, stride_od,
    stride_knb, stride_knh, stride_vnb, stride_vnh, stride_cb, stride_sb,
    # Scale of q·k in natural-log and in log2 units
    sm_scale, qk_scale,
    # Meta-parameters
    GROUP: tl.constexpr, SQ: tl.constexpr, HEAD_DIM: tl.constexpr, IS_CAUSAL: tl.constexpr,
    MASK_KIND: tl.constexpr, SKIP: tl.constexpr, IEEE: tl.constexpr, DIRECT: tl.constexpr, APPEND: tl.constexpr,
    PRE: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, PDL: tl.constexpr,
):
    """Unnormalized attention of the GROUP·SQ query rows of KV head (b, kvh) over one contiguous key chunk.

    Row r is query r % SQ of head kvh·GROUP + r // SQ, so one K/V read serves the whole GQA group. DIRECT (one
    split, the whole key range) normalizes and writes Out itself; no reduction kernel follows.

    APPEND (SQ = 1, one new token a sequence; ``rope_attention_append``): Q, Knew and Vnew are the projection's
    unrotated q, k and v. Every program rotates q as it loads it; the one program whose chunk holds row ``Len`` of
    the cache writes the rotated k and v there before its key loop reads that chunk. The reduction kernel advances
    Len once every program has read it; with DIRECT (no reduction kernel; an int64 Len) each program reads Len by
    adding a ticket, one in its high 32 bits, and the program that draws the last ticket sets it to row + 1.

    PRE (DIRECT and APPEND with the whole key range in one block): the ticket and the block's cached rows are
    loaded before the PDL wait, so that only q, the new k and v, the mask and the sums wait on the kernel before;
    the new row goes into the registers as it is stored. Safe because nothing else writes Len or this layer's
    caches during a step, and this kernel's previous launch (the step before) has ended: with PDL, PRE is used only
    under CUDA graphs, whose replay starts once the one before has ended (a chain of PDL launches alone would not
    order the two: a launch waits only for the one before it to trigger); without PDL, the launch itself waits.
    """
    if not PRE:
        pdl_launch_then_wait(PDL)  # few programs; q, the caches and the mask come from earlier kernels
    sm_scale, qk_scale = tl.cast(sm_scale, tl.float32), tl.cast(qk_scale, tl.float32)  # fp64 under Inductor (see above)
    # -- map pid to block
    bk = tl.program_id(0)
    split = tl.program_id(1)
    b = (bk // Hkv).to(tl.int64)
    kvh = (bk % Hkv).to(tl.int64)
    rows = tl.arange(0, BLOCK_R)
    rows_ok = rows < GROUP * SQ
    h = kvh * GROUP + rows // SQ
    q_pos = rows % SQ

    # -- create pointers
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < HEAD_DIM
    q_ptrs = Q + b * stride_qb + h[:, None] * stride_qh + q_pos[:, None] * stride_qm + offs_d[None, :] * stride_qd
    k_base = K + b * stride_kb + kvh * stride_kh
    v_base = V + b * stride_vb + kvh * stride_vh
    mask_rows = Mask + b * stride_mb + h * stride_mh + q_pos * stride_mm

    # -- iterate over this split's chunk; with is_causal no row sees a key at or past SQ (top-left aligned)
    kv_len = Skv
    if IS_CAUSAL:
        kv_len = tl.minimum(Skv, SQ)
    chunk = tl.cdiv(tl.cdiv(kv_len, BLOCK_N), NUM_SPLITS) * BLOCK_N
    lo = split * chunk
    hi = tl.minimum(lo + chunk, kv_len)
    if PRE:
        # the ticket and the cached rows before the PDL wait: this kernel is the only writer of Len and of the
        # caches, and its launch in the step before has ended (tests/runtime/sm90_compile.py checks the order)
        pdl_launch_dependents(PDL)
        row = _ticket(Len)
        offs_n = tl.arange(0, BLOCK_N)
        n_ok = offs_n < hi
        old = n_ok & (offs_n != row)  # the block's rows but the new one (written below, patched in registers)
        k_old = tl.load(k_base + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd,
                        mask=d_ok[:, None] & old[None, :], other=0.0)
        v_old = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd,
                        mask=old[:, None] & d_ok[None, :], other=0.0)
        pdl_wait(PDL)
    if APPEND:
        cos = tl.load(Cos + b * stride_cb + offs_d, mask=d_ok, other=0.0).to(tl.float32)
        sin = tl.load(Sin + b * stride_sb + offs_d, mask=d_ok, other=0.0).to(tl.float32)
        q = _rope_load(q_ptrs, offs_d, stride_qd, rows_ok[:, None] & d_ok[None, :], cos[None, :], sin[None, :],
                       HEAD_DIM).to(Q.dtype.element_ty)
        # the new token's k and v, loaded before Len is read: a plain read of it overlaps them; a ticket's atomic, whose
        # result Triton hands to the threads through a barrier, would hold them back if it came first (notes)
        k_new = _rope_load(Knew + b * stride_knb + kvh * stride_knh + offs_d, offs_d, 1, d_ok, cos, sin, HEAD_DIM)
        v_new = tl.load(Vnew + b * stride_vnb + kvh * stride_vnh + offs_d, mask=d_ok)
        if PRE:
            pass  # the row was drawn before the wait
        elif DIRECT:
            row = _ticket(Len)
        else:
            row = tl.load(Len).to(tl.int64)
        if (row >= lo) & (row < hi):  # this program's chunk holds the new token's row (with DIRECT, every program's)
            tl.store(k_base + row * stride_kn + offs_d * stride_kd, k_new.to(K.dtype.element_ty), mask=d_ok)
            tl.store(v_base + row * stride_vn + offs_d * stride_vd, v_new, mask=d_ok)
        if not PRE:
            tl.debug_barrier()  # the row is in memory before any thread of this program loads its block
    else:
        q = tl.load(q_ptrs, mask=rows_ok[:, None] & d_ok[None, :], other=0.0)
    m_i = tl.full((BLOCK_R,), float("-inf"), dtype=tl.float32)
    l_i = tl.zeros((BLOCK_R,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_R, BLOCK_D), dtype=tl.float32)
    if PRE:  # the one block, its new row from registers as it was stored (a block no row sees adds nothing)
        is_new = offs_n == row
        k = tl.where(is_new[None, :], k_new.to(K.dtype.element_ty)[:, None], k_old)
        v = tl.where(is_new[:, None], v_new.to(V.dtype.element_ty)[None, :], v_old)
        keep, bias = _block_keep(q_pos, rows_ok, mask_rows, offs_n, n_ok, stride_mn, True, IS_CAUSAL, MASK_KIND)
        acc, l_i, m_i = _attn_update(acc, l_i, m_i, q, k, v, keep, bias, sm_scale, qk_scale, True, MASK_KIND, IEEE)
    else:
        for start_n in range(lo, hi, BLOCK_N):
            acc, l_i, m_i = _attn_block(
                acc, l_i, m_i, q, q_pos, rows_ok, k_base, v_base, mask_rows, start_n, hi,
                stride_kn, stride_kd, stride_vn, stride_vd, stride_mn, sm_scale, qk_scale,
                HEAD_DIM, BLOCK_N, BLOCK_D, True, IS_CAUSAL, MASK_KIND, SKIP, IEEE,
            )

    if DIRECT:  # -- normalize and write back (a row that sees no key has acc = 0, l = 0: it stays 0, as in SDPA)
        out = acc / tl.where(l_i == 0.0, 1.0, l_i)[:, None]
        o_ptrs = Out + b * stride_ob + h[:, None] * stride_oh + q_pos[:, None] * stride_om + offs_d[None, :] * stride_od
        tl.store(o_ptrs, out.to(Out.dtype.element_ty), mask=rows_ok[:, None] & d_ok[None, :])
    else:  # -- write back the split's partial state (an empty split writes m = -inf, l = 0, acc = 0)
        part = (bk * NUM_SPLITS + split).to(tl.int64) * (GROUP * SQ) + rows
        tl.store(PartMax + part, m_i, mask=rows_ok)
        tl.store(PartSum + part, l_i, mask=rows_ok)
        tl.store(PartAcc + part[:, None] * HEAD_DIM + offs_d[None, :], acc, mask=rows_ok[:, None] & d_ok[None, :])


@triton.jit
def _attn_decode_reduce_kernel(
    # Pointers (Len: the cache's counter, advanced by one with ADVANCE)
    PartAcc, PartMax, PartSum, Out, Len,
    # Matrix dimensions
    Hkv, NUM_SPLITS,
    # Strides
    stride_ob, stride_oh, stride_om, stride_od,
    # Meta-parameters
    GROUP: tl.constexpr, SQ: tl.constexpr, HEAD_DIM: tl.constexpr, NATURAL: tl.constexpr, ADVANCE: tl.constexpr,
    BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr, PDL: tl.constexpr,
):
    """out = Σ_s w_s acc_s / Σ_s w_s l_s with w_s = exp(m_s - max_s m_s), for one query row (bk, r)."""
    pdl_launch_then_wait(PDL)  # with PDL too, every program of the split kernel has ended (and read Len) here
    bk = tl.program_id(0)
    r = tl.program_id(1)
    if ADVANCE:
        if (bk == 0) & (r == 0):
            tl.store(Len, tl.load(Len) + 1)
    b = (bk // Hkv).to(tl.int64)
    h = (bk % Hkv).to(tl.int64) * GROUP + r // SQ
    offs_s = tl.arange(0, BLOCK_S)
    offs_d = tl.arange(0, BLOCK_D)
    s_ok = offs_s < NUM_SPLITS
    d_ok = offs_d < HEAD_DIM

    part = (bk * NUM_SPLITS + offs_s).to(tl.int64) * (GROUP * SQ) + r
    m_s = tl.load(PartMax + part, mask=s_ok, other=float("-inf"))
    l_s = tl.load(PartSum + part, mask=s_ok, other=0.0)
    m = tl.max(m_s, 0)
    w = _exp2(m_s - tl.where(m == float("-inf"), 0.0, m), NATURAL)
    l_sum = tl.sum(w * l_s, 0)
    acc = tl.load(PartAcc + part[:, None] * HEAD_DIM + offs_d[None, :], mask=s_ok[:, None] & d_ok[None, :], other=0.0)
    out = tl.sum(acc * w[:, None], 0) / tl.where(l_sum == 0.0, 1.0, l_sum)

    o_ptrs = Out + b * stride_ob + h * stride_oh + (r % SQ) * stride_om + offs_d * stride_od
    tl.store(o_ptrs, out.to(Out.dtype.element_ty), mask=d_ok)


_KERNELS = (_dot, _exp2, _attn_block, _block_keep, _attn_update, _attn_fwd_kernel, _rope_load, _ticket,
            _attn_decode_kernel, _attn_decode_reduce_kernel)

# ---------------------------------------------------------------------------------------------------------
# Launchers: check, allocate, launch. They run at trace time too (fake tensors, maybe symbolic sizes), so
# they branch on sizes only through static_int and allocate with torch.empty.


def attention(q, k, v, mask, scale: float, is_causal: bool) -> torch.Tensor:
    """softmax(q kᵀ · scale + mask) v with SDPA semantics (``reference.attention``), in layout [B, Sq, Hq, D].

    The kernel comes from ``_select``: measured per shape when every size is static on CUDA, else the
    heuristic default (decode for a small static GQA group × Sq, prefill otherwise).
    """
    _check(q, k, v, mask)
    if static_int(q.shape[-1]) is None or static_int(q.shape[-1]) > MAX_HEAD_DIM:
        return reference.attention(q, k, v, mask, scale, is_causal)  # no tile size for this head dim
    return _run(_select(q, k, v, mask, is_causal), q, k, v, mask, scale, is_causal)


def rope_attention_append(q, k, v, cos, sin, k_cache, v_cache, length, mask, scale: float) -> torch.Tensor:
    """``rope.rope_kv_append`` then ``attention(rope(q), k_cache, v_cache, mask, scale, False)`` for one new token
    a sequence (``reference.rope_attention_append``). Where the selected config is the split-KV decode kernel, both
    go into its launches: the RoPE / cache-write launch goes away, also with one split (one launch in all) where the
    length counter is int64. Otherwise (one split with another counter dtype, the prefill kernel, SDPA) the two run
    as they would unfused."""
    _check(q, k_cache, v_cache, mask)
    torch._check(q.shape[2] == 1, lambda: f"rope_attention_append: one new token a sequence, got {q.shape[2]}")
    cfg = None
    if static_int(q.shape[-1]) is not None and static_int(q.shape[-1]) <= MAX_HEAD_DIM:
        cfg = _select(q, k_cache, v_cache, mask, False, append_ticketed=_ticketed(length))
    from accel.runtime.kernels import rope as kr

    if cfg is not None and _append_candidates([cfg], q, k_cache, False, _ticketed(length)):
        return _decode(q, k_cache, v_cache, mask, scale, False, cfg, append=(k, v, cos, sin, length))
    q_rot = kr.rope_kv_append(q, k, v, cos, sin, k_cache, v_cache, length)
    return attention(q_rot, k_cache, v_cache, mask, scale, False)


def _check(q, k, v, mask) -> None:
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(f"attention: q, k, v must be [B, H, S, D], got {q.shape}, {k.shape}, {v.shape}")
    if not (q.dtype == k.dtype == v.dtype) or q.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise ValueError(f"attention: q, k, v must share one of fp16/bf16/fp32, got {q.dtype}, {k.dtype}, {v.dtype}")
    hq, hkv = static_int(q.shape[1]), static_int(k.shape[1])
    if hq is not None and hkv is not None and hq % hkv != 0:
        raise ValueError(f"attention: {hq} query heads are not a multiple of {hkv} KV heads")
    if mask is not None and (mask.dim() > 4 or not (mask.dtype == torch.bool or mask.dtype.is_floating_point)):
        raise ValueError(f"attention: mask must be bool or float of rank <= 4, got {mask.dtype} {tuple(mask.shape)}")


def _run(cfg: dict, q, k, v, mask, scale, is_causal) -> torch.Tensor:
    if cfg["kernel"] == "sdpa":
        return reference.attention(q, k, v, mask, scale, is_causal)
    if cfg["kernel"] == "decode":
        return _decode(q, k, v, mask, scale, is_causal, cfg)
    return _prefill(q, k, v, mask, scale, is_causal, cfg)


def _empty_out(q) -> torch.Tensor:
    """[B, Hq, Sq, D] stored as [B, Sq, Hq, D], so the model's transpose(1, 2).reshape(B, Sq, Hq·D) is free."""
    b, hq, sq, d = q.shape
    return torch.empty((b, sq, hq, d), dtype=q.dtype, device=q.device).transpose(1, 2)


def _mask_args(mask, q, k) -> tuple:
    """(tensor, 4 strides, MASK_KIND) with the mask broadcast to [B, Hq, Sq, Skv] by stride 0, never copied.

    A rank-4 mask is handed to the kernel as it is, with stride 0 on its size-1 dims, rather than as an expand
    of it: Inductor realizes an input it gets as a fresh view of an unrealized mask once per attention, so an
    HF decoder's one shared causal mask would be recomputed by a kernel per layer."""
    if mask is None:
        return q, (0, 0, 0, 0), 0  # any tensor: MASK_KIND = 0 never loads it
    kind = 1 if mask.dtype == torch.bool else 2
    if mask.dim() == 4:
        return mask, tuple(0 if n == 1 else st for n, st in zip(mask.shape, mask.stride())), kind
    full = mask.expand(q.shape[0], q.shape[1], q.shape[2], k.shape[2])
    return full, tuple(full.stride()), kind


def _ieee(q) -> bool:
    return q.dtype == torch.float32 and torch.get_float32_matmul_precision() == "highest"


def _block_d(d: int) -> int:
    return max(16, next_pow2(d))  # tl.dot needs every tile dimension >= 16


def _prefill(q, k, v, mask, scale, is_causal, cfg: dict | None = None) -> torch.Tensor:
    """The tiled flash-attention kernel; ``cfg`` (BLOCK_M, BLOCK_N, num_warps, num_stages, SKIP) overrides."""
    cfg = cfg or _fit_tiles(_prefill_configs(q.shape[-1], q.dtype)[0], q, k)
    b, hq, sq, d = q.shape
    out = _empty_out(q)
    mask_t, mask_strides, mask_kind = _mask_args(mask, q, k)
    grid = (triton.cdiv(sq, cfg["BLOCK_M"]), b * hq)
    wrap_triton(_attn_fwd_kernel)[grid](
        q, k, v, mask_t, out,
        hq, hq // k.shape[1], sq, k.shape[2],
        *q.stride(), *k.stride(), *v.stride(), *mask_strides, *out.stride(),
        scale, scale * LOG2E,
        HEAD_DIM=d, IS_CAUSAL=is_causal, MASK_KIND=mask_kind, SKIP=cfg["SKIP"] if mask_kind else 0,
        IEEE=_ieee(q), BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], BLOCK_D=_block_d(d),
        num_warps=cfg["num_warps"], num_stages=cfg["num_stages"],
    )
    return out


def _decode(q, k, v, mask, scale, is_causal, cfg: dict | None = None, append: tuple | None = None) -> torch.Tensor:
    """Split-KV decode: ``cfg`` (BLOCK_N, num_warps, num_stages, SKIP, waves, optional splits) overrides.
    ``append`` = (k_new, v_new, cos, sin, length) makes it ``rope_attention_append``'s kernels (with one split the
    length must be int64: ``_ticketed``; cos / sin as ``rope.rope_inputs`` takes them): q is unrotated and the
    caches get the new token's row."""
    b, hq, sq, d = q.shape
    hkv, skv = k.shape[1], k.shape[2]
    group, sq = static_int(hq) // static_int(hkv), static_int(sq)  # static by _use_decode
    rows = group * sq
    cfg = cfg or _decode_configs(d, q.dtype, rows)[0]
    splits = _decode_splits(q, k, is_causal, cfg)
    direct = splits == 1
    if append is not None and direct and not _ticketed(append[4]):
        raise ValueError("rope_attention_append's launches with one split need an int64 length counter (its "
                         f"programs take tickets in its high bits), got {append[4].dtype}")
    parts = 0 if direct else splits  # a direct launch never touches the partial-state buffers
    part_acc = torch.empty((b * hkv, parts, rows, d), dtype=torch.float32, device=q.device)
    part_max = torch.empty((b * hkv, parts, rows), dtype=torch.float32, device=q.device)
    part_sum = torch.empty((b * hkv, parts, rows), dtype=torch.float32, device=q.device)
    out = _empty_out(q)
    mask_t, mask_strides, mask_kind = _mask_args(mask, q, k)
    block_d = _block_d(d)
    pdl = use_pdl(q.device, ATTENTION)
    if append is None:
        k_new = v_new = cos = sin = length = q  # any tensors: APPEND = False never loads them
        new_strides = (0,) * 6
    else:
        from accel.runtime.kernels import rope as kr

        k_new, v_new, cos, sin, length = append
        (cos_b, _), (sin_b, _) = kr.rope_inputs("rope_attention_append", q, cos, sin, k=k_new, v=v_new)
        new_strides = (k_new.stride(0), k_new.stride(1), v_new.stride(0), v_new.stride(1), cos_b, sin_b)

    wrap_triton(_attn_decode_kernel)[(b * hkv, splits)](
        q, k, v, mask_t, part_acc, part_max, part_sum, out, k_new, v_new, cos, sin, length,
        hkv, skv, splits,
        *q.stride(), *k.stride(), *v.stride(), *mask_strides, *out.stride(), *new_strides,
        scale, scale * LOG2E,
        GROUP=group, SQ=sq, HEAD_DIM=d, IS_CAUSAL=is_causal, MASK_KIND=mask_kind,
        SKIP=cfg["SKIP"] if mask_kind else 0, IEEE=_ieee(q), DIRECT=direct, APPEND=append is not None,
        PRE=append is not None and _preloads(q, k, is_causal, cfg, splits),
        BLOCK_R=max(16, next_pow2(rows)), BLOCK_N=cfg["BLOCK_N"], BLOCK_D=block_d, PDL=pdl,
        num_warps=cfg["num_warps"], num_stages=cfg["num_stages"],
    )
    if direct:
        return out
    wrap_triton(_attn_decode_reduce_kernel)[(b * hkv, rows)](
        part_acc, part_max, part_sum, out, length,
        hkv, splits,
        *out.stride(),
        GROUP=group, SQ=sq, HEAD_DIM=d, NATURAL=mask_kind == 2, ADVANCE=append is not None,
        BLOCK_S=next_pow2(splits), BLOCK_D=block_d, PDL=pdl,
        num_warps=4 if splits * block_d >= 2048 else 1,
    )
    return out


def _preloads(q, k, is_causal, cfg: dict, splits: int) -> bool:
    """Whether a ``rope_attention_append`` launch loads its ticket and its cached rows before the PDL wait (PRE in
    ``_attn_decode_kernel``): one split whose key range is one block, static; and, when the kernel is compiled for
    PDL, only under CUDA graphs (``ATTENTION_PRE``: a graph replay starts once the one before has ended, so the
    kernel's launch in the step before has too). Compiled without PDL the kernel waits for every earlier kernel
    anyway and PRE only reorders its own loads."""
    kv_len = static_int(k.shape[2])
    ordered = not use_pdl(q.device, ATTENTION) or use_pdl(q.device, ATTENTION_PRE)
    return (PRELOAD and ordered and splits == 1 and not is_causal and static_int(q.shape[2]) == 1
            and kv_len is not None and kv_len <= cfg["BLOCK_N"])


def _ticketed(length: torch.Tensor) -> bool:
    """Can one-split decode launches advance ``length`` themselves? Each program adds a ticket of 2^32 to it as it
    reads it (``_attn_decode_kernel``), so it must be int64 (a cache length stays far below 2^32)."""
    return length.dtype == torch.int64


def _decode_splits(q, k, is_causal, cfg: dict) -> int:
    """The KV splits a group that ``_decode`` launches for ``cfg``."""
    kv_len = static_int(k.shape[2])
    if is_causal:  # top-left causal: no query row sees a key at or past Sq
        sq = static_int(q.shape[2])
        kv_len = sq if kv_len is None else min(kv_len, sq)
    return cfg.get("splits") or _num_splits(q.shape[0], k.shape[1], kv_len, cfg["BLOCK_N"], cfg["waves"], q.device)


def _num_splits(b, hkv, kv_len, block_n: int, waves: int, device) -> int:
    """KV splits per group: about ``waves`` programs per SM, at least one key block per split, from static
    sizes only (a symbolic batch counts as 1, a symbolic length as long: empty splits cost only a store)."""
    groups = (static_int(b) or 1) * static_int(hkv)
    splits = min(MAX_SPLITS, max(1, triton.cdiv(waves * num_sms(device), groups)))
    kv_len = static_int(kv_len)
    if kv_len is None:
        return splits
    blocks = max(1, triton.cdiv(kv_len, block_n))
    splits = min(splits, blocks)
    return triton.cdiv(blocks, triton.cdiv(blocks, splits))  # the fewest splits with the same chunk length


# ---------------------------------------------------------------------------------------------------------
# Dispatch


def _use_decode(q, k) -> bool:
    """Decode when GQA group × Sq is static and fits one tile of rows: K/V are then read once per KV group
    (the prefill kernel reads them once per query head and pads Sq to BLOCK_M), and split-KV fills the GPU
    when B·Hkv alone cannot. Past 64 rows the prefill grid over Sq has enough parallelism of its own."""
    hq, hkv, sq = static_int(q.shape[1]), static_int(k.shape[1]), static_int(q.shape[2])
    return None not in (hq, hkv, sq) and (hq // hkv) * sq <= DECODE_MAX_ROWS


def _fit_tiles(cfg: dict, q, k) -> dict:
    """Shrink BLOCK_M / BLOCK_N to the (static) sequence lengths, keeping >= 16 for tl.dot."""
    sq, skv = static_int(q.shape[2]), static_int(k.shape[2])
    cfg = dict(cfg)
    if sq is not None:
        cfg["BLOCK_M"] = min(cfg["BLOCK_M"], max(16, next_pow2(sq)))
    if skv is not None:
        cfg["BLOCK_N"] = min(cfg["BLOCK_N"], max(16, next_pow2(skv)))
    return cfg


def _decode_rows(q, k) -> int:
    return static_int(q.shape[1]) // static_int(k.shape[1]) * static_int(q.shape[2])


def _default_config(q, k) -> dict:
    if _use_decode(q, k):
        return _decode_configs(q.shape[-1], q.dtype, _decode_rows(q, k))[0]
    return _fit_tiles(_prefill_configs(q.shape[-1], q.dtype)[0], q, k)


def _sdpa_supports(q, k, mask, is_causal) -> bool:
    """Whether torch SDPA (cuDNN / flash / efficient on CUDA) computes exactly our contract and is a fair rival.

    Not with both mask and is_causal, nor with a rank-1 mask, nor with an additive mask of another dtype (the
    cast changes finfo.min rows), nor with a mask when Skv > Sq: that is a KV-cache mask whose invisible tail
    the decode kernel skips, which the tuning mask (bottom-right causal) cannot show.
    """
    if mask is None:
        return True
    if is_causal or mask.dim() < 2 or (mask.dtype != torch.bool and mask.dtype != q.dtype):
        return False
    return static_int(k.shape[2]) <= static_int(q.shape[2])


def _candidates(q, k, mask, is_causal) -> list[dict]:
    cands = [_fit_tiles(c, q, k) for c in _prefill_configs(q.shape[-1], q.dtype)]
    if _use_decode(q, k):
        cands = _decode_configs(q.shape[-1], q.dtype, _decode_rows(q, k)) + cands[:1]
    if _sdpa_supports(q, k, mask, is_causal):
        cands.append({"kernel": "sdpa"})
    unique = []
    for c in cands:
        if c not in unique:
            unique.append(c)
    return unique


def _append_candidates(cands: list[dict], q, k, is_causal, ticketed: bool) -> list[dict]:
    """The decode configs of ``cands`` whose launches take ``rope_attention_append``'s append: split ones (the
    reduction kernel advances the counter) and, with a ``ticketed`` counter, one-split ones."""
    return [c for c in cands if c["kernel"] == "decode" and (ticketed or _decode_splits(q, k, is_causal, c) > 1)]


def _mask_code(mask, q) -> int:
    """Mask kind and broadcast pattern for the tuning key: 0 none, else kind (1 bool, 2 additive of q's dtype,
    3 other additive) + 4 × (bit per broadcast dim of the rank-4 view)."""
    if mask is None:
        return 0
    kind = 1 if mask.dtype == torch.bool else 2 if mask.dtype == q.dtype else 3
    dims = (1,) * (4 - mask.dim()) + tuple(static_int(s) for s in mask.shape)
    return kind + 4 * sum(1 << i for i, s in enumerate(dims) if s == 1)


def _select(q, k, v, mask, is_causal, append_ticketed: bool | None = None) -> dict:
    """The tuned config of an attention launch. ``append_ticketed`` (``rope_attention_append``: whether its length
    counter takes tickets) limits the candidates to the decode configs whose launches take the append (split, or
    one split with tickets), under a key of their own: the launch that saves, and what it loads before its PDL wait,
    are not in a timing of the attention alone, which picked the prefill kernel (and the append's own launch) as
    often as not on the 1B decode step's 104-row cache (session 35, H200: 487-491 against 466 µs a step)."""
    default = _default_config(q, k)
    sizes = [static_int(s) for s in (*q.shape, *k.shape)]
    if mask is not None:
        sizes += [static_int(s) for s in mask.shape]
    if q.device.type != "cuda" or None in sizes:
        return default
    b, hq, sq, d = sizes[:4]
    hkv, skv = sizes[5:7]
    # the key length in power-of-two buckets: decode over a growing KV cache must not re-tune at every length
    cands, name = _candidates(q, k, mask, is_causal), "attention"
    fused = [] if append_ticketed is None else _append_candidates(cands, q, k, is_causal, append_ticketed)
    if fused:
        cands, name = fused, f"attention.append{int(append_ticketed)}"
    key = autotune_cache.make_key(
        name, _SRC_HASH, (b, hq, hkv, sq, next_pow2(skv), d, int(is_causal), _mask_code(mask, q)), q.dtype, q.device,
    )
    return autotune_cache.tune(key, cands, functools.partial(_runner, q, k, v, mask, is_causal), default=default)


def _random_like(t: torch.Tensor) -> torch.Tensor:
    """Random data with ``t``'s sizes and strides (a strided view into a fresh buffer, overlaps allowed)."""
    size, stride = [int(s) for s in t.shape], [int(s) for s in t.stride()]
    extent = 1 + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else 0
    return torch.randn(extent, dtype=t.dtype, device=t.device).as_strided(size, stride)


def _tuning_mask(mask, q, k) -> torch.Tensor:
    """A mask of ``mask``'s shape and dtype holding a bottom-right causal pattern, the usual KV-cache mask
    (all visible for a single query); dims that ``mask`` broadcasts take the last query / key of the pattern."""
    sq, skv = int(q.shape[2]), int(k.shape[2])
    keep = torch.arange(skv, device=q.device) <= torch.arange(sq, device=q.device)[:, None] + (skv - sq)
    keep = keep.expand(int(q.shape[0]), int(q.shape[1]), sq, skv)
    dims = (1,) * (4 - mask.dim()) + tuple(int(s) for s in mask.shape)
    for i, n in enumerate(dims):
        if n == 1:
            keep = keep.narrow(i, keep.shape[i] - 1, 1)
    keep = keep.reshape(mask.shape)
    if mask.dtype == torch.bool:
        return keep.contiguous()
    return torch.zeros(mask.shape, dtype=mask.dtype, device=q.device).masked_fill(~keep, float("-inf"))


def _runner(q, k, v, mask, is_causal, cfg: dict):
    """For autotune_cache.tune (called in real mode): a launch of ``cfg`` on random inputs of these shapes."""
    q2, k2, v2 = _random_like(q), _random_like(k), _random_like(v)
    mask2 = None if mask is None else _tuning_mask(mask, q, k)
    scale = float(q.shape[-1]) ** -0.5
    return lambda: _run(cfg, q2, k2, v2, mask2, scale, is_causal)


_SRC_HASH = autotune_cache.source_hash(*_KERNELS, _prefill_configs, _decode_configs, _use_decode, _num_splits)
