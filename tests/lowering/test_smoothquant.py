"""SmoothQuant (option ``smoothquant``): the per-channel migration itself, its graph rewrite, option validation.

The rewrite must be an exact reparameterization before quantization (x·diag(1/s) @ (W·diag(s))ᵀ = x @ Wᵀ), so the
compiled graph is checked against eager within the w8a8 budget and against the unsmoothed compile on inputs with
outlier channels, where smoothing has to win.
"""
import pytest
import torch
import torch.nn.functional as F

import accel
from accel.compiler.options import AccelOptions, AccelOptionsError
from accel.runtime import quant as q
from tests.testing_backend import rewrite_only

SCHEMES = ("w8a8_int8", "w8a8_fp8")


def outlier_input(m: int = 256, k: int = 64) -> torch.Tensor:
    """Activations with two channels far above the rest, as after an LLM's norm."""
    x = torch.randn(m, k)
    x[:, 3] *= 60
    x[:, 17] *= 30
    return x


@pytest.mark.parametrize("scheme", SCHEMES)
def test_smoothing_an_outlier_channel_lowers_the_w8a8_error(scheme):
    torch.manual_seed(0)
    x, w = outlier_input(), torch.randn(32, 64) * 0.05
    ref = x @ w.t()
    qw, scale, _ = q.quantize_weight(w, scheme)
    plain = q.sqnr_db(ref, q.qlinear_reference(x, qw, scale, None, None, scheme, 128))
    s = q.smoothquant_scales(x, w, 0.5)
    qw, scale, _ = q.quantize_weight(w * s, scheme)
    smoothed = q.sqnr_db(ref, q.qlinear_reference(x / s, qw, scale, None, None, scheme, 128))
    assert smoothed > plain + 3  # measured: int8 +13 dB, fp8 +3.6 dB


def test_scales_are_one_where_a_channel_is_all_zero_and_clamped():
    x, w = torch.ones(4, 3), torch.ones(2, 3)
    x[:, 0], w[:, 1], x[:, 2] = 0, 0, 1e30
    s = q.smoothquant_scales(x, w, 0.5)
    assert s.tolist() == [1.0, 1.0, 1e4]
    torch.testing.assert_close(q.smoothquant_scales(torch.full((2, 2), 4.0), torch.ones(3, 2), 0.5),
                               torch.full((2,), 2.0))


class NormLinear(torch.nn.Module):
    """RMSNorm whose gain has outlier channels, then a linear: the multiply by 1/s lands right after the norm."""

    def __init__(self, h: int = 64, n: int = 48):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.ones(h))
        with torch.no_grad():
            self.gain[3], self.gain[17] = 60.0, 30.0
        self.proj = torch.nn.Linear(h, n)

    def forward(self, x):
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.gain
        return self.proj(x)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_compiled_smoothquant_matches_eager_and_beats_plain_w8a8(scheme):
    torch.manual_seed(0)
    model, x = NormLinear().eval(), torch.randn(4, 16, 64)
    ref = model(x)
    out, report = rewrite_only(model, x, options={"quantize": scheme, "smoothquant": 0.5})
    # unsmoothed, with the norm left in the graph as in the smoothed run (fuse_norm leaves norms alone when smoothing)
    plain, _ = rewrite_only(model, x, options={"quantize": scheme, "fuse_norm": False})
    (m,) = [m for m in report.matches if m.family == "quantize"]
    assert "smoothquant=0.5" in m.detail and m.detail.endswith("(outputs)")
    assert q.sqnr_db(ref, out) > q.sqnr_db(ref, plain) + 3
    assert q.sqnr_db(ref, out) >= 30


def test_smoothed_block_equals_the_reference_by_hand():
    """Merged Q/K (one input, one s) and a gated FFN whose down projection's 1/s is folded into the up rows."""
    from tests.lowering.test_quantize_weights import Block

    torch.manual_seed(0)
    scheme, alpha = "w8a8_int8", 0.5
    model, x = Block().eval(), torch.randn(3, 64)
    x[:, 5] *= 40
    out, report = rewrite_only(model, x, options={"quantize": scheme, "smoothquant": alpha})
    details = [m.detail for m in report.matches if m.family == "quantize"]
    assert len(details) == 3 and all("smoothquant=0.5" in d for d in details)

    def ql(inp, w, s, bias=None, act="identity", gated=False):
        qw, sc, _ = q.quantize_weight(w * s, scheme)
        return q.qlinear_reference(inp, qw, sc, None, bias, scheme, 128, act, gated)

    with torch.no_grad():
        # the scales come from the unquantized model's activations (what the capture pass records)
        y_fp = model.q(x) * model.k(x)
        h_fp = F.silu(model.gate(y_fp)) * model.up(y_fp)
        w_qk, b_qk = torch.cat([model.q.weight, model.k.weight]), torch.cat([model.q.bias, model.k.bias])
        s = q.smoothquant_scales(x, w_qk, alpha)
        qk = ql(x * (1 / s), w_qk, s, b_qk)
        y = qk[:, :64] * qk[:, 64:]
        s_down = q.smoothquant_scales(h_fp, model.down.weight, alpha)
        w_gu = torch.cat([model.gate.weight, model.up.weight / s_down[:, None]])
        s_gu = q.smoothquant_scales(y_fp, w_gu, alpha)
        h = ql(y * (1 / s_gu), w_gu, s_gu, act="silu", gated=True)
        y = y + ql(h, model.down.weight, s_down)
        ref = model.lm_head(y)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


