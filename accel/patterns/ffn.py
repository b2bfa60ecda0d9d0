"""Feed-forward blocks, anchored on the down projection.

| form | graph (forward order) |
|---|---|
| gated, separate | ``down(act(gate(x)) * up(x))`` — Llama, Qwen2, Mistral, Gemma |
| gated, merged | ``h = gate_up(x); g, u = h.chunk(2, -1)`` (or ``split``, or slicing); ``down(act(g) * u)`` — Phi-3 |
| plain | ``fc2(act(fc1(x)))`` — BERT, ViT, GPT-2 (Conv1D), OPT |

``act`` is any pointwise chain that :mod:`accel.patterns.pointwise` identifies; the product may be written
either way round. Every intermediate must be used only inside the block.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.fx as fx

from accel.compiler import fx_utils as fu
from accel.compiler.context import CompileContext
from accel.patterns.base import NoMatch
from accel.patterns.linear import LinearMatch, linear_producing, match_linear_maybe
from accel.patterns.pointwise import chain_source_maybe, identify_activation, pointwise_chain


@dataclass
class FFNMatch:
    x: fx.Node
    down: LinearMatch
    activation: str
    gated: bool
    first: list[LinearMatch]
    """plain: [fc1]; gated: [gate, up], or [gate_up] for a merged projection."""
    act_half: int = 0
    """For a merged gate_up: which half (0 or 1) the activation is applied to."""
    pattern: str = ""
    covered: tuple[fx.Node, ...] = ()


def _merged_half_maybe(node: fx.Node, ctx: CompileContext) -> tuple[LinearMatch, int] | None:
    """If ``node`` is one half of a linear's output (``chunk(2, -1)``/``split``/slice), (linear, half index)."""
    if not fu.is_op(node, "getitem"):
        return None
    src, idx = node.args
    if fu.is_op(src, "chunk") and isinstance(idx, int):
        lin = linear_producing(src.args[0], ctx)
        chunks, dim = fu.arg(src, 1, "chunks"), fu.arg(src, 2, "dim", 0)
        if lin is not None and chunks == 2 and fu.normalize_dim(dim, fu.rank(src.args[0])) == fu.rank(src.args[0]) - 1:
            return lin, idx
    if fu.is_op(src, "split") and isinstance(idx, int):
        lin = linear_producing(src.args[0], ctx)
        size, dim = fu.arg(src, 1, "split_size_or_sections"), fu.arg(src, 2, "dim", 0)
        n = lin.out_features if lin is not None else None
        halves = size == n // 2 if isinstance(size, int) else list(size or ()) == [n // 2, n // 2]
        if lin is not None and n and n % 2 == 0 and halves and fu.normalize_dim(dim, fu.rank(src.args[0])) == fu.rank(src.args[0]) - 1:
            return lin, idx
    lin = linear_producing(src, ctx)
    if lin is not None and isinstance(idx, tuple) and len(idx) >= 1:
        last = idx[-1]
        n = lin.out_features
        if idx[0] is Ellipsis and isinstance(last, slice) and last.step in (None, 1) and n % 2 == 0:
            if (last.start in (None, 0)) and last.stop == n // 2:
                return lin, 0
            if last.start == n // 2 and last.stop in (None, n):
                return lin, 1
    return None


def _used_only_by(node: fx.Node, allowed: set[fx.Node]) -> bool:
    return all(u in allowed for u in node.users)


def _match_gated(h: fx.Node, down: LinearMatch, ctx: CompileContext) -> FFNMatch | NoMatch | None:
    if not fu.is_op(h, "mul") or len(h.args) != 2 or not all(isinstance(a, fx.Node) for a in h.args):
        return None
    for a, b in (h.args, h.args[::-1]):
        src = chain_source_maybe(a)
        if src is None:
            continue
        chain = pointwise_chain(src, a)
        if chain is None:
            continue
        gate, up = linear_producing(src, ctx), linear_producing(b, ctx)
        if gate is not None and up is not None:
            if gate.x is not up.x or gate.weight is up.weight:
                continue
            act = identify_activation(src, chain, a)
            if act is None:
                return NoMatch("ffn", down.out, "gated activation is a pointwise chain accel has no kernel for")
            inner = {h, *chain}
            if not (_used_only_by(gate.out, inner) and _used_only_by(up.out, {h})):
                return NoMatch("ffn", down.out, "gate or up projection is also used outside the FFN")
            covered = (h, *chain, *gate.nodes, *up.nodes)
            return FFNMatch(gate.x, down, act, True, [gate, up], 0, f"gated({act})", covered)
        half_a, half_b = _merged_half_maybe(src, ctx), _merged_half_maybe(b, ctx)
        if half_a and half_b and half_a[0].out is half_b[0].out and half_a[1] != half_b[1]:
            lin, act_half = half_a
            act = identify_activation(src, chain, a)
            if act is None:
                return NoMatch("ffn", down.out, "gated activation is a pointwise chain accel has no kernel for")
            splitter = src.args[0]
            inner = {h, *chain, src, b, splitter}
            if not (_used_only_by(lin.out, {splitter}) or _used_only_by(lin.out, {src, b})):
                return NoMatch("ffn", down.out, "merged gate_up output is also used outside the FFN")
            covered = (h, *chain, src, b, *(x for x in (splitter,) if isinstance(x, fx.Node)), *lin.nodes)
            return FFNMatch(lin.x, down, act, True, [lin], act_half, f"gated_merged({act})", covered)
    return None


def _match_plain(h: fx.Node, down: LinearMatch, ctx: CompileContext) -> FFNMatch | NoMatch | None:
    src = chain_source_maybe(h)
    if src is None or src is h:
        return None
    fc1 = linear_producing(src, ctx)
    if fc1 is None:
        return None
    chain = pointwise_chain(src, h)
    if not chain:
        return None
    act = identify_activation(src, chain, h)
    if act is None:
        return NoMatch("ffn", down.out, "activation between fc1 and fc2 is a pointwise chain accel has no kernel for")
    if act == "identity":
        return None
    if not _used_only_by(fc1.out, set(chain)):
        return NoMatch("ffn", down.out, "fc1 output is also used outside the FFN")
    return FFNMatch(fc1.x, down, act, False, [fc1], 0, f"plain({act})", (*chain, *fc1.nodes))


def match_ffn(node: fx.Node, ctx: CompileContext) -> FFNMatch | NoMatch | None:
    """The FFN whose down projection's innermost op is ``node``; ``NoMatch`` for a near miss."""
    down = match_linear_maybe(node, ctx)
    if down is None:
        return None
    h = down.x
    if not isinstance(h, fx.Node) or len(h.users) != 1:
        return None
    m = _match_gated(h, down, ctx)
    if m is None:
        m = _match_plain(h, down, ctx)
    if isinstance(m, FFNMatch):
        xm = fu.tensor_meta(m.x)
        if xm is None or xm.dtype != fu.tensor_meta(h).dtype:
            return NoMatch("ffn", down.out, "FFN input and hidden activations have different dtypes")
    return m
