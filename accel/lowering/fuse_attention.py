"""FuseAttentionPass: attention subgraphs → ``accel::attention``.

Before (Llama, eager attention, GQA)::

    getitem = k[:, :, None, :, :];  expand = getitem.expand(2, 2, 2, 8, 16);  key = expand.reshape(2, 4, 8, 16)
    matmul = torch.matmul(q, key.transpose(2, 3));  w = matmul * 0.25;  w1 = w + mask
    p = F.softmax(w1, dim=-1, dtype=torch.float32).to(torch.float32)
    out = torch.matmul(p, value)          # value repeated the same way

After::

    out = torch.ops.accel.attention(q, k, v, mask, 0.25, False)   # k, v with their 2 KV heads

Skipped (reported with the reason): dropout with p > 0, attention probabilities used elsewhere
(``output_attentions``), head dims that differ or exceed 256, non-constant scales, finite ``masked_fill``
values, masks of rank > 4 or that do not broadcast to [B, H, Sq, Skv].
"""
from __future__ import annotations

import operator

import torch
import torch.fx as fx

from accel.compiler import fx_utils as fu
from accel.compiler.context import CompileContext
from accel.compiler.pass_base import AccelPass
from accel.patterns.attention import AttentionMatch, combine_mask_terms, match_sdpa, match_written_out
from accel.patterns.base import NoMatch
from accel.runtime.ops import ATTENTION


class FuseAttentionPass(AccelPass):
    name = "fuse_attention"

    def __call__(self, gm: fx.GraphModule, ctx: CompileContext) -> int:
        count = 0
        for node in list(gm.graph.nodes):
            if node._erased:
                continue
            m = match_sdpa(node)
            if m is None:
                m = match_written_out(node)
            if m is None:
                continue
            if isinstance(m, NoMatch):
                ctx.fallback("attention", node, m.reason)
                continue
            reason = _unsupported_mask(m)
            if reason:
                ctx.fallback("attention", node, reason)
                continue
            _rewrite(ctx, m)
            ctx.matched("attention", m.pattern, node,
                        ("scale=dynamic" if m.q_scales else f"scale={m.scale:.4g}") + (f", gqa={m.gqa_groups}" if m.gqa_groups > 1 else "")
                        + (", causal" if m.is_causal else ""))
            count += 1
        return count


def _mask_nodes(m: AttentionMatch) -> list[fx.Node]:
    return [m.mask] if m.mask is not None else [t.node for t in m.terms]


def _unsupported_mask(m: AttentionMatch) -> str | None:
    q = fu.tensor_meta(m.q)
    k = fu.tensor_meta(m.k)
    full = (*q.shape[:-1], k.shape[-2]) if q.dim() == 4 else (1, *q.shape[:-1], k.shape[-2])  # [B, H, Sq, Skv]
    for node in _mask_nodes(m):
        t = fu.tensor_meta(node)
        if t is None:
            return "mask shape is unknown"
        if t.dim() > 4:
            return f"mask of rank {t.dim()}"
        sizes = [s for s in (*t.shape, *full) if not isinstance(s, int)]
        if not sizes:  # all static: check broadcasting now rather than fail at run time
            try:
                if tuple(torch.broadcast_shapes(tuple(t.shape), full)) != full:
                    return f"mask of shape {tuple(t.shape)} does not broadcast to {full}"
            except RuntimeError:
                return f"mask of shape {tuple(t.shape)} does not broadcast to {full}"
    return None


def _build_mask(ctx: CompileContext, m: AttentionMatch) -> fx.Node | None:
    if m.mask is not None or not m.terms:
        return m.mask
    kind, parts = combine_mask_terms(m.terms)
    if kind == "bool":
        return ctx.call(torch.logical_not, (parts[0],), like=m.out)
    total = None
    for t in parts:
        if t.kind == "fill":
            term = ctx.call(torch.where, (t.node, t.value * t.factor, 0.0), like=m.out)
        elif t.factor != 1.0:
            term = ctx.call(operator.mul, (t.node, t.factor), like=m.out)
        else:
            term = t.node
        total = term if total is None else ctx.call(operator.add, (total, term), like=m.out)
    return total


def _rewrite(ctx: CompileContext, m: AttentionMatch) -> None:
    mask = _build_mask(ctx, m)
    if mask is not None:
        mask = fu.broadcast_source(mask)  # the kernels broadcast it (see the function)
    q, k, v = m.q, m.k, m.v
    for op, factor in m.q_scales:  # symbolic scales: (s·q)·kᵀ = s·(q·kᵀ)
        q = ctx.call(operator.mul if op == "mul" else operator.truediv, (q, factor), like=m.out)
    rank3 = fu.rank(q) == 3
    if rank3:  # [B*H, S, D] → [1, B*H, S, D]
        q, k, v = (ctx.call(torch.unsqueeze, (t, 0), like=m.out) for t in (q, k, v))
        if mask is not None and fu.rank(mask) == 3:
            mask = ctx.call(torch.unsqueeze, (mask, 0), like=m.out)
    out = ctx.call(ATTENTION, (q, k, v, mask, m.scale, m.is_causal), like=m.out)
    if rank3:
        out = ctx.call(torch.squeeze, (out, 0), like=m.out)
    m.out.replace_all_uses_with(out)
    fu.erase_if_dead(m.covered)
