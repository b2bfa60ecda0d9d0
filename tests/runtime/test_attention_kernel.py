"""The attention kernels of ``accel.runtime.kernels.attention`` against ``reference.attention`` in float64.

Without a GPU the kernels run on CPU tensors through the Triton interpreter (tests/conftest.py sets
TRITON_INTERPRET=1), so shapes stay tiny, tiles are forced small (16) so that every shape spans several
blocks and splits, and dtypes are fp32 and fp16 only (the interpreter has no bf16 arithmetic). With a GPU
the same tests run the compiled kernels on CUDA tensors.
"""
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from accel.runtime import reference
from accel.runtime.kernels import attention as ka
from accel.runtime.kernels.utils import H100_SMS
from tests.runtime.poison import poison_empty

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

# (atol, rtol) against a float64 reference. fp32: fp32 accumulation over <= ~100 keys plus the exp2
# rewrite, a few ulp (~1e-6) on outputs of magnitude ~1. fp16: inputs are exact in the reference, so the
# error is P rounded to fp16 before the PV dot plus the fp16 output rounding, each 2^-11 ~ 5e-4 relative.
# bf16 (GPU only: the interpreter has no bf16 arithmetic): the same two roundings at 2^-8 ~ 4e-3.
TOL = {torch.float32: (1e-5, 1e-5), torch.float16: (2e-3, 2e-3), torch.bfloat16: (1e-2, 1e-2)}
DTYPES = [torch.float32, torch.float16] + ([torch.bfloat16] if DEVICE == "cuda" else [])

# Small tiles so that tiny shapes still cross block, diagonal and split boundaries.
PREFILL = dict(kernel="prefill", BLOCK_M=16, BLOCK_N=16, num_warps=4, num_stages=1, SKIP=0)
DECODE = dict(kernel="decode", BLOCK_N=16, num_warps=4, num_stages=1, SKIP=1, waves=2)


def run_kernel(kernel, q, k, v, mask=None, scale=0.3, is_causal=False, **cfg):
    """kernel: "prefill", "decode" (split-KV, then the reduction kernel) or "direct" (decode in one split, which
    normalizes and writes the output itself)."""
    if kernel == "prefill":
        return ka._prefill(q, k, v, mask, scale, is_causal, dict(PREFILL, **cfg))
    if kernel == "direct":
        cfg["splits"] = 1
    return ka._decode(q, k, v, mask, scale, is_causal, dict(DECODE, **cfg))


def expected(q, k, v, mask=None, scale=0.3, is_causal=False):
    if mask is not None:  # SDPA takes no rank-1 mask; expanding does not change the meaning
        mask = mask.expand(q.shape[0], q.shape[1], q.shape[2], k.shape[2])
        mask = mask if mask.dtype == torch.bool else mask.double()
    return reference.attention(q.double(), k.double(), v.double(), mask, scale, is_causal)


def assert_matches(out, q, k, v, mask=None, scale=0.3, is_causal=False):
    ref = expected(q, k, v, mask, scale, is_causal)
    assert out.dtype == q.dtype and out.shape == ref.shape
    atol, rtol = TOL[q.dtype]
    torch.testing.assert_close(out.double(), ref, atol=atol, rtol=rtol)


def make_qkv(b, hq, hkv, sq, skv, d, dtype, layout="bhsd", seed=0):
    """q [b, hq, sq, d], k / v [b, hkv, skv, d]; "bshd" views a [B, S, H, D] buffer (HF projections) and
    "dlast" a [B, H, D, S] one, whose stride(-1) is not 1."""
    g = torch.Generator().manual_seed(seed)

    def one(h, s):
        if layout == "bshd":
            t = torch.randn(b, s, h, d, generator=g).transpose(1, 2)
        elif layout == "dlast":
            t = torch.randn(b, h, d, s, generator=g).transpose(2, 3)
        else:
            t = torch.randn(b, h, s, d, generator=g)
        return t.to(device=DEVICE, dtype=dtype)

    return one(hq, sq), one(hkv, skv), one(hkv, skv)


