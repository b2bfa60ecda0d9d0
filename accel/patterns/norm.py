"""RMSNorm as models write it out (Llama, Mistral, Qwen2/3, Phi-3, SmolLM, ...)::

    h32 = h.to(torch.float32)                         # absent, or a no-op, in an fp32 model
    variance = h32.pow(2).mean(-1, keepdim=True)      # or h32 * h32, torch.mean(...)
    y = h32 * torch.rsqrt(variance + eps)
    y = weight * y.to(h.dtype)                        # or y.to(h.dtype) * weight

matched from its ``rsqrt``. Only this form is accepted: a weight that is a parameter of shape [K], a constant
eps, and intermediates used by nothing outside the chain. Gemma's ``(1 + weight)`` and norms without a weight are
not matched (their rewrite would need a derived weight; they are left to Inductor).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.fx as fx

from accel.compiler import fx_utils as fu
from accel.compiler.context import CompileContext


@dataclass
class RMSNormMatch:
    out: fx.Node
    """The normalized, weighted output (h's dtype)."""
    x: fx.Node
    """The input h."""
    weight: fx.Node
    eps: float
    nodes: list[fx.Node] = field(default_factory=list)
    """The chain's own nodes (erased once ``out`` is unused)."""


def _is_mean_last(node: fx.Node) -> bool:
    is_mean = (node.op == "call_method" and node.target == "mean") or (
        node.op == "call_function" and node.target is torch.mean)
    if not is_mean:
        return False
    dim = fu.arg(node, 1, "dim")
    dim = dim[0] if isinstance(dim, (list, tuple)) and len(dim) == 1 else dim
    n = fu.rank(node.args[0])
    return n is not None and fu.normalize_dim(dim, n) == n - 1 and fu.arg(node, 2, "keepdim", False) is True


def _squares_of(node: fx.Node) -> fx.Node | None:
    """x when ``node`` is x², spelled pow(x, 2), x * x or square(x)."""
    if fu.is_op(node, "pow") and fu.scalar_constant(fu.arg(node, 1, "exponent")) == 2.0:
        return node.args[0]
    if fu.is_op(node, "mul") and len(node.args) == 2 and node.args[0] is node.args[1]:
        return node.args[0]
    if fu.is_op(node, "square"):
        return node.args[0]
    return None


def _other(node: fx.Node, one: fx.Node):
    a, b = node.args[:2]
    return b if a is one else a if b is one else None


def _float32_source(h32: fx.Node) -> fx.Node:
    """h for ``h.to(torch.float32)`` / ``h.float()``, else the node itself (an fp32 model has no cast)."""
    t = fu.tensor_meta(h32)
    if fu.is_op(h32, "to") and isinstance(h32.args[0], fx.Node) and t is not None and t.dtype == torch.float32:
        return h32.args[0]
    return h32


def match_rms_norm(rsqrt: fx.Node, ctx: CompileContext) -> RMSNormMatch | None:
    if not fu.is_op(rsqrt, "rsqrt") or not rsqrt.args:
        return None
    add = rsqrt.args[0]
    if not fu.is_op(add, "add") or len(add.args) != 2 or add.kwargs or len(add.users) != 1:
        return None
    variance = next((a for a in add.args if isinstance(a, fx.Node) and _is_mean_last(a)), None)
    eps = fu.scalar_constant(_other(add, variance)) if variance is not None else None
    if eps is None or len(variance.users) != 1:
        return None
    square = variance.args[0]
    h32 = _squares_of(square) if isinstance(square, fx.Node) and len(square.users) == 1 else None
    scaled = fu.only_user(rsqrt)
    if h32 is None or scaled is None or not fu.is_op(scaled, "mul") or _other(scaled, rsqrt) is not h32:
        return None
    chain = [square, variance, add, rsqrt, scaled]
    node = scaled
    cast = fu.only_user(node)
    if cast is not None and fu.is_op(cast, "to"):
        chain.append(cast)
        node = cast
    out = fu.only_user(node)
    if out is None or not fu.is_op(out, "mul") or len(out.args) != 2:
        return None
    weight = _other(out, node)
    if any(len(n.users) != 1 for n in chain):
        return None
    h = _float32_source(h32)
    if h is not h32:  # the cast to fp32 belongs to the chain: it may feed nothing else
        if any(u not in chain for u in h32.users):
            return None
        chain.insert(0, h32)
    w, hm, om = ctx.weight_value(weight), fu.tensor_meta(h), fu.tensor_meta(out)
    if w is None or hm is None or om is None or w.dim() != 1 or w.shape[0] != hm.shape[-1]:
        return None
    if not (om.dtype == hm.dtype == w.dtype) or om.shape != hm.shape:
        return None
    return RMSNormMatch(out=out, x=h, weight=weight, eps=eps, nodes=chain)
