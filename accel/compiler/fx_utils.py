"""Helpers for reading Dynamo-level FX graphs, where one operation has many spellings.

Dynamo hands the backend torch-level IR: ``torch.matmul``, ``operator.matmul`` and ``x.matmul(...)``
(``call_method``) are the same op, arguments arrive positionally or by keyword. :func:`op_name` maps each
spelling to one canonical name and :func:`arg` fetches an argument by position or keyword, with ``self``
counted as the first positional argument of a method call.
"""
from __future__ import annotations

import operator
import re
from typing import Any, Iterable

import torch
import torch.fx as fx
import torch.nn.functional as F

# Canonical name per call_function target.
_FUNCTIONS: dict[Any, str] = {
    torch.matmul: "matmul", operator.matmul: "matmul", torch.bmm: "matmul",
    torch._C._nn.linear: "linear", F.linear: "linear",
    torch.addmm: "addmm",
    operator.mul: "mul", torch.mul: "mul",
    operator.truediv: "div", torch.div: "div", torch.true_divide: "div",
    operator.add: "add", torch.add: "add",
    operator.sub: "sub", torch.sub: "sub", operator.neg: "neg", torch.neg: "neg",
    operator.pow: "pow", torch.pow: "pow",
    operator.getitem: "getitem",
    F.softmax: "softmax", torch.softmax: "softmax", torch.nn.functional.softmax: "softmax",
    torch._C._nn.scaled_dot_product_attention: "sdpa", F.scaled_dot_product_attention: "sdpa",
    F.dropout: "dropout", torch.dropout: "dropout",
    torch.transpose: "transpose", torch.permute: "permute", torch.reshape: "reshape", torch.t: "t",
    torch.split: "split", torch.chunk: "chunk", torch.repeat_interleave: "repeat_interleave",
    torch.masked_fill: "masked_fill", torch.where: "where",
    torch.full: "full", torch.tensor: "tensor", torch.scalar_tensor: "tensor",
    F.silu: "silu", F.gelu: "gelu", F.relu: "relu", torch.relu: "relu", F.mish: "mish",
    torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid", torch.tanh: "tanh", F.tanh: "tanh",
    torch.erf: "erf", torch.exp: "exp", torch.sqrt: "sqrt", torch.rsqrt: "rsqrt", torch.square: "square",
    F.relu6: "relu6", F.leaky_relu: "leaky_relu", F.hardtanh: "hardtanh",
    torch.argmax: "argmax",
}
# Canonical name per call_method name.
_METHODS: dict[str, str] = {
    "matmul": "matmul", "__matmul__": "matmul", "bmm": "matmul",
    "mul": "mul", "__mul__": "mul", "div": "div", "__truediv__": "div",
    "add": "add", "__add__": "add", "sub": "sub", "neg": "neg", "pow": "pow",
    "softmax": "softmax", "transpose": "transpose", "permute": "permute", "t": "t",
    "view": "reshape", "reshape": "reshape", "expand": "expand", "unsqueeze": "unsqueeze",
    "contiguous": "contiguous", "clone": "contiguous",
    "to": "to", "float": "to", "half": "to", "bfloat16": "to", "type": "to", "type_as": "to",
    "split": "split", "chunk": "chunk", "repeat_interleave": "repeat_interleave",
    "masked_fill": "masked_fill",
    "sigmoid": "sigmoid", "tanh": "tanh", "relu": "relu", "exp": "exp", "sqrt": "sqrt", "erf": "erf",
    "square": "square", "rsqrt": "rsqrt", "argmax": "argmax",
}
# Ops whose output element i depends only on input element i (plus scalars): the vocabulary of activations.
POINTWISE = frozenset({
    "mul", "div", "add", "sub", "neg", "pow", "to", "silu", "gelu", "relu", "mish", "sigmoid", "tanh",
    "erf", "exp", "sqrt", "rsqrt", "square", "relu6", "leaky_relu", "hardtanh", "where", "contiguous",
})