def out_strides(b, hq, sq, d):
    return torch.empty(b, sq, hq, d).transpose(1, 2).stride()


@pytest.fixture
def poisoned(monkeypatch):
    """torch.empty returns NaN-filled float tensors, so any output or scratch element a kernel fails to
    write shows up as NaN."""
    poison_empty(monkeypatch)


# ---------------------------------------------------------------------------------------------------------
# Both kernels over odd shapes, GQA ratios 1 / 2 / 4, causal with Sq < Skv and Sq > Skv


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize(
    "b, hq, hkv, sq, skv, d",
    [(1, 2, 2, 33, 17, 24), (2, 4, 2, 17, 33, 16), (1, 4, 1, 3, 1, 64), (1, 2, 1, 1, 3, 8)],
)
def test_prefill_matches_reference(poisoned, dtype, is_causal, b, hq, hkv, sq, skv, d):
    q, k, v = make_qkv(b, hq, hkv, sq, skv, d, dtype)
    out = run_kernel("prefill", q, k, v, is_causal=is_causal)
    assert out.stride() == out_strides(b, hq, sq, d)
    assert_matches(out, q, k, v, is_causal=is_causal)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize(
    "b, hq, hkv, sq, skv, d, splits",
    [(1, 4, 2, 1, 33, 64, None), (2, 4, 1, 3, 70, 24, 3), (1, 2, 2, 1, 17, 16, 8), (1, 8, 2, 5, 1, 16, None),
     (2, 4, 1, 3, 70, 24, 1), (1, 4, 2, 1, 33, 64, 1)],  # one split: the kernel writes the output directly
)
def test_decode_matches_reference(poisoned, dtype, is_causal, b, hq, hkv, sq, skv, d, splits):
    # splits=8 over 17 keys leaves splits without a single key: they must still write a neutral partial
    q, k, v = make_qkv(b, hq, hkv, sq, skv, d, dtype)
    out = run_kernel("decode", q, k, v, is_causal=is_causal, splits=splits)
    assert out.stride() == out_strides(b, hq, sq, d)
    assert_matches(out, q, k, v, is_causal=is_causal)



@pytest.mark.parametrize("splits", [None, 1, 8], ids=["splits", "direct", "empty-splits"])
def test_decode_with_pdl_gives_the_same_bits(splits, request):
    """Compiled for PDL, both decode kernels let the next kernel launch and wait for the previous one before any
    load or store; nothing else changes (on CPU the interpreter makes the two instructions no-ops, on a GPU they
    are real and, launched without the attribute, return at once)."""
    q, k, v = make_qkv(1, 4, 2, 1, 17, 16, torch.float16)
    mask = torch.arange(17, device=DEVICE) < 13  # a KV-cache mask: the last keys not yet written
    plain = run_kernel("decode", q, k, v, mask, splits=splits)
    request.getfixturevalue("compiled_for_pdl")
    assert ka.use_pdl(q.device, "attention")
    assert torch.equal(run_kernel("decode", q, k, v, mask, splits=splits), plain)

@pytest.mark.parametrize("kernel", ["prefill", "decode"])
@pytest.mark.parametrize("d", [1, 40, 256])
def test_head_dims_are_padded_and_masked(kernel, d):
    q, k, v = make_qkv(1, 2, 1, 2, 20, d, torch.float32)
    assert_matches(run_kernel(kernel, q, k, v), q, k, v)


@pytest.mark.parametrize("kernel", ["prefill", "decode"])
def test_empty_key_sequence_gives_zeros(kernel):
    q, k, v = make_qkv(1, 2, 1, 3, 0, 16, torch.float32)
    out = run_kernel(kernel, q, k, v)
    assert torch.equal(out, torch.zeros_like(out))


# ---------------------------------------------------------------------------------------------------------
# Masks: bool and additive of any float dtype, ranks 1-4 with broadcast dims, together with is_causal

B, HQ, HKV, SQ, SKV, D = 2, 4, 2, 5, 37, 16
MASK_SHAPES = [(SKV,), (SQ, SKV), (HQ, 1, SKV), (B, 1, SQ, SKV), (B, 1, 1, SKV), (1, HQ, SQ, 1)]


