"""The Triton activation library matches the torch references, code by code (interpreter on CPU, fp32)."""
import pytest
import torch
import triton
import triton.language as tl

from accel.runtime.activations import ACTIVATION_IDS, ACTIVATIONS, activation_fn
from accel.runtime.kernels.activations import apply_activation

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@triton.jit
def _activate_kernel(x_ptr, y_ptr, n, ACT: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs, mask=offs < n).to(tl.float32)
    tl.store(y_ptr + offs, apply_activation(x, ACT), mask=offs < n)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_triton_activation_matches_reference(name):
    x = torch.cat([torch.linspace(-12, 12, 997), torch.tensor([-80.0, 80.0, 0.0])]).to(DEVICE)
    y = torch.full_like(x, float("nan"))
    _activate_kernel[(triton.cdiv(x.numel(), 256),)](x, y, x.numel(), ACT=ACTIVATION_IDS[name], BLOCK=256)
    ref = ACTIVATIONS[name](x.double())
    # fp32 evaluation of transcendental functions: a few ulp relative to max(1, |ref|)
    assert torch.all((y.double() - ref).abs() <= 2e-6 * (1 + ref.abs())), name


def test_unknown_activation_names_the_known_ones():
    with pytest.raises(ValueError, match="silu"):
        activation_fn("swish2")