def op_name(node: Any) -> str | None:
    """Canonical op name of ``node`` (e.g. ``"matmul"``), or ``None`` for anything accel does not read."""
    if not isinstance(node, fx.Node):
        return None
    if node.op == "call_function":
        if node.target in _FUNCTIONS:
            return _FUNCTIONS[node.target]
        if isinstance(node.target, torch._ops.OpOverload | torch._ops.OpOverloadPacket):
            return None
        return _FUNCTIONS.get(getattr(torch.Tensor, getattr(node.target, "__name__", ""), None))
    if node.op == "call_method":
        return _METHODS.get(node.target)
    return None


def is_op(node: Any, *names: str) -> bool:
    return op_name(node) in names


def arg(node: fx.Node, index: int, name: str | None = None, default: Any = None) -> Any:
    """Argument ``index`` (positional, ``self`` first for methods) or keyword ``name`` of ``node``."""
    if index < len(node.args):
        return node.args[index]
    if name is not None and name in node.kwargs:
        return node.kwargs[name]
    return default


def schema_args(node: fx.Node) -> dict[str, Any]:
    """Every schema argument of an op-overload node (an ``accel::*`` op) by name, defaults filled in."""
    out = {}
    for i, a in enumerate(node.target._schema.arguments):
        out[a.name] = node.args[i] if i < len(node.args) else node.kwargs.get(a.name, a.default_value)
    return out


def val(node: Any) -> Any:
    """The example value Dynamo recorded for ``node`` (a fake tensor, SymInt, ...), or ``None``."""
    if not isinstance(node, fx.Node):
        return None
    return node.meta.get("example_value", node.meta.get("val"))


def tensor_meta(node: Any) -> torch.Tensor | None:
    v = val(node)
    return v if isinstance(v, torch.Tensor) else None


def rank(node: Any) -> int | None:
    t = tensor_meta(node)
    return None if t is None else t.dim()


def broadcast_source(node: Any) -> Any:
    """The tensor ``node`` only broadcasts, when it is ``x.expand(...)`` of an ``x`` of the same rank whose every
    size is the expand's or 1; else ``node``. A kernel that broadcasts size-1 dims itself can take ``x``: Inductor
    realizes a kernel input that is a fresh view of a computed tensor by a copy for each kernel (a decoder's one
    attention mask, once a layer), the tensor itself once."""
    if not is_op(node, "expand") or not isinstance(node.args[0], fx.Node):
        return node
    src, out = tensor_meta(node.args[0]), tensor_meta(node)
    if src is None or out is None or src.dim() != out.dim():
        return node
    if all(a == b or a == 1 for a, b in zip(src.shape, out.shape)):
        return node.args[0]
    return node


def is_noop_dropout(node: Any) -> bool:
    """Dropout that does nothing: ``p == 0`` or ``training=False`` (what an eval-mode model traces to)."""
    if not is_op(node, "dropout"):
        return False
    p, training = arg(node, 1, "p", 0.5), arg(node, 2, "training", True)
    return (isinstance(p, (int, float)) and p == 0) or training is False


def only_user(node: fx.Node) -> fx.Node | None:
    """The single user of ``node``, or ``None`` when it has zero or several."""
    return next(iter(node.users)) if len(node.users) == 1 else None


def normalize_dim(dim: Any, ndim: int) -> int | None:
    if not isinstance(dim, int):
        return None
    return dim + ndim if dim < 0 else dim


def transposes_last_two(node: fx.Node) -> bool:
    """Whether ``node`` swaps the last two dims of its input (transpose(-1,-2), transpose(2,3) on 4-D, permute)."""
    n = rank(node.args[0]) if node.args else None
    if n is None:
        return False
    if is_op(node, "t"):
        return n == 2
    if is_op(node, "transpose"):
        dims = {normalize_dim(arg(node, 1, "dim0"), n), normalize_dim(arg(node, 2, "dim1"), n)}
        return dims == {n - 1, n - 2}
    if is_op(node, "permute"):
        perm = node.args[1:] if len(node.args) > 2 else arg(node, 1, "dims")
        perm = [normalize_dim(p, n) for p in perm] if isinstance(perm, (list, tuple)) else None
        return perm == list(range(n - 2)) + [n - 1, n - 2]
    return False


