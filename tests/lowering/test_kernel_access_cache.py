"""The compile-time memo of PyTorch's kernel access analysis (``accel.lowering.kernel_access_cache``).

On CPU the memo's keying and scoping are checked with a stand-in analysis; on CUDA the real analysis of an accel
kernel must give the same answer through the memo, and a compiled decoder must analyze fewer launches than it
has while matching eager."""
import pytest
import torch
import triton
import triton.language as tl

from accel.lowering import kernel_access_cache as kac
from accel.runtime.kernels import linear as kl


@triton.jit
def _user_kernel(x_ptr, N: tl.constexpr):  # a kernel that is not accel's: never memoized
    tl.store(x_ptr + tl.arange(0, N), tl.zeros([N], tl.float32))


class Counting:
    def __init__(self):
        self.calls = []

    def __call__(self, kernel, kwargs, tma=None):
        self.calls.append(dict(kwargs))
        return {"writes": [name for name in kwargs if name.startswith("out")]}


def launch(dtype=torch.float32, n=8):
    return {"x": torch.empty(2, dtype=dtype), "out": torch.empty(2, dtype=dtype), "N": n, "BLOCK": 64}


def test_accel_kernels_are_recognized_and_others_are_not():
    assert kac.is_accel_kernel(kl._gemv_kernel)
    assert not kac.is_accel_kernel(_user_kernel)
    assert not kac.is_accel_kernel(object())


def test_a_repeated_launch_is_analyzed_once_and_each_caller_gets_its_own_copy():
    memo, original = kac.AccessMemo(), Counting()
    analyze = memo.wrap(original)
    first = analyze(kl._gemv_kernel, launch(), {})
    first["writes"].append("mutated by the caller")
    second = analyze(kl._gemv_kernel, launch(), {})
    assert len(original.calls) == 1 and (memo.calls, memo.entries) == (2, 1)
    assert second == {"writes": ["out"]}


@pytest.mark.parametrize("change", ["dtype", "value", "kernel", "metadata"])
def test_what_the_ir_depends_on_is_in_the_key(change):
    memo, original = kac.AccessMemo(), Counting()
    analyze = memo.wrap(original)
    analyze(kl._gemv_kernel, launch(), {})
    other = {"dtype": lambda: analyze(kl._gemv_kernel, launch(torch.float16), {}),
             "value": lambda: analyze(kl._gemv_kernel, launch(n=16), {}),
             "kernel": lambda: analyze(kl._gemm_kernel, launch(), {}),
             "metadata": lambda: analyze(kl._gemv_kernel, launch(), {"x": ("tma", (16, 16))})}[change]
    other()
    assert len(original.calls) == 2 and memo.entries == 2


def test_symbolic_sizes_share_one_entry_and_unhashable_arguments_are_not_cached():
    import sympy

    memo, original = kac.AccessMemo(), Counting()
    analyze = memo.wrap(original)
    analyze(kl._gemv_kernel, {**launch(), "N": sympy.Symbol("s0")}, {})
    analyze(kl._gemv_kernel, {**launch(), "N": sympy.Symbol("s1")}, {})
    analyze(kl._gemv_kernel, {**launch(), "N": [1, 2]}, {})
    analyze(kl._gemv_kernel, {**launch(), "N": [1, 2]}, {})
    assert len(original.calls) == 3 and memo.entries == 1


def test_launches_of_one_function_share_entries_whatever_object_pytorch_hands_over():
    class Handle:  # PyTorch passes a different kernel object per launch; they wrap the same function
        def __init__(self, jit):
            self.fn = jit

    memo, original = kac.AccessMemo(), Counting()
    analyze = memo.wrap(original)
    analyze(Handle(kl._gemv_kernel), launch(), {})
    analyze(Handle(kl._gemv_kernel), launch(), {})
    assert len(original.calls) == 1 and memo.entries == 1


def test_other_kernels_go_straight_to_the_analysis():
    memo, original = kac.AccessMemo(), Counting()
    analyze = memo.wrap(original)
    for _ in range(2):
        analyze(_user_kernel, launch(), {})
    assert len(original.calls) == 2 and memo.calls == 0


