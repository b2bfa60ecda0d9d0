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


def test_split_k_counters_are_reported_read_not_written():
    """The tile counters (``cnt_ptr``) go back to zero in every launch: the memo drops them from the writes, in
    each form PyTorch answers in by release (a list of names; ``ReadWrites``; ``TensorAccesses`` around one), and
    leaves other writes alone."""
    import dataclasses

    from torch._inductor.dependencies import ReadWrites, StarDep
    from torch.utils._ordered_set import OrderedSet

    memo = kac.AccessMemo()
    analyze = memo.wrap(lambda kernel, kwargs, tma=None: ["out_ptr", "cnt_ptr", "ws_ptr"])
    assert analyze(kl._gemv_kernel, launch(), {}) == ["out_ptr", "ws_ptr"]
    read_writes = ReadWrites(reads=OrderedSet(StarDep(n) for n in ("x_ptr", "cnt_ptr")),
                             writes=OrderedSet(StarDep(n) for n in ("out_ptr", "cnt_ptr")), index_exprs=OrderedSet())

    @dataclasses.dataclass
    class Accesses:  # TensorAccesses' shape (torch ≥ 2.12)
        read_writes: ReadWrites
        can_fuse_epilogue: bool

    for answer, unwrap in ((read_writes, lambda r: r), (Accesses(read_writes, False), lambda r: r.read_writes)):
        filtered = unwrap(kac.without_restored_writes(answer))
        assert [d.name for d in filtered.writes] == ["out_ptr"]
        assert [d.name for d in filtered.reads] == ["x_ptr", "cnt_ptr"]
    assert [d.name for d in read_writes.writes] == ["out_ptr", "cnt_ptr"]  # the original is not changed


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


@needs_cuda
def test_split_k_counters_are_neither_copied_nor_reduced_by_a_second_launch(monkeypatch):
    """A compiled split-K qlinear with counters: Inductor's code launches the GEMV alone (no split-K epilogue
    kernel) and passes the counters themselves (no clone), the result equals the two-launch path bit for bit,
    and the counters are zero after each call."""
    from torch._inductor.utils import run_and_get_code

    from accel.runtime import quant
    from accel.runtime.kernels import qlinear as ql

    cfg = {"kernel": "gemv", "BLOCK_M": 1, "BLOCK_N": 8, "BLOCK_K": 512, "SPLIT_K": 4, "SUB": 4,
           "CHUNKS_FIRST": ql.CHUNKS_FIRST, "num_warps": 4, "num_stages": 1}
    monkeypatch.setattr(ql, "select_config", lambda *a, **k: cfg)
    qw, s, _ = quant.quantize_weight(torch.randn(256, 2048, device="cuda") / 45, "int8_weight_only")
    x = torch.randn(1, 2048, device="cuda", dtype=torch.bfloat16)
    r = torch.randn(1, 256, device="cuda", dtype=torch.bfloat16)
    counters = torch.zeros(256, dtype=torch.int32, device="cuda")

    def f(x, r, counters):
        return torch.ops.accel.qlinear(x, qw, s, None, None, "int8_weight_only", 128, "identity", False, None,
                                       None, r, counters)

    two_launches = ql.qlinear(x, qw, s, None, None, "int8_weight_only", 128, "identity", False, None, None, r,
                              _config=cfg)
    torch._dynamo.reset()
    with kac.cached_kernel_access():
        compiled = torch.compile(f, backend="inductor")
        out, (code,) = run_and_get_code(compiled, x, r, counters)
    assert torch.equal(out, two_launches) and not counters.any()
    launches = [line.split(".run(")[0].strip() for line in code.splitlines() if ".run(" in line]
    assert len(launches) == 1 and launches[0].startswith("_qgemv_words_kernel"), launches
    assert "clone(" not in code and "copy_(" not in code, code
    assert torch.equal(compiled(x, r, counters), two_launches) and not counters.any()


@needs_cuda
def test_split_k_candidates_are_tuned_with_the_counters_of_a_traced_graph(caplog, tmp_path, monkeypatch):
    """Inside a compile the op's body sees fake counters: the tuner must still time every candidate (with real
    counters of the same length), not fall back to the default config."""
    import logging

    from accel.runtime import quant

    monkeypatch.setenv("ACCEL_AUTOTUNE_CACHE", str(tmp_path / "cache.json"))  # a fresh cache: every key is tuned
    qw, s, _ = quant.quantize_weight(torch.randn(256, 4096, device="cuda") / 64, "int8_weight_only")
    x = torch.randn(1, 4096, device="cuda", dtype=torch.bfloat16)
    counters = torch.zeros(256, dtype=torch.int32, device="cuda")

    def f(x, counters):
        return torch.ops.accel.qlinear(x, qw, s, None, None, "int8_weight_only", 128, "identity", False, None,
                                       None, None, counters)

    torch._dynamo.reset()
    with caplog.at_level(logging.INFO, logger="accel.autotune"), kac.cached_kernel_access():
        out = torch.compile(f, backend="inductor")(x, counters)
    assert not [r for r in caplog.records if "failed" in r.getMessage()], [r.getMessage() for r in caplog.records]
    ref = quant.qlinear_reference(x, qw, s, None, None, "int8_weight_only", 128)
    torch.testing.assert_close(out.float(), ref.float(), rtol=2e-2, atol=2e-2)
