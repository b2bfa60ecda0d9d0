"""``accel.runtime.kernels.ffn.ffn_up``: fused gate/up (and plain) GEMV / GEMM kernels with the activation
epilogue, and the cuBLAS + act·mul candidate, each forced through ``_config``, against the float64 reference.

Without a GPU: the Triton interpreter on CPU tensors (fp32 / fp16, tiny tiles); with one, the compiled kernels
on CUDA tensors, bf16 included. See test_linear_kernel.py.
"""
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from accel.runtime import reference
from accel.runtime.activations import ACTIVATIONS
from accel.runtime.kernels import ffn as kf
from accel.runtime.kernels import linear as kl
from tests.runtime.poison import poison_allocations

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
LOW_PRECISION = [torch.float16] + ([torch.bfloat16] if DEVICE == "cuda" else [])

CONFIGS = {
    "gemv": {"kernel": "gemv", "BLOCK_N": 8, "BLOCK_K": 16, "SPLIT_K": 1, "num_warps": 4, "num_stages": 1},
    "gemv-1col-splitk2": {"kernel": "gemv", "BLOCK_N": 1, "BLOCK_K": 16, "SPLIT_K": 2, "num_warps": 4,
                          "num_stages": 1},
    "skinny-splitk2": {"kernel": "gemm", "BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16, "SPLIT_K": 2, "GROUP_M": 1,
                       "num_warps": 4, "num_stages": 2},
    "tiled-grouped": {"kernel": "gemm", "BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 32, "SPLIT_K": 1, "GROUP_M": 2,
                      "num_warps": 4, "num_stages": 2},
    "cublas+act_mul": kl.CUBLAS,
}


def tolerance(dtype: torch.dtype, K: int) -> float:
    # as in test_linear_kernel.py: fp32 accumulation-order error grows with K; fp16 / bf16 are dominated by
    # the output rounding (2^-11 / 2^-8 relative), up to three roundings on the cuBLAS path (gate, up,
    # product). The activations' slopes are ≤ ~1.1 here (relu2: 2|x| with |x| = O(1)): no amplification.
    rounding = {torch.float32: 0.0, torch.float16: 3e-3, torch.bfloat16: 2.4e-2}[dtype]
    return rounding + 1e-6 * K


