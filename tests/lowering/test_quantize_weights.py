"""Quantization rewrites: which linears become ``accel::qlinear``, what is left out and why, the accuracy guard.

Numerics: the compiled graph must compute exactly what ``quant.qlinear_reference`` computes on the same
quantized weights (checked by rebuilding the block by hand), and stay within each scheme's SQNR budget of the
unquantized model (int8 ≥ 35 dB, fp8 ≥ 20 dB, the floors torchao's tests use; int4 g32 ≥ 15 dB end to end).
"""
import pytest
import torch
import torch.nn.functional as F

import accel
from accel.runtime import quant as q
from tests.e2e.hf_models import LAYERS, build
from tests.testing_backend import rewrite_only


class Block(torch.nn.Module):
    def __init__(self, h=64, i=128):
        super().__init__()
        self.q, self.k = torch.nn.Linear(h, h), torch.nn.Linear(h, h)
        self.gate, self.up, self.down = (torch.nn.Linear(h, i, bias=False), torch.nn.Linear(h, i, bias=False),
                                         torch.nn.Linear(i, h, bias=False))
        self.lm_head = torch.nn.Linear(h, 100, bias=False)

    def forward(self, x):
        y = self.q(x) * self.k(x)
        y = y + self.down(F.silu(self.gate(y)) * self.up(y))
        return self.lm_head(y)


@pytest.mark.parametrize("scheme,floor_db", [("int8_weight_only", 35), ("int4_weight_only", 15), ("w8a8_int8", 35),
                                             ("w8a8_fp8", 20)])
def test_schemes_rewrite_every_linear_but_the_lm_head(scheme, floor_db):
    torch.manual_seed(0)
    model, x = Block().eval(), torch.randn(2, 5, 64)
    out, report = rewrite_only(model, x, options={"quantize": scheme, "group_size": 32})
    assert report.graphs[0].accel_ops["accel::qlinear"] == 3  # merged q/k, gate_up (+act), down
    assert report.counts["quantize"] == 3
    assert any("LM head" in f.reason for f in report.fallbacks)
    assert all(m.detail.endswith("(outputs)") for m in report.matches if m.family == "quantize")
    assert q.sqnr_db(model(x), out) >= floor_db


@pytest.mark.parametrize("scheme", ["w8a8_int8", "int8_weight_only"])  # round-to-nearest: rebuildable by hand
def test_compiled_block_equals_the_reference_on_the_same_quantized_weights(scheme):
    torch.manual_seed(0)
    model, x = Block().eval(), torch.randn(3, 64)
    out, _ = rewrite_only(model, x, options={"quantize": scheme, "quantize_lm_head": True})

    def ql(inp, w, bias=None, act="identity", gated=False):
        qw, s, z = q.quantize_weight(w, scheme)
        return q.qlinear_reference(inp, qw, s, z, bias, scheme, 128, act, gated)

    with torch.no_grad():
        qk = ql(x, torch.cat([model.q.weight, model.k.weight]), torch.cat([model.q.bias, model.k.bias]))
        y = qk[:, :64] * qk[:, 64:]
        h = ql(y, torch.cat([model.gate.weight, model.up.weight]), act="silu", gated=True)
        y = y + ql(h, model.down.weight)
        ref = ql(y, model.lm_head.weight)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)


def test_exclusions_and_the_lm_head_switch():
    model, x = Block().eval(), torch.randn(2, 64)
    _, report = rewrite_only(model, x, options={"quantize": "int8_weight_only", "quantize_lm_head": True,
                                                "quantize_exclude": ["down", "q"]})
    reasons = [f.reason for f in report.fallbacks]
    assert report.counts["quantize"] == 1  # the lm_head; q/k (module "q") and the FFN (module "down") excluded
    assert sum("excluded by quantize_exclude" in r for r in reasons) == 2  # an FFN is reported once


def test_min_sqnr_keeps_noisy_layers_in_full_precision():
    model, x = Block().eval(), torch.randn(4, 64)
    _, report = rewrite_only(model, x, options={"quantize": "int4_weight_only", "group_size": 128 // 4,
                                                "min_sqnr_db": 60})
    assert report.counts["quantize"] == 0
    kept = [f for f in report.fallbacks if "below min_sqnr_db=60" in f.reason]
    assert len(kept) == 2  # the q/k projection; the FFN's first projection (an FFN is all or nothing)
    _, report = rewrite_only(model, x, options={"quantize": "int8_weight_only", "min_sqnr_db": 30})
    assert report.counts["quantize"] == 3


