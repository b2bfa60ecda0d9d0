"""AWQ (option ``awq``, int4): the scale search itself, its graph rewrite (the SmoothQuant machinery: W·diag(s)
quantized, x·(1/s) before the qlinear, a gated FFN's down scaling folded into the up rows), option validation."""
import pytest
import torch
import torch.nn.functional as F

from accel.compiler.options import AccelOptions, AccelOptionsError
from accel.runtime import quant as q
from tests.testing_backend import rel_l2, rewrite_only


def salient_input(m: int = 256, k: int = 128) -> torch.Tensor:
    """Activations where a few channels carry most of the magnitude, as in LLM layers."""
    x = torch.randn(m, k)
    x[:, 5] *= 25
    x[:, 40] *= 15
    x[:, 99] *= 10
    return x


def rtn_output_error(x, w, s, group_size=128):
    """Mean squared output error of round-to-nearest int4 (min/max groups) of w·diag(s) on input x/s."""
    n, k = w.shape
    codes, scale, zero = q._int4_grid((w * s).reshape(n, -1, group_size), 1.0, False)
    deq = q._int4_values(codes, scale, zero).reshape(n, k)
    return ((x / s) @ deq.t() - x @ w.t()).pow(2).mean().item()


def test_search_never_loses_to_no_scaling_and_finds_salient_channels():
    torch.manual_seed(0)
    x, w = salient_input(), torch.randn(64, 128) * 0.05
    s, alpha = q.awq_scales(x, w, 128, False)
    assert alpha > 0  # with salient channels, scaling them up must win
    assert rtn_output_error(x, w, s) < 0.8 * rtn_output_error(x, w, torch.ones(128))
    assert s[5] > s[40] > s[99] > s.median()  # the larger the activation, the larger the scale


def test_uniform_activations_need_no_scaling_or_only_little():
    torch.manual_seed(1)
    x, w = torch.randn(256, 128), torch.randn(64, 128) * 0.05
    s, alpha = q.awq_scales(x, w, 128, False)
    assert rtn_output_error(x, w, s) <= rtn_output_error(x, w, torch.ones(128))
    assert (s.max() / s.min()).item() < 1.5  # all channels alike: little to migrate


class GatedBlock(torch.nn.Module):
    def __init__(self, h=128, i=256):
        super().__init__()
        self.gate, self.up = torch.nn.Linear(h, i, bias=False), torch.nn.Linear(h, i, bias=False)
        self.down = torch.nn.Linear(i, h, bias=False)
        self.o = torch.nn.Linear(h, h, bias=False)

    def forward(self, x):
        return self.o(self.down(F.silu(self.gate(x)) * self.up(x)))


@pytest.mark.parametrize("gptq", [False, True])
def test_awq_compile_is_close_to_eager_and_reports_scaled_layers(gptq):
    torch.manual_seed(0)
    m = GatedBlock().eval()
    x = salient_input(m=256).reshape(2, 128, 128)
    ref = m(x)
    opts = {"quantize": "int4_weight_only", "group_size": 128, "gptq": gptq}
    out_plain, _ = rewrite_only(m, x, options=opts)
    out_awq, report = rewrite_only(m, x, options={**opts, "awq": True})
    details = [mm.detail for mm in report.matches if mm.family == "quantize"]
    assert any(" awq" in d for d in details), details
    # int4 g128 on these inputs: a few % relative error; AWQ (same calibration rows) must not make it worse by much
    assert rel_l2(out_awq, ref) < 0.1
    assert rel_l2(out_awq, ref) <= 1.1 * rel_l2(out_plain, ref)


def test_option_validation():
    assert AccelOptions.from_dict({"quantize": "int4_weight_only", "awq": True}).awq
    with pytest.raises(AccelOptionsError, match="awq"):
        AccelOptions.from_dict({"quantize": "int8_weight_only", "awq": True})
    with pytest.raises(AccelOptionsError, match="awq"):
        AccelOptions.from_dict({"awq": True})
    with pytest.raises(AccelOptionsError):  # smoothquant is for w8a8, awq for int4: never both
        AccelOptions.from_dict({"quantize": "int4_weight_only", "awq": True, "smoothquant": 0.5})
