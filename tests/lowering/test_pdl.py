"""Programmatic dependent launch (``accel.lowering.pdl``, ``accel.runtime.kernels.utils.use_pdl``).

On CPU: the switch is off outside an accel compile and for CPU tensors, the generated code is extended only for
accel kernels compiled with PDL=True, the patch lasts only for the block, and the access analysis sees a PDL
launch as the launch without it. On an sm_90+ GPU: a compiled decoder launches its GEMVs with the attribute,
under CUDA graphs, and gives bit-identical results to the same compile without PDL."""
import pytest
import torch
import triton
import triton.language as tl

from accel.lowering import kernel_access_cache as kac
from accel.lowering import pdl
from accel.runtime.kernels import linear as kl
from accel.runtime.kernels.utils import launching_with_pdl, use_pdl


@triton.jit
def _user_kernel(x_ptr, PDL: tl.constexpr):  # not accel's: never given the attribute
    tl.store(x_ptr, 0.0)


GENERATED = "async_compile.triton('k', '''\n@triton_heuristics.user_autotune(configs=[], triton_meta={'signature': {}})"


def test_the_switch_is_off_outside_a_compile_and_for_cpu_tensors():
    assert not use_pdl(torch.device("cpu"))
    with launching_with_pdl(True):
        assert not use_pdl(torch.device("cpu"))
    if torch.cuda.is_available():
        assert not use_pdl(torch.device("cuda"))
        with launching_with_pdl(True):
            assert use_pdl(torch.device("cuda")) == (torch.cuda.get_device_capability()[0] >= 9)



def test_the_kernel_families_are_switched_on_by_name(monkeypatch):
    from accel.runtime.kernels import utils

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(utils, "_supports_pdl", lambda index: True)
    cuda = torch.device("cuda", 0)
    with launching_with_pdl(True):
        assert use_pdl(cuda) and use_pdl(cuda, utils.ATTENTION)
    with launching_with_pdl([utils.GEMV]):
        assert use_pdl(cuda) and not use_pdl(cuda, utils.ATTENTION) and not use_pdl(cuda, utils.GEMV_EARLY)
    with launching_with_pdl(False):
        assert not use_pdl(cuda) and not use_pdl(cuda, utils.ATTENTION)
    with pytest.raises(ValueError, match="unknown PDL kernel families"), launching_with_pdl(["gemm"]):
        pass
    for attention in (True, False):
        with pdl.pdl_launches(True, attention=attention):
            assert use_pdl(cuda) and use_pdl(cuda, utils.ATTENTION) == attention
            assert not use_pdl(cuda, utils.GEMV_EARLY)
    with pdl.pdl_launches(True, early=True):
        assert use_pdl(cuda, utils.GEMV_EARLY) and use_pdl(cuda, utils.ATTENTION)
    with pdl.pdl_launches(True, early="small"):
        assert use_pdl(cuda, utils.GEMV_EARLY_SMALL) and not use_pdl(cuda, utils.GEMV_EARLY)
    # the one-block decode attention's reads before its wait: only with the attention chain under CUDA graphs
    for attention, cudagraphs in ((True, True), (True, False), (False, True)):
        with pdl.pdl_launches(True, attention=attention, cudagraphs=cudagraphs):
            assert use_pdl(cuda, utils.ATTENTION_PRE) == (attention and cudagraphs)


