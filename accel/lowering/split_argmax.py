"""SplitArgmaxPass: a greedy decoder's argmax over the vocabulary as two parallel reductions.

Inductor reduces ``logits.argmax(-1)`` over a 128K vocabulary in one program per row: 29 µs of a 1B decode step on
an H200 (``benchmarks/results/profile_decode_1b_cudagraphs_s4run5_*``), for 256 KB. Rewritten as::

    vals, idx = x.reshape(..., G, C).max(-1)          # G·C = V: G programs per row
    g = vals.argmax(-1, keepdim=True)                  # the first group holding the maximum
    out = g * C + idx.gather(-1, g)

it returns the same index, exactly: ``max(dim)`` and ``argmax`` both return the first maximal element (a NaN counting
as the maximum), so the first group that holds the maximum holds its first occurrence. Matched on an argmax over the
last dim of a tensor whose last dim V ≥ ``MIN_VOCAB`` is static and has a divisor C in [``MIN_CHUNK``,
``MAX_CHUNK``]; anything else is left to Inductor.
"""
from __future__ import annotations

import operator

import torch
import torch.fx as fx

from accel.compiler import fx_utils as fu
from accel.compiler.context import CompileContext
from accel.compiler.pass_base import AccelPass
from accel.runtime.kernels.utils import static_int

MIN_VOCAB = 8192
MIN_CHUNK, MAX_CHUNK = 512, 8192  # elements per program of the first reduction


def chunk_length(vocab: int) -> int | None:
    """The smallest divisor of ``vocab`` in [MIN_CHUNK, MAX_CHUNK] (many programs, each a useful length), if any."""
    return next((c for c in range(MIN_CHUNK, min(MAX_CHUNK, vocab // 2) + 1) if vocab % c == 0), None)


def _argmax_args(node: fx.Node) -> tuple[fx.Node, bool] | None:
    """(input, keepdim) of ``argmax(x, dim=last)``, else None."""
    if not fu.is_op(node, "argmax"):
        return None
    x, dim, keepdim = fu.arg(node, 0, "input"), fu.arg(node, 1, "dim"), fu.arg(node, 2, "keepdim", False)
    meta = fu.tensor_meta(x) if isinstance(x, fx.Node) else None
    if meta is None or meta.dim() < 1 or not isinstance(dim, int) or not isinstance(keepdim, bool):
        return None
    if fu.normalize_dim(dim, meta.dim()) != meta.dim() - 1 or not meta.dtype.is_floating_point:
        return None
    return x, keepdim


class SplitArgmaxPass(AccelPass):
    name = "split_argmax"

    def __call__(self, gm: fx.GraphModule, ctx: CompileContext) -> int:
        count = 0
        for node in list(gm.graph.nodes):
            found = _argmax_args(node)
            if found is None:
                continue
            x, keepdim = found
            shape = [static_int(s) for s in fu.tensor_meta(x).shape]
            vocab = shape[-1]
            if vocab is None or vocab < MIN_VOCAB or None in shape:
                continue
            chunk = chunk_length(vocab)
            if chunk is None:
                ctx.fallback("argmax", node, f"argmax over {vocab}: no divisor in [{MIN_CHUNK}, {MAX_CHUNK}]")
                continue
            grouped = ctx.call(torch.reshape, (x, (*shape[:-1], vocab // chunk, chunk)), like=node)
            best = ctx.call(torch.max, (grouped, -1), like=node)
            vals = ctx.call(operator.getitem, (best, 0), like=node)
            idx = ctx.call(operator.getitem, (best, 1), like=node)
            group = ctx.call(torch.argmax, (vals, -1, True), like=node)
            inner = ctx.call(torch.gather, (idx, -1, group), like=node)
            out = ctx.call(operator.add, (ctx.call(operator.mul, (group, chunk), like=node), inner), like=node)
            if not keepdim:
                out = ctx.call(torch.squeeze, (out, -1), like=node)
            node.replace_all_uses_with(out)
            gm.graph.erase_node(node)
            ctx.matched("argmax", "split_argmax", out, f"over {vocab} in {vocab // chunk} groups of {chunk}")
            count += 1
        return count
