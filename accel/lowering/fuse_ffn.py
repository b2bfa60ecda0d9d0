"""FuseFFNPass: feed-forward blocks → ``accel::ffn``.

Before (Llama MLP)::

    gate = linear(x, w_gate);  act = F.silu(gate);  up = linear(x, w_up);  h = act * up
    out = linear(h, w_down)

After::

    out = torch.ops.accel.ffn(x, accel_gate_up_0, None, w_down, None, "silu", True)

``accel_gate_up_0`` is a new graph input holding ``cat([w_gate, w_up])``, computed once at compile time so the
kernel multiplies x by both in one pass (an exact reparameterization; it costs the memory of one more copy
of those weights). A merged ``gate_up`` projection (chunk/split) is used as is. Plain FFNs
(fc1 → act → fc2) keep their weights. Skipped with a reason: activation chains accel has no kernel for,
intermediates used outside the block.
"""
from __future__ import annotations

import torch
import torch.fx as fx

from accel.compiler import fx_utils as fu
from accel.compiler.context import CompileContext
from accel.compiler.pass_base import AccelPass
from accel.lowering.weights import concat_biases, value_nk, weight_nk
from accel.patterns.base import NoMatch
from accel.patterns.ffn import FFNMatch, match_ffn
from accel.runtime.ops import FFN


class FuseFFNPass(AccelPass):
    name = "fuse_ffn"

    def __call__(self, gm: fx.GraphModule, ctx: CompileContext) -> int:
        count = 0
        for node in list(gm.graph.nodes):
            if node._erased:
                continue
            m = match_ffn(node, ctx)
            if m is None:
                continue
            if isinstance(m, NoMatch):
                ctx.fallback("ffn", m.node, m.reason)
                continue
            _rewrite(ctx, m)
            ctx.matched("ffn", m.pattern, m.down.out)
            count += 1
        return count


def _first_weights(ctx: CompileContext, m: FFNMatch) -> tuple[fx.Node, fx.Node | None]:
    like = m.down.out
    if not m.gated:
        (fc1,) = m.first
        return weight_nk(ctx, fc1.weight, fc1.layout, like), fc1.bias
    if len(m.first) == 2:
        gate, up = m.first
        w = ctx.add_derived("gate_up", lambda: torch.cat([value_nk(ctx, gate.weight, gate.layout),
                                                          value_nk(ctx, up.weight, up.layout)]),
                            sources=(gate.weight, up.weight))
        b = None
        if gate.bias is not None or up.bias is not None:
            sizes = [gate.out_features, up.out_features]
            b = ctx.add_derived("gate_up_bias", lambda: concat_biases(ctx, [gate.bias, up.bias], sizes,
                                                                      ctx.weight_value(gate.weight)))
        return w, b
    (lin,) = m.first
    if m.act_half == 0:
        return weight_nk(ctx, lin.weight, lin.layout, like), lin.bias
    # The activation reads the second half: swap the halves so the kernel's "gate" rows come first.
    def swapped(t: torch.Tensor) -> torch.Tensor:
        half = t.shape[0] // 2
        return torch.cat([t[half:], t[:half]])

    w = ctx.add_derived("gate_up", lambda: swapped(value_nk(ctx, lin.weight, lin.layout)), sources=(lin.weight,))
    b = ctx.add_derived("gate_up_bias", lambda: swapped(ctx.weight_value(lin.bias))) if lin.bias is not None else None
    return w, b


def _rewrite(ctx: CompileContext, m: FFNMatch) -> None:
    like = m.down.out
    w1, b1 = _first_weights(ctx, m)
    w2 = weight_nk(ctx, m.down.weight, m.down.layout, like)
    out = ctx.call(FFN, (m.x, w1, b1, w2, m.down.bias, m.activation, m.gated), like=like)
    like.replace_all_uses_with(out)
    fu.erase_if_dead((*m.down.nodes, *m.covered))
