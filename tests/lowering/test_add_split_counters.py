"""AddSplitCountersPass: with ``reduce_splits_in_kernel`` and where the Triton kernels run, every qlinear node reads
one derived input of int32 zeros (the split-K tile counters); nowhere else. The kernels' own use of the counters is
tested in tests/runtime/test_qlinear_kernel.py."""
import torch

import accel
import accel.lowering.add_split_counters as asc
from accel.runtime.ops import QLINEAR


def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=100)
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg).eval()


def rewritten(model, ids, options):
    """(logits, the rewritten graph) with the graph run op by op (accel ops run their torch reference on CPU)."""
    graphs = []

    def capture(gm, example_inputs, options, graph_report, with_accel_pass=True):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    backend = accel.AccelBackend({"strict": True, **options}, inner_compile=capture)
    with torch.no_grad():
        out = torch.compile(model, backend=backend, fullgraph=True)(ids).logits
    return out, graphs[-1]


def test_counters_reach_every_qlinear_where_the_kernels_run(monkeypatch):
    model, ids = tiny_llama(), torch.randint(0, 100, (1, 6))
    options = {"quantize": "int8_weight_only"}  # reduce_splits_in_kernel: on by default
    plain, gm = rewritten(model, ids, options)
    assert not any("counters" in n.kwargs for n in gm.graph.nodes)  # CPU: the reference ignores them
    monkeypatch.setattr(asc, "_runs_kernels", lambda device: True)
    out, gm = rewritten(model, ids, options)
    torch.testing.assert_close(out, plain, rtol=0, atol=0)
    ops = [n for n in gm.graph.nodes if n.target is QLINEAR]
    assert len(ops) == 8  # qkv, o, gate_up, down per layer
    (counters,) = {n.kwargs.get("counters") for n in ops}
    assert counters.op == "placeholder" and counters.name.startswith("accel_splitk_counters")
    val = counters.meta["val"]
    assert val.dtype == torch.int32 and tuple(val.shape) == (256,)  # the gate_up weight's 2 × 128 rows
    _, gm = rewritten(model, ids, {"quantize": "int8_weight_only", "reduce_splits_in_kernel": False})
    assert not any("counters" in n.kwargs for n in gm.graph.nodes)
    _, gm = rewritten(model, ids, {})  # nothing quantized: no counters
    assert not any(n.op == "placeholder" and n.name.startswith("accel_splitk") for n in gm.graph.nodes)