def make_inputs(M, H, I, dtype, gated=True, bias=True, transposed=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    rows = 2 * I if gated else I
    x = torch.randn(M, H, generator=g).to(DEVICE, dtype)
    w_hk = torch.randn(H, rows, generator=g) / math.sqrt(H)  # pre-activations are O(1)
    w1 = w_hk.to(DEVICE, dtype).t() if transposed else w_hk.t().contiguous().to(DEVICE, dtype)
    b1 = torch.randn(rows, generator=g).to(DEVICE, dtype) if bias else None
    return x, w1, b1


def check(out, x, w1, b1, activation, gated):
    ref = reference.ffn_up(x.double(), w1.double(), None if b1 is None else b1.double(), activation, gated)
    assert out.shape == ref.shape and out.dtype == x.dtype and out.is_contiguous()
    tol = tolerance(x.dtype, x.shape[1])
    torch.testing.assert_close(out.double(), ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("gated", [True, False], ids=["gated", "plain"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_activation(activation, gated, name):
    x, w1, b1 = make_inputs(3, 40, 24, torch.float32, gated=gated)
    check(kf.ffn_up(x, w1, b1, activation, gated, _config=CONFIGS[name]), x, w1, b1, activation, gated)


@pytest.mark.parametrize("dtype", LOW_PRECISION, ids=str)
@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("M,H,I", [(1, 130, 7), (17, 24, 40), (33, 7, 24)])
def test_odd_shapes_low_precision(name, M, H, I, dtype):
    x, w1, b1 = make_inputs(M, H, I, dtype)
    check(kf.ffn_up(x, w1, b1, "silu", True, _config=CONFIGS[name]), x, w1, b1, "silu", True)


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("gated", [True, False], ids=["gated", "plain"])
def test_without_bias(name, gated):
    x, w1, _ = make_inputs(5, 40, 24, torch.float32, gated=gated, bias=False)
    check(kf.ffn_up(x, w1, None, "gelu_tanh", gated, _config=CONFIGS[name]), x, w1, None, "gelu_tanh", gated)


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("gated", [True, False], ids=["gated", "plain"])
def test_transposed_w1_and_strided_x(name, gated):
    # GPT-2's c_fc arrives as a transposed view (strides (1, rows)); x with strides (2H, 2)
    x, w1, b1 = make_inputs(6, 40, 24, torch.float32, gated=gated, transposed=True)
    assert w1.stride(0) == 1
    x = torch.zeros(6, 80, device=DEVICE)[:, ::2].copy_(x)
    check(kf.ffn_up(x, w1, b1, "gelu", gated, _config=CONFIGS[name]), x, w1, b1, "gelu", gated)


@pytest.mark.parametrize("name", [n for n in CONFIGS if n != "cublas+act_mul"])
def test_fused_kernels_write_only_the_product(name, monkeypatch):
    # outputs start as NaN so any unwritten element fails; and without split-K the only buffer is [M, I]:
    # the [M, 2I] pre-activation never exists
    allocs = poison_allocations(monkeypatch)
    x, w1, b1 = make_inputs(17, 40, 24, torch.float32)
    cfg = CONFIGS[name]
    check(kf.ffn_up(x, w1, b1, "silu", True, _config=cfg), x, w1, b1, "silu", True)
    split = cfg["SPLIT_K"]
    assert allocs == ([(17, 24)] if split == 1 else [(17, 24), (split, 17, 48)])


def test_heuristic_default(monkeypatch):
    monkeypatch.setenv("ACCEL_AUTOTUNE", "0")  # no measurement: the first candidate
    x, w1, b1 = make_inputs(2, 40, 24, torch.float32)
    assert kl.select_config("ffn_up", x, w1, b1, 4, True)["kernel"] == "gemv"
    check(kf.ffn_up(x, w1, b1, "silu", True), x, w1, b1, "silu", True)
    x, w1, b1 = make_inputs(70, 40, 24, torch.float32)
    assert kl.select_config("ffn_up", x, w1, b1, 4, True) == kl.CUBLAS
    check(kf.ffn_up(x, w1, b1, "silu", True), x, w1, b1, "silu", True)


@pytest.mark.parametrize("M", [1, 4, 16, 64])
@pytest.mark.parametrize("I,H", [(8192, 2048), (14336, 4096)])
def test_gated_candidates_fit(M, I, H):
    # two accumulators per tile: the register / shared-memory predicate must account for both
    cands = kl.candidate_configs(M, I, H, True, 2, sms=132)
    assert 2 <= len(cands) <= 8 and kl.CUBLAS in cands
    for c in cands:
        assert kl.keep_config(c, True, 2)
        if c["kernel"] == "gemv":
            assert c["BLOCK_M"] * c["BLOCK_N"] * 2 * c["BLOCK_K"] <= kl.ACC_REGS_PER_THREAD * 32 * c["num_warps"]


def test_rejects_bad_arguments():
    x, w1, b1 = make_inputs(2, 16, 8, torch.float32)
    with pytest.raises(ValueError, match="unknown activation"):
        kf.ffn_up(x, w1, b1, "swish2", True)
    with pytest.raises(RuntimeError, match="even row count"):
        kf.ffn_up(x, w1[:15], b1[:15], "silu", True)


@given(
    M=st.integers(1, 36), H=st.integers(1, 48), I=st.integers(1, 24),
    name=st.sampled_from(sorted(CONFIGS)), split=st.sampled_from([1, 2, 3]),
    activation=st.sampled_from(sorted(ACTIVATIONS)), gated=st.booleans(), bias=st.booleans(),
    transposed=st.booleans(),
)
def test_property_any_small_shape(M, H, I, name, split, activation, gated, bias, transposed):
    x, w1, b1 = make_inputs(M, H, I, torch.float32, gated=gated, bias=bias, transposed=transposed,
                            seed=M * 10007 + H * 101 + I)
    cfg = CONFIGS[name] if name == "cublas+act_mul" else {**CONFIGS[name], "SPLIT_K": split}
    check(kf.ffn_up(x, w1, b1, activation, gated, _config=cfg), x, w1, b1, activation, gated)