def make_mask(shape, kind, seed=1):
    g = torch.Generator().manual_seed(seed)
    keep = torch.rand(shape, generator=g) > 0.3
    if kind == "bool":
        return keep.to(DEVICE)
    dtype = {"add_fp32": torch.float32, "add_fp16": torch.float16}[kind]
    bias = torch.randn(shape, generator=g).masked_fill(~keep, -math.inf)
    return bias.to(device=DEVICE, dtype=dtype)


@pytest.mark.parametrize("kernel", ["prefill", "decode"])
@pytest.mark.parametrize("kind", ["bool", "add_fp32", "add_fp16"])
@pytest.mark.parametrize("shape", MASK_SHAPES, ids=str)
def test_masks_broadcast(kernel, kind, shape):
    q, k, v = make_qkv(B, HQ, HKV, SQ, SKV, D, torch.float32)
    mask = make_mask(shape, kind)
    assert_matches(run_kernel(kernel, q, k, v, mask), q, k, v, mask)


@pytest.mark.parametrize("kernel", ["prefill", "decode", "direct"])
@pytest.mark.parametrize("kind", ["bool", "add_fp32"])
def test_mask_and_causal_together(kernel, kind):
    q, k, v = make_qkv(B, HQ, HKV, SQ, 9, D, torch.float16)
    mask = make_mask((B, 1, SQ, 9), kind)
    assert_matches(run_kernel(kernel, q, k, v, mask, is_causal=True), q, k, v, mask, is_causal=True)


@pytest.mark.parametrize("kernel", ["prefill", "decode", "direct"])
@pytest.mark.parametrize("kind", ["bool", "add_fp32"])
def test_fully_masked_rows_are_zero(poisoned, kernel, kind):
    q, k, v = make_qkv(1, 2, 1, 4, 21, 16, torch.float32)
    mask = make_mask((1, 1, 4, 21), kind)
    mask[..., 1, :] = False if kind == "bool" else -math.inf  # query 1 sees no key
    out = run_kernel(kernel, q, k, v, mask)
    assert torch.equal(out[:, :, 1], torch.zeros_like(out[:, :, 1]))
    assert_matches(out, q, k, v, mask)


@pytest.mark.parametrize("kernel", ["prefill", "decode", "direct"])
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # the intended (s - m)·log2(e) -> -inf
def test_finfo_min_rows_are_uniform(kernel):
    # HF masks fp32 models with finfo(fp32).min: a row masked entirely with it is a uniform softmax, not 0;
    # min·log2(e) overflows fp32, which is why additive masks are kept in natural-log units
    q, k, v = make_qkv(1, 2, 2, 3, 19, 16, torch.float32)
    mask = torch.zeros(1, 1, 3, 19, device=DEVICE)
    mask[..., 0, :] = torch.finfo(torch.float32).min
    mask[..., 2, 5:] = torch.finfo(torch.float32).min
    out = run_kernel(kernel, q, k, v, mask)
    torch.testing.assert_close(out[:, :, 0], v.mean(dim=2), atol=1e-5, rtol=1e-5)
    assert_matches(out, q, k, v, mask)


# ---------------------------------------------------------------------------------------------------------
# Layouts: arbitrary input strides, output stored as [B, Sq, Hq, D]


@pytest.mark.parametrize("kernel", ["prefill", "decode"])
@pytest.mark.parametrize("layout", ["bshd", "dlast"])
def test_noncontiguous_inputs(kernel, layout):
    q, k, v = make_qkv(2, 4, 2, 3, 29, 24, torch.float16, layout=layout)
    assert not q.is_contiguous() and not k.is_contiguous()
    mask = make_mask((2, 1, 29, 3), "bool").transpose(-1, -2)  # a transposed (non-contiguous) mask too
    out = run_kernel(kernel, q, k, v, mask)
    assert out.stride() == out_strides(2, 4, 3, 24)
    assert out.transpose(1, 2).is_contiguous()
    assert_matches(out, q, k, v, mask)


