"""``accel.runtime.kernels.linear``: every kernel, forced through ``_config``, against the float64 reference.

Without a GPU the kernels run on CPU tensors through the Triton interpreter (conftest sets TRITON_INTERPRET=1),
hence tiny tiles and fp32 / fp16 only (the interpreter has no bf16 arithmetic); with a GPU the same tests run
the compiled kernels on CUDA tensors, bf16 included. Shapes are deliberately not multiples of the blocks.
"""
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from accel.runtime import reference
from accel.runtime.kernels import linear as kl
from tests.runtime.poison import poison_allocations

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
LOW_PRECISION = [torch.float16] + ([torch.bfloat16] if DEVICE == "cuda" else [])

# Small tiles so that odd shapes span several blocks and the interpreter stays fast.
CONFIGS = {
    "gemv": {"kernel": "gemv", "BLOCK_N": 8, "BLOCK_K": 16, "SPLIT_K": 1, "num_warps": 4, "num_stages": 1},
    "gemv-splitk3": {"kernel": "gemv", "BLOCK_N": 4, "BLOCK_K": 16, "SPLIT_K": 3, "num_warps": 4, "num_stages": 1},
    "skinny": {"kernel": "gemm", "BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16, "SPLIT_K": 1, "GROUP_M": 1,
               "num_warps": 4, "num_stages": 2},
    "skinny-splitk2": {"kernel": "gemm", "BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 16, "SPLIT_K": 2, "GROUP_M": 1,
                       "num_warps": 4, "num_stages": 2},
    "tiled-grouped": {"kernel": "gemm", "BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 32, "SPLIT_K": 1, "GROUP_M": 2,
                      "num_warps": 4, "num_stages": 2},
    "cublas": kl.CUBLAS,
}
SHAPES = [(1, 40, 130), (3, 7, 24), (17, 24, 40), (33, 130, 7), (5, 1, 1)]  # (M, N, K)


def tolerance(dtype: torch.dtype, K: int) -> float:
    # fp32: K products summed in fp32 in another order than the float64 reference; the worst-case bound
    # grows like K·2^-24·Σ|x·w| with Σ|x·w| = O(√K) for these inputs, so 1e-6·K is loose yet far below any
    # indexing or masking bug (errors of order 1).
    # fp16 / bf16: inputs are exact in float64 and accumulation is fp32, so the output rounding dominates:
    # 2^-11 (fp16) or 2^-8 (bf16) relative per rounding, at most three roundings (cuBLAS h, then act·mul).
    rounding = {torch.float32: 0.0, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}[dtype]
    return rounding + 1e-6 * K


