"""Shapes that change: ``dynamic=True`` over batch sizes 1–16 and sequence lengths 1–64.

Dynamo specializes sizes 0 and 1 (its "0/1 specialization"), so a sweep that includes size 1 compiles once for
size 1 and once for the symbolic size: at most 2 compilations per swept dimension, each graph rewritten with the
same counts (the rewrites hold on symbolic shapes), every result matching eager.
"""
import pytest
import torch

import accel
from tests.e2e.hf_models import LAYERS, build
from tests.testing_backend import rel_l2

pytest.importorskip("transformers")


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("dim,sizes", [("batch", (4, 1, 16, 3, 9)), ("seq", (16, 1, 64, 7, 33))])
def test_dynamic_shapes_compile_at_most_twice(attn, dim, sizes):
    model, _ = build("llama", attn)
    backend = accel.AccelBackend({"strict": True})
    torch._dynamo.reset()
    compiled = torch.compile(model, backend=backend, dynamic=True)
    with torch.no_grad():
        for n in sizes:
            ids = torch.randint(0, 100, (n, 5) if dim == "batch" else (3, n))
            ref = model(input_ids=ids, use_cache=False).logits
            out = compiled(input_ids=ids, use_cache=False).logits
            assert rel_l2(out, ref) <= 1e-5, (dim, n)
    used = [g for g in backend.report.graphs if g.compiled_with != "discarded"]
    assert len(used) <= 2, [(g.compiled_with, g.calls) for g in backend.report.graphs]
    for g in used:
        assert g.compiled_with == "accel"
        families = [m.family for m in g.matches]
        assert families.count("attention") == LAYERS and families.count("ffn") == LAYERS
    symbolic = [g for g in used if g.calls > 1]
    assert symbolic, "the symbolic-shape graph must serve several sizes"