# ---------------------------------------------------------------------------------------------------------
# Block skipping: K/V of key blocks that no row may attend are never read


def nan_outside(k, v, visible):
    """Copies of k, v with every key outside ``visible`` (a bool over keys) set to NaN."""
    k, v = k.clone(), v.clone()
    k[:, :, ~visible] = math.nan
    v[:, :, ~visible] = math.nan
    return k, v


@pytest.mark.parametrize("skip", [1, 2])
@pytest.mark.parametrize("kind", ["bool", "add_fp16"])
@pytest.mark.parametrize("prefix", [5, 32])
@pytest.mark.parametrize("splits", [1, 3])
def test_decode_reads_only_the_visible_prefix(poisoned, skip, kind, prefix, splits):
    # a static KV cache of 80 slots whose mask shows the first `prefix`; the block holding the last visible
    # key is read (its masked keys are finite), every block after it holds NaN and must not be read
    skv, block = 80, DECODE["BLOCK_N"]
    q, k, v = make_qkv(2, 4, 2, 1, skv, 16, torch.float16)
    keys = torch.arange(skv, device=DEVICE)
    mask = make_mask((2, 1, 1, skv), kind)
    mask[..., : min(prefix, 3)] = True if kind == "bool" else 0.0  # at least one visible key per row
    mask[..., prefix:] = False if kind == "bool" else -math.inf
    k_nan, v_nan = nan_outside(k, v, keys < -(-prefix // block) * block)
    out = run_kernel("decode", q, k_nan, v_nan, mask, SKIP=skip, splits=splits)
    assert torch.isfinite(out).all()
    assert_matches(out, q, k[:, :, :prefix], v[:, :, :prefix], mask[..., :prefix])


@pytest.mark.parametrize("kernel, skip", [("decode", 1), ("decode", 2), ("prefill", 1), ("prefill", 2)])
def test_skips_masked_blocks_anywhere(kernel, skip):
    # keys [16, 48) are masked for every row: two whole blocks in the middle, filled with NaN
    q, k, v = make_qkv(1, 4, 2, 3, 64, 16, torch.float32)
    visible = (torch.arange(64, device=DEVICE) < 16) | (torch.arange(64, device=DEVICE) >= 48)
    mask = visible.expand(3, 64)
    k_nan, v_nan = nan_outside(k, v, visible)
    out = run_kernel(kernel, q, k_nan, v_nan, mask, SKIP=skip, splits=2)
    assert torch.isfinite(out).all()
    assert_matches(out, q, k, v, mask)


def element_addresses(t, keys):
    """Byte addresses of t[:, :, keys, :] (keys: a 1-D index tensor)."""
    b, h, d = (torch.arange(n) for n in (t.shape[0], t.shape[1], t.shape[3]))
    sb, sh, sn, sd = t.stride()
    offs = b[:, None, None, None] * sb + h[:, None, None] * sh + keys.cpu()[:, None] * sn + d * sd
    return (t.data_ptr() + offs * t.element_size()).flatten().numpy()


@pytest.mark.skipif(DEVICE == "cuda", reason="records the addresses the Triton interpreter loads")
@pytest.mark.parametrize("kernel, skip", [("decode", 1), ("decode", 2), ("prefill", 1), ("prefill", 2)])
def test_skipped_blocks_are_never_loaded(monkeypatch, kernel, skip):
    # NaN in a masked K cannot reach the output (its score is replaced by -inf), so watch the loads instead
    import numpy as np
    from triton.runtime.interpreter import InterpreterBuilder

    loaded = []
    load = InterpreterBuilder.create_masked_load

    def recording_load(self, ptrs, mask, *args):
        loaded.append(ptrs.data[mask.data].ravel().copy())
        return load(self, ptrs, mask, *args)

    monkeypatch.setattr(InterpreterBuilder, "create_masked_load", recording_load)
    q, k, v = make_qkv(1, 4, 2, 2, 80, 16, torch.float32)
    keys = torch.arange(80)
    mask = ((keys < 20) | (keys >= 64)).expand(2, 80)  # blocks [32, 48) and [48, 64) are invisible
    out = run_kernel(kernel, q, k, v, mask, SKIP=skip, splits=3)
    assert_matches(out, q, k, v, mask)
    loaded = np.concatenate(loaded)
    hidden = keys[(keys >= 32) & (keys < 64)]
    for t in (k, v):
        assert np.isin(element_addresses(t, keys[:20]), loaded).all()  # the recording does see K/V loads
        assert not np.isin(element_addresses(t, hidden), loaded).any()


def test_unskipped_masked_blocks_are_still_correct():
    # SKIP=0 reads masked blocks; with finite data the result is the same
    q, k, v = make_qkv(1, 4, 2, 3, 64, 16, torch.float32)
    mask = make_mask((3, 64), "bool")
    mask[:, 16:48] = False
    assert_matches(run_kernel("prefill", q, k, v, mask, SKIP=0), q, k, v, mask)


# ---------------------------------------------------------------------------------------------------------
# Dispatch, heuristics and tuning inputs (pure Python)


def test_dispatch_by_group_times_sq():
    q, k, _ = make_qkv(1, 8, 2, 1, 4, 16, torch.float16)
    assert ka._default_config(q, k)["kernel"] == "decode"
    q = torch.empty(1, 8, 17, 16)  # 4 × 17 = 68 rows > 64
    assert ka._default_config(q, k)["kernel"] == "prefill"


@pytest.mark.parametrize("sq, hq", [(1, 8), (40, 2)])
def test_attention_entry_point(poisoned, monkeypatch, sq, hq):
    monkeypatch.setenv("ACCEL_AUTOTUNE_CACHE", "0")  # on a GPU this tunes for real; keep results in memory
    q, k, v = make_qkv(1, hq, 2, sq, 45, 64, torch.float16)
    mask = make_mask((1, 1, sq, 45), "bool")
    out = ka.attention(q, k, v, mask, 0.125, True)
    assert out.stride() == out_strides(1, hq, sq, 64)
    assert_matches(out, q, k, v, mask, 0.125, True)


def test_attention_falls_back_past_max_head_dim():
    q, k, v = make_qkv(1, 2, 1, 2, 3, ka.MAX_HEAD_DIM + 8, torch.float32)
    assert_matches(ka.attention(q, k, v, None, 0.1, False), q, k, v, None, 0.1, False)


def test_attention_rejects_bad_inputs():
    q, k, v = make_qkv(1, 3, 2, 2, 3, 16, torch.float32)
    with pytest.raises(ValueError, match="multiple"):
        ka.attention(q, k, v, None, 1.0, False)
    q, k, v = make_qkv(1, 2, 2, 2, 3, 16, torch.float32)
    with pytest.raises(ValueError, match="share"):
        ka.attention(q, k.half(), v, None, 1.0, False)
    with pytest.raises(ValueError, match="rank"):
        ka.attention(q, k, v, torch.ones(1, 1, 1, 2, 3, dtype=torch.bool), 1.0, False)


@pytest.mark.parametrize("b, hkv, kv_len", [(1, 8, 4096), (1, 8, 100), (4, 2, 1000), (64, 8, 32768), (1, 1, 0)])
def test_num_splits_fill_the_gpu_without_empty_splits(b, hkv, kv_len):
    splits = ka._num_splits(b, hkv, kv_len, 64, 2, torch.device("cpu"))
    blocks = max(1, -(-kv_len // 64))
    chunk = -(-blocks // splits)
    assert 1 <= splits <= min(ka.MAX_SPLITS, blocks)
    assert (splits - 1) * chunk < blocks  # the last split holds at least one block
    assert b * hkv * splits <= max(2 * H100_SMS, b * hkv)


def test_candidates_include_sdpa_only_when_it_computes_the_same():
    q, k, _ = make_qkv(1, 8, 2, 1, 64, 64, torch.float16)
    kernels = [c["kernel"] for c in ka._candidates(q, k, None, False)]
    assert kernels[0] == "decode" and "prefill" in kernels and kernels[-1] == "sdpa"
    cache_mask = torch.ones(1, 1, 1, 64, dtype=torch.bool)
    assert "sdpa" not in [c["kernel"] for c in ka._candidates(q, k, cache_mask, False)]
    q = torch.empty(1, 8, 64, 64, dtype=torch.float16)
    square = torch.ones(64, 64, dtype=torch.bool)
    assert "sdpa" in [c["kernel"] for c in ka._candidates(q, k, square, False)]
    assert "sdpa" not in [c["kernel"] for c in ka._candidates(q, k, square, True)]
    assert "sdpa" not in [c["kernel"] for c in ka._candidates(q, k, square.float(), False)]  # cast would change it


def test_every_candidate_runs_and_agrees():
    # what autotune_cache.tune measures: every candidate of a decode-sized problem, on the runner's inputs
    q, k, v = make_qkv(1, 4, 2, 2, 40, 16, torch.float16, layout="bshd")
    mask = make_mask((1, 1, 2, 40), "bool")
    outs = []
    for cfg in ka._candidates(q, k, mask, False):
        torch.manual_seed(0)  # the runner draws its own random inputs
        outs.append(ka._runner(q, k, v, mask, False, cfg)())
    assert {c["kernel"] for c in ka._candidates(q, k, mask, False)} == {"decode", "prefill"}
    for out in outs[1:]:
        torch.testing.assert_close(out, outs[0], atol=2e-3, rtol=2e-3)
    assert ka._mask_code(mask, q) != ka._mask_code(mask.half(), q) != ka._mask_code(mask.float(), q)


@pytest.mark.parametrize("shape", [(5, 7), (2, 1, 1, 7), (1, 3, 5, 7), (7,)])
@pytest.mark.parametrize("dtype", [torch.bool, torch.float16])
def test_tuning_inputs_keep_shapes_and_strides(shape, dtype):
    q = torch.empty(2, 5, 3, 8, 2).select(-1, 0).transpose(1, 2)  # [2, 3, 5, 8] with odd strides
    k = torch.empty(2, 3, 7, 8)
    mask = ka._tuning_mask(torch.zeros(shape, dtype=dtype), q, k)
    assert mask.shape == shape and mask.dtype == dtype
    full = mask.expand(2, 3, 5, 7)
    visible = full if dtype == torch.bool else full == 0
    assert visible[..., -1, :].all()  # the last query sees every key, as in a KV cache
    rand = ka._random_like(q)
    assert rand.shape == q.shape and rand.stride() == q.stride() and torch.isfinite(rand).all()


# ---------------------------------------------------------------------------------------------------------
# Property test over random small problems


@st.composite
def problems(draw):
    hkv = draw(st.integers(1, 2))
    group = draw(st.sampled_from([1, 2, 4]))
    sq, skv = draw(st.integers(1, 20)), draw(st.integers(1, 40))
    d = draw(st.sampled_from([8, 16, 24, 64]))
    kind = draw(st.sampled_from([None, "bool", "add_fp32", "add_fp16"]))
    bcast = draw(st.lists(st.booleans(), min_size=4, max_size=4))
    shape = tuple(1 if flag else n for flag, n in zip(bcast, (2, hkv * group, sq, skv)))
    return dict(
        dims=(2, hkv * group, hkv, sq, skv, d), mask=(kind, shape), is_causal=draw(st.booleans()),
        kernel=draw(st.sampled_from(["prefill", "decode"])), dtype=draw(st.sampled_from(DTYPES)),
        layout=draw(st.sampled_from(["bhsd", "bshd"])), seed=draw(st.integers(0, 2**16)),
    )


@given(problems())
def test_random_problems_match_reference(p):
    q, k, v = make_qkv(*p["dims"], p["dtype"], layout=p["layout"], seed=p["seed"])
    kind, shape = p["mask"]
    mask = None if kind is None else make_mask(shape, kind, seed=p["seed"])
    out = run_kernel(p["kernel"], q, k, v, mask, is_causal=p["is_causal"])
    assert_matches(out, q, k, v, mask, is_causal=p["is_causal"])