def test_the_small_early_trigger_takes_launches_that_fit_half_the_warp_slots(monkeypatch):
    """``pdl_early_trigger="small"``: a GEMV triggers first thing only when its programs' warps fit in half of the
    GPU's warp slots (132 SMs x 64 warps / 2 = 4224); True triggers early in every launch, False in none, and a
    grid of unknown size never takes it."""
    from accel.runtime.kernels import utils

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(utils, "_supports_pdl", lambda index: True)
    cuda, sms = torch.device("cuda", 0), 132
    with pdl.pdl_launches(True, early="small"):
        assert utils.early_trigger(cuda, (1056, 1, 1), 4, sms)  # 4224 warps: just fits
        assert not utils.early_trigger(cuda, (1057, 1, 1), 4, sms)
        assert not utils.early_trigger(cuda, (4096, 1, 1), 2, sms)  # the int8 gate/up GEMV's grid
        assert utils.early_trigger(cuda, (512, 1, 1), 8, sms)  # a down projection's
        from torch.fx.experimental.symbolic_shapes import ShapeEnv

        assert not utils.early_trigger(cuda, (ShapeEnv().create_unbacked_symint(), 1, 1), 1, sms)
        assert not utils.early_trigger(torch.device("cpu"), (1, 1, 1), 1, sms)
    with pdl.pdl_launches(True, early=True):
        assert utils.early_trigger(cuda, (4096, 1, 1), 2, sms)
    with pdl.pdl_launches(True):
        assert not utils.early_trigger(cuda, (1, 1, 1), 1, sms)

def test_the_generated_meta_gets_the_launch_option_once():
    patched = pdl.with_launch_pdl(GENERATED)
    assert patched.count("'launch_pdl': True") == 1 and patched.replace("'launch_pdl': True, ", "") == GENERATED
    assert pdl.with_launch_pdl("no meta here") is None
    assert pdl.with_launch_pdl(GENERATED + GENERATED) is None


def test_only_accel_kernels_compiled_for_pdl_want_it():
    assert pdl.wants_pdl(kl._gemv_kernel, {"PDL": True})
    assert not pdl.wants_pdl(kl._gemv_kernel, {"PDL": False})
    assert not pdl.wants_pdl(kl._gemv_kernel, {})
    assert not pdl.wants_pdl(_user_kernel, {"PDL": True})


class FakeWrapper:
    def __init__(self):
        self.defined = []

    def define_kernel(self, name, code, metadata=None):
        self.defined.append(code)


def fake_define(self, kernel, configs, kwargs, *rest):  # stands in for Inductor's codegen of a user kernel
    self.define_kernel("k", GENERATED, "# metadata")
    return "k"


def test_inductor_codegen_is_extended_only_in_the_block(monkeypatch):
    from torch._inductor.codegen.wrapper import PythonWrapperCodegen

    monkeypatch.setattr(PythonWrapperCodegen, "define_user_defined_triton_kernel", fake_define)
    wrapper = FakeWrapper()
    with pdl.pdl_launches(True) as record:
        define = PythonWrapperCodegen.define_user_defined_triton_kernel
        assert define is not fake_define
        assert define(wrapper, kl._gemv_kernel, [], {"PDL": True}) == "k"
        define(wrapper, kl._gemv_kernel, [], {"PDL": False})
        define(wrapper, _user_kernel, [], {"PDL": True})
        assert "define_kernel" not in vars(wrapper)  # the per-call shadow is gone
    assert PythonWrapperCodegen.define_user_defined_triton_kernel is fake_define
    assert ["launch_pdl" in code for code in wrapper.defined] == [True, False, False]
    assert (record.asked, record.launched) == (1, 1)
    with pytest.raises(RuntimeError), pdl.pdl_launches(True):
        raise RuntimeError("a failed compile restores the codegen too")
    assert PythonWrapperCodegen.define_user_defined_triton_kernel is fake_define
    with pdl.pdl_launches(False) as record:
        assert PythonWrapperCodegen.define_user_defined_triton_kernel is fake_define
        assert not use_pdl(torch.device("cuda"))


def test_unexpected_generated_code_is_left_alone_and_counted(monkeypatch, caplog):
    from torch._inductor.codegen.wrapper import PythonWrapperCodegen

    def other_codegen(self, kernel, configs, kwargs, *rest):
        self.define_kernel("k", "code without the meta dict")

    monkeypatch.setattr(PythonWrapperCodegen, "define_user_defined_triton_kernel", other_codegen)
    wrapper = FakeWrapper()
    with pdl.pdl_launches(True) as record:
        PythonWrapperCodegen.define_user_defined_triton_kernel(wrapper, kl._gemv_kernel, [], {"PDL": True})
    assert wrapper.defined == ["code without the meta dict"]
    assert (record.asked, record.launched) == (1, 0)
    assert "without PDL" in caplog.text


