"""FFN rewrites: gated and plain blocks in every activation spelling become one ``accel::ffn``.

The activation is drawn from hand-written pointwise spellings of each activation accel implements (functional,
module, written out as in GPT-2's gelu_new or CLIP's quick_gelu); weights come as nn.Linear, GPT-2 Conv1D
(addmm with an [in, out] weight) or a merged gate_up projection followed by chunk/split/slicing. fp32 tolerance
as for attention: ‖accel − eager‖/‖eager‖ ≤ 1e-5 (reassociated fp32 sums, observed ~1e-7).
"""
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from tests.testing_backend import rel_l2, rewrite_only

TOL_FP32 = 1e-5

SPELLINGS = {
    "silu": [F.silu, lambda x: x * torch.sigmoid(x), torch.nn.SiLU()],
    "gelu": [F.gelu, torch.nn.GELU(), lambda x: 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))],
    "gelu_tanh": [lambda x: F.gelu(x, approximate="tanh"),
                  lambda x: 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))],
    "quick_gelu": [lambda x: x * torch.sigmoid(1.702 * x)],
    "relu": [F.relu, torch.relu, torch.nn.ReLU()],
    "relu2": [lambda x: torch.square(F.relu(x)), lambda x: F.relu(x) ** 2],
    "tanh": [torch.tanh],
}


class Conv1D(torch.nn.Module):
    """GPT-2's linear: y = addmm(b, x.view(-1, in), W[in, out]).view(..., out)."""

    def __init__(self, n_in, n_out, bias=True):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(n_in, n_out) * n_in ** -0.5)
        self.bias = torch.nn.Parameter(torch.randn(n_out) * 0.1) if bias else None

    def forward(self, x):
        size = x.size()[:-1] + (self.weight.shape[1],)
        if self.bias is None:
            return torch.matmul(x, self.weight)
        return torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight).view(size)


def make_linear(kind, n_in, n_out, bias):
    return Conv1D(n_in, n_out, bias) if kind == "conv1d" else torch.nn.Linear(n_in, n_out, bias=bias)


class GatedFFN(torch.nn.Module):
    def __init__(self, h, i, act, *, merged, split, bias, swap):
        super().__init__()
        self.act, self.merged, self.split, self.swap = act, merged, split, swap
        if merged:
            self.gate_up = torch.nn.Linear(h, 2 * i, bias=bias)
        else:
            self.gate, self.up = torch.nn.Linear(h, i, bias=bias), torch.nn.Linear(h, i, bias=bias)
        self.down = torch.nn.Linear(i, h, bias=bias)
        self.i = i

    def forward(self, x):
        if self.merged:
            y = self.gate_up(x)
            if self.split == "chunk":
                a, b = y.chunk(2, dim=-1)
            elif self.split == "split":
                a, b = torch.split(y, self.i, dim=-1)
            else:
                a, b = y[..., : self.i], y[..., self.i:]
        else:
            a, b = self.gate(x), self.up(x)
        if self.swap:  # activation on the second half, product written up * act
            return self.down(a * self.act(b))
        return self.down(self.act(a) * b)


class PlainFFN(torch.nn.Module):
    def __init__(self, h, i, act, *, kind, bias):
        super().__init__()
        self.fc1, self.fc2, self.act = make_linear(kind, h, i, bias), make_linear(kind, i, h, bias), act

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


activation = st.sampled_from(sorted(SPELLINGS)).flatmap(
    lambda name: st.tuples(st.just(name), st.sampled_from(range(len(SPELLINGS[name])))))
shape = st.tuples(st.integers(1, 3), st.integers(1, 7), st.sampled_from([8, 16, 24]), st.sampled_from([16, 32, 40]))


@given(activation, shape, st.booleans(), st.sampled_from(["chunk", "split", "slice"]), st.booleans(), st.booleans())
def test_gated_ffn_is_rewritten(act, shp, merged, split, bias, swap):
    (name, idx), (b, s, h, i) = act, shp
    torch.manual_seed(0)
    model = GatedFFN(h, i, SPELLINGS[name][idx], merged=merged, split=split, bias=bias, swap=swap)
    x = torch.randn(b, s, h)
    out, report = rewrite_only(model, x)
    assert report.counts["ffn"] == 1, report
    assert report.matches[0].pattern.endswith(f"({name})")
    assert rel_l2(out, model(x)) <= TOL_FP32


@given(activation, shape, st.sampled_from(["linear", "conv1d"]), st.booleans())
def test_plain_ffn_is_rewritten(act, shp, kind, bias):
    (name, idx), (b, s, h, i) = act, shp
    torch.manual_seed(0)
    model = PlainFFN(h, i, SPELLINGS[name][idx], kind=kind, bias=bias)
    x = torch.randn(b, s, h)
    out, report = rewrite_only(model, x)
    assert report.counts["ffn"] == 1, report
    assert report.matches[0].pattern == f"plain({name})"
    assert rel_l2(out, model(x)) <= TOL_FP32


def test_unknown_activation_is_reported_not_rewritten():
    model = PlainFFN(8, 16, lambda x: torch.sin(x) * x, kind="linear", bias=True)
    x = torch.randn(2, 8)
    out, report = rewrite_only(model, x)
    assert report.counts["ffn"] == 0
    assert report.counts["linear"] == 2  # both linears still go through accel::linear
    torch.testing.assert_close(out, model(x))


def test_chain_with_unsupported_math_is_reported():
    # exp is pointwise but this chain is not an activation accel implements
    model = PlainFFN(8, 16, lambda x: torch.exp(-x * x), kind="linear", bias=False)
    out, report = rewrite_only(model, torch.randn(3, 8))
    assert report.counts["ffn"] == 0
    assert any("no kernel" in f.reason for f in report.fallbacks), report.fallbacks


def test_gate_used_outside_the_block_is_left_alone():
    class Leaky(GatedFFN):
        def forward(self, x):
            g = self.gate(x)
            return self.down(F.silu(g) * self.up(x)) + g.sum(-1, keepdim=True)

    model = Leaky(8, 16, F.silu, merged=False, split="chunk", bias=False, swap=False)
    x = torch.randn(2, 8)
    out, report = rewrite_only(model, x)
    assert report.counts["ffn"] == 0
    assert any("outside the FFN" in f.reason for f in report.fallbacks)
    torch.testing.assert_close(out, model(x))


@pytest.mark.parametrize("identity", [True, False])
def test_identity_plain_chain_is_not_an_ffn(identity):
    class TwoLinears(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Linear(8, 8), torch.nn.Linear(8, 8)

        def forward(self, x):
            h = self.a(x)
            return self.b(h.contiguous() if identity else h * 2.0)

    _, report = rewrite_only(TwoLinears(), torch.randn(2, 8))
    assert report.counts["ffn"] == 0
    assert report.counts["linear"] == 2


def test_oracle_catches_a_planted_bug(monkeypatch):
    """The equivalence check is only evidence if it fails on a wrong rewrite: drop the first bias in the op."""
    import accel.runtime.reference as ref

    real = ref.ffn_up
    monkeypatch.setattr(ref, "ffn_up", lambda x, w1, b1, act, gated: real(x, w1, None, act, gated))
    model = GatedFFN(8, 16, F.silu, merged=False, split="chunk", bias=True, swap=False)
    x = torch.randn(3, 8)
    out, report = rewrite_only(model, x)
    assert report.counts["ffn"] == 1
    assert rel_l2(out, model(x)) > TOL_FP32
