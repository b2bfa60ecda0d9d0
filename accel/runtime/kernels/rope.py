"""``rope_kv_update``: a decoder layer's rotary embedding of q and k and its KV-cache write, as one Triton kernel.

Dataflow: q [B, Hq, S, D], k, v [B, Hkv, S, D] (any strides: slices of the fused QKV projection), cos / sin
broadcastable to [B, 1, S, D], positions [S] → ``_rope_kv_kernel`` → q_rot [B, Hq, S, D] (new) and rows
``positions[s]`` of k_cache / v_cache [B, Hkv, L, D] (in place: k rotated, v copied).

One program per (batch·position, head) of q and of k: it loads the two halves x1, x2 of its row and the matching
halves of cos and sin, and writes (x1·cos1 − x2·sin1, x2·cos2 + x1·sin2) in fp32, rounded once; the programs of KV
heads also copy their row of v. Replaces the q rotation, the k rotation + cache write, the v cache write and
Inductor's copy-back kernels of the unfused graph.

``rope_kv_append`` is the same with the rows taken from the cache's length counter (a 0-d tensor): rows
``length + s``, then ``length += S``. ``_rope_kv_append_kernel`` is one program that handles every head as one tile,
so no other program can read the counter after it is advanced; this also removes the small Inductor kernel that
computed the positions and advanced the counter in every layer.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from accel.runtime.kernels.utils import ATTENTION, next_pow2, pdl_launch_then_wait, use_pdl, wrap_triton


@triton.jit
def _rope_kv_kernel(
    # Pointers
    q_ptr, k_ptr, v_ptr, cos_ptr, sin_ptr, pos_ptr, qo_ptr, kc_ptr, vc_ptr,
    # Sizes
    S, HQ, HALF,
    # Strides: q, k, v, cos, sin, q_out, k_cache, v_cache as (batch, head, seq) — the last dim is contiguous
    sqb, sqh, sqs, skb, skh, sks, svb, svh, svs, scb, scs, ssb, sss, sob, soh, sos, skcb, skch, skcl, svcb, svch, svcl,
    BLOCK: tl.constexpr, PDL: tl.constexpr,
):
    pdl_launch_then_wait(PDL)  # the attention after it may launch now
    bs = tl.program_id(0)
    h = tl.program_id(1)
    b = bs // S
    s = bs % S
    offs = tl.arange(0, BLOCK)
    ok = offs < HALF
    c1 = tl.load(cos_ptr + b * scb + s * scs + offs, mask=ok, other=0.0).to(tl.float32)
    c2 = tl.load(cos_ptr + b * scb + s * scs + HALF + offs, mask=ok, other=0.0).to(tl.float32)
    s1 = tl.load(sin_ptr + b * ssb + s * sss + offs, mask=ok, other=0.0).to(tl.float32)
    s2 = tl.load(sin_ptr + b * ssb + s * sss + HALF + offs, mask=ok, other=0.0).to(tl.float32)
    if h < HQ:
        src = q_ptr + b * sqb + h * sqh + s * sqs
        dst = qo_ptr + b * sob + h * soh + s * sos
    else:
        hk = h - HQ
        src = k_ptr + b * skb + hk * skh + s * sks
        row = tl.load(pos_ptr + s).to(tl.int64)
        dst = kc_ptr + b * skcb + hk * skch + row * skcl
        _copy_row(v_ptr + b * svb + hk * svh + s * svs, vc_ptr + b * svcb + hk * svch + row * svcl, offs, ok, HALF)
    _rotate(src, dst, offs, ok, c1, c2, s1, s2, HALF)


@triton.jit
def _rotate(src, dst, offs, ok, c1, c2, s1, s2, HALF):
    """dst = (x1·c1 − x2·s1, x2·c2 + x1·s2) for the halves x1, x2 of the rows at src (pointer tiles of any shape,
    ``offs`` / ``ok`` along the half), in fp32 and rounded once."""
    x1 = tl.load(src + offs, mask=ok, other=0.0).to(tl.float32)
    x2 = tl.load(src + HALF + offs, mask=ok, other=0.0).to(tl.float32)
    out_ty = dst.dtype.element_ty
    tl.store(dst + offs, (x1 * c1 - x2 * s1).to(out_ty), mask=ok)
    tl.store(dst + HALF + offs, (x2 * c2 + x1 * s2).to(out_ty), mask=ok)


@triton.jit
def _copy_row(src, dst, offs, ok, HALF):
    tl.store(dst + offs, tl.load(src + offs, mask=ok), mask=ok)
    tl.store(dst + HALF + offs, tl.load(src + HALF + offs, mask=ok), mask=ok)


@triton.jit
def _rope_kv_append_kernel(
    # Pointers (len_ptr: the cache's 0-d length counter, read once and advanced by S at the end)
    q_ptr, k_ptr, v_ptr, cos_ptr, sin_ptr, len_ptr, qo_ptr, kc_ptr, vc_ptr,
    # Sizes
    B, S, HQ, HKV, HALF,
    # Strides, as for _rope_kv_kernel
    sqb, sqh, sqs, skb, skh, sks, svb, svh, svs, scb, scs, ssb, sss, sob, soh, sos, skcb, skch, skcl, svcb, svch, svcl,
    BLOCK_HQ: tl.constexpr, BLOCK_HKV: tl.constexpr, BLOCK: tl.constexpr, PDL: tl.constexpr,
):
    """One program: for each (batch, position), all q heads as one [BLOCK_HQ, BLOCK] tile and all KV heads as
    another, written to rows length + s of the caches."""
    pdl_launch_then_wait(PDL)
    offs = tl.arange(0, BLOCK)[None, :]
    ok = offs < HALF
    hq = tl.arange(0, BLOCK_HQ)[:, None]
    hk = tl.arange(0, BLOCK_HKV)[:, None]
    q_ok = (hq < HQ) & ok
    k_ok = (hk < HKV) & ok
    start = tl.load(len_ptr).to(tl.int64)
    for bs in range(0, B * S):
        b = bs // S
        s = bs % S
        c1 = tl.load(cos_ptr + b * scb + s * scs + offs, mask=ok, other=0.0).to(tl.float32)
        c2 = tl.load(cos_ptr + b * scb + s * scs + HALF + offs, mask=ok, other=0.0).to(tl.float32)
        s1 = tl.load(sin_ptr + b * ssb + s * sss + offs, mask=ok, other=0.0).to(tl.float32)
        s2 = tl.load(sin_ptr + b * ssb + s * sss + HALF + offs, mask=ok, other=0.0).to(tl.float32)
        row = start + s
        _rotate(q_ptr + b * sqb + hq * sqh + s * sqs, qo_ptr + b * sob + hq * soh + s * sos, offs, q_ok,
                c1, c2, s1, s2, HALF)
        _rotate(k_ptr + b * skb + hk * skh + s * sks, kc_ptr + b * skcb + hk * skch + row * skcl, offs, k_ok,
                c1, c2, s1, s2, HALF)
        _copy_row(v_ptr + b * svb + hk * svh + s * svs, vc_ptr + b * svcb + hk * svch + row * svcl, offs, k_ok, HALF)
    tl.debug_barrier()  # every thread has read the counter before it moves
    tl.store(len_ptr, start + S)


def _rows(t: torch.Tensor) -> tuple[int, int, int]:
    """(batch, head, seq) strides of a [B, H, S, D] tensor (head stride 0 for a broadcast [B, 1, S, D])."""
    return t.stride(0), t.stride(1) if t.shape[1] > 1 else 0, t.stride(2)


def rope_inputs(op: str, q, cos, sin, **tensors) -> tuple[tuple[int, int], tuple[int, int]]:
    """The (batch, seq) strides with which a kernel reads cos and sin ([B, S, D] or [B, 1, S, D], B and S each
    possibly 1: stride 0, broadcast) for q [B, H, S, D], after checking their shapes, that the head dim is even and
    that q, cos, sin and ``tensors`` (by name) are contiguous in their last dim, as the kernels index them. ``op``
    names the caller in the errors.

    The kernels get cos and sin themselves, never a view of them: Inductor realizes a kernel input that is a fresh
    view of a computed tensor by a copy for that kernel (a decoder's one cos / sin, computed once a step, was
    computed again for every layer, in four extra kernels on the 1B decode step), the tensor itself once."""
    B, _, S, D = q.shape
    torch._check(D % 2 == 0, lambda: f"{op}: head dim {D} must be even")
    strides = []
    for name, t in (("cos", cos), ("sin", sin)):
        torch._check(t.dim() in (3, 4) and (t.dim() == 3 or t.shape[1] == 1) and t.shape[-1] == D,
                     lambda name=name, t=t: f"{op}: {name} must be [B, S, {D}] or [B, 1, S, {D}], got {tuple(t.shape)}")
        b, s = t.shape[0], t.shape[-2]
        torch._check((b == 1 or b == B) and (s == 1 or s == S),
                     lambda name=name, t=t: f"{op}: {name} {tuple(t.shape)} does not broadcast to q's {(B, S)}")
        strides.append((0 if b == 1 else t.stride(0), 0 if s == 1 else t.stride(-2)))
    for name, t in (("q", q), ("cos", cos), ("sin", sin), *tensors.items()):
        torch._check(t.stride(-1) == 1, lambda name=name: f"{op}: {name} must be contiguous in its last dim")
    return strides[0], strides[1]


def _prepare(q, k, v, cos, sin, k_cache, v_cache):
    """(q_out, strides) after checking shapes; strides in the kernels' argument order."""
    B, HQ, S, D = q.shape
    (scb, scs), (ssb, sss) = rope_inputs("rope_kv_update", q, cos, sin, k=k, v=v, k_cache=k_cache, v_cache=v_cache)
    q_out = torch.empty((B, HQ, S, D), dtype=q.dtype, device=q.device)
    strides = (*_rows(q), *_rows(k), *_rows(v), scb, scs, ssb, sss, *_rows(q_out), *_rows(k_cache), *_rows(v_cache))
    return q_out, strides


