"""``accel.runtime.kernels.rope``: the rotary embedding + KV-cache write kernel against the torch reference.

q, k, v are strided slices of one fused QKV projection, as in the decode graph; cos / sin come 4-D (broadcast over
heads) or 3-D; positions are arbitrary rows of the cache. Interpreter on CPU (fp32 / fp16), compiled on a GPU.
"""
import pytest
import torch

from accel.runtime import reference
from accel.runtime.kernels import rope as kr

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPES = [torch.float32, torch.float16] + ([torch.bfloat16] if DEVICE == "cuda" else [])


def make(B, HQ, HKV, S, D, L, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    qkv = torch.randn(B, S, (HQ + 2 * HKV) * D, generator=g).to(DEVICE, dtype)
    q = qkv[..., :HQ * D].reshape(B, S, HQ, D).transpose(1, 2)
    k = qkv[..., HQ * D:(HQ + HKV) * D].reshape(B, S, HKV, D).transpose(1, 2)
    v = qkv[..., (HQ + HKV) * D:].reshape(B, S, HKV, D).transpose(1, 2)
    angles = torch.randn(B, S, D // 2, generator=g) * 3
    emb = torch.cat([angles, angles], -1)
    cos, sin = emb.cos().to(DEVICE, dtype), emb.sin().to(DEVICE, dtype)
    caches = [torch.randn(B, HKV, L, D, generator=g).to(DEVICE, dtype) for _ in range(2)]
    return q, k, v, cos, sin, caches


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("B,HQ,HKV,S,D,L,positions", [
    (1, 4, 2, 1, 32, 16, [9]),           # decode, GQA
    (2, 3, 3, 3, 16, 8, [0, 5, 7]),      # batch 2, MHA, several tokens at scattered rows
    (1, 8, 1, 2, 130, 12, [10, 11]),     # MQA, a head dim whose half is not a power of two
])
@pytest.mark.parametrize("cos_rank", [3, 4])
def test_kernel_matches_reference(dtype, B, HQ, HKV, S, D, L, positions, cos_rank):
    q, k, v, cos, sin, (kc, vc) = make(B, HQ, HKV, S, D, L, dtype)
    if cos_rank == 4:
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    pos = torch.tensor(positions, device=DEVICE)
    kc_ref, vc_ref = kc.clone(), vc.clone()
    ref = reference.rope_kv_update(q.double(), k.double(), v.double(), cos.double(), sin.double(),
                                   kc_ref, vc_ref, pos)  # caches stay in dtype: index_copy_ casts
    out = kr.rope_kv_update(q, k, v, cos, sin, kc, vc, pos)
    tol = {torch.float32: 1e-6, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}[dtype]
    torch.testing.assert_close(out.double(), ref, rtol=tol, atol=tol)
    torch.testing.assert_close(kc.double(), kc_ref.double(), rtol=tol, atol=tol)
    torch.testing.assert_close(vc, vc_ref, rtol=0, atol=0)  # v is copied, not computed
    untouched = [r for r in range(L) if r not in positions]
    assert torch.equal(kc[:, :, untouched], kc_ref[:, :, untouched])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("B,HQ,HKV,S,D,L,start", [
    (1, 4, 2, 1, 32, 16, 9),             # decode, GQA
    (2, 3, 3, 3, 16, 8, 4),              # batch 2, MHA, three tokens
    (1, 5, 1, 2, 130, 12, 10),           # MQA, head counts and a half head dim that are not powers of two
])
def test_append_kernel_matches_reference_and_advances_the_counter(dtype, B, HQ, HKV, S, D, L, start):
    q, k, v, cos, sin, (kc, vc) = make(B, HQ, HKV, S, D, L, dtype)
    length = torch.tensor(start, device=DEVICE)
    kc_ref, vc_ref, length_ref = kc.clone(), vc.clone(), length.clone()
    ref = reference.rope_kv_append(q.double(), k.double(), v.double(), cos.double(), sin.double(),
                                   kc_ref, vc_ref, length_ref)
    out = kr.rope_kv_append(q, k, v, cos, sin, kc, vc, length)
    assert length.item() == length_ref.item() == start + S
    tol = {torch.float32: 1e-6, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}[dtype]
    torch.testing.assert_close(out.double(), ref, rtol=tol, atol=tol)
    torch.testing.assert_close(kc.double(), kc_ref.double(), rtol=tol, atol=tol)
    torch.testing.assert_close(vc, vc_ref, rtol=0, atol=0)
    untouched = [r for r in range(L) if not start <= r < start + S]
    assert torch.equal(kc[:, :, untouched], kc_ref[:, :, untouched])



@pytest.mark.parametrize("append", [False, True], ids=["positions", "append"])
def test_kernels_with_pdl_give_the_same_bits(append, request):
    """Compiled for PDL (let the next kernel launch, then wait for the previous one, before anything else), both
    kernels write exactly what they write without it, and the append kernel still advances the counter once."""
    outs = []
    for pdl in (False, True):
        if pdl:
            request.getfixturevalue("compiled_for_pdl")
        q, k, v, cos, sin, (kc, vc) = make(1, 4, 2, 1, 32, 16, torch.float16)
        where = torch.tensor(9, device=DEVICE) if append else torch.tensor([9], device=DEVICE)
        out = (kr.rope_kv_append if append else kr.rope_kv_update)(q, k, v, cos, sin, kc, vc, where)
        outs.append((out, kc, vc, where))
    for plain, pdl in zip(*outs):
        assert torch.equal(plain, pdl)
    assert outs[1][3].item() == (10 if append else 9)

def test_rope_reference_is_rotate_half():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, 8, dtype=torch.float64, generator=g)
    ang = torch.randn(5, 4, dtype=torch.float64, generator=g)
    cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()
    x1, x2 = x[..., :4], x[..., 4:]
    # the reference computes in fp32 (as the kernels do) and rounds back: fp32 tolerances, not float64's
    torch.testing.assert_close(reference.rope(x, cos, sin), x * cos + torch.cat((-x2, x1), -1) * sin,
                               rtol=2e-6, atol=2e-6)
    # a rotation: norms of each (i, i + D/2) pair are kept
    torch.testing.assert_close(reference.rope(x, cos, sin).norm(dim=-1), x.norm(dim=-1))