def scalar_constant(x: Any) -> float | None:
    """``x`` as a Python float if it is a number or a graph node that builds a constant scalar tensor
    (``torch.full([], c)``, ``torch.tensor(c)``), else ``None``."""
    if isinstance(x, bool):
        return None
    if isinstance(x, (int, float)):
        return float(x)
    if isinstance(x, fx.Node) and is_op(x, "full"):
        size, value = arg(x, 0, "size"), arg(x, 1, "fill_value")
        if isinstance(size, (list, tuple)) and len(size) == 0 and isinstance(value, (int, float)):
            return float(value)
    if isinstance(x, fx.Node) and is_op(x, "tensor"):
        value = arg(x, 0, "data")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


_MODULE_KEY = re.compile(r"^L\['self'\]\.?|^L\['(\w+)'\]\.?")


def module_path(node: fx.Node) -> str:
    """Dotted path of the innermost module that produced ``node`` (``model.layers.0.self_attn``), or ''."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    path = list(stack.values())[-1][0]
    path = _MODULE_KEY.sub("", str(path))
    path = re.sub(r"\[(\d+)\]", r".\1", path)
    path = re.sub(r"\._modules\['(\w+)'\]", r".\1", path)
    return re.sub(r"\['(\w+)'\]", r".\1", path).strip(".")


def source_line(node: fx.Node) -> str:
    """``file:line`` of the user code that produced ``node`` (last frame of its stack trace), or ''."""
    trace = node.meta.get("stack_trace") or ""
    frames = re.findall(r'File "([^"]+)", line (\d+)', trace)
    if not frames:
        return ""
    path, line = frames[-1]
    parts = path.replace("\\", "/").split("/")
    return f"{'/'.join(parts[-2:])}:{line}"


def nodes_between(inputs: Iterable[fx.Node], output: fx.Node) -> list[fx.Node] | None:
    """The nodes on paths from any of ``inputs`` to ``output`` (excluding the inputs), in graph order, or
    ``None`` if ``output`` does not depend on them."""
    inputs = set(inputs)
    memo: dict[fx.Node, bool] = {}

    def reaches(n: Any) -> bool:
        if not isinstance(n, fx.Node):
            return False
        if n in inputs:
            return True
        if n not in memo:
            memo[n] = False
            memo[n] = any([reaches(a) for a in n.all_input_nodes])  # a list: visit every input, no short cut
        return memo[n]

    if not reaches(output):
        return None
    order = {n: i for i, n in enumerate(output.graph.nodes)}
    return sorted((n for n, hit in memo.items() if hit and n not in inputs), key=order.__getitem__)


def _is_removable(node: fx.Node) -> bool:
    """Whether ``node`` may be erased once unused: a known, out-of-place op (never an in-place method such as
    ``index_copy_``, which FX's own dead-code elimination would wrongly drop from Dynamo graphs)."""
    if node.op == "call_function" and isinstance(node.target, torch._ops.OpOverload):
        return node.target.namespace == "accel"
    return op_name(node) is not None and node.op in ("call_function", "call_method")


def erase_if_dead(nodes: Iterable[fx.Node]) -> int:
    """Erase each of ``nodes`` that has no users, then, transitively, producers left without users."""
    stack, erased = list(nodes), set()
    while stack:
        n = stack.pop()
        if n in erased or n.users or not _is_removable(n):
            continue
        inputs = n.all_input_nodes
        n.graph.erase_node(n)
        erased.add(n)
        stack.extend(inputs)
    return len(erased)
