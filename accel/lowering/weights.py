"""Small helpers the rewrites share for weight operands."""
from __future__ import annotations

import torch
import torch.fx as fx

from accel.compiler.context import CompileContext


def weight_nk(ctx: CompileContext, weight: fx.Node, layout: str, like: fx.Node) -> fx.Node:
    """``weight`` as an [N, K] operand: itself, or a transposed view of a [K, N] (Conv1D) weight."""
    return weight if layout == "nk" else ctx.call(torch.t, (weight,), like=like)


def value_nk(ctx: CompileContext, weight: fx.Node, layout: str) -> torch.Tensor:
    t = ctx.weight_value(weight)
    return t if layout == "nk" else t.t()


def concat_biases(ctx: CompileContext, biases: list[fx.Node | None], sizes: list[int], like: torch.Tensor) -> torch.Tensor:
    """Biases of several linears as one vector, zeros where a linear has none."""
    parts = [ctx.weight_value(b) if b is not None else torch.zeros(n, dtype=like.dtype, device=like.device)
             for b, n in zip(biases, sizes)]
    return torch.cat(parts)
