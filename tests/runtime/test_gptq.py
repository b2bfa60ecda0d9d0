"""GPTQ (accel/runtime/gptq.py): lower output error than round-to-nearest, in accel's int4 and 8-bit storage formats."""
import pytest
import torch

from accel.runtime import gptq
from accel.runtime import quant as q

INT4 = "int4_weight_only"


def correlated(m: int, k: int, seed: int) -> torch.Tensor:
    """Activations [m, k] with correlated channels of very different scales (like a transformer's)."""
    gen = torch.Generator().manual_seed(0)  # the same mixing and channel scales for every seed
    mix = torch.eye(k) + 2 * torch.randn(k, k, generator=gen) / k ** 0.5
    scales = torch.rand(k, generator=gen) * 3 + 0.1
    return (torch.randn(m, k, generator=torch.Generator().manual_seed(seed)) @ mix) * scales


def output_sqnr(x, w, qs, group):
    return q.sqnr_db(x @ w.t(), q.qlinear_reference(x, *qs, None, INT4, group))


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("group,act_order", [(128, False), (128, True), (32, True)])
def test_gptq_output_error_is_below_round_to_nearest(symmetric, group, act_order):
    """On the calibration activations and on fresh ones from the same distribution, GPTQ's output error is well
    below that of round-to-nearest with the activation-weighted clipping search."""
    torch.manual_seed(0)
    n, k = 96, 256
    w = torch.randn(n, k) * 0.05
    calib, held_out = correlated(4096, k, seed=1), correlated(1024, k, seed=2)
    rtn = q.quantize_weight(w, INT4, group, symmetric, importance=calib.pow(2).mean(0))
    ours = q.quantize_weight(w, INT4, group, symmetric, hessian=gptq.hessian(calib), act_order=act_order)
    for x in (calib, held_out):
        assert output_sqnr(x, w, ours, group) > output_sqnr(x, w, rtn, group) + 1.5  # dB


@pytest.mark.parametrize("symmetric", [False, True])
def test_gptq_uses_the_storage_format(symmetric):
    """Packed codes [N, Kp/2] in [0, 15], scale/zero [N, Kp/G] in the weight dtype, and ``dequantize_weight`` gives
    exactly ``(codes − zero)·scale`` of what ``gptq_int4`` chose; a partial last group is zero-padded."""
    torch.manual_seed(0)
    n, k, group = 24, 200, 64  # Kp = 256
    w, x = torch.randn(n, k), correlated(512, k, seed=3)
    h = gptq.hessian(x)
    qw, s, z = q.quantize_weight(w, INT4, group, symmetric, hessian=h, act_order=True)
    assert qw.shape == (n, 128) and qw.dtype == torch.uint8
    assert s.shape == (n, 4) and s.dtype == w.dtype
    assert z is None if symmetric else z.shape == (n, 4)
    codes, scale, zero = gptq.gptq_int4(torch.nn.functional.pad(w, (0, 56)),
                                        torch.nn.functional.pad(h, (0, 56, 0, 56)), group, symmetric, act_order=True)
    assert codes.min() >= 0 and codes.max() <= 15 and torch.equal(codes, codes.round())
    assert torch.equal(q.unpack_int4(qw), codes.to(torch.uint8))
    if symmetric:
        assert torch.all(zero == 8)
    expected = ((codes.reshape(n, 4, group) - zero[..., None]) * scale[..., None]).reshape(n, 256)
    assert torch.equal(q.dequantize_weight(qw, s, z, INT4, group), expected)


@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_keeps_weights_already_on_a_4bit_grid(act_order):
    """Weights on a per-group min/max 4-bit grid (GGUF Q4_1 style) round to themselves, so no error is fed back
    and GPTQ returns them unchanged, as round-to-nearest does."""
    torch.manual_seed(0)
    n, k, g = 8, 256, 64
    d, m = torch.rand(n, k // g, 1) * 0.1 + 0.01, -torch.rand(n, k // g, 1)
    codes = torch.randint(0, 16, (n, k // g, g))
    codes[..., 0], codes[..., 1] = 0, 15
    w = (codes * d + m).reshape(n, k)
    qs = q.quantize_weight(w, INT4, g, hessian=gptq.hessian(correlated(512, k, seed=4)), act_order=act_order)
    assert (q.dequantize_weight(*qs, INT4, g) - w).abs().max() < 1e-6


def test_gptq_ignores_channels_no_input_drives():
    """A channel whose activations are all zero gets weight 0 (free for the others' error) and a rank-deficient
    Hessian (fewer rows than channels) still factors thanks to the damping."""
    torch.manual_seed(0)
    x = correlated(64, 128, seed=5)
    x[:, 7] = 0
    w = torch.randn(16, 128)
    qs = q.quantize_weight(w, INT4, 32, hessian=gptq.hessian(x))
    wq = q.dequantize_weight(*qs, INT4, 32)
    assert torch.isfinite(wq).all()
    assert output_sqnr(x, w, qs, 32) > 15.0


def test_gptq_static_grid_is_the_asymmetric_clipping_search():
    """With act-order, GPTQ's per-group (scale, zero) are exactly ``int4_group_params``' choice on the original
    weights weighted by the (shrunk) Hessian diagonal, so the separate min/max shrink reaches GPTQ too."""
    torch.manual_seed(0)
    n, k, g = 16, 256, 128
    w, x = torch.randn(n, k) * 0.05, correlated(1024, k, seed=6)
    h = gptq.hessian(x)
    _, scale, zero = gptq.gptq_int4(w, h, g, symmetric=False, act_order=True)
    _, s, z = q.int4_group_params(w.reshape(n, k // g, g), False, h.diagonal().reshape(1, k // g, g))
    assert torch.allclose(scale, s) and torch.allclose(zero, z)


@pytest.mark.parametrize("scheme", ["w8a8_fp8", "w8a8_int8", "int8_weight_only"])
@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_rowwise_output_error_is_below_round_to_nearest(scheme, act_order):
    """The 8-bit row-scaled formats: same storage (dtype, per-row scale of round-to-nearest), lower output error
    on the calibration activations and on held-out ones."""
    torch.manual_seed(0)
    n, k = 96, 256
    w = torch.randn(n, k) * 0.05
    calib, held_out = correlated(4096, k, seed=1), correlated(1024, k, seed=2)
    rtn = q.quantize_weight(w, scheme)
    ours = q.quantize_weight(w, scheme, hessian=gptq.hessian(calib), act_order=act_order)
    assert ours[0].dtype == rtn[0].dtype and ours[0].shape == rtn[0].shape and ours[2] is None
    torch.testing.assert_close(ours[1], rtn[1], rtol=0, atol=0)
    assert ours[0].float().abs().max() <= (q.FP8_MAX if scheme == "w8a8_fp8" else 127)

    def sqnr(x, qs):
        return q.sqnr_db(x @ w.t(), x @ (qs[0].float() * qs[1][:, None]).t())

    for x in (calib, held_out):
        assert sqnr(x, ours) > sqnr(x, rtn) + 1.0  # dB


def test_gptq_rowwise_refuses_int4():
    with pytest.raises(ValueError, match="gptq_int4"):
        gptq.gptq_rowwise(torch.randn(4, 128), torch.eye(128), "int4_weight_only")
