"""FuseNormPass: RMSNorms folded into the projections they feed, residual adds into the projection before them.

Graphs are checked for what they contain after the rewrite (no rsqrt or residual add left, the accel ops carrying
norm and residual arguments) and run against eager in fp32: the rewrite reassociates nothing but the final sums,
so ‖accel − eager‖/‖eager‖ ≤ 1e-5 as for the other rewrites.
"""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from accel.runtime import quant
from accel.runtime.ops import FFN, LINEAR, QLINEAR
from tests.testing_backend import capture_graph, rel_l2, rewrite_only

TOL_FP32 = 1e-5


class RMSNorm(torch.nn.Module):
    """Llama's, in its usual spelling or a variant (x·x, torch.mean, weight on the right)."""

    def __init__(self, h, eps=1e-6, spelling="llama"):
        super().__init__()
        self.weight = torch.nn.Parameter(1.0 + 0.2 * torch.randn(h))
        self.eps, self.spelling = eps, spelling

    def forward(self, x):
        dtype = x.dtype
        x32 = x.to(torch.float32)
        if self.spelling == "llama":
            var = x32.pow(2).mean(-1, keepdim=True)
            return self.weight * (x32 * torch.rsqrt(var + self.eps)).to(dtype)
        if self.spelling == "square_mean":
            var = torch.mean(x32 * x32, dim=-1, keepdim=True)
            return (x32 * torch.rsqrt(self.eps + var)).to(dtype) * self.weight
        if self.spelling == "gemma":  # (1 + weight): not matched
            var = x32.pow(2).mean(-1, keepdim=True)
            return (x32 * torch.rsqrt(var + self.eps)) * (1.0 + self.weight.float())
        raise ValueError(self.spelling)


class Block(torch.nn.Module):
    """A pre-norm decoder block without attention: norm → q/k/v (merged) → o (+ residual) → norm → FFN (+ residual)."""

    def __init__(self, h=32, i=64, spelling="llama"):
        super().__init__()
        self.n1, self.n2 = RMSNorm(h, spelling=spelling), RMSNorm(h, spelling=spelling)
        self.q, self.k, self.v = (torch.nn.Linear(h, h, bias=False) for _ in range(3))
        self.o = torch.nn.Linear(3 * h, h, bias=False)
        self.gate, self.up = torch.nn.Linear(h, i, bias=False), torch.nn.Linear(h, i, bias=False)
        self.down = torch.nn.Linear(i, h, bias=False)

    def forward(self, x):
        y = self.n1(x)
        x = x + self.o(torch.cat([self.q(y), self.k(y), self.v(y)], dim=-1))
        y = self.n2(x)
        return x + self.down(F.silu(self.gate(y)) * self.up(y))


def rewritten_ops(fn, *args, options=None):
    """(accel op nodes with their arguments by name, call targets, report) of the graph accel hands to Inductor."""
    from accel.compiler.backend import AccelBackend, run_rewritten_eagerly
    from accel.compiler.fx_utils import schema_args as _full_args

    graphs = []

    def inner(gm, *a, **kw):
        graphs.append(gm)
        return run_rewritten_eagerly(gm, *a, **kw)

    torch._dynamo.reset()
    backend = AccelBackend({"strict": True, **(options or {})}, inner_compile=inner)
    with torch.no_grad():
        torch.compile(fn, backend=backend, fullgraph=True)(*args)
    calls = [n for n in graphs[0].graph.nodes if n.op in ("call_function", "call_method")]
    ops = [(n, _full_args(n)) for n in calls if n.target in (LINEAR, FFN, QLINEAR)]
    return ops, [n.target for n in calls], backend.report


@pytest.mark.parametrize("spelling", ["llama", "square_mean"])
def test_block_fuses_both_norms_and_both_residuals(spelling):
    torch.manual_seed(0)
    m = Block(spelling=spelling).eval()
    x = torch.randn(2, 5, 32)
    out, report = rewrite_only(m, x)
    assert rel_l2(out, m(x)) <= TOL_FP32
    patterns = sorted(mm.pattern for mm in report.matches if mm.family == "norm")
    assert patterns == ["residual_add", "residual_add", "rms_norm", "rms_norm"], report
    ops, targets, _ = rewritten_ops(m, x)
    assert not {torch.rsqrt, "rsqrt", "mean", "pow"} & set(targets)  # the whole norm chain is gone
    (qkv, a_qkv), (o, a_o), (ffn, a_ffn) = ops  # in graph order
    assert qkv.target is LINEAR and a_qkv["norm_eps"] == pytest.approx(1e-6) and a_qkv["residual"] is None
    assert a_qkv["weight"].name.startswith("accel_norm_folded_w")  # the norm weight went into the merged q/k/v
    assert o.target is LINEAR and a_o["norm_eps"] is None and a_o["residual"] is not None
    assert a_qkv["x"] is a_o["residual"]  # both read the block's input
    assert ffn.target is FFN and a_ffn["x"] is o and a_ffn["residual"] is o and a_ffn["norm_eps"] is not None
    assert a_ffn["w1"].name.startswith("accel_norm_folded_w")