def test_int4_partial_last_group():
    """K = 48 with groups of 32: the last group is half padding, and results still match the unquantized layer."""
    torch.manual_seed(0)
    model, x = torch.nn.Sequential(torch.nn.Linear(48, 16)), torch.randn(2, 48)
    out, report = rewrite_only(model, x, options={"quantize": "int4_weight_only", "group_size": 32})
    assert report.counts["quantize"] == 1
    assert q.sqnr_db(model(x), out) >= 15


def test_graphs_that_mutate_inputs_fall_back_to_weight_sqnr():
    lin = torch.nn.Linear(32, 32)

    def step(x, cache):
        cache.add_(1.0)  # a KV-cache-like in-place update: the graph must not be run at compile time
        return lin(x) + cache

    cache = torch.zeros(2, 32)
    _, report = rewrite_only(step, torch.randn(2, 32), cache, options={"quantize": "int8_weight_only"})
    assert torch.equal(cache, torch.ones(2, 32))  # updated once, by the compiled call only
    (m,) = [m for m in report.matches if m.family == "quantize"]
    assert m.detail.endswith("(weights)")


def test_quantized_llama_through_inductor():
    model, kwargs = build("llama", "sdpa")
    torch._dynamo.reset()
    backend = accel.AccelBackend({"strict": True, "quantize": "int8_weight_only"})
    with torch.no_grad():
        ref = model(**kwargs).logits
        out = torch.compile(model, backend=backend)(**kwargs).logits
    assert backend.report.counts["quantize"] == 4 * LAYERS  # qkv, o, gate_up, down per layer
    assert q.sqnr_db(ref, out) >= 30


@pytest.mark.parametrize("scheme", ["w8a8_int8", "w8a8_fp8"])
def test_w8a8_codes_come_from_gptq_when_activations_are_captured(scheme):
    # 256 rows of example input (≥ GPTQ_MIN_ROWS): the codes are GPTQ's, whose output error on those inputs is
    # below round-to-nearest's (gptq=False); with 3 rows the test above rebuilds round-to-nearest exactly
    torch.manual_seed(0)
    model = Block().eval()
    x = torch.randn(256, 64) * torch.linspace(0.2, 3.0, 64)
    ref = model(x)
    ours, _ = rewrite_only(model, x, options={"quantize": scheme})
    rtn, _ = rewrite_only(model, x, options={"quantize": scheme, "gptq": False})
    assert not torch.equal(ours, rtn)
    assert q.sqnr_db(ref, ours) > q.sqnr_db(ref, rtn)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the ops run their kernels (and so a config) on CUDA only")
def test_fp8_through_scaled_mm_inside_an_inductor_graph(monkeypatch):
    """w8a8_fp8 through ``qlinear.SCALED_MM`` (x quantized by accel's kernel, then ``torch._scaled_mm``), forced for
    every projection of 16 tokens, inside the graph Inductor compiles: the same fp8 codes and sums as accel's own
    fp8 kernels, so the outputs agree to the output's rounding."""
    from accel.runtime.kernels import qlinear as ql

    torch.manual_seed(0)
    model, x = Block().eval().cuda().bfloat16(), torch.randn(2, 8, 64, dtype=torch.bfloat16, device="cuda")
    options = {"strict": True, "quantize": "w8a8_fp8", "gptq": False}
    with torch.no_grad():
        torch._dynamo.reset()
        own = torch.compile(model, backend=accel.AccelBackend(options))(x)
        original, chosen = ql.select_config, []

        def pick(x2d, *args, **kwargs):
            if x2d.shape[0] >= ql.SCALED_MM_MIN_M:
                chosen.append(int(x2d.shape[0]))
                return ql.SCALED_MM
            return original(x2d, *args, **kwargs)

        monkeypatch.setattr(ql, "select_config", pick)
        torch._dynamo.reset()
        out = torch.compile(model, backend=accel.AccelBackend(options))(x)
    assert chosen and set(chosen) == {16}
    torch.testing.assert_close(out.float(), own.float(), rtol=3e-2, atol=3e-2)
    assert q.sqnr_db(model(x).float(), out.float()) >= 20