def analysis_name() -> str:
    """The analysis' name in this torch release (identify_mutated_tensors before it also reported reads)."""
    from torch._higher_order_ops import triton_kernel_wrap as tkw

    return next(name for name in kac._ANALYZERS if hasattr(tkw, name))


def test_the_patch_lasts_only_for_the_block():
    from torch._higher_order_ops import triton_kernel_wrap as tkw

    name = analysis_name()
    before = getattr(tkw, name)
    with kac.cached_kernel_access():
        assert getattr(tkw, name) is not before
        assert getattr(tkw, name).__wrapped__ is before
    assert getattr(tkw, name) is before
    with pytest.raises(RuntimeError), kac.cached_kernel_access():
        raise RuntimeError("a failed compile restores the analysis too")
    assert getattr(tkw, name) is before


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="the real analysis lowers to Triton IR on a GPU")


@needs_cuda
def test_the_real_analysis_answers_the_same_through_the_memo():
    from torch._higher_order_ops import triton_kernel_wrap as tkw

    x = torch.randn(1, 256, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(512, 256, device="cuda", dtype=torch.bfloat16)
    captured = []
    name = analysis_name()
    real = getattr(tkw, name)

    def spy(kernel, kwargs, *rest):
        captured.append((kernel, dict(kwargs), rest))
        return real(kernel, kwargs, *rest)

    setattr(tkw, name, spy)
    try:
        torch.compile(lambda a, b: torch.ops.accel.linear(a, b, None), backend="inductor")(x, w)
    finally:
        setattr(tkw, name, real)
    assert captured, "Inductor analyzed no accel launch"
    kernel, kwargs, rest = captured[0]
    plain = real(kernel, kwargs, *rest)
    with kac.cached_kernel_access() as memo:
        first = getattr(tkw, name)(kernel, kwargs, *rest)
        again = getattr(tkw, name)(kernel, kwargs, *rest)
    assert str(first) == str(plain) == str(again) and (memo.calls, memo.entries) == (2, 1)


@needs_cuda
def test_a_compiled_decoder_analyzes_each_distinct_launch_once(monkeypatch):
    import contextlib

    from transformers import LlamaConfig, LlamaForCausalLM

    import accel.lowering.inductor as li

    memos = []

    @contextlib.contextmanager
    def recording():
        with kac.cached_kernel_access() as memo:
            memos.append(memo)
            yield memo

    monkeypatch.setattr(li, "cached_kernel_access", recording)
    cfg = LlamaConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=512)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).cuda().eval()
    ids = torch.randint(0, 512, (1, 12), device="cuda")
    with torch.no_grad():
        ref = model(ids).logits
        torch._dynamo.reset()
        out = torch.compile(model, backend="accel")(ids).logits
    torch.testing.assert_close(out, ref, atol=2e-3, rtol=2e-3)
    memo = memos[-1]
    # four identical layers: a launch's analysis is asked for once per layer and phase, and runs once per phase
    assert memo.calls >= 4 * memo.entries > 0, (memo.calls, memo.entries, memo.varying())


@needs_cuda
@pytest.mark.parametrize("scheme", ["int8_weight_only", "int4_weight_only"])
def test_quantized_kernels_are_analyzed_without_falling_back(scheme, caplog):
    """PyTorch falls back to 'every input is written' (weights cloned, CUDA graphs off) when its analysis of a
    kernel fails; through the memo, accel's quantized GEMVs must still be analyzed."""
    import logging

    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=512)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).cuda().to(torch.bfloat16).eval()
    ids = torch.randint(0, 512, (1, 1), device="cuda")
    torch._dynamo.reset()
    with torch.no_grad(), caplog.at_level(logging.WARNING, logger="torch._higher_order_ops.triton_kernel_wrap"):
        torch.compile(model, backend="accel", options={"quantize": scheme})(ids)
    assert not [r for r in caplog.records if "assuming every input is mutated" in r.getMessage()]
