"""Linear layers with a parameter weight, in the spellings models use.

| spelling | example | weight layout |
|---|---|---|
| ``linear(x, W, b)`` | ``nn.Linear`` | W [N, K] |
| ``view(addmm(b, view(x, (-1, K)), W), (..., N))`` | GPT-2 ``Conv1D`` | W [K, N] |
| ``addmm(b, x2d, W)`` | 2-D Conv1D | W [K, N] |
| ``matmul(x, W)`` [+ b] | ``x @ self.weight`` | W [K, N] |
| ``matmul(x, W.t())`` [+ b] | ``x @ self.weight.T`` | W [N, K] |

Only weights (and biases) that are parameters count; a matmul between two activations is not a linear.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch.fx as fx

from accel.compiler import fx_utils as fu
from accel.compiler.context import CompileContext


@dataclass
class LinearMatch:
    out: fx.Node
    """The node whose value is the linear's output (the outer view for Conv1D)."""
    x: fx.Node
    """The input activation, last dim K (any rank)."""
    weight: fx.Node
    bias: fx.Node | None
    layout: str
    """"nk" when ``weight`` is [N, K] (nn.Linear), "kn" when it is [K, N] (Conv1D, x @ W)."""
    pattern: str
    nodes: list[fx.Node] = field(default_factory=list)
    """Every node the match covers (erased once the output is replaced)."""

    @property
    def out_features(self) -> int:
        w = fu.tensor_meta(self.weight)
        return int(w.shape[0] if self.layout == "nk" else w.shape[1])


def _bias_maybe(node, ctx: CompileContext, n: int) -> fx.Node | None:
    t = ctx.weight_value(node)
    return node if t is not None and t.dim() == 1 and t.shape[0] == n else None


def _weight_ok(w: fx.Node, ctx: CompileContext, x: fx.Node) -> bool:
    t = ctx.weight_value(w)
    xm = fu.tensor_meta(x)
    return t is not None and t.dim() == 2 and xm is not None and xm.dtype == t.dtype and xm.dim() >= 1


def _match_addmm(node: fx.Node, ctx: CompileContext) -> LinearMatch | None:
    if not fu.is_op(node, "addmm") or node.kwargs.get("beta", 1) != 1 or node.kwargs.get("alpha", 1) != 1:
        return None
    b, x2d, w = fu.arg(node, 0, "input"), fu.arg(node, 1, "mat1"), fu.arg(node, 2, "mat2")
    if not isinstance(x2d, fx.Node) or not _weight_ok(w, ctx, x2d):
        return None
    n = int(ctx.weight_value(w).shape[1])
    bias = _bias_maybe(b, ctx, n)
    if bias is None:
        return None
    x, nodes = x2d, [node]
    # Conv1D: view(x, (-1, K)) in front, view back to (..., N) behind.
    if fu.is_op(x2d, "reshape") and len(x2d.users) == 1 and fu.rank(x2d.args[0]) is not None:
        x, nodes = x2d.args[0], [node, x2d]
    out = node
    user = fu.only_user(node)
    if x is not x2d and user is not None and fu.is_op(user, "reshape"):
        xm, um = fu.tensor_meta(x), fu.tensor_meta(user)
        if um is not None and xm is not None and um.dim() == xm.dim() and um.shape[:-1] == xm.shape[:-1]:
            out, nodes = user, [user, *nodes]
    if out is node and x is not x2d:
        x, nodes = x2d, [node]  # 2-D result used as is: keep the 2-D input
    return LinearMatch(out, x, w, bias, "kn", "addmm", nodes)


def _match_matmul(node: fx.Node, ctx: CompileContext) -> LinearMatch | None:
    if not fu.is_op(node, "matmul") or len(node.args) < 2:
        return None
    x, w = node.args[0], node.args[1]
    if not isinstance(x, fx.Node) or fu.rank(x) is None or fu.rank(x) < 1:
        return None
    nodes = [node]
    if isinstance(w, fx.Node) and fu.transposes_last_two(w) and ctx.is_weight(w.args[0]) and len(w.users) == 1:
        nodes.append(w)
        w, layout = w.args[0], "nk"
    else:
        layout = "kn"
    if not _weight_ok(w, ctx, x):
        return None
    t = ctx.weight_value(w)
    n = int(t.shape[0] if layout == "nk" else t.shape[1])
    out, bias = node, None
    user = fu.only_user(node)
    if user is not None and fu.is_op(user, "add") and len(user.args) == 2:
        other = user.args[1] if user.args[0] is node else user.args[0]
        bias = _bias_maybe(other, ctx, n)
        if bias is not None:
            out, nodes = user, [user, *nodes]
    return LinearMatch(out, x, w, bias, layout, "matmul", nodes)


def match_linear_maybe(node: fx.Node, ctx: CompileContext) -> LinearMatch | None:
    """The linear layer ending at ``node`` (its innermost op: linear, addmm or matmul), or ``None``."""
    if fu.is_op(node, "linear"):
        x, w, b = fu.arg(node, 0, "input"), fu.arg(node, 1, "weight"), fu.arg(node, 2, "bias")
        if not isinstance(x, fx.Node) or not _weight_ok(w, ctx, x):
            return None
        if b is not None and _bias_maybe(b, ctx, int(ctx.weight_value(w).shape[0])) is None:
            return None
        return LinearMatch(node, x, w, b, "nk", "linear", [node])
    return _match_addmm(node, ctx) or _match_matmul(node, ctx)


def linear_producing(node, ctx: CompileContext) -> LinearMatch | None:
    """The linear whose output is exactly ``node`` (looking through Conv1D's trailing view), or ``None``."""
    if not isinstance(node, fx.Node):
        return None
    for anchor in (node, node.args[0] if fu.is_op(node, "reshape", "add") and node.args else None):
        if isinstance(anchor, fx.Node):
            m = match_linear_maybe(anchor, ctx)
            if m is not None and m.out is node:
                return m
    if fu.is_op(node, "add"):  # matmul + bias: the add is the output, its input the anchor
        for a in node.args:
            m = match_linear_maybe(a, ctx) if isinstance(a, fx.Node) else None
            if m is not None and m.out is node:
                return m
    return None


def find_linears(gm: fx.GraphModule, ctx: CompileContext) -> list[LinearMatch]:
    """Every parameter linear in ``gm``, in graph order, each reported once (by its innermost op)."""
    found = []
    for node in gm.graph.nodes:
        m = match_linear_maybe(node, ctx)
        if m is not None:
            found.append(m)
    return found