def test_replaced_merged_weights_are_not_kept():
    torch.manual_seed(0)
    m = Block().eval()
    x = torch.randn(1, 3, 32)
    _, report = rewrite_only(m, x)
    # exactly the folded q/k/v [96, 32] and gate/up [128, 32] remain derived; the merged ones they replace are gone
    assert report.graphs[0].derived_weight_bytes == (96 * 32 + 128 * 32) * 4


def test_fuse_norm_off_keeps_the_norms():
    torch.manual_seed(0)
    m = Block().eval()
    x = torch.randn(1, 3, 32)
    out, report = rewrite_only(m, x, options={"fuse_norm": False})
    assert rel_l2(out, m(x)) <= TOL_FP32
    assert report.counts["norm"] == 0
    ops, _, _ = rewritten_ops(m, x, options={"fuse_norm": False})
    assert all(a["norm_eps"] is None and a["residual"] is None for _, a in ops)


def test_gemma_norm_is_left_alone():
    torch.manual_seed(0)
    m = Block(spelling="gemma").eval()
    x = torch.randn(1, 3, 32)
    out, report = rewrite_only(m, x)
    assert rel_l2(out, m(x)) <= TOL_FP32
    assert [mm.pattern for mm in report.matches if mm.family == "norm"] == ["residual_add", "residual_add"]


class NormAlsoReturned(torch.nn.Module):
    def __init__(self, h=16):
        super().__init__()
        self.norm, self.proj = RMSNorm(h), torch.nn.Linear(h, h)

    def forward(self, x):
        y = self.norm(x)
        return self.proj(y), y.sum(-1)


def test_norm_with_another_user_is_not_fused_and_says_why():
    torch.manual_seed(0)
    m = NormAlsoReturned().eval()
    x = torch.randn(4, 16)
    (out, y), report = rewrite_only(m, x)
    ref_out, ref_y = m(x)  # y: a use of the norm's output that is not a projection
    assert rel_l2(out, ref_out) <= TOL_FP32 and rel_l2(y, ref_y) <= TOL_FP32
    assert report.counts["norm"] == 0
    assert any(f.family == "norm" and "left to Inductor" in f.reason for f in report.fallbacks), report.fallbacks


class FinalNormHead(torch.nn.Module):
    """A decoder's end: the final norm, then rows of it (``index``), then the LM head."""

    def __init__(self, index, h=16, vocab=40):
        super().__init__()
        self.norm, self.head, self.index = RMSNorm(h), torch.nn.Linear(h, vocab, bias=False), index

    def forward(self, x):
        return self.head(self.norm(x)[self.index])


ROWS = {"all rows": (slice(None), slice(0, None), slice(None)), "last row": (slice(None), slice(-1, None)),
        "every other row": (slice(None), slice(0, None, 2), slice(None))}
NOT_ROWS = {"part of the last dim": (Ellipsis, slice(0, 8)), "an int index": (slice(None), -1),
            "a new axis": (slice(None), None)}


QUANTIZED_HEAD = {"quantize": "int8_weight_only", "quantize_lm_head": True}


@pytest.mark.parametrize("rows", sorted(ROWS))
def test_final_norm_is_fused_into_a_quantized_head_through_a_row_slice(rows):
    """HF decoders apply the LM head to ``hidden[:, slice_indices, :]``: a row-wise norm commutes with taking rows,
    so a quantized head takes the rows of the norm's input and the norm (eps and its weight, unfolded) in its
    GEMV's prologue. int8 per-channel weights: within 1e-2 of eager."""
    torch.manual_seed(0)
    m = FinalNormHead(ROWS[rows]).eval()
    x = torch.randn(2, 5, 16)
    ops, targets, report = rewritten_ops(m, x, options=QUANTIZED_HEAD)
    assert torch.rsqrt not in targets and len(ops) == 1
    node, args = ops[0]
    assert node.target is QLINEAR and args["norm_eps"] == 1e-6 and args["norm_weight"] is not None
    assert args["x"].args[0].op == "placeholder"  # rows of the norm's input
    out, _ = rewrite_only(m, x, options=QUANTIZED_HEAD)
    assert out.shape == m(x).shape and rel_l2(out, m(x)) <= 1e-2
    # the same codes with the norm left in the graph: the fusion itself loses nothing in fp32
    unfused, _ = rewrite_only(m, x, options={**QUANTIZED_HEAD, "fuse_norm": False})
    assert rel_l2(out, unfused) <= TOL_FP32
    assert [mm.module for mm in report.matches if mm.pattern == "rms_norm"] == ["head"]