def make_inputs(M, N, K, dtype, bias=True, transposed=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(M, K, generator=g).to(DEVICE, dtype)
    # weight scaled by 1/√K so outputs are O(1) in every dtype
    w_kn = torch.randn(K, N, generator=g) / math.sqrt(K)
    w = w_kn.to(DEVICE, dtype).t() if transposed else w_kn.t().contiguous().to(DEVICE, dtype)
    b = torch.randn(N, generator=g).to(DEVICE, dtype) if bias else None
    return x, w, b


def check(out, x, w, b):
    ref = reference.linear(x.double(), w.double(), None if b is None else b.double())
    assert out.shape == ref.shape and out.dtype == x.dtype and out.is_contiguous()
    tol = tolerance(x.dtype, x.shape[1])
    torch.testing.assert_close(out.double(), ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("M,N,K", SHAPES)
def test_each_kernel_fp32(name, M, N, K):
    x, w, b = make_inputs(M, N, K, torch.float32)
    check(kl.linear(x, w, b, _config=CONFIGS[name]), x, w, b)


@pytest.mark.parametrize("dtype", LOW_PRECISION, ids=str)
@pytest.mark.parametrize("name", CONFIGS)
def test_each_kernel_low_precision_without_bias(name, dtype):
    x, w, _ = make_inputs(17, 40, 130, dtype, bias=False)
    check(kl.linear(x, w, None, _config=CONFIGS[name]), x, w, None)


@pytest.mark.parametrize("name", CONFIGS)
def test_transposed_weight_view(name):
    # GPT-2's Conv1D stores [K, N]; the op receives its transpose, strides (1, N), and must not copy it
    x, w, b = make_inputs(5, 24, 40, torch.float32, transposed=True)
    assert w.stride() == (1, 24)
    check(kl.linear(x, w, b, _config=CONFIGS[name]), x, w, b)


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("layout", ["strided", "transposed"])
def test_non_contiguous_x(name, layout):
    _, w, b = make_inputs(6, 24, 40, torch.float32)
    base = torch.randn(6, 80, device=DEVICE) if layout == "strided" else torch.randn(40, 6, device=DEVICE)
    x = base[:, ::2] if layout == "strided" else base.t()
    assert not x.is_contiguous()
    check(kl.linear(x, w, b, _config=CONFIGS[name]), x, w, b)


@pytest.mark.parametrize("name", [n for n in CONFIGS if n != "cublas"])
def test_output_and_workspace_fully_written(name, monkeypatch):
    # every buffer the launcher allocates starts as NaN: any element left unwritten (or a workspace slice
    # read but never stored, e.g. an empty split) shows up in the result
    allocs = poison_allocations(monkeypatch)
    x, w, b = make_inputs(17, 24, 40, torch.float32)
    out = kl.linear(x, w, b, _config={**CONFIGS[name], "SPLIT_K": 4})  # K=40 in 16-steps: the 4th split is empty
    assert (4, 17, 24) in allocs
    check(out, x, w, b)


@pytest.mark.parametrize("M", [1, 5, 40, 70])
def test_every_generated_candidate(M):
    # the configs the tuner may pick (block sizes clamped to this small problem) all compute the same thing
    N, K = 24, 72
    x, w, b = make_inputs(M, N, K, torch.float32)
    cands = kl.candidate_configs(M, N, K, False, 4, sms=2)
    assert cands and all(kl.keep_config(c, False, 4) for c in cands)
    for cfg in cands:
        check(kl.linear(x, w, b, _config=cfg), x, w, b)


def test_heuristic_default(monkeypatch):
    # without measurement (no CUDA, or ACCEL_AUTOTUNE=0) the first candidate is taken
    monkeypatch.setenv("ACCEL_AUTOTUNE", "0")
    x, w, b = make_inputs(2, 24, 40, torch.float32)
    assert kl.select_config("linear", x, w, b, 0, False)["kernel"] == "gemv"
    check(kl.linear(x, w, b), x, w, b)
    x, w, b = make_inputs(20, 24, 40, torch.float32)
    assert kl.select_config("linear", x, w, b, 0, False)["kernel"] == "gemm"
    check(kl.linear(x, w, b), x, w, b)


def test_symbolic_m_takes_cublas_without_guards():
    from torch._dynamo.source import ConstantSource
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import ShapeEnv

    env = ShapeEnv()
    with FakeTensorMode(shape_env=env):
        m = env.create_symintnode(env.create_symbol(8, source=ConstantSource("m")), hint=8)
        x, w = torch.empty(m, 16), torch.empty(24, 16)
        assert isinstance(x.shape[0], torch.SymInt)
        assert kl.select_config("linear", x, w, None, 0, False) == kl.CUBLAS
        assert kl.select_config("ffn_up", x, w, None, 4, True) == kl.CUBLAS
    assert not env.guards  # a guard on M would recompile for every new batch size


# The shapes that matter (N, K): Llama-3.2-1B and Llama-3-8B projections, the 1B LM head.
LLAMA_SHAPES = [(3072, 2048), (2048, 2048), (16384, 2048), (2048, 8192), (128256, 2048),
                (6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336)]


@pytest.mark.parametrize("M", [1, 4, 16, 64, 256, 2048])
@pytest.mark.parametrize("N,K", LLAMA_SHAPES)
def test_candidates_for_llama_shapes(M, N, K):
    cands = kl.candidate_configs(M, N, K, False, 2, sms=132)
    assert 2 <= len(cands) <= 10 and kl.CUBLAS in cands
    assert cands[0]["kernel"] == ("gemv" if M <= kl.GEMV_MAX_M else "gemm" if M <= 64 else "cublas")
    for c in cands:
        assert kl.keep_config(c, False, 2)
        if c["kernel"] == "cublas":
            continue
        split = c["SPLIT_K"]
        if split > 1:
            # at least one BLOCK_K step per split; fp32 workspace (8 B per split, row and column, written
            # and read back) within 1/8 of the bf16 weight bytes; split only as far as needed to fill the SMs
            assert K >= split * c["BLOCK_K"] and 8 * split * M <= K * 2 / 8
            programs = -(-N // c["BLOCK_N"]) * -(-M // c["BLOCK_M"])
            assert programs * split < 2 * 4 * 132


def test_rejects_mismatched_shapes():
    x, w, b = make_inputs(3, 8, 16, torch.float32)
    with pytest.raises(RuntimeError, match="linear"):
        kl.linear(x[:, :15], w, b, _config=CONFIGS["gemv"])


@given(
    M=st.integers(1, 40), N=st.integers(1, 40), K=st.integers(1, 70),
    name=st.sampled_from(sorted(CONFIGS)), split=st.sampled_from([1, 2, 3]),
    bias=st.booleans(), transposed=st.booleans(), strided_x=st.booleans(),
)
def test_property_any_small_shape(M, N, K, name, split, bias, transposed, strided_x):
    x, w, b = make_inputs(M, N, K, torch.float32, bias=bias, transposed=transposed, seed=M * 10007 + N * 101 + K)
    if strided_x:
        x = torch.zeros(M, 2 * K, dtype=x.dtype, device=DEVICE)[:, ::2].copy_(x)  # same values, strides (2K, 2)
    cfg = CONFIGS[name] if name == "cublas" else {**CONFIGS[name], "SPLIT_K": split}
    check(kl.linear(x, w, b, _config=cfg), x, w, b)


# ---- RMSNorm prologue and residual epilogue (the decode layer's norm → projection and projection + residual) ----


def norm_inputs(M, K, N, dtype, seed=1):
    g = torch.Generator().manual_seed(seed)
    scale = 0.5 + torch.rand(M, 1, generator=g) * 4  # rows of different RMS: the rsqrt must be per row
    x = (torch.randn(M, K, generator=g) * scale).to(DEVICE, dtype)
    residual = torch.randn(M, N, generator=g).to(DEVICE, dtype)
    return x, residual


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("M,N,K", [(1, 40, 130), (3, 7, 24), (17, 24, 40)])
def test_norm_and_residual_fp32(name, M, N, K):
    x, w, b = make_inputs(M, N, K, torch.float32)
    xn, r = norm_inputs(M, K, N, torch.float32)
    out = kl.linear(xn, w, b, 1e-5, r, _config=CONFIGS[name])
    ref = reference.linear(xn.double(), w.double(), b.double(), 1e-5, r.double())
    tol = tolerance(torch.float32, K)
    torch.testing.assert_close(out.double(), ref, rtol=tol, atol=tol)
    # the norm's effect is not negligible here: without it the result is far off
    assert (out.double() - reference.linear(xn.double(), w.double(), b.double(), None, r.double())).abs().max() > 0.1


@pytest.mark.parametrize("dtype", LOW_PRECISION, ids=str)
@pytest.mark.parametrize("name", ["gemv", "gemv-splitk3", "skinny", "cublas"])
def test_norm_and_residual_low_precision(name, dtype):
    x, w, _ = make_inputs(3, 40, 130, dtype, bias=False)
    xn, r = norm_inputs(3, 130, 40, dtype)
    out = kl.linear(xn, w, None, 1e-6, r, _config=CONFIGS[name])
    # reference in float64 from the same (rounded) inputs; the kernel rounds once, the unfused paths up to three
    # times (normalized x, projection, sum with the residual) on outputs of magnitude ~2
    ref = reference.linear(xn.double(), w.double(), None, 1e-6, r.double())
    tol = 3 * tolerance(dtype, 130)
    torch.testing.assert_close(out.double(), ref, rtol=tol, atol=tol)


def test_norm_fusion_only_without_split_k():
    assert kl.fuses_norm(CONFIGS["gemv"])
    assert not any(kl.fuses_norm(CONFIGS[n]) for n in ("gemv-splitk3", "skinny", "cublas"))
    x = torch.randn(1, 2048, dtype=torch.float16, device=DEVICE)
    w = torch.randn(3072, 2048, dtype=torch.float16, device=DEVICE)
    normed = kl.select_config("linear", x, w, None, 0, False, norm=True)
    assert normed["kernel"] == "gemv" and kl.fuses_norm(normed)


def test_rms_norm_reference_matches_llama():
    x = torch.randn(4, 64, dtype=torch.float64) * 3
    g = torch.rand(64, dtype=torch.float64) + 0.5
    llama = g * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))
    # computed in fp32 (like the kernels), whatever x's dtype
    torch.testing.assert_close(reference.rms_norm(x, 1e-6, g), llama, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(reference.rms_norm(x, 1e-6) * g, llama, rtol=1e-6, atol=1e-6)  # g folds out


@given(M=st.integers(1, 20), N=st.integers(1, 40), K=st.integers(1, 70), name=st.sampled_from(sorted(CONFIGS)),
       use_norm=st.booleans(), use_res=st.booleans(), gated=st.booleans())
def test_property_norm_residual_any_small_shape(M, N, K, name, use_norm, use_res, gated):
    from accel.runtime.kernels import ffn as kf

    x, w, b = make_inputs(M, 2 * N if gated else N, K, torch.float32, seed=M * 7919 + N * 31 + K)
    xn, r = norm_inputs(M, K, N, torch.float32, seed=K)
    eps = 1e-5 if use_norm else None
    res = r if use_res else None
    x_ref = reference.rms_norm(xn.double(), 1e-5) if use_norm else xn.double()
    if gated:
        out = kf.ffn_up(xn, w, b, "silu", True, eps, _config=CONFIGS[name])
        ref = reference.ffn_up(x_ref, w.double(), b.double(), "silu", True)
    else:
        out = kl.linear(xn, w, b, eps, res, _config=CONFIGS[name])
        ref = reference.linear(x_ref, w.double(), b.double(), None, None if res is None else res.double())
    tol = tolerance(torch.float32, K)
    torch.testing.assert_close(out.double(), ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("name", ["gemv", "gemv-splitk3"])
@pytest.mark.parametrize("M,N,K", [(1, 40, 130), (3, 7, 32), (1, 9, 16), (2, 5, 8)])  # masked K, 2 steps, 1, empty splits
@pytest.mark.parametrize("gated", [False, True])
def test_pdl_gemv_gives_the_same_bits(name, M, N, K, gated, request):
    """With PDL the GEMV loads its first weight tile before waiting for x and does that step outside the loop;
    the products and their order are unchanged, so the output must be bit-identical to the plain kernel's."""
    cfg = CONFIGS[name]
    x, w, b = make_inputs(M, 2 * N if gated else N, K, torch.float32, seed=3)
    res = torch.randn(M, N, generator=torch.Generator().manual_seed(4)).to(DEVICE)
    eps = 1e-6 if cfg["SPLIT_K"] == 1 else None

    def run():
        return kl.launch(cfg, x, w, b, 1 if gated else 0, gated, eps, res)

    plain = run()
    request.getfixturevalue("compiled_for_pdl")
    assert torch.equal(run(), plain)
    expected = kl.launch(kl.CUBLAS, reference.rms_norm(x, eps) if eps else x, w, b, 1 if gated else 0, gated,
                         None, res)
    torch.testing.assert_close(plain, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["gemv", "gemv-splitk3"])
def test_pdl_early_trigger_gives_the_same_bits(name, request):
    """The ``pdl_early_trigger`` experiment moves launch_dependents to the GEMV's first line: the same bits as PDL's
    usual trigger after the loop (masked K, with the norm where the split allows it, gated, a residual)."""
    cfg = CONFIGS[name]
    x, w, b = make_inputs(1, 80, 130, torch.float32, seed=3)
    res = torch.randn(1, 40, generator=torch.Generator().manual_seed(4)).to(DEVICE)
    eps = 1e-6 if cfg["SPLIT_K"] == 1 else None
    request.getfixturevalue("compiled_for_pdl")
    usual = kl.launch(cfg, x, w, b, 1, True, eps, res)
    request.getfixturevalue("compiled_for_early_pdl")
    assert kl.early_trigger(x.device, (1, 1, 1), 1, 1)  # every GEMV launch triggers first thing
    assert torch.equal(kl.launch(cfg, x, w, b, 1, True, eps, res), usual)
