"""FuseKVUpdatePass (option ``fuse_kv_update``, experimental): HF decoders' RoPE + StaticCache writes → one op.

A greedy decode over transformers' StaticCache with the step compiled by accel (rewritten graph run eagerly) must
give eager's tokens and leave the caches as eager leaves them; the rewritten graph must hold one
``accel::rope_kv_update`` per layer and no ``index_copy_``.
"""
import re

import pytest
import torch

from accel.compiler.backend import AccelBackend, run_rewritten_eagerly

transformers = pytest.importorskip("transformers")

ARCHS = {"llama": ("LlamaConfig", "LlamaForCausalLM"), "qwen2": ("Qwen2Config", "Qwen2ForCausalLM"),
         "mistral": ("MistralConfig", "MistralForCausalLM")}


def build(arch):
    cfg_cls, model_cls = ARCHS[arch]
    cfg = getattr(transformers, cfg_cls)(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                         pad_token_id=0)
    torch.manual_seed(0)
    return getattr(transformers, model_cls)(cfg).eval(), cfg


def step_fn(model, cache, tok, pos):
    return model(input_ids=tok, past_key_values=cache, cache_position=pos, use_cache=True).logits[:, -1:].argmax(-1)


def decode(model, cfg, step, n=5, device="cpu", graphs=False):
    """(the ``n`` greedy tokens after an 8-token prompt, the StaticCache of 32 rows); with ``graphs``, each step as a
    CUDA-graph tree replay (marked, its output cloned before the next replay overwrites it)."""
    cache = transformers.StaticCache(config=cfg, max_cache_len=32)
    toks = []
    with torch.no_grad():
        prompt = torch.arange(3, 11, device=device).unsqueeze(0)
        tok = model(input_ids=prompt, past_key_values=cache,
                    cache_position=torch.arange(8, device=device)).logits[:, -1:].argmax(-1)
        for i in range(n):
            if graphs:
                torch.compiler.cudagraph_mark_step_begin()
            tok = step(model, cache, tok, torch.tensor([8 + i], device=device))
            toks.append(tok.clone() if graphs else tok)
    return torch.cat(toks, -1), cache


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("mode", ["into_attention", "append", "positions"])
def test_decode_matches_eager_and_graph_has_one_op_per_layer(arch, mode, monkeypatch):
    """into_attention (the default): a decode step's append and its attention become one
    ``rope_attention_append``; append: with that off, the counter read and advance go into ``rope_kv_append``;
    positions: with both off (as for a prefill past MAX_APPEND_ROWS) ``rope_kv_update`` takes Inductor's
    positions."""
    from accel.lowering import fuse_kv_update

    if mode != "into_attention":
        monkeypatch.setattr(fuse_kv_update, "INTO_ATTENTION", False)
    if mode == "positions":
        monkeypatch.setattr(fuse_kv_update, "MAX_APPEND_ROWS", 0)
    model, cfg = build(arch)
    ref, ref_cache = decode(model, cfg, step_fn)
    graphs = []

    def inner(gm, *args, **kwargs):
        graphs.append(gm)
        return run_rewritten_eagerly(gm, *args, **kwargs)

    torch._dynamo.reset()
    backend = AccelBackend({"strict": True, "fuse_kv_update": True}, inner_compile=inner)
    out, cache = decode(model, cfg, torch.compile(step_fn, backend=backend, fullgraph=True))
    assert torch.equal(out, ref)
    for a, b in zip(cache.layers, ref_cache.layers):
        torch.testing.assert_close(a.keys, b.keys, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(a.values, b.values, rtol=0, atol=0)
    for a, b in zip(cache.layers, ref_cache.layers):
        assert torch.equal(a.cumulative_length, b.cumulative_length)
    targets = [n.target for n in graphs[-1].graph.nodes]
    # Llama's and Qwen2's mask and rotary positions also read layer 0's counter (Mistral's read a Python int copy),
    # before its advance: that layer's append goes into the op too
    ops = torch.ops.accel
    appended = targets.count(ops.rope_kv_append.default)
    into = targets.count(ops.rope_attention_append.default)
    if mode == "into_attention":
        assert appended == 0 and into == cfg.num_hidden_layers
    else:
        assert into == 0 and appended == (cfg.num_hidden_layers if mode == "append" else 0)
    assert targets.count(ops.rope_kv_update.default) == cfg.num_hidden_layers - appended - into
    assert targets.count(ops.attention.default) == cfg.num_hidden_layers - into
    assert "index_copy_" not in targets
    assert targets.count("add_") == cfg.num_hidden_layers - appended - into
    patterns = [m.pattern for m in backend.report.graphs[-1].matches]  # Mistral recompiles once: count one graph
    assert patterns.count("rope_kv_update") == cfg.num_hidden_layers
    details = [m.detail for m in backend.report.graphs[-1].matches if m.pattern == "rope_kv_update"]
    assert sum("in the attention's own launches" in d for d in details) == into


@pytest.mark.parametrize("arch", ["llama", "mistral"])
def test_decode_through_inductor_matches_eager(arch):
    """The whole compile (Inductor on the CPU) of the decode step where every layer's op advances its own counter:
    layer 0's is also read by the mask and the rotary positions, which must see the value before the advance in
    every step (a read reordered after the op would shift them by one and change the tokens)."""
    model, cfg = build(arch)
    ref, ref_cache = decode(model, cfg, step_fn)
    torch._dynamo.reset()
    backend = AccelBackend({"strict": True})
    out, cache = decode(model, cfg, torch.compile(step_fn, backend=backend, fullgraph=True))
    assert torch.equal(out, ref)
    for a, b in zip(cache.layers, ref_cache.layers):
        assert torch.equal(a.cumulative_length, b.cumulative_length)
        torch.testing.assert_close(a.keys, b.keys, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(a.values, b.values, rtol=1e-5, atol=1e-6)
    details = [m.detail for m in backend.report.graphs[-1].matches if m.pattern == "rope_kv_update"]
    assert sum("in the attention's own launches" in d for d in details) == cfg.num_hidden_layers


def test_on_by_default_and_can_be_turned_off():
    model, cfg = build("llama")
    for options, expected in (({}, cfg.num_hidden_layers), ({"fuse_kv_update": False}, 0)):
        torch._dynamo.reset()
        backend = AccelBackend({"strict": True, **options}, inner_compile=run_rewritten_eagerly)
        decode(model, cfg, torch.compile(step_fn, backend=backend, fullgraph=True), n=2)
        assert [m.pattern for m in backend.report.graphs[-1].matches].count("rope_kv_update") == expected


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the Triton kernel's cache mutation is lowered on CUDA only")
@pytest.mark.parametrize("into_attention,splits", [(False, 2), (True, 2), (True, 1)],
                         ids=["append", "into_attention", "into_one_split"])
def test_inductor_writes_the_caches_in_place_on_cuda(into_attention, splits, monkeypatch):
    """The op mutates the caches; Inductor must hand it the cache buffers themselves, never a clone it copies back
    (that would be two cache-sized copies per layer and step). Checked in the generated code: no buffer of the cache's
    shape is allocated and the op's Triton kernels run, and the decode still gives eager's tokens. into_attention:
    attention is held to a split-KV config, so that layers 1+ rotate and append inside the attention's launches (and
    its reduction kernel advances the counter); into_one_split: to one split (one launch, whose programs' tickets
    advance the cache's int64 counter)."""
    from torch._inductor.utils import fresh_inductor_cache, run_and_get_code

    from accel.lowering import fuse_kv_update
    from accel.runtime.kernels import attention as ka

    if into_attention:
        split = dict(kernel="decode", BLOCK_N=16, num_warps=4, num_stages=2, SKIP=1, waves=2, splits=splits)
        monkeypatch.setattr(ka, "_select", lambda *args, **kwargs: split)
    else:
        monkeypatch.setattr(fuse_kv_update, "INTO_ATTENTION", False)
    model, cfg = build("llama")
    model = model.cuda()

    def decode_cuda(step):
        return decode(model, cfg, step, n=4, device="cuda")

    ref, ref_cache = decode_cuda(step_fn)
    torch._dynamo.reset()
    backend = AccelBackend({"strict": True, "fuse_kv_update": True, "cudagraphs": False})
    # (a fresh Inductor cache: the monkeypatched attention config is not in its keys, and the one-split and split
    # cases compile the same graph)
    with fresh_inductor_cache():
        (out, cache), codes = run_and_get_code(
            lambda: decode_cuda(torch.compile(step_fn, backend=backend, fullgraph=True)))
    assert torch.equal(out, ref)
    for a, b in zip(cache.layers, ref_cache.layers):  # accel's v projection sums in another order than cuBLAS
        torch.testing.assert_close(a.keys, b.keys, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(a.values, b.values, rtol=1e-5, atol=1e-6)
    code = "\n".join(codes)
    shape = tuple(cache.layers[0].keys.shape)
    assert f"empty_strided_cuda({shape}," not in code
    # the decode mask ([1, 1, 1, 32] bool) computed once for both layers, not copied for each op (session 35)
    assert code.count("empty_strided_cuda((1, 1, 1, 32), (32, 32, 32, 1), torch.bool)") <= 1
    assert ("_rope_kv_append_kernel" in code) != into_attention
    # layer 0's append too (its counter's other reads come first): no launch of the positions kernel
    assert re.search(r"\b_rope_kv_kernel_\d+\.run\(", code) is None
    if into_attention:  # the reduction kernel runs only after split launches
        assert ("_attn_decode_reduce_kernel" in code) == (splits > 1)
    for a, b in zip(cache.layers, ref_cache.layers):
        assert torch.equal(a.cumulative_length, b.cumulative_length)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the Triton kernels run on CUDA only")
def test_one_block_attention_under_cuda_graphs_matches_eager(monkeypatch):
    """The compile that takes PRE (session 35): CUDA graphs, PDL where the GPU has it, and a one-split attention whose
    key range is one block (a 32-row cache, 32-key blocks), so each step's attention draws its ticket and loads its
    cached rows before its PDL wait. Eight replayed steps give eager's tokens, caches and counters, and the launcher
    chose PRE while Inductor traced it."""
    from torch._inductor.utils import fresh_inductor_cache

    from accel.runtime.kernels import attention as ka

    one_block = dict(kernel="decode", BLOCK_N=32, num_warps=4, num_stages=2, SKIP=1, waves=2, splits=1)
    monkeypatch.setattr(ka, "_select", lambda *args, **kwargs: one_block)
    chosen, preloads = [], ka._preloads
    monkeypatch.setattr(ka, "_preloads", lambda *args: chosen.append(preloads(*args)) or chosen[-1])
    model, cfg = build("llama")
    model = model.cuda()
    ref, ref_cache = decode(model, cfg, step_fn, n=8, device="cuda")
    torch._dynamo.reset()
    backend = AccelBackend({"strict": True, "cudagraphs": True})
    with fresh_inductor_cache():
        out, cache = decode(model, cfg, torch.compile(step_fn, backend=backend, fullgraph=True), n=8, device="cuda",
                            graphs=True)
    assert chosen and all(chosen)
    assert torch.equal(out, ref)
    for a, b in zip(cache.layers, ref_cache.layers):
        assert torch.equal(a.cumulative_length, b.cumulative_length)
        torch.testing.assert_close(a.keys, b.keys, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(a.values, b.values, rtol=1e-5, atol=1e-6)