@pytest.mark.parametrize("options", [{}, {"quantize": "int8_weight_only"}], ids=["unquantized", "without-quantize_lm_head"])
def test_final_norm_stays_before_an_unquantized_head(options):
    """Folding the norm into an unquantized head would copy the vocabulary matrix; the norm stays, by design (no
    fallback is reported: every unquantized decoder has this norm)."""
    torch.manual_seed(0)
    m = FinalNormHead(ROWS["last row"]).eval()
    x = torch.randn(2, 5, 16)
    out, report = rewrite_only(m, x, options=options)
    assert rel_l2(out, m(x)) <= (1e-2 if options else TOL_FP32)  # (a module named "head" is quantized)
    assert report.counts["norm"] == 0 and not report.fallbacks, report.fallbacks


@pytest.mark.parametrize("index", sorted(NOT_ROWS))
def test_final_norm_before_other_indexing_is_left_to_inductor(index):
    torch.manual_seed(0)
    m = FinalNormHead(NOT_ROWS[index]).eval()
    if index == "part of the last dim":
        m.head = torch.nn.Linear(8, 12, bias=False)
    x = torch.randn(2, 5, 16)
    out, report = rewrite_only(m, x, options=QUANTIZED_HEAD)
    assert rel_l2(out, m(x)) <= 1e-2
    assert report.counts["norm"] == 0


class BroadcastResidual(torch.nn.Module):
    def __init__(self, h=16):
        super().__init__()
        self.proj = torch.nn.Linear(h, h)
        self.bias2 = torch.nn.Parameter(torch.randn(h))

    def forward(self, x):
        return self.proj(x) + self.bias2  # broadcast, not a residual stream


def test_broadcast_add_is_not_a_residual():
    torch.manual_seed(0)
    m = BroadcastResidual().eval()
    x = torch.randn(4, 16)
    out, report = rewrite_only(m, x)
    assert rel_l2(out, m(x)) <= TOL_FP32
    assert report.counts["norm"] == 0


@settings(max_examples=12, deadline=None)
@given(h=st.sampled_from([8, 24, 40]), i=st.sampled_from([16, 48]), rows=st.integers(1, 6),
       spelling=st.sampled_from(["llama", "square_mean"]), seed=st.integers(0, 10_000))
def test_property_block_equivalence(h, i, rows, spelling, seed):
    torch.manual_seed(seed)
    m = Block(h, i, spelling).eval()
    x = torch.randn(rows, h) * (0.1 + 3 * torch.rand(rows, 1))  # rows of different RMS
    out, report = rewrite_only(m, x)
    assert report.counts["norm"] == 4
    assert rel_l2(out, m(x)) <= TOL_FP32


HF_DECODERS = {  # (config class, model class, norms fused per layer): Qwen3's q/k norms feed no projection
    "llama": ("LlamaConfig", "LlamaForCausalLM", 2),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", 2),
    "mistral": ("MistralConfig", "MistralForCausalLM", 2),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", 2),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", 2),
}


@pytest.mark.parametrize("arch", sorted(HF_DECODERS))
def test_hf_decoder_layers_all_fused(arch):
    transformers = pytest.importorskip("transformers")
    cfg_cls, model_cls, norms = HF_DECODERS[arch]
    cfg = getattr(transformers, cfg_cls)(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                         head_dim=8, pad_token_id=0)
    torch.manual_seed(0)
    model = getattr(transformers, model_cls)(cfg).eval()
    with torch.no_grad():  # non-trivial norm weights, so a lost norm weight shows in the output
        for name, p in model.named_parameters():
            if "norm" in name:
                p.mul_(1.0 + 0.3 * torch.randn_like(p))
    ids = torch.randint(1, 128, (1, 7))
    out, report = rewrite_only(lambda i: model(input_ids=i).logits, ids)
    assert rel_l2(out, model(input_ids=ids).logits) <= TOL_FP32
    patterns = [mm.pattern for mm in report.matches if mm.family == "norm"]
    # per layer: two residual adds and the norms in front of projections; the final norm feeds a slice before the
    # unquantized LM head (not fused: test_hf_decoder_final_norm_goes_into_a_quantized_head)
    assert patterns.count("residual_add") == 4 and patterns.count("rms_norm") == 2 * norms, report


def test_hf_decoder_final_norm_goes_into_a_quantized_head():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                   head_dim=8, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg).eval()
    ids = torch.randint(1, 128, (1, 7))
    out, report = rewrite_only(lambda i: model(input_ids=i).logits, ids, options=QUANTIZED_HEAD)
    assert rel_l2(out, model(input_ids=ids).logits) <= 2e-2
    assert [mm.module for mm in report.matches if mm.pattern == "rms_norm"][-1] == "lm_head"


