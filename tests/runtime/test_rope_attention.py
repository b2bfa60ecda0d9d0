"""``rope_attention_append``: a decode step's RoPE + KV-cache append inside the split-KV attention kernels.

The fused launches must compute what ``rope_kv_append`` followed by ``attention`` computes: the attention output
(against a float64 attention over the caches the unfused reference leaves), the new cache row (rotated k, copied v),
every other cache row untouched, and the length counter advanced by one, once, whatever the number of programs
(with one split, by the program that draws the last ticket).
The new row is written by the program whose key chunk holds it, so the cases put it at chunk edges. q, k, v are
strided slices of one QKV projection, as in the decode graph. Interpreter on CPU (fp32 / fp16), compiled on a GPU.
"""
import pytest
import torch

from accel.runtime import reference
from accel.runtime.kernels import attention as ka
from accel.runtime.kernels import rope as kr
from tests.runtime.poison import poison_empty

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPES = [torch.float32, torch.float16] + ([torch.bfloat16] if DEVICE == "cuda" else [])
# attention against float64 as in test_attention_kernel; the cache row as in test_rope_kernel (one rounding)
ATTN_TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}
ROPE_TOL = {torch.float32: 1e-6, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
DECODE = dict(kernel="decode", BLOCK_N=16, num_warps=4, num_stages=1, SKIP=1, waves=2)
SCALE = 0.3


def make(B, HQ, HKV, D, L, start, dtype, mask_kind, cos_rank, seed=0):
    """q, k, v (slices of one [B, 1, (HQ + 2 HKV)·D] projection), cos, sin, caches with random rows, the counter,
    and the HF decode mask for query position ``start`` (keys 0..start visible)."""
    g = torch.Generator().manual_seed(seed)
    qkv = torch.randn(B, 1, (HQ + 2 * HKV) * D, generator=g).to(DEVICE, dtype)
    q = qkv[..., :HQ * D].reshape(B, 1, HQ, D).transpose(1, 2)
    k = qkv[..., HQ * D:(HQ + HKV) * D].reshape(B, 1, HKV, D).transpose(1, 2)
    v = qkv[..., (HQ + HKV) * D:].reshape(B, 1, HKV, D).transpose(1, 2)
    angles = torch.randn(B, 1, D // 2, generator=g) * 3
    emb = torch.cat([angles, angles], -1)
    cos, sin = emb.cos().to(DEVICE, dtype), emb.sin().to(DEVICE, dtype)
    if cos_rank == 4:
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    caches = [torch.randn(B, HKV, L, D, generator=g).to(DEVICE, dtype) for _ in range(2)]
    visible = (torch.arange(L, device=DEVICE) <= start).reshape(1, 1, 1, L).expand(B, 1, 1, L)
    if mask_kind == "bool":
        mask = visible.contiguous()
    elif mask_kind == "additive":
        mask = torch.zeros(B, 1, 1, L, dtype=dtype, device=DEVICE).masked_fill(~visible, torch.finfo(dtype).min)
    else:
        mask = None
    return q, k, v, cos, sin, caches, torch.tensor(start, device=DEVICE), mask


def unfused(q, k, v, cos, sin, kc, vc, length, mask):
    """The contract, step by step: the reference append in the inputs' dtype (so the cache row and rope(q) are
    rounded as the kernel rounds them), then attention in float64 over the caches it left."""
    q_rot = reference.rope_kv_append(q, k, v, cos, sin, kc, vc, length)
    if mask is not None:
        mask = mask.expand(q.shape[0], q.shape[1], 1, kc.shape[2])
        mask = mask if mask.dtype == torch.bool else mask.double()
    return reference.attention(q_rot.double(), kc.double(), vc.double(), mask, SCALE, False)


def check(out, ref, kc, vc, kc_ref, vc_ref, length, start, dtype):
    assert length.item() == start + 1
    assert out.dtype == dtype and out.shape == ref.shape
    torch.testing.assert_close(out.double(), ref, atol=ATTN_TOL[dtype], rtol=ATTN_TOL[dtype])
    tol = ROPE_TOL[dtype]
    torch.testing.assert_close(kc[:, :, start].double(), kc_ref[:, :, start].double(), rtol=tol, atol=tol)
    assert torch.equal(vc[:, :, start], vc_ref[:, :, start])  # v is copied, not computed
    untouched = [r for r in range(kc.shape[2]) if r != start]
    assert torch.equal(kc[:, :, untouched], kc_ref[:, :, untouched])
    assert torch.equal(vc[:, :, untouched], vc_ref[:, :, untouched])


def fused(q, k, v, cos, sin, kc, vc, length, mask, splits, block_n=DECODE["BLOCK_N"]):
    """The fused launches for ``splits`` KV splits of ``block_n``-key blocks (the entry point's cos / sin handling
    included)."""
    cfg = dict(DECODE, splits=splits, BLOCK_N=block_n)
    return ka._decode(q, kc, vc, mask, SCALE, False, cfg, append=(k, v, cos, sin, length))


@pytest.fixture
def poisoned(monkeypatch):
    """torch.empty returns NaN-filled float tensors: an output or partial element nobody writes shows up as NaN."""
    poison_empty(monkeypatch)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("B,HQ,HKV,D,L,start,splits", [
    (1, 4, 2, 32, 64, 37, 3),    # GQA, the row inside the middle split (its chunk's first block)
    (1, 4, 2, 32, 64, 50, 3),    # the row in its chunk's second block (the chunk's first block read before it)
    (1, 4, 2, 32, 64, 16, 4),    # the first row of split 1 (chunks of 16 keys)
    (1, 4, 2, 32, 64, 15, 4),    # the last row of split 0
    (1, 4, 2, 32, 64, 63, 4),    # the cache's last row
    (1, 4, 2, 32, 64, 0, 2),     # the first token: the row is the only visible key
    (2, 3, 3, 16, 40, 21, 3),    # batch 2 (one counter for both sequences), MHA
    (1, 8, 1, 24, 48, 30, 5),    # MQA, a head dim whose half is not a power of two, an empty split
    (1, 4, 2, 32, 64, 37, 1),    # one split: each program writes its head's row; the last ticket advances the counter
    (1, 4, 2, 32, 64, 0, 1),     # one split, the first token
    (2, 3, 3, 16, 40, 39, 1),    # one split, batch 2 (six programs draw tickets on one counter), the last row
    # one split of one block (64 keys): the ticket and the cached rows loaded before the PDL wait (PRE)
    (1, 4, 2, 32, 64, 37, (1, 64)),
    (1, 4, 2, 32, 48, 47, (1, 64)),  # a cache shorter than the block, its last row
    (1, 4, 2, 32, 64, 0, (1, 64)),   # the first token
    (2, 3, 3, 16, 40, 21, (1, 64)),  # batch 2
], ids=str)
@pytest.mark.parametrize("mask_kind", ["bool", "additive", "none"])
def test_fused_launches_match_the_unfused_reference(poisoned, dtype, B, HQ, HKV, D, L, start, splits, mask_kind):
    splits, block_n = splits if isinstance(splits, tuple) else (splits, DECODE["BLOCK_N"])
    q, k, v, cos, sin, (kc, vc), length, mask = make(B, HQ, HKV, D, L, start, dtype, mask_kind, cos_rank=3)
    assert ka._preloads(q, kc, False, dict(DECODE, BLOCK_N=block_n), splits) == (block_n >= L)
    kc_ref, vc_ref, length_ref = kc.clone(), vc.clone(), length.clone()
    ref = unfused(q, k, v, cos, sin, kc_ref, vc_ref, length_ref, mask)
    out = fused(q, k, v, cos, sin, kc, vc, length, mask, splits, block_n)
    check(out, ref, kc, vc, kc_ref, vc_ref, length, start, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("mask_kind", ["bool", "additive", "none"])
@pytest.mark.parametrize("start", [0, 21, 47])
def test_preloaded_block_gives_the_bits_of_the_loads_after_the_wait(monkeypatch, dtype, mask_kind, start):
    """PRE (the ticket and the cached rows loaded first, the new row patched in registers) against the same launch
    loading its block after the append: the same output, caches and counter, bit for bit."""
    results = []
    for preload in (False, True):
        monkeypatch.setattr(ka, "PRELOAD", preload)
        q, k, v, cos, sin, (kc, vc), length, mask = make(1, 4, 2, 32, 48, start, dtype, mask_kind, cos_rank=3)
        out = fused(q, k, v, cos, sin, kc, vc, length, mask, 1, 64)
        results.append((out, kc, vc, length))
    for off, on in zip(*results):
        assert torch.equal(off, on)
    assert results[1][3].item() == start + 1


@pytest.mark.parametrize("cos_rank", [3, 4])
@pytest.mark.parametrize("splits,counter", [(1, torch.int64), (3, torch.int64), (1, torch.int32), (3, torch.int32)])
def test_entry_point_fuses_where_the_launches_can_advance_the_counter(monkeypatch, cos_rank, splits, counter):
    """``ka.rope_attention_append`` takes the fused launches where the selected decode config splits the keys (the
    reduction kernel advances the counter) or where the counter is int64 (one split: the programs' tickets), and
    otherwise runs ``rope_kv_append`` and ``attention``. All give the contract's result."""
    dtype = torch.float32
    q, k, v, cos, sin, (kc, vc), length, mask = make(1, 4, 2, 32, 64, 40, dtype, "bool", cos_rank)
    length = length.to(counter)
    kc_ref, vc_ref, length_ref = kc.clone(), vc.clone(), length.clone()
    ref = unfused(q, k, v, cos, sin, kc_ref, vc_ref, length_ref, mask)
    monkeypatch.setattr(ka, "_select", lambda *args, **kwargs: dict(DECODE, splits=splits))
    appends = []
    real_append = kr.rope_kv_append
    monkeypatch.setattr(kr, "rope_kv_append", lambda *args: appends.append(1) or real_append(*args))
    out = ka.rope_attention_append(q, k, v, cos, sin, kc, vc, length, mask, SCALE)
    check(out, ref, kc, vc, kc_ref, vc_ref, length, 40, dtype)
    assert length.dtype == counter
    assert len(appends) == (1 if splits == 1 and counter != torch.int64 else 0)


def test_preloads_only_where_the_launch_in_the_step_before_has_ended(monkeypatch):
    """PRE reads the counter and the cached rows before its PDL wait: compiled for PDL only under CUDA graphs
    (``ATTENTION_PRE``, on with the attention chain when the compile uses them), where a replay starts once the one
    before has ended; compiled without PDL always (the launch itself waits); never past one block."""
    q, k, v, cos, sin, (kc, vc), length, mask = make(1, 4, 2, 32, 48, 20, torch.float32, "bool", 3)
    one_block = dict(DECODE, BLOCK_N=64)
    for families, expected in (((), True), (("attention",), False), (("attention", "attention_pre"), True)):
        monkeypatch.setattr(ka, "use_pdl", lambda device, family="gemv", on=families: family in on)
        assert ka._preloads(q, kc, False, one_block, 1) == expected, families
        assert not ka._preloads(q, kc, False, DECODE, 1)  # 16-key blocks: three of them


@pytest.mark.parametrize("ticketed", [True, False])
def test_append_tunes_among_the_configs_that_take_it(ticketed):
    """``rope_attention_append`` tunes among the decode configs whose launches take the append (the split ones, and
    the one-split ones with a ticketed counter), never the prefill kernel or SDPA, whose append would be a launch of
    its own that a timing of the attention alone does not see."""
    q, k, v, cos, sin, (kc, vc), length, mask = make(1, 32, 8, 64, 104, 40, torch.float16, "bool", 3)
    cands = ka._candidates(q, kc, mask, False)
    assert {c["kernel"] for c in cands} > {"decode"}  # the plain attention's tuning also has the prefill kernel
    fused = ka._append_candidates(cands, q, kc, False, ticketed)
    assert fused and all(c["kernel"] == "decode" for c in fused)
    splits = [ka._decode_splits(q, kc, False, c) for c in fused]
    assert (min(splits) == 1) == ticketed and max(splits) > 1


def test_entry_point_rejects_more_than_one_new_token():
    q, k, v, cos, sin, (kc, vc), length, mask = make(1, 4, 2, 32, 64, 40, torch.float32, "bool", 3)
    q2 = torch.cat([q, q], dim=2)
    with pytest.raises(Exception, match="one new token"):
        ka.rope_attention_append(q2, k, v, cos, sin, kc, vc, length, mask, SCALE)


@pytest.mark.parametrize("splits,block_n", [(1, 16), (3, 16), (1, 64)], ids=["one-split", "split", "one-block"])
def test_fused_launches_with_pdl_give_the_same_bits(request, splits, block_n):
    """Compiled for PDL (let the next kernel launch, then wait): the same output and cache bits, the counter still
    advanced once (by the reduction kernel after its wait, or by the last ticket, drawn before the wait in one
    block)."""
    results = []
    for pdl in (False, True):
        if pdl:
            request.getfixturevalue("compiled_for_pdl")
        q, k, v, cos, sin, (kc, vc), length, mask = make(1, 4, 2, 32, 64, 37, torch.float16, "bool", 3)
        out = fused(q, k, v, cos, sin, kc, vc, length, mask, splits=splits, block_n=block_n)
        results.append((out, kc, vc, length))
    for plain, pdl in zip(*results):
        assert torch.equal(plain, pdl)
    assert results[1][3].item() == 38


def test_reference_is_append_then_attention():
    """``reference.rope_attention_append`` is the unfused composition, and it mutates what the op declares."""
    q, k, v, cos, sin, (kc, vc), length, mask = make(2, 4, 2, 16, 24, 9, torch.float64, "bool", 3)
    kc2, vc2, length2 = kc.clone(), vc.clone(), length.clone()
    out = reference.rope_attention_append(q, k, v, cos, sin, kc, vc, length, mask, SCALE)
    q_rot = reference.rope_kv_append(q, k, v, cos, sin, kc2, vc2, length2)
    assert torch.equal(out, reference.attention(q_rot, kc2, vc2, mask, SCALE, False))
    assert torch.equal(kc, kc2) and torch.equal(vc, vc2) and length.item() == length2.item() == 10


def test_fused_launches_refuse_one_split_with_a_narrow_counter():
    """With one split no reduction kernel runs; the programs' tickets need an int64 counter: another is refused,
    not advanced wrongly."""
    q, k, v, cos, sin, (kc, vc), length, mask = make(1, 4, 2, 32, 64, 40, torch.float32, "bool", 3)
    length = length.to(torch.int32)
    with pytest.raises(ValueError, match="int64 length counter"):
        fused(q, k, v, cos, sin, kc, vc, length, mask, splits=1)
    assert length.item() == 40


@pytest.mark.parametrize("block_n", [16, 32], ids=["blocks", "one-block"])
def test_one_split_tickets_leave_the_counter_clean_over_many_steps(block_n):
    """Twenty decode steps through the one-split launches: the counter is exactly the row count after each (the
    tickets in its high bits never outlive a launch) and every step's row is the one its position names."""
    B, HQ, HKV, D, L = 1, 4, 2, 16, 32
    q, k, v, cos, sin, (kc, vc), length, mask = make(B, HQ, HKV, D, L, 5, torch.float32, "none", 3)
    kc_ref, vc_ref, length_ref = kc.clone(), vc.clone(), length.clone()
    for step in range(20):
        visible = (torch.arange(L, device=DEVICE) <= 5 + step).reshape(1, 1, 1, L)
        ref = unfused(q, k, v, cos, sin, kc_ref, vc_ref, length_ref, visible)
        out = fused(q, k, v, cos, sin, kc, vc, length, visible, splits=1, block_n=block_n)
        check(out, ref, kc, vc, kc_ref, vc_ref, length, 5 + step, torch.float32)
        assert length.item() == length_ref.item() == 6 + step
        kc_ref.copy_(kc)  # the next reference starts from the rows written here (equal within a rounding)
