"""Attention rewrites: every spelling accel claims is rewritten exactly once and matches eager in fp32.

Property tests draw the shape (batch, heads, GQA ratio, query/key lengths, head dim), the spelling (SDPA or
written out; kᵀ as transpose/permute; scale as a multiplier, a divisor or a constant tensor; softmax upcast),
the mask (none, bool, additive, masked_fill with -inf or finfo.min, broadcast from rank 2/3/4) and causality,
and check: one ``accel::attention`` in the graph, and ‖accel − eager‖/‖eager‖ ≤ 1e-5. That bound is fp32
rounding of a few-hundred-term softmax-weighted sum with a different summation order (observed ~1e-7).
"""
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from tests.testing_backend import rel_l2, rewrite_only

TOL_FP32 = 1e-5


def repeat_kv(x: torch.Tensor, n: int, how: str) -> torch.Tensor:
    if n == 1:
        return x
    if how == "interleave":
        return x.repeat_interleave(n, dim=1)
    b, h, s, d = x.shape
    return x[:, :, None, :, :].expand(b, h, n, s, d).reshape(b, h * n, s, d)


class WrittenOut(torch.nn.Module):
    def __init__(self, *, groups, repeat, kt, scale_kind, mask_kind, upcast, causal):
        super().__init__()
        self.groups, self.repeat, self.kt, self.scale_kind = groups, repeat, kt, scale_kind
        self.mask_kind, self.upcast, self.causal = mask_kind, upcast, causal

    def forward(self, q, k, v, mask):
        k, v = repeat_kv(k, self.groups, self.repeat), repeat_kv(v, self.groups, self.repeat)
        kt = {"transpose": k.transpose(-1, -2), "transpose23": k.transpose(2, 3),
              "permute": k.permute(0, 1, 3, 2)}[self.kt]
        s = torch.matmul(q, kt)
        d = q.size(-1)
        if self.scale_kind == "mul":
            s = s * (d ** -0.5)
        elif self.scale_kind == "div":
            s = s / math.sqrt(d)
        elif self.scale_kind == "tensor":  # GPT-2: divide by a constant scalar tensor
            s = s / torch.full([], d ** 0.5, dtype=s.dtype, device=s.device)
        if self.mask_kind == "additive":
            s = s + mask
        elif self.mask_kind == "fill_inf":
            s = s.masked_fill(~mask, float("-inf"))
        elif self.mask_kind == "fill_min":
            s = s.masked_fill(~mask, torch.finfo(s.dtype).min)
        if self.causal:
            sq, sk = s.shape[-2:]
            future = torch.ones(sq, sk, dtype=torch.bool, device=s.device).triu(1)
            s = s.masked_fill(future, float("-inf"))
        p = F.softmax(s.float(), dim=-1).to(q.dtype) if self.upcast else torch.softmax(s, dim=-1)
        p = F.dropout(p, p=0.0, training=False)
        return torch.matmul(p, v)


class Sdpa(torch.nn.Module):
    def __init__(self, *, groups, repeat, causal, scale, gqa_native):
        super().__init__()
        self.groups, self.repeat, self.causal, self.scale, self.gqa_native = groups, repeat, causal, scale, gqa_native

    def forward(self, q, k, v, mask):
        if not self.gqa_native:
            k, v = repeat_kv(k, self.groups, self.repeat), repeat_kv(v, self.groups, self.repeat)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=self.causal, scale=self.scale,
                                              enable_gqa=self.gqa_native and self.groups > 1)


@st.composite
def attention_case(draw):
    b, hkv = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    groups = draw(st.sampled_from([1, 2, 4]))
    sq, sk = draw(st.integers(1, 9)), draw(st.integers(1, 12))
    d = draw(st.sampled_from([4, 8, 12, 16]))
    mask_kind = draw(st.sampled_from(["none", "bool", "additive", "fill_inf", "fill_min"]))
    mask_shape = draw(st.sampled_from(["2d", "b1", "full"]))
    causal = draw(st.booleans()) and mask_kind in ("none", "additive", "fill_min") and sk >= sq
    return dict(b=b, hkv=hkv, groups=groups, sq=sq, sk=sk, d=d, mask_kind=mask_kind, mask_shape=mask_shape,
                causal=causal, repeat=draw(st.sampled_from(["expand", "interleave"])))