def test_quantized_block_keeps_only_the_quantized_copies():
    torch.manual_seed(0)
    m = Block().eval()
    _, report = rewrite_only(m, torch.randn(1, 3, 32), options={"quantize": "int8_weight_only"})
    assert report.counts["quantize"] == 4 and report.counts["norm"] == 4  # both norms and residuals fused
    # int8 codes of q/k/v [96, 32], o [32, 96], gate/up [128, 32], down [32, 64] plus their fp32 row scales; the fp32
    # merged, norm-folded q/k/v and gate/up weights the quantizer started from are dropped
    codes = 96 * 32 + 32 * 96 + 128 * 32 + 32 * 64
    scales = 4 * (96 + 32 + 128 + 32)
    assert report.graphs[0].derived_weight_bytes == codes + scales


def _layer_sqnrs(report) -> list[float]:
    """The accuracy guard's per-layer output SQNRs (dB) from the report's quantize matches."""
    return [float(mm.detail.split("sqnr=")[1].split(" dB")[0]) for mm in report.matches if mm.family == "quantize"]


@pytest.mark.parametrize("scheme,group_size,floor_db", [("int8_weight_only", 128, 30.0), ("int4_weight_only", 32, 12.0)])
def test_quantized_block_fuses_norms_and_residuals_into_the_quantized_ops(scheme, group_size, floor_db):
    """fuse_norm runs before quantize_weights: the qlinear nodes carry norm_eps, the norm's weight (the weight that
    gets quantized is the unfolded one, with the captured activations it multiplies) and the residuals."""
    torch.manual_seed(0)
    m = Block().eval()
    x = torch.randn(2, 80, 32)  # 160 rows: enough for int4's GPTQ (128)
    options = {"quantize": scheme, "group_size": group_size}
    out, report = rewrite_only(m, x, options=options)
    assert report.counts["quantize"] == 4 and report.counts["norm"] == 4, report
    assert min(_layer_sqnrs(report)) >= floor_db, report.matches
    assert quant.sqnr_db(m(x), out) >= floor_db - 3
    ops, targets, _ = rewritten_ops(m, x, options=options)
    assert not {torch.rsqrt, "rsqrt", "mean", "pow"} & set(targets)
    (qkv, a_qkv), (o, a_o), (gate_up, a_gu), (down, a_down) = ops
    assert all(n.target is QLINEAR for n, _ in ops)
    assert a_qkv["norm_eps"] == pytest.approx(1e-6) and a_qkv["residual"] is None
    assert a_qkv["norm_weight"].op == "placeholder" and a_gu["norm_weight"].op == "placeholder"
    assert a_qkv["norm_weight"] is not a_gu["norm_weight"] and a_o["norm_weight"] is None
    assert a_o["norm_eps"] is None and a_o["residual"] is a_qkv["x"]
    assert a_gu["x"] is o and a_gu["norm_eps"] == pytest.approx(1e-6) and a_gu["gated"]
    assert a_down["x"] is gate_up and a_down["residual"] is o and a_down["norm_eps"] is None


def test_smoothing_keeps_the_norms_but_fuses_the_residuals():
    torch.manual_seed(0)
    m = Block().eval()
    out, report = rewrite_only(m, torch.randn(2, 80, 32), options={"quantize": "w8a8_int8", "smoothquant": 0.5})
    patterns = sorted(mm.pattern for mm in report.matches if mm.family == "norm")
    assert patterns == ["residual_add", "residual_add"], report


def test_quantizing_never_makes_the_folded_weights_unless_a_layer_stays_unquantized(monkeypatch):
    """The norm-folded copies are lazy when quantizing: quantized layers use the unfolded weight, so none is made
    (no compile-time memory); a layer the guard keeps in full precision still gets its folded weight, exactly."""
    import accel.lowering.fuse_norm as fn

    made = []
    fold = fn._fold
    monkeypatch.setattr(fn, "_fold", lambda w, g: made.append(tuple(w.shape)) or fold(w, g))
    torch.manual_seed(0)
    m = Block().eval()
    x = torch.randn(2, 80, 32)
    _, report = rewrite_only(m, x, options={"quantize": "int8_weight_only"})
    assert report.counts["quantize"] == 4 and made == []
    # every layer kept in full precision by the guard: both folded weights are made and used
    out, report = rewrite_only(m, x, options={"quantize": "int8_weight_only", "min_sqnr_db": 200})
    assert report.counts["quantize"] == 0 and report.counts["norm"] == 4 and sorted(made) == [(96, 32), (128, 32)]
    assert rel_l2(out, m(x)) <= TOL_FP32
