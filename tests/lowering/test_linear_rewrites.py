"""Linear rewrites: every parameter linear spelling becomes ``accel::linear``; linears sharing an input merge.

Spellings: nn.Linear, GPT-2 Conv1D (addmm with [in, out] weight), ``x @ W``, ``x @ W.t() + b``. Projection
groups of 2–4 linears with mixed biases merge into one GEMM over concatenated weights (zeros for a missing
bias). fp32 tolerance 1e-5 relative, as elsewhere (different GEMM blockings, observed ~1e-7).
"""
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.testing_backend import rel_l2, rewrite_only

TOL_FP32 = 1e-5


class Projections(torch.nn.Module):
    def __init__(self, h, outs, biases):
        super().__init__()
        self.projs = torch.nn.ModuleList(torch.nn.Linear(h, n, bias=b) for n, b in zip(outs, biases))

    def forward(self, x):
        # views of each projection, as attention does with q/k/v
        return [p(x).view(*x.shape[:-1], -1, 2).sum(-1) for p in self.projs]


@given(st.integers(1, 3), st.integers(1, 6), st.sampled_from([4, 8, 20]),
       st.lists(st.tuples(st.sampled_from([2, 6, 16]), st.booleans()), min_size=2, max_size=4))
def test_projections_sharing_an_input_merge(b, s, h, projs):
    torch.manual_seed(0)
    model = Projections(h, [n for n, _ in projs], [bias for _, bias in projs])
    x = torch.randn(b, s, h)
    outs, report = rewrite_only(model, x)
    assert report.counts["linear"] == 1
    assert report.matches[0].pattern == f"merged_projection[{len(projs)}]"
    for out, ref in zip(outs, model(x)):
        assert rel_l2(out, ref) <= TOL_FP32


class Forms(torch.nn.Module):
    def __init__(self, form, k, n):
        super().__init__()
        self.form = form
        self.w = torch.nn.Parameter(torch.randn(n, k) if form in ("linear", "matmul_t") else torch.randn(k, n))
        self.b = torch.nn.Parameter(torch.randn(n))

    def forward(self, x):
        if self.form == "linear":
            return torch.nn.functional.linear(x, self.w, self.b)
        if self.form == "matmul_t":
            return x @ self.w.t() + self.b
        if self.form == "matmul":
            return torch.matmul(x, self.w)
        return torch.addmm(self.b, x.view(-1, x.size(-1)), self.w).view(*x.shape[:-1], -1)


@given(st.sampled_from(["linear", "matmul_t", "matmul", "conv1d"]), st.integers(1, 5), st.sampled_from([3, 8]),
       st.sampled_from([5, 16]))
def test_linear_spellings_are_replaced(form, m, k, n):
    torch.manual_seed(0)
    model = Forms(form, k, n)
    x = torch.randn(2, m, k)
    out, report = rewrite_only(model, x)
    assert report.counts["linear"] == 1, report
    assert report.graphs[0].accel_ops == {"accel::linear": 1}
    assert rel_l2(out, model(x)) <= TOL_FP32


def test_matmul_between_activations_is_not_a_linear():
    out, report = rewrite_only(lambda a, b: a @ b, torch.randn(3, 4), torch.randn(4, 5))
    assert report.counts["linear"] == 0


def test_families_can_be_switched_off():
    model = Projections(8, [4, 4], [True, False])
    x = torch.randn(2, 8)
    _, report = rewrite_only(model, x, options={"merge_projections": False})
    assert report.counts["linear"] == 2 and all(m.pattern == "linear" for m in report.matches)
    _, report = rewrite_only(model, x, options={"merge_projections": False, "replace_linear": False})
    assert report.counts == {"attention": 0, "ffn": 0, "linear": 0, "quantize": 0, "norm": 0}