def test_the_access_analysis_sees_a_pdl_launch_as_the_plain_launch():
    seen = []

    def analysis(kernel, kwargs, tma=None):
        seen.append(kwargs["PDL"])
        return {"writes": ["out"]}

    memo = kac.AccessMemo()
    analyze = memo.wrap(analysis)
    assert analyze(kl._gemv_kernel, {"out": torch.empty(1), "PDL": True}, {}) == {"writes": ["out"]}
    analyze(kl._gemv_kernel, {"out": torch.empty(1), "PDL": False}, {})
    assert seen == [False] and memo.entries == 1


def test_the_option_is_validated_and_hashed():
    from accel.compiler.options import AccelOptions, AccelOptionsError

    assert AccelOptions().pdl is True
    assert AccelOptions.from_dict({"pdl": False}).compute_hash() != AccelOptions().compute_hash()
    with pytest.raises(AccelOptionsError, match="pdl"):
        AccelOptions.from_dict({"pdl": "yes"})
    assert AccelOptions().pdl_attention is True
    assert (AccelOptions.from_dict({"pdl": True, "pdl_attention": False}).compute_hash()
            != AccelOptions.from_dict({"pdl": True}).compute_hash())
    with pytest.raises(AccelOptionsError, match="pdl_attention"):
        AccelOptions.from_dict({"pdl_attention": 1})
    # the default: the small early trigger for int4 weight-only (where it was measured faster), off otherwise
    assert AccelOptions().pdl_early_trigger is None and AccelOptions().early_trigger() is False
    assert AccelOptions.from_dict({"quantize": "int4_weight_only"}).early_trigger() == "small"
    assert AccelOptions.from_dict({"quantize": "int8_weight_only"}).early_trigger() is False
    assert AccelOptions.from_dict({"quantize": "int4_weight_only", "pdl_early_trigger": False}).early_trigger() is False
    assert AccelOptions.from_dict({"pdl_early_trigger": True}).early_trigger() is True
    assert AccelOptions.from_dict({"pdl_early_trigger": True}).compute_hash() != AccelOptions().compute_hash()
    small = AccelOptions.from_dict({"pdl_early_trigger": "small"})
    assert small.compute_hash() not in (AccelOptions().compute_hash(),
                                        AccelOptions.from_dict({"pdl_early_trigger": True}).compute_hash())
    for bad in (1, "yes", 0.0):
        with pytest.raises(AccelOptionsError, match="pdl_early_trigger"):
            AccelOptions.from_dict({"pdl_early_trigger": bad})


needs_sm90 = pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.get_device_capability()[0] < 9,
                                reason="programmatic dependent launch needs a Hopper or newer GPU")


@needs_sm90
def test_a_decoder_launches_its_gemvs_with_pdl_and_matches_the_compile_without():
    from transformers import LlamaConfig, LlamaForCausalLM

    from torch._functorch import config as functorch_config
    from torch._inductor import config as inductor_config

    from accel.compiler.backend import last_report

    cfg = LlamaConfig(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=512)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).cuda().to(torch.bfloat16).eval()
    ids = torch.randint(0, 512, (1, 1), device="cuda")
    outs, reports = {}, {}
    # no cache hits: the codegen must run for the kernels to be counted
    with torch.no_grad(), inductor_config.patch(fx_graph_cache=False), \
            functorch_config.patch(enable_autograd_cache=False):
        for on in (True, False):
            torch._dynamo.reset()
            compiled = torch.compile(model, backend="accel", options={"pdl": on, "cudagraphs": True})
            for _ in range(3):  # warm-up, capture, replay
                torch.compiler.cudagraph_mark_step_begin()
                outs[on] = compiled(ids).logits.clone()
            reports[on] = last_report().graphs[0]
    assert reports[True].pdl_kernels["launched"] == reports[True].pdl_kernels["asked"] > 0, reports[True].pdl_kernels
    assert reports[False].pdl_kernels == {"asked": 0, "launched": 0}
    code = "".join(open(path).read() for path in reports[True].output_code)
    assert "'launch_pdl': True" in code and "gdc_wait" in code
    assert torch.equal(outs[True], outs[False])


