"""``benchmarks/bf16x2_error_study.py``: its emulation of the BF16X2 GEMV's sums is exact where no bf16 rounding
happens, and within the kernel test's bound elsewhere."""
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import bf16x2_error_study as S  # noqa: E402


def _inputs(T, N, K, exact: bool):
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 16, (N, K), generator=g)
    if exact:  # one power of two a row of x: every lane and chunk sum is an integer ≤ 128 times it, exact in bf16
        x = (2.0 ** torch.randint(-4, 4, (T, 1), generator=g).float()).expand(T, K)
    else:
        x = torch.randn(T, K, generator=g).bfloat16().float()
    scale = 2.0 ** torch.randint(-6, -2, (N, K // S.G), generator=g).float()
    zero = torch.randint(0, 16, (N, K // S.G), generator=g).float() + 0.25
    w = (codes.float() - zero.repeat_interleave(S.G, 1)) * scale.repeat_interleave(S.G, 1)
    return x, codes, scale, zero, w


@pytest.mark.parametrize("mode", [1, 2, 3])
def test_emulation_is_exact_without_roundings_and_bounded_with_them(mode):
    x, codes, scale, zero, w = _inputs(4, 24, 256, exact=True)
    got = S.bf16x2_linear(x, codes, scale, zero, mode=mode, block=16)
    ref = (x.double() @ w.double().t())
    # only the fp32 sums after the lanes round (relative 2^-24 each)
    torch.testing.assert_close(got.double(), ref, rtol=1e-6, atol=1e-6)
    x, codes, scale, zero, w = _inputs(4, 24, 256, exact=False)
    got = S.bf16x2_linear(x, codes, scale, zero, mode=mode, block=16)
    ref = x.double() @ w.double().t()
    terms = x.double().abs() @ ((codes.double() - 8).abs() * scale.double().repeat_interleave(S.G, 1)).t()
    # mode 3 sums x in bf16 too (2 + log2(SUB) roundings of the chunk's Σ|x| at most), times |z - 8|·s
    x_terms = x.double().abs() @ ((zero.double() - 8).abs() * scale.double()).repeat_interleave(S.G, 1).t()
    bound = 2.0**-9 * 5 * 4 * terms + (2.0**-9 * 4 * x_terms if mode == 3 else 0) + 1e-5 * ref.abs()
    assert ((got.double() - ref).abs() <= bound).all()
    assert (got.double() - ref).abs().max() > 0  # the bf16 roundings happen


def test_lanes_pair_code_v_with_x_v():
    """One nonzero code: the sum is that code's x times (u - 8) times its scale, at every position."""
    K = 128
    for k in (0, 3, 4, 7, 8, 45, 127):
        codes = torch.full((1, K), 8)
        codes[0, k] = 11
        x = torch.zeros(1, K)
        x[0, k] = 2.0
        got = S.bf16x2_linear(x, codes, torch.ones(1, 1), torch.full((1, 1), 8.0), mode=2)
        assert got.item() == 6.0, k


def test_mode_3_sums_x_on_bf16_pairs():
    """Mode 3 differs from mode 2 only in Σx: bf16 pair sums, whose error shows where z ≠ 8 and vanishes where x's
    sums are exact in bf16 (small integers)."""
    x, codes, scale, zero, _ = _inputs(4, 24, 256, exact=False)
    two, three = (S.bf16x2_linear(x, codes, scale, zero, mode=m, block=16) for m in (2, 3))
    assert not torch.equal(two, three)
    xi = torch.randint(-3, 4, x.shape, generator=torch.Generator().manual_seed(1)).float()
    assert torch.equal(S.bf16x2_linear(xi, codes, scale, zero, mode=2, block=16),
                       S.bf16x2_linear(xi, codes, scale, zero, mode=3, block=16))