class BiasedGatedFFN(torch.nn.Module):
    def __init__(self, h: int = 64, i: int = 128):
        super().__init__()
        self.gate, self.up, self.down = torch.nn.Linear(h, i), torch.nn.Linear(h, i), torch.nn.Linear(i, h)

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x))


def test_down_projection_smoothing_folds_into_the_up_rows_and_bias():
    torch.manual_seed(0)
    model, x = BiasedGatedFFN().eval(), outlier_input(16)
    with torch.no_grad():
        model.up.bias[5] = 20.0  # an outlier channel of the down projection's input, through the up bias
    ref = model(x)
    out, report = rewrite_only(model, x, options={"quantize": "w8a8_int8", "smoothquant": 0.5})
    plain, _ = rewrite_only(model, x, options={"quantize": "w8a8_int8"})
    details = [m.detail for m in report.matches if m.family == "quantize"]
    assert [d.split()[:2] for d in details] == [["gate_up", "smoothquant=0.5"], ["down", "smoothquant=0.5"]]
    assert q.sqnr_db(ref, out) > q.sqnr_db(ref, plain) + 6  # measured: 42.8 vs 30.8 dB


def test_graphs_that_mutate_inputs_are_quantized_without_smoothing():
    lin = torch.nn.Linear(32, 32)

    def step(x, cache):
        cache.add_(1.0)
        return lin(x) + cache

    _, report = rewrite_only(step, torch.randn(2, 32), torch.zeros(2, 32),
                             options={"quantize": "w8a8_int8", "smoothquant": 0.5})
    (m,) = [m for m in report.matches if m.family == "quantize"]
    assert "smoothquant" not in m.detail
    assert any("smoothquant: no captured activations" in f.reason for f in report.fallbacks)


def test_smoothquant_through_inductor():
    torch.manual_seed(0)
    model, x = NormLinear().eval(), torch.randn(2, 8, 64)
    torch._dynamo.reset()
    backend = accel.AccelBackend({"strict": True, "quantize": "w8a8_int8", "smoothquant": 0.5})
    with torch.no_grad():
        ref = model(x)
        out = torch.compile(model, backend=backend)(x)
    assert backend.report.counts["quantize"] == 1
    assert q.sqnr_db(ref, out) >= 30


@pytest.mark.parametrize("bad", [{"quantize": "w8a8_int8", "smoothquant": 1.5},
                                 {"quantize": "w8a8_int8", "smoothquant": -0.1},
                                 {"quantize": "w8a8_int8", "smoothquant": True},
                                 {"quantize": "w8a8_int8", "smoothquant": "0.5"},
                                 {"quantize": "int4_weight_only", "smoothquant": 0.5},
                                 {"smoothquant": 0.5}])
def test_bad_smoothquant_options_are_rejected(bad):
    with pytest.raises(AccelOptionsError, match="smoothquant"):
        AccelOptions.from_dict(bad)


def test_smoothquant_enters_the_hash():
    o = AccelOptions(quantize="w8a8_fp8")
    hashes = {o.compute_hash(), o.replace(smoothquant=0.5).compute_hash(), o.replace(smoothquant=0.8).compute_hash()}
    assert len(hashes) == 3
    assert AccelOptions(quantize="w8a8_int8", smoothquant=1).smoothquant == 1


@pytest.mark.parametrize("scheme", SCHEMES)
def test_auto_search_is_never_worse_than_unsmoothed_or_any_grid_alpha(scheme):
    torch.manual_seed(0)
    x, w = outlier_input(), torch.randn(32, 64) * 0.05
    ref = x @ w.t()

    def db(s):
        xs, ws = (x, w) if s is None else (x / s, w * s)
        qw, scale, _ = q.quantize_weight(ws, scheme)
        return q.sqnr_db(ref, q.qlinear_reference(xs, qw, scale, None, None, scheme, 128))

    s, alpha = q.smoothquant_search(x, w, scheme)
    assert alpha in q.SMOOTHQUANT_GRID and torch.equal(s, q.smoothquant_scales(x, w, alpha))
    chosen = db(s)
    assert chosen >= db(None) and all(chosen >= db(q.smoothquant_scales(x, w, a)) - 1e-9 for a in q.SMOOTHQUANT_GRID)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_compiled_auto_smoothquant_matches_eager_and_beats_plain(scheme):
    torch.manual_seed(0)
    model, x = NormLinear().eval(), torch.randn(4, 16, 64)
    ref = model(x)
    out, report = rewrite_only(model, x, options={"quantize": scheme, "smoothquant": "auto"})
    plain, _ = rewrite_only(model, x, options={"quantize": scheme})
    (m,) = [m for m in report.matches if m.family == "quantize"]
    assert "smoothquant=auto" in m.detail
    assert q.sqnr_db(ref, out) > q.sqnr_db(ref, plain) + 3
    assert AccelOptions(quantize=scheme, smoothquant="auto").compute_hash() != AccelOptions(
        quantize=scheme, smoothquant=0.5).compute_hash()
