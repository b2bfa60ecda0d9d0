"""AddSplitCountersPass: where the Triton kernels run, every qlinear and attention node reads one derived input of
int32 zeros (the split kernels' tile counters); nowhere else, and never with ``reduce_splits_in_kernel=False``.
The kernels' own use of the counters is tested in tests/runtime (test_qlinear_kernel, test_attention_kernel)."""
import pytest
import torch

import accel
import accel.lowering.add_split_counters as asc
from accel.runtime.ops import ATTENTION, QLINEAR


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


@pytest.mark.parametrize("options", [{}, {"quantize": "int8_weight_only"}], ids=["bf16", "int8"])
def test_counters_reach_every_split_kernel_where_the_kernels_run(options, monkeypatch):
    model, ids = tiny_llama(), torch.randint(0, 100, (1, 6))
    plain, gm = rewritten(model, ids, options)
    assert not any("counters" in n.kwargs for n in gm.graph.nodes)  # CPU: the reference ignores them
    monkeypatch.setattr(asc, "_runs_kernels", lambda device: True)
    out, gm = rewritten(model, ids, options)
    torch.testing.assert_close(out, plain, rtol=0, atol=0)
    ops = [n for n in gm.graph.nodes if n.target in (QLINEAR, ATTENTION)]
    assert sum(n.target is ATTENTION for n in ops) == 2
    assert sum(n.target is QLINEAR for n in ops) == (8 if options else 0)  # qkv, o, gate_up, down per layer
    (counters,) = {n.kwargs.get("counters") for n in ops}
    assert counters.op == "placeholder" and counters.name.startswith("accel_splitk_counters")
    val = counters.meta["val"]
    # the largest user: the gate_up weight's 2 × 128 rows, or the attention's 1 batch row × 2 KV heads
    assert val.dtype == torch.int32 and tuple(val.shape) == ((256,) if options else (2,))
    _, gm = rewritten(model, ids, {**options, "reduce_splits_in_kernel": False})
    assert not any("counters" in n.kwargs for n in gm.graph.nodes)
