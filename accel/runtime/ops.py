"""The ``accel::*`` operators: the only contract between graph rewriting and kernels.

Each op is a ``torch.library.triton_op``. Inserted into the Dynamo graph before AOTAutograd, its body is
traced during functionalization: on CUDA the Triton launches become ``triton_kernel_wrapper_functional``
nodes that Inductor copies into its generated code, next to its own kernels; on any other device the body
is the torch reference (``accel.runtime.reference``), which Inductor compiles like any other torch code.
The same body serves as the fake (meta) implementation, so output shapes and strides match exactly.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch.library import triton_op

from accel.runtime import quant, reference


def runs_kernels(device: torch.device) -> bool:
    """Whether the ops run their Triton kernels on ``device``; elsewhere they run the torch reference."""
    return device.type == "cuda"


def _on_gpu(t: torch.Tensor) -> bool:
    return runs_kernels(t.device)


def _rows(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """[..., C] as the [rows, C] matrix the kernels take (None stays None)."""
    return None if t is None else t.reshape(-1, t.shape[-1])


@triton_op("accel::linear", mutates_args=())
def linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    norm_eps: Optional[float] = None,
    residual: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """x' [..., K] @ weight[N, K]ᵀ + bias[N] [+ residual [..., N]] -> [..., N], where x' is x RMS-normalized
    without a weight (``reference.rms_norm``) when ``norm_eps`` is given, else x: a norm's weight is folded into
    ``weight``'s columns (``lowering.fuse_norm``)."""
    if not _on_gpu(x):
        return reference.linear(x, weight, bias, norm_eps, residual)
    from accel.runtime.kernels import linear as kl

    out = kl.linear(_rows(x), weight, bias, norm_eps, _rows(residual))
    return out.reshape(*x.shape[:-1], weight.shape[0])


@triton_op("accel::attention", mutates_args=())
def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: Optional[torch.Tensor],
    scale: float,
    is_causal: bool,
) -> torch.Tensor:
    """Fused softmax(q kᵀ · scale + mask) v; see ``reference.attention`` for the exact contract."""
    if not _on_gpu(q):
        return reference.attention(q, k, v, mask, scale, is_causal)
    from accel.runtime.kernels import attention as ka

    return ka.attention(q, k, v, mask, scale, is_causal)


@triton_op("accel::ffn", mutates_args=())
def ffn(
    x: torch.Tensor,
    w1: torch.Tensor,
    b1: Optional[torch.Tensor],
    w2: torch.Tensor,
    b2: Optional[torch.Tensor],
    activation: str,
    gated: bool,
    norm_eps: Optional[float] = None,
    residual: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """down(act(gate(x')) * up(x')) when ``gated`` (w1 = [gate; up] rows), else down(act(fc1(x'))), plus the
    residual when given; x' as in ``linear``."""
    if not _on_gpu(x):
        return reference.ffn(x, w1, b1, w2, b2, activation, gated, norm_eps, residual)
    from accel.runtime.kernels import ffn as kf
    from accel.runtime.kernels import linear as kl

    h = kf.ffn_up(_rows(x), w1, b1, activation, gated, norm_eps)
    out = kl.linear(h, w2, b2, None, _rows(residual))
    return out.reshape(*x.shape[:-1], w2.shape[0])


@triton_op("accel::qlinear", mutates_args=())
def qlinear(
    x: torch.Tensor,
    qweight: torch.Tensor,
    scale: torch.Tensor,
    zero: Optional[torch.Tensor],
    bias: Optional[torch.Tensor],
    scheme: str,
    group_size: int,
    activation: str,
    gated: bool,
    norm_eps: Optional[float] = None,
    norm_weight: Optional[torch.Tensor] = None,
    residual: Optional[torch.Tensor] = None,
    counters: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """A quantized linear with an optional activation (or gated act·mul) epilogue, x RMS-normalized first (times
    ``norm_weight``) when ``norm_eps`` is given, plus the residual when given; formats and exact semantics in
    ``accel.runtime.quant`` (``qlinear_reference``). ``counters`` (int32 zeros, which every launch leaves zero)
    lets a split-K kernel reduce in its last program instead of a second launch; it does not change the result."""
    if not _on_gpu(x):
        return quant.qlinear_reference(x, qweight, scale, zero, bias, scheme, group_size, activation, gated,
                                       norm_eps, norm_weight, residual)
    from accel.runtime.kernels import qlinear as kq

    out = kq.qlinear(_rows(x), qweight, scale, zero, bias, scheme, group_size, activation, gated, norm_eps,
                     norm_weight, _rows(residual), counters)
    return out.reshape(*x.shape[:-1], out.shape[-1])


def _rope_kv(name: str, mutates: tuple[str, ...]):
    """The body of the two RoPE + KV-cache ops, which differ only in what ``rows`` holds: ``rope_kv_update`` writes
    rope(k) and v into rows ``rows`` ([S] positions) of the caches; ``rope_kv_append`` writes them at
    ``rows + s`` (``rows``: the cache's 0-d length counter) and advances the counter by S. Both return rope(q);
    the exact contracts are ``reference.rope_kv_update`` / ``reference.rope_kv_append``."""

    def op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
           k_cache: torch.Tensor, v_cache: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        if not _on_gpu(q):
            return getattr(reference, name)(q, k, v, cos, sin, k_cache, v_cache, rows)
        from accel.runtime.kernels import rope as kr

        return getattr(kr, name)(q, k, v, cos, sin, k_cache, v_cache, rows)

    op.__name__ = op.__qualname__ = name
    op.__doc__ = _rope_kv.__doc__
    return triton_op(f"accel::{name}", mutates_args=mutates)(op)


rope_kv_update = _rope_kv("rope_kv_update", ("k_cache", "v_cache"))
rope_kv_append = _rope_kv("rope_kv_append", ("k_cache", "v_cache", "rows"))


@triton_op("accel::rope_attention_append", mutates_args=("k_cache", "v_cache", "length"))
def rope_attention_append(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    length: torch.Tensor,
    mask: Optional[torch.Tensor],
    scale: float,
) -> torch.Tensor:
    """A decode step's ``rope_kv_append`` (one new token a sequence) and the ``attention`` that reads the caches
    after it, as one op: on CUDA the split-KV attention kernel rotates q, writes the new cache row and advances
    ``length`` itself (``kernels.attention.rope_attention_append``). Contract: ``reference.rope_attention_append``."""
    if not _on_gpu(q):
        return reference.rope_attention_append(q, k, v, cos, sin, k_cache, v_cache, length, mask, scale)
    from accel.runtime.kernels import attention as ka

    return ka.rope_attention_append(q, k, v, cos, sin, k_cache, v_cache, length, mask, scale)


LINEAR = torch.ops.accel.linear.default
ATTENTION = torch.ops.accel.attention.default
FFN = torch.ops.accel.ffn.default
QLINEAR = torch.ops.accel.qlinear.default
ROPE_KV_UPDATE = torch.ops.accel.rope_kv_update.default
ROPE_KV_APPEND = torch.ops.accel.rope_kv_append.default
ROPE_ATTENTION_APPEND = torch.ops.accel.rope_attention_append.default
ALL_OPS = (LINEAR, ATTENTION, FFN, QLINEAR, ROPE_KV_UPDATE, ROPE_KV_APPEND, ROPE_ATTENTION_APPEND)
