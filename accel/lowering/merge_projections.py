"""MergeProjectionsPass: linears that read the same input → one ``accel::linear`` and a split.

Before (attention projections)::

    q = linear(x, w_q);  k = linear(x, w_k);  v = linear(x, w_v)

After::

    qkv = torch.ops.accel.linear(x, accel_merged_w_0, None)
    q = qkv[..., 0:2048];  k = qkv[..., 2048:2560];  v = qkv[..., 2560:3072]

``accel_merged_w_0`` = ``cat([w_q, w_k, w_v])`` is computed once at compile time (biases likewise, zeros where a
projection has none): x is read once and one GEMM replaces three. The slices are strided views, so a ``view``
that reads them is turned into the equivalent ``reshape``. (Slicing rather than ``torch.split``: Inductor's
pre-grad split/cat normalization rewrites ``split`` nodes and loses users it did not create.)
"""
from __future__ import annotations

import operator
from collections import defaultdict

import torch
import torch.fx as fx

from accel.compiler import fx_utils as fu
from accel.compiler.context import CompileContext
from accel.compiler.pass_base import AccelPass
from accel.lowering.weights import concat_biases, value_nk
from accel.patterns.linear import LinearMatch, find_linears
from accel.runtime.ops import LINEAR


class MergeProjectionsPass(AccelPass):
    name = "merge_projections"

    def __call__(self, gm: fx.GraphModule, ctx: CompileContext) -> int:
        groups: dict[fx.Node, list[LinearMatch]] = defaultdict(list)
        for m in find_linears(gm, ctx):
            groups[m.x].append(m)
        count = 0
        for x, group in groups.items():
            if len(group) < 2:
                continue
            dtypes = {ctx.weight_value(m.weight).dtype for m in group}
            ks = {value_nk(ctx, m.weight, m.layout).shape[1] for m in group}
            if len(dtypes) != 1 or len(ks) != 1:
                ctx.fallback("linear", group[0].out, "linears share an input but differ in dtype or width")
                continue
            _merge(ctx, x, group)
            names = ",".join(fu.module_path(m.out).rsplit(".", 1)[-1] for m in group)
            ctx.matched("linear", f"merged_projection[{len(group)}]", group[0].out, names)
            count += 1
        return count


def _merge(ctx: CompileContext, x: fx.Node, group: list[LinearMatch]) -> None:
    first = group[0].out
    sizes = [m.out_features for m in group]
    w = ctx.add_derived("merged_w", lambda: torch.cat([value_nk(ctx, m.weight, m.layout) for m in group]),
                        sources=tuple(m.weight for m in group))
    b = None
    if any(m.bias is not None for m in group):
        like = ctx.weight_value(group[0].weight)
        b = ctx.add_derived("merged_b", lambda: concat_biases(ctx, [m.bias for m in group], sizes, like))
    y = ctx.call(LINEAR, (x, w, b), like=first)
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    parts = [ctx.call(operator.getitem, (y, (Ellipsis, slice(s, s + n))), like=first) for s, n in zip(starts, sizes)]
    for part, m in zip(parts, group):
        for user in list(m.out.users):
            if user.op == "call_method" and user.target == "view":
                user.target = "reshape"  # a slice is strided: view may not apply, reshape does
        m.out.replace_all_uses_with(part)
    fu.erase_if_dead([n for m in group for n in m.nodes])
