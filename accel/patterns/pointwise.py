"""Activations as pointwise chains, identified by what they compute rather than by name.

Models spell the same activation many ways: ``F.silu(x)``, ``x * torch.sigmoid(x)``, GPT-2's hand-written
``0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * pow(x, 3))))``, ``nn.GELU(approximate="tanh")``,
CLIP's ``x * sigmoid(1.702 * x)``. Instead of a list of spellings, :func:`pointwise_chain` accepts any
sub-graph of pointwise ops from one tensor to another (plus scalar constants), and :func:`identify_activation`
runs that sub-graph in float64 on a probe grid and compares it with every activation accel's kernels
implement (``accel.runtime.activations``). dtype casts inside the chain are treated as identity: the fused
kernel computes in fp32 and rounds once.
"""
from __future__ import annotations

import torch
import torch.fx as fx

from accel.compiler import fx_utils as fu
from accel.runtime.activations import ACTIVATIONS

# Probe grid: dense around 0 where activations differ most, plus the tails.
_PROBE = torch.cat([torch.linspace(-12.0, 12.0, 2401, dtype=torch.float64),
                    torch.tensor([-60.0, -30.0, 30.0, 60.0], dtype=torch.float64)])
# gelu and gelu_tanh differ by up to ~5e-4 on the grid, so 2e-5 relative separates every pair while
# forgiving chains that compute in fp32.
_RTOL = 2e-5


def _is_constant_input(n) -> bool:
    return fu.scalar_constant(n) is not None


def pointwise_chain(start: fx.Node, end: fx.Node) -> list[fx.Node] | None:
    """The pointwise nodes computing ``end`` from ``start`` alone (``[]`` when ``end is start``), or ``None``
    if ``end`` depends on another tensor, uses a non-pointwise op, or an intermediate escapes the chain."""
    if end is start:
        return []
    nodes = fu.nodes_between([start], end)
    if nodes is None:
        return None
    inside = set(nodes)
    for n in nodes:
        if fu.op_name(n) not in fu.POINTWISE:
            return None
        for a in n.all_input_nodes:
            if a is not start and a not in inside and not _is_constant_input(a):
                return None
        if n is not end and any(u not in inside for u in n.users):
            return None
    return nodes


def chain_source_maybe(end: fx.Node) -> fx.Node | None:
    """Walking back from ``end`` through pointwise ops, the single non-constant tensor they all start from."""
    leaves: set[fx.Node] = set()
    stack, seen = [end], set()
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if fu.op_name(n) in fu.POINTWISE:
            stack.extend(a for a in n.all_input_nodes if not _is_constant_input(a))
        else:
            leaves.add(n)
    return next(iter(leaves)) if len(leaves) == 1 else None


def _to_module(start: fx.Node, nodes: list[fx.Node], end: fx.Node) -> fx.GraphModule:
    graph = fx.Graph()
    env: dict[fx.Node, object] = {start: graph.placeholder("x")}

    def lookup(a):
        if a in env:
            return env[a]
        c = fu.scalar_constant(a)
        return c if c is not None else a

    for n in nodes:
        if fu.is_op(n, "to", "contiguous"):
            env[n] = env[n.args[0]]
        else:
            env[n] = graph.node_copy(n, lookup)
    graph.output(env[end])
    return fx.GraphModule(torch.nn.Module(), graph)


def identify_activation(start: fx.Node, nodes: list[fx.Node], end: fx.Node) -> str | None:
    """The name in ``ACTIVATIONS`` that the chain computes, or ``None`` if it matches none of them."""
    if not nodes:
        return "identity"
    try:
        with torch.no_grad():
            y = _to_module(start, nodes, end)(_PROBE.clone())
    except Exception:  # a chain op that cannot run on a float64 CPU probe is not an activation we know
        return None
    if not isinstance(y, torch.Tensor) or y.shape != _PROBE.shape:
        return None
    y = y.to(torch.float64)
    for name, fn in ACTIVATIONS.items():
        ref = fn(_PROBE)
        if torch.all((y - ref).abs() <= _RTOL * (1 + ref.abs())):
            return name
    return None
