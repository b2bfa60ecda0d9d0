"""Hugging Face models through the full accel → Inductor path on CPU, fp32.

For Llama, Qwen2, GPT-2, BERT and ViT, with both attention implementations: the output matches eager to a
relative L2 error ≤ 1e-5 (fp32 reassociation; observed ~2e-7), and the report shows exactly one attention and
one FFN rewrite per layer — so a pattern that silently stops matching on a new torch or transformers fails here.
"""
import pytest
import torch

import accel
from tests.e2e.hf_models import LAYERS, MODELS, build
from tests.testing_backend import rel_l2

pytest.importorskip("transformers")


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("name", MODELS)
def test_model_matches_eager_with_one_attention_and_ffn_rewrite_per_layer(name, attn):
    model, kwargs = build(name, attn)
    torch._dynamo.reset()
    with torch.no_grad():
        ref = model(**kwargs)[0]
        backend = accel.AccelBackend({"strict": True})
        out = torch.compile(model, backend=backend, fullgraph=True)(**kwargs)[0]
    report = backend.report
    assert report.counts["attention"] == LAYERS, report
    assert report.counts["ffn"] == LAYERS, report
    assert report.counts["linear"] >= LAYERS  # attention projections (merged) and output projections
    assert not report.fallbacks, report.fallbacks
    assert rel_l2(out, ref) <= 1e-5
