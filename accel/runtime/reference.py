"""Torch reference implementations of every accel op: what the ops compute on CPU, and the oracle the
Triton kernels are tested against. Each one is the plain, unfused composition of torch ops."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from accel.runtime.activations import activation_fn


def rms_norm(x: torch.Tensor, eps: float, weight: torch.Tensor | None = None) -> torch.Tensor:
    """x · rsqrt(mean(x², -1) + eps) [· weight] in fp32, rounded once to x's dtype (Llama's RMSNorm rounds the
    normalized x to x's dtype before multiplying by the weight: within one rounding of this). accel's ops take
    no weight: the norm's weight is folded into the projection that follows."""
    x32 = x.float()
    y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return (y if weight is None else y * weight.float()).to(x.dtype)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, norm_eps: float | None = None,
           residual: torch.Tensor | None = None) -> torch.Tensor:
    """y = x' @ weightᵀ + bias [+ residual], weight [N, K] (any strides), x' = ``rms_norm(x, norm_eps)`` when
    ``norm_eps`` is given, else x."""
    if norm_eps is not None:
        x = rms_norm(x, norm_eps)
    y = F.linear(x, weight, bias)
    return y if residual is None else y + residual


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    scale: float,
    is_causal: bool,
) -> torch.Tensor:
    """softmax(q kᵀ · scale + mask) v with SDPA semantics.

    q [B, Hq, Sq, D]; k, v [B, Hkv, Skv, D] with Hq a multiple of Hkv (query head h reads KV head
    h // (Hq / Hkv)); mask broadcastable to [B, Hq, Sq, Skv], bool (True = attend) or additive float;
    is_causal is top-left aligned (query i sees keys j <= i). Rows with no visible key give zeros.
    """
    if mask is not None and mask.dtype != torch.bool and mask.dtype != q.dtype:
        mask = mask.to(q.dtype)
    if mask is not None and is_causal:  # CUDA's SDPA refuses both: fold the causal triangle into the mask
        causal = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril()
        mask = mask & causal if mask.dtype == torch.bool else torch.where(causal, mask, float("-inf"))
        is_causal = False
    hq, hkv = q.shape[1], k.shape[1]
    # enable_gqa must be a plain bool: with symbolic head counts, take the GQA path (correct for equal counts too)
    gqa = True if not (isinstance(hq, int) and isinstance(hkv, int)) else hq != hkv
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, scale=scale, enable_gqa=gqa)


def ffn_up(x: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor | None, activation: str, gated: bool) -> torch.Tensor:
    """The first half of an FFN: act(x w1ᵀ + b1), or for gated FFNs act(gate) * up where
    [gate | up] = x w1ᵀ + b1 (w1 holds the gate rows first, then the up rows)."""
    h = F.linear(x, w1, b1)
    act = activation_fn(activation)
    if gated:
        gate, up = h.chunk(2, dim=-1)
        return act(gate) * up
    return act(h)


def ffn(
    x: torch.Tensor,
    w1: torch.Tensor,
    b1: torch.Tensor | None,
    w2: torch.Tensor,
    b2: torch.Tensor | None,
    activation: str,
    gated: bool,
    norm_eps: float | None = None,
    residual: torch.Tensor | None = None,
) -> torch.Tensor:
    """down(ffn_up(x')) [+ residual]: a whole FFN block, x' as in ``linear``."""
    if norm_eps is not None:
        x = rms_norm(x, norm_eps)
    return linear(ffn_up(x, w1, b1, activation, gated), w2, b2, None, residual)


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x·cos + rotate_half(x)·sin in fp32, rounded once to x's dtype (the ``rotate_half`` form of rotary
    embeddings); cos / sin broadcast to x."""
    x32 = x.float()
    x1, x2 = x32.chunk(2, dim=-1)
    return (x32 * cos.float() + torch.cat((-x2, x1), dim=-1) * sin.float()).to(x.dtype)


def rope_kv_update(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                   k_cache: torch.Tensor, v_cache: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """A decoder layer's rotary embedding and static KV-cache update: writes rope(k) and v into rows ``positions``
    of k_cache / v_cache [B, Hkv, L, D] (dim 2) and returns rope(q). q [B, Hq, S, D], k, v [B, Hkv, S, D],
    cos / sin [B, 1, S, D] or [B, S, D]."""
    if cos.dim() == 3:
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    k_cache.index_copy_(2, positions, rope(k, cos, sin).to(k_cache.dtype))
    v_cache.index_copy_(2, positions, v.to(v_cache.dtype))
    return rope(q, cos, sin)


def rope_kv_append(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                   k_cache: torch.Tensor, v_cache: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
    """``rope_kv_update`` at rows ``length + arange(S)``, then ``length += S`` (length: the cache's 0-d counter, as
    transformers' StaticCache layers keep it)."""
    S = q.shape[2]
    positions = length + torch.arange(S, device=length.device)
    out = rope_kv_update(q, k, v, cos, sin, k_cache, v_cache, positions)
    length.add_(S)
    return out


def rope_attention_append(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                          k_cache: torch.Tensor, v_cache: torch.Tensor, length: torch.Tensor,
                          mask: torch.Tensor | None, scale: float) -> torch.Tensor:
    """A decode step's attention with its rotary embedding and cache append: ``rope_kv_append`` (q [B, Hq, 1, D],
    k, v [B, Hkv, 1, D]; the caches get row ``length``, then ``length += 1``) followed by
    ``attention(rope(q), k_cache, v_cache, mask, scale, is_causal=False)``."""
    q_rot = rope_kv_append(q, k, v, cos, sin, k_cache, v_cache, length)
    return attention(q_rot, k_cache, v_cache, mask, scale, False)
