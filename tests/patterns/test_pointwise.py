"""Activation identification: any pointwise chain is matched structurally, then named by what it computes."""
import math

import pytest
import torch
import torch.nn.functional as F

from accel.compiler import fx_utils as fu
from accel.patterns.pointwise import chain_source_maybe, identify_activation, pointwise_chain
from tests.testing_backend import capture_graph

CASES = [
    ("silu", lambda x: x * torch.sigmoid(x)),
    ("silu", lambda x: F.silu(x.float()).to(torch.float16).float()),  # casts are precision, not math
    ("gelu", lambda x: x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))),
    ("gelu_tanh", lambda x: 0.5 * x * (1 + torch.tanh(0.7978845608028654 * (x + 0.044715 * x ** 3)))),
    ("quick_gelu", lambda x: x * torch.sigmoid(x * 1.702)),
    ("relu", lambda x: torch.relu(x)),
    ("relu2", lambda x: F.relu(x).square()),
    ("sigmoid", lambda x: 1 / (1 + torch.exp(-x))),
    ("identity", lambda x: x.contiguous()),
    (None, lambda x: torch.sin(x)),  # not pointwise in accel's vocabulary: no chain at all
    (None, lambda x: x * torch.sigmoid(1.5 * x)),  # a chain, but no activation accel implements
]


def chain_of(fn):
    gm = capture_graph(lambda x: fn(x @ torch.eye(8)).sum(-1), torch.randn(4, 8))
    (end,) = [n.args[0] for n in gm.graph.nodes if fu.op_name(n) is None and n.op == "call_method" and n.target == "sum"]
    start = chain_source_maybe(end)
    if fu.op_name(start) != "matmul":  # the chain must reach back to the projection, else there is none
        return start, None, end
    return start, pointwise_chain(start, end), end


@pytest.mark.parametrize("expected,fn", CASES)
def test_identify_activation(expected, fn):
    start, chain, end = chain_of(fn)
    got = identify_activation(start, chain, end) if chain is not None else None
    assert got == expected


def test_chain_must_not_leak_intermediates():
    def f(x):
        y = x @ torch.eye(8)
        s = torch.sigmoid(y)
        return (y * s).sum(-1) + s.sum(-1)  # the sigmoid is used outside the chain

    gm = capture_graph(f, torch.randn(4, 8))
    mul = next(n for n in gm.graph.nodes if fu.op_name(n) == "mul")
    assert pointwise_chain(mul.args[0], mul) is None
