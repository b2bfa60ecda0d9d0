"""Rotary position embedding in the ``rotate_half`` form (Llama, Mistral, Qwen2/3, Phi-3, Gemma)::

    x1, x2 = x[..., : d // 2], x[..., d // 2 :]
    x_embed = x * cos + torch.cat((-x2, x1), dim=-1) * sin

matched from its final ``add``. Partial rotary (rotating only some of the head dims) and the interleaved form
(GPT-J) are not matched.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.fx as fx

from accel.compiler import fx_utils as fu


@dataclass
class RopeMatch:
    out: fx.Node
    x: fx.Node
    cos: fx.Node
    sin: fx.Node
    nodes: list[fx.Node] = field(default_factory=list)
    """The chain's own nodes, producers first."""


def _mul_parts(node: fx.Node) -> tuple[fx.Node, fx.Node] | None:
    if fu.is_op(node, "mul") and len(node.args) == 2 and all(isinstance(a, fx.Node) for a in node.args):
        return node.args[0], node.args[1]
    return None


def _half(node: fx.Node, x: fx.Node, first: bool, d: int) -> bool:
    """Whether ``node`` is ``x[..., :d/2]`` (first) or ``x[..., d/2:]``."""
    if not fu.is_op(node, "getitem") or node.args[0] is not x:
        return False
    idx = node.args[1]
    if not isinstance(idx, tuple) or len(idx) != 2 or idx[0] is not Ellipsis or not isinstance(idx[1], slice):
        return False
    sl = idx[1]
    if sl.step not in (None, 1):
        return False
    if first:
        return sl.start in (None, 0) and sl.stop == d // 2
    return sl.start == d // 2 and sl.stop in (None, d)


def _rotate_half_of(node: fx.Node) -> tuple[fx.Node, list[fx.Node]] | None:
    """(x, nodes) when ``node`` is ``cat((-x[..., d/2:], x[..., :d/2]), dim=-1)``."""
    if not (node.op == "call_function" and node.target is torch.cat):
        return None
    parts = fu.arg(node, 0, "tensors")
    dim = fu.arg(node, 1, "dim", 0)
    if not isinstance(parts, (list, tuple)) or len(parts) != 2:
        return None
    neg, x1 = parts
    if not fu.is_op(neg, "neg") or not isinstance(x1, fx.Node) or not fu.is_op(x1, "getitem"):
        return None
    x = x1.args[0]
    x2 = neg.args[0]
    t = fu.tensor_meta(x)
    if t is None or t.shape[-1] % 2 or fu.normalize_dim(dim, t.dim()) != t.dim() - 1:
        return None
    d = int(t.shape[-1])
    if not (_half(x1, x, True, d) and _half(x2, x, False, d)):
        return None
    return x, [x2, neg, x1, node]


def match_rope(node: fx.Node) -> RopeMatch | None:
    if not fu.is_op(node, "add") or len(node.args) != 2 or node.kwargs:
        return None
    muls = [_mul_parts(a) if isinstance(a, fx.Node) else None for a in node.args]
    if None in muls:
        return None
    for (a, b), (c, e), mul_cos, mul_sin in ((muls[0], muls[1], node.args[0], node.args[1]),
                                             (muls[1], muls[0], node.args[1], node.args[0])):
        for x, cos in ((a, b), (b, a)):
            for rot, sin in ((c, e), (e, c)):
                found = _rotate_half_of(rot)
                if found is None or found[0] is not x:
                    continue
                chain = [*found[1], mul_cos, mul_sin]
                if any(len(n.users) != 1 for n in chain):  # every intermediate feeds only the chain
                    continue
                return RopeMatch(out=node, x=x, cos=cos, sin=sin, nodes=chain)
    return None