def _launch_pdl_by_kernel(code: str) -> dict[str, bool]:
    """For each kernel defined in generated code: whether its triton_meta asks for launch_pdl."""
    import re

    chunks = code.split("async_compile.triton(")[1:]
    return {re.match(r"\s*'(\w+)'", c).group(1): "'launch_pdl': True" in c.split("@triton.jit")[0] for c in chunks}


@needs_sm90
def test_a_static_cache_decode_launches_its_attention_chain_with_pdl_and_matches_without(monkeypatch):
    """A decode step over transformers' StaticCache under CUDA graphs: with ``pdl`` (the default) the rotary /
    KV-cache kernel (layer 0's, whose counter the mask also reads) and both decode attention kernels (layer 1's with
    its RoPE and cache append inside, ``rope_attention_append``) are launched with the attribute too (not with
    ``pdl_attention=False``), and the logits and the caches are bit-identical to the compile without PDL over three
    steps, also with the GEMVs' early trigger (``pdl_early_trigger`` True and "small"). Untuned, so that the decode
    attention takes its split-KV kernel and the reduction (256 cached positions: 4 splits)."""
    from transformers import LlamaConfig, LlamaForCausalLM, StaticCache

    from torch._functorch import config as functorch_config
    from torch._inductor import config as inductor_config
    from torch._inductor.utils import run_and_get_code

    cfg = LlamaConfig(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=512, max_position_embeddings=512)
    monkeypatch.setenv("ACCEL_AUTOTUNE", "0")
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).cuda().to(torch.bfloat16).eval()
    prompt = torch.randint(0, 512, (1, 8), device="cuda")

    def step(model, cache, tok, pos):
        return model(input_ids=tok, past_key_values=cache, cache_position=pos, use_cache=True).logits

    def decode(options):
        torch._dynamo.reset()
        compiled = torch.compile(step, backend="accel", options={"cudagraphs": True, **options}, fullgraph=True)
        cache = StaticCache(config=cfg, max_cache_len=256)
        logits = []
        model(input_ids=prompt, past_key_values=cache, cache_position=torch.arange(8, device="cuda"))
        tok = prompt[:, -1:]
        for i in range(3):  # warm-up, capture, replay
            torch.compiler.cudagraph_mark_step_begin()
            out = compiled(model, cache, tok, torch.tensor([8 + i], device="cuda")).clone()
            logits.append(out)
            tok = out[:, -1:].argmax(-1)
        return torch.cat(logits), [t.clone() for layer in cache.layers for t in (layer.keys, layer.values)]

    runs = {}
    with torch.no_grad(), inductor_config.patch(fx_graph_cache=False), \
            functorch_config.patch(enable_autograd_cache=False):
        for name, options in (("off", {"pdl": False}), ("on", {}), ("gemv", {"pdl_attention": False}),
                              ("early", {"pdl_early_trigger": True}), ("small", {"pdl_early_trigger": "small"})):
            result, codes = run_and_get_code(decode, options)
            runs[name] = (result, _launch_pdl_by_kernel("\n".join(codes)))
    chain = ("_attn_decode_kernel", "_attn_decode_reduce_kernel")
    for name, attention in (("on", True), ("gemv", False), ("off", False), ("early", True), ("small", True)):
        pdl_of = runs[name][1]
        for kernel in chain:
            assert any(k.startswith(kernel) and v == attention for k, v in pdl_of.items()), (name, kernel, pdl_of)
        assert any(k.startswith("_qgemv") or k.startswith("_gemv") for k in pdl_of), pdl_of
        # every layer's RoPE / append in the attention's launches (layer 0's too: session 35)
        assert not any(k.startswith("_rope_kv") for k in pdl_of), pdl_of
        assert all(not v for k, v in pdl_of.items() if k.startswith("_attn") or k.startswith("_rope")) != attention
    (logits, caches), _ = runs["off"]
    for name in ("on", "gemv", "early", "small"):
        assert torch.equal(runs[name][0][0], logits)
        assert all(torch.equal(a, b) for a, b in zip(runs[name][0][1], caches))