def make_inputs(c, seed=0):
    g = torch.Generator().manual_seed(seed)
    hq = c["hkv"] * c["groups"]
    q = torch.randn(c["b"], hq, c["sq"], c["d"], generator=g)
    k = torch.randn(c["b"], c["hkv"], c["sk"], c["d"], generator=g)
    v = torch.randn(c["b"], c["hkv"], c["sk"], c["d"], generator=g)
    shape = {"2d": (c["sq"], c["sk"]), "b1": (c["b"], 1, c["sq"], c["sk"]),
             "full": (c["b"], hq, c["sq"], c["sk"])}[c["mask_shape"]]
    mask = None
    if c["mask_kind"] == "additive":
        mask = torch.randn(shape, generator=g)
        mask[..., 0] = 0.0
        mask = torch.where(torch.rand(shape, generator=g) < 0.3, torch.finfo(torch.float32).min, mask)
    elif c["mask_kind"] != "none":
        mask = torch.rand(shape, generator=g) > 0.3
        mask[..., 0] = True  # every row sees a key: no row whose eager softmax is NaN
    return q, k, v, mask


@given(attention_case(), st.sampled_from(["transpose", "transpose23", "permute"]),
       st.sampled_from(["mul", "div", "tensor", "none"]), st.booleans())
def test_written_out_attention_is_rewritten(c, kt, scale_kind, upcast):
    model = WrittenOut(groups=c["groups"], repeat=c["repeat"], kt=kt, scale_kind=scale_kind,
                       mask_kind=c["mask_kind"] if c["mask_kind"] != "bool" else "fill_inf",
                       upcast=upcast, causal=c["causal"])
    args = make_inputs(c)
    out, report = rewrite_only(model, *args)
    assert report.counts["attention"] == 1, report
    assert report.graphs[0].accel_ops.get("accel::attention") == 1
    assert rel_l2(out, model(*args)) <= TOL_FP32


@given(attention_case(), st.sampled_from([None, 0.3]), st.booleans())
def test_sdpa_attention_is_rewritten(c, scale, gqa_native):
    if c["mask_kind"] in ("fill_inf", "fill_min"):
        c["mask_kind"] = "bool"
    model = Sdpa(groups=c["groups"], repeat=c["repeat"], causal=c["causal"] and c["mask_kind"] == "none",
                 scale=scale, gqa_native=gqa_native)
    args = make_inputs(c)
    out, report = rewrite_only(model, *args)
    assert report.counts["attention"] == 1, report
    assert rel_l2(out, model(*args)) <= TOL_FP32


def test_repeat_kv_is_peeled_so_the_kernel_reads_kv_heads():
    c = dict(b=2, hkv=2, groups=4, sq=3, sk=5, d=8, mask_kind="none", mask_shape="2d", causal=False, repeat="expand")
    model = WrittenOut(groups=4, repeat="expand", kt="transpose", scale_kind="mul", mask_kind="none",
                       upcast=True, causal=False)
    out, report = rewrite_only(model, *make_inputs(c))
    assert report.matches[0].detail.endswith("gqa=4"), report.matches[0]


def test_rank3_bmm_attention():
    def f(q, k, v):
        return torch.bmm(torch.softmax(torch.bmm(q, k.transpose(1, 2)) * 0.5, dim=-1), v)

    q, k, v = (torch.randn(6, 5, 8) for _ in range(3))
    out, report = rewrite_only(f, q, k, v)
    assert report.counts["attention"] == 1
    assert rel_l2(out, f(q, k, v)) <= TOL_FP32


def test_scale_after_mask_scales_the_mask_too():
    def f(q, k, v, m):
        return torch.softmax((q @ k.transpose(-1, -2) + m) * 0.25, dim=-1) @ v

    q, k, v = (torch.randn(1, 2, 4, 8) for _ in range(3))
    m = torch.randn(4, 4)
    out, report = rewrite_only(f, q, k, v, m)
    assert report.counts["attention"] == 1
    assert rel_l2(out, f(q, k, v, m)) <= TOL_FP32


@pytest.mark.parametrize("case,reason", [
    ("dropout", "dropout"),
    ("probs_used", "also used elsewhere"),
    ("finite_fill", "finite value"),
    ("dv", "head dims differ"),
])
def test_unsupported_attention_is_left_alone_with_a_reason(case, reason):
    q, k, v = (torch.randn(1, 2, 4, 8) for _ in range(3))

    def f(q, k, v):
        s = q @ k.transpose(-1, -2)
        if case == "finite_fill":
            s = s.masked_fill(torch.ones(4, 4, dtype=torch.bool).triu(1), -1e4)
        p = torch.softmax(s, dim=-1)
        if case == "dropout":
            return F.scaled_dot_product_attention(q, k, v, dropout_p=0.1)
        if case == "probs_used":
            return p @ v, p
        if case == "dv":
            return p @ torch.cat([v, v], dim=-1)
        return p @ v

    out, report = rewrite_only(f, q, k, v)
    assert report.counts["attention"] == 0
    assert any(reason in fb.reason for fb in report.fallbacks), report.fallbacks
