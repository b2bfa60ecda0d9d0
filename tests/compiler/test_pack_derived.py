"""``pack_derived_inputs``: the tensors accel derives (quantized weights, scales, zero points, merged weights) reach
the graph as one flat buffer a dtype read through aligned views, with the same results as one input each; buffers
that kernels write (the split-K tile counters) stay inputs of their own."""
import pytest
import torch

import accel
import accel.lowering.add_split_counters as asc
from tests.lowering.test_add_split_counters import rewritten, tiny_llama


def _derived_inputs(gm):
    return [n for n in gm.graph.nodes if n.op == "placeholder" and n.name.startswith("accel_")]


def _report_of_last_compile():
    return accel.last_report().graphs[-1]


@pytest.mark.parametrize("scheme", ["int8_weight_only", "int4_weight_only"])
def test_packed_graph_reads_the_same_tensors_through_aligned_views(scheme, monkeypatch):
    monkeypatch.setattr(asc, "_runs_kernels", lambda device: True)  # the counters, which must stay unpacked
    model, ids = tiny_llama(), torch.randint(0, 100, (1, 6))
    options = {"quantize": scheme, "quantize_lm_head": True}
    plain, gm_plain = rewritten(model, ids, {**options, "pack_derived_inputs": False})
    assert _report_of_last_compile().packed_inputs == 0
    out, gm = rewritten(model, ids, options)
    torch.testing.assert_close(out, plain, rtol=0, atol=0)
    before, after = _derived_inputs(gm_plain), _derived_inputs(gm)
    saved = _report_of_last_compile().packed_inputs
    assert saved > 0 and len(after) == len(before) - saved
    # one buffer a dtype, and the counters on their own
    packed = [n for n in after if n.name.startswith("accel_packed_")]
    dtypes = [n.meta["val"].dtype for n in packed]
    assert len(dtypes) == len(set(dtypes)) >= 2  # weights (int8 or int32 words) and their scales at least
    assert any(n.name.startswith("accel_splitk_counters") for n in after)
    views = [n for n in gm.graph.nodes if n.target is torch.as_strided]
    assert len(views) == saved + len(packed)
    for v in views:
        assert v.args[0] in packed
        assert v.args[3] * v.meta["val"].element_size() % 256 == 0  # kernels' vector loads stay aligned
    # views do not overlap
    spans = sorted((v.args[0].name, v.args[3], v.args[3] + v.meta["val"].numel()) for v in views)
    for (a, _, end), (b, start, _) in zip(spans, spans[1:]):
        assert a != b or end <= start


def test_packed_inputs_through_inductor_give_the_same_logits():
    """The whole path on this machine's Inductor (C++ on CPU): the views of the packed buffers are lowered as
    reinterpretations of the graph's inputs."""
    model, ids = tiny_llama(), torch.randint(0, 100, (1, 6))
    outs = []
    for pack in (False, True):
        torch._dynamo.reset()
        backend = accel.AccelBackend({"strict": True, "quantize": "int4_weight_only", "pack_derived_inputs": pack})
        with torch.no_grad():
            outs.append(torch.compile(model, backend=backend, fullgraph=True)(ids).logits)
        assert (backend.report.graphs[-1].packed_inputs > 0) == pack
    torch.testing.assert_close(outs[1], outs[0], rtol=0, atol=0)


def test_pack_groups_by_dtype_keeps_singletons_and_unpackable_inputs_apart():
    """On a hand-built graph (no fake mode): three fp32 tensors of odd sizes share one buffer at 256-byte offsets;
    a lone bf16 tensor and an int32 buffer marked not packable stay inputs of their own; the graph computes the same."""
    import torch.fx as fx

    from accel.compiler.context import CompileContext
    from accel.compiler.options import AccelOptions
    from accel.compiler.report import GraphReport

    g = fx.Graph()
    x = g.placeholder("x")
    result = g.output(x)
    gm = fx.GraphModule(torch.nn.Module(), g)
    ctx = CompileContext(gm, [torch.ones(3)], AccelOptions(), GraphReport(index=0))
    gen = torch.Generator().manual_seed(0)
    values = [torch.randn(3, generator=gen), torch.randn(5, 7, generator=gen), torch.randn(2, generator=gen)]
    derived = [ctx.add_derived(f"w{i}", lambda v=v: v) for i, v in enumerate(values)]
    lone = ctx.add_derived("lone", lambda: torch.full((3,), 2.0, dtype=torch.bfloat16))
    counts = ctx.add_derived("counts", lambda: torch.arange(3, dtype=torch.int32), packable=False)
    with g.inserting_before(result):
        out = g.call_function(torch.add, (x, derived[0]))
        for node in (derived[1], derived[2]):
            out = g.call_function(torch.add, (out, g.call_function(torch.sum, (node,))))
        for node in (lone, counts):
            out = g.call_function(torch.add, (out, g.call_function(torch.Tensor.float, (node,))))
    result.args = (out,)
    gm.recompile()
    args = [torch.ones(3)]
    want = gm(*args, *ctx.derived)
    assert ctx.pack_derived() == 2  # three inputs became one
    assert len(ctx.derived) == 3 and [t.dtype for t in ctx.derived] == [torch.bfloat16, torch.int32, torch.float32]
    flat = ctx.derived[-1]
    assert flat.numel() == 64 + 64 + 64  # 3, 35 and 2 values, each padded to 256 bytes
    offsets = sorted(n.args[3] for n in gm.graph.nodes if n.target is torch.as_strided)
    assert offsets == [0, 64, 128]
    assert [n.name for n in gm.graph.nodes if n.op == "placeholder"][:3] == ["x", "accel_lone_3", "accel_counts_4"]
    torch.testing.assert_close(gm(*args, *ctx.derived), want, rtol=0, atol=0)