def rope_kv_update(q, k, v, cos, sin, k_cache, v_cache, positions) -> torch.Tensor:
    """As ``reference.rope_kv_update``; every tensor's last dim must be contiguous."""
    B, HQ, S, D = q.shape
    q_out, strides = _prepare(q, k, v, cos, sin, k_cache, v_cache)
    wrap_triton(_rope_kv_kernel)[(B * S, HQ + k.shape[1])](
        q, k, v, cos, sin, positions, q_out, k_cache, v_cache,
        S, HQ, D // 2, *strides,
        BLOCK=max(16, next_pow2(D // 2)), PDL=use_pdl(q.device, ATTENTION), num_warps=1,
    )
    return q_out


def rope_kv_append(q, k, v, cos, sin, k_cache, v_cache, length) -> torch.Tensor:
    """As ``reference.rope_kv_append``: rows ``length + s``, then ``length += S``, in one program."""
    B, HQ, S, D = q.shape
    HKV = k.shape[1]
    q_out, strides = _prepare(q, k, v, cos, sin, k_cache, v_cache)
    wrap_triton(_rope_kv_append_kernel)[(1,)](
        q, k, v, cos, sin, length, q_out, k_cache, v_cache,
        B, S, HQ, HKV, D // 2, *strides,
        BLOCK_HQ=next_pow2(HQ), BLOCK_HKV=next_pow2(HKV), BLOCK=max(16, next_pow2(D // 2)),
        PDL=use_pdl(q.device, ATTENTION), num_warps=4,
    )
    return q_out
