"""``qlinear_mma``: the int4 and int8 GEMVs on mma.sync. Their numerics run only on a GPU (inline PTX; the interpreter
runs none): each tile, split-K, gating, the residual and the zero points against ``quant.qlinear_reference`` in fp64,
tight enough that a code, an x value or an output written to the wrong lane is an O(1) error. On the CPU: where the
candidates apply; tests/runtime/sm90_compile.py compiles every tile for sm_90 and checks the lane layout the PTX
assumes."""
import math

import pytest
import torch

from accel.runtime import quant
from accel.runtime.kernels import qlinear as ql
from accel.runtime.kernels import qlinear_mma as qm
from tests.runtime.poison import poison_allocations

CUDA = torch.cuda.is_available()
needs_gpu = pytest.mark.skipif(not CUDA, reason="mma.sync through inline PTX: compiled only")
INT4 = "int4_weight_only"


def mma_config(row_warps: int, k_warps: int, row_tiles: int, split: int = 1, token_tiles: int = 1) -> dict:
    return {**ql.mma_config(8 * token_tiles, INT4, row_warps, k_warps, row_tiles), "SPLIT_K": split}


def inputs(M, N, K, dtype, symmetric=False, bias=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = (torch.randn(N, K, generator=g) / math.sqrt(K)).to("cuda", dtype)
    q, s, z = quant.quantize_weight(w, INT4, 128, symmetric)
    x = torch.randn(M, K, generator=g).to("cuda", dtype)
    b = torch.randn(N, generator=g).to("cuda", dtype) if bias else None
    return x, q, s, z, b


def check(out, x, q, s, z, b, activation="identity", gated=False, residual=None, roundings=1):
    """Against the reference on the same codes, both rounded once to x's dtype: the kernel's sums are fp32 of exact
    products, so they differ by an output rounding (2^-8 bf16, 2^-11 fp16, relative) and fp32 sums of K terms.
    ``roundings`` = 2 where x itself is rounded differently (a norm in the kernel: x·g rounded, then scaled by the
    rsqrt, against torch's x·rsqrt·g rounded once)."""
    ref = quant.qlinear_reference(x, q, s, z, b, INT4, 128, activation, gated, residual=residual)
    tol = roundings * (8e-3 if x.dtype == torch.bfloat16 else 2e-3) + 1e-6 * x.shape[1]
    assert out.dtype == x.dtype and out.shape == ref.shape
    torch.testing.assert_close(out.double(), ref.double(), rtol=tol, atol=tol)


@needs_gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("tile", ql.MMA_GEMV_TILES, ids=str)
@pytest.mark.parametrize("M,N,K", [(1, 24, 128), (3, 200, 384), (8, 512, 1024), (5, 4096, 256), (2, 64, 1152)])
def test_each_tile_against_the_reference(M, N, K, tile, dtype):
    x, q, s, z, b = inputs(M, N, K, dtype, bias=True)
    out = ql.qlinear(x, q, s, z, b, INT4, 128, "identity", False, _config=mma_config(*tile))
    check(out, x, q, s, z, b)


@needs_gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("warps", [(1, 4), (2, 2), (4, 1), (1, 2)], ids=str)
@pytest.mark.parametrize("M,N,K", [(9, 24, 128), (16, 200, 640), (12, 512, 1024)])
def test_two_token_tiles(M, N, K, warps, dtype):
    x, q, s, z, b = inputs(M, N, K, dtype, bias=True)
    for row_tiles in (1, 2):
        out = ql.qlinear(x, q, s, z, b, INT4, 128, "identity", False,
                         _config=mma_config(*warps, row_tiles, token_tiles=2))
        check(out, x, q, s, z, b)
    x, q, s, z, b = inputs(M, 2 * N, K, dtype, symmetric=True)
    r = torch.randn(M, N, device="cuda", dtype=dtype)
    counters = torch.zeros(64, dtype=torch.int32, device="cuda")
    gated = ql.qlinear(x, q, s, z, None, INT4, 128, "silu", True, None, None, r, counters,
                       _config=mma_config(*warps, 1, 2, token_tiles=2))
    check(gated, x, q, s, z, None, "silu", gated=True, residual=r)


@needs_gpu
@pytest.mark.parametrize("symmetric", [False, True], ids=["asymmetric", "symmetric"])
@pytest.mark.parametrize("split", [2, 3])
def test_split_k_with_residual_both_reductions(split, symmetric, monkeypatch):
    # every buffer the launcher allocates starts as NaN; K = 640 is 5 groups: with 3 splits of 256 the last split
    # has one group, so one of its two K warps has none
    allocs = poison_allocations(monkeypatch)
    x, q, s, z, _ = inputs(4, 200, 640, torch.bfloat16, symmetric)
    r = torch.randn(4, 200, device="cuda", dtype=torch.bfloat16)
    cfg = mma_config(2, 2, 1, split)
    for counters in (None, torch.zeros(64, dtype=torch.int32, device="cuda")):  # epilogue kernel, last program
        out = ql.qlinear(x, q, s, z, None, INT4, 128, "identity", False, None, None, r, counters, _config=cfg)
        check(out, x, q, s, z, None, residual=r)
        if counters is not None:
            assert not counters.any()  # left zero for the next call
    assert (split, 4, 200) in allocs


@needs_gpu
@pytest.mark.parametrize("activation", ["silu", "gelu_tanh"])
@pytest.mark.parametrize("warps", [(1, 4), (2, 2), (4, 1)], ids=str)
def test_gated_gate_and_up_tiles(warps, activation):
    x, q, s, z, b = inputs(2, 2 * 96, 640, torch.bfloat16, bias=True)
    out = ql.qlinear(x, q, s, z, b, INT4, 128, activation, True, _config=mma_config(*warps, 1))
    assert out.shape == (2, 96)
    check(out, x, q, s, z, b, activation, gated=True)


@needs_gpu
def test_strided_x_and_norm_before_a_split_kernel(monkeypatch):
    x, q, s, z, _ = inputs(3, 64, 256, torch.bfloat16)
    wide = torch.randn(3, 257, device="cuda", dtype=torch.bfloat16)
    odd = wide[:, 1:]  # an odd element offset: not readable as int32 pairs, so copied
    out = ql.qlinear(odd, q, s, z, None, INT4, 128, "identity", False, _config=mma_config(1, 4, 1))
    check(out, odd, q, s, z, None)
    g = 1.0 + 0.1 * torch.randn(256, device="cuda", dtype=torch.bfloat16)
    xn = torch.nn.functional.rms_norm(x, (256,), g, 1e-5)
    calls = count_torch_norms(monkeypatch)
    for cfg, g_arg in ((mma_config(1, 4, 1, split=2), g), (mma_config(1, 4, 1), g.float())):  # split; fp32 weight
        normed = ql.qlinear(x, q, s, z, None, INT4, 128, "identity", False, 1e-5, g_arg, _config=cfg)
        check(normed, xn, q, s, z, None)
    assert len(calls) == 2  # both normalized x first


def count_torch_norms(monkeypatch) -> list:
    """Turns on the norm in the MMA GEMV's prologue (``qlinear.MMA_GEMV_NORM``) and counts the norms run before
    the kernel (``qlinear.rms_norm``: configs that cannot apply it)."""
    monkeypatch.setattr(ql, "MMA_GEMV_NORM", True)
    calls = []
    norm_kernel = ql.rms_norm

    def counted(*args):
        calls.append(args)
        return norm_kernel(*args)

    monkeypatch.setattr(ql, "rms_norm", counted)
    return calls


@needs_gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("with_weight", [True, False], ids=["weight", "no-weight"])
@pytest.mark.parametrize("tile", ql.MMA_GEMV_TILES, ids=str)
@pytest.mark.parametrize("M,N,K", [(2, 200, 384), (8, 512, 2048), (12, 96, 1024), (16, 64, 256)])
def test_norm_in_the_prologue(M, N, K, tile, with_weight, dtype, monkeypatch):
    """x · rsqrt(mean(x²) + eps) [· g] inside the kernel (Σx² from the MMAs, K warps added, row warps alike)
    against torch's RMSNorm then the reference: x scaled far from 1 so that a missing or wrong rsqrt is an O(1)
    error."""
    x, q, s, z, b = inputs(M, N, K, dtype, bias=True)
    x = x * torch.linspace(0.05, 20.0, M, device="cuda", dtype=dtype)[:, None]  # a different rsqrt per token
    g = (1.0 + 0.5 * torch.randn(K, device="cuda")).to(dtype) if with_weight else None
    xn = torch.nn.functional.rms_norm(x, (K,), g, 1e-5)
    calls = count_torch_norms(monkeypatch)
    out = ql.qlinear(x, q, s, z, b, INT4, 128, "identity", False, 1e-5, g,
                     _config=mma_config(*tile, token_tiles=(M + 7) // 8))
    assert not calls  # normalized in the kernel
    check(out, xn, q, s, z, b, roundings=2)


@needs_gpu
@pytest.mark.parametrize("M", [3, 16])
def test_norm_in_the_prologue_gated_with_residual(M, monkeypatch):
    x, q, s, z, _ = inputs(M, 2 * 160, 640, torch.bfloat16)
    g = (1.0 + 0.5 * torch.randn(640, device="cuda")).to(torch.bfloat16)
    r = torch.randn(M, 160, device="cuda", dtype=torch.bfloat16)
    calls = count_torch_norms(monkeypatch)
    out = ql.qlinear(x, q, s, z, None, INT4, 128, "silu", True, 1e-6, g, r,
                     _config=mma_config(2, 2, 1, token_tiles=(M + 7) // 8))
    assert not calls
    check(out, torch.nn.functional.rms_norm(x, (640,), g, 1e-6), q, s, z, None, "silu", gated=True, residual=r,
          roundings=2)


@needs_gpu
@pytest.mark.parametrize("scheme", [INT4, "int8_weight_only"])
@pytest.mark.parametrize("M,N,K,split", [(3, 200, 640, 1), (16, 200, 640, 3), (9, 24, 128, 1), (2, 4096, 1152, 2)])
def test_l2_prefetch_loads_match_triton_loads(M, N, K, split, scheme, monkeypatch):
    """The weight words through inline PTX with the L2's 256-byte prefetch (``qlinear.MMA_L2PF``) against Triton's
    masked loads, bit for bit: rows past N (N = 200, 24: masked rows r + 8 of the last tile), groups past a split's
    end and past K (640 = 5 groups, 1152 = 9), one and two token tiles, each tile."""
    g = torch.Generator().manual_seed(1)
    w = (torch.randn(N, K, generator=g) / math.sqrt(K)).to("cuda", torch.bfloat16)
    q, s, z = quant.quantize_weight(w, scheme, 128, scheme != INT4)
    x = torch.randn(M, K, generator=g).to("cuda", torch.bfloat16)
    for tile in ql.MMA_GEMV_TILES:
        cfg = (mma_config if scheme == INT4 else int8_config)(*tile, split, token_tiles=(M + 7) // 8)
        outs = []
        for on in (False, True):
            monkeypatch.setattr(ql, "MMA_L2PF", on)
            outs.append(ql.qlinear(x, q, s, z, None, scheme, 128, "identity", False, _config=cfg))
        assert torch.equal(outs[0], outs[1]), tile


@needs_gpu
def test_agrees_with_the_word_gemv():
    x, q, s, z, _ = inputs(1, 4096, 4096, torch.bfloat16, seed=3)
    words = ql.candidate_configs(1, 4096, 4096, INT4, 128, False, 2, 132)[0]
    assert words["kernel"] == "gemv"
    a = ql.qlinear(x, q, s, z, None, INT4, 128, "identity", False, _config=words).float()
    b = ql.qlinear(x, q, s, z, None, INT4, 128, "identity", False, _config=mma_config(1, 4, 2, 4)).float()
    assert ((a - b).abs().max() / a.abs().max()).item() < 8e-3


# -- int8 weight-only (``_qgemv_mma_int8_kernel``): the same lanes, a word of 4 signed codes an MMA

INT8 = "int8_weight_only"


def int8_config(row_warps: int, k_warps: int, row_tiles: int, split: int = 1, token_tiles: int = 1,
                unroll: int = 1) -> dict:
    return {**mma_config(row_warps, k_warps, row_tiles, split, token_tiles), "BLOCK_K": 64, "UNROLL": unroll}


def int8_inputs(M, N, K, dtype, bias=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = (torch.randn(N, K, generator=g) / math.sqrt(K)).to("cuda", dtype)
    q, s, _ = quant.quantize_weight(w, INT8, 128)
    x = torch.randn(M, K, generator=g).to("cuda", dtype)
    b = torch.randn(N, generator=g).to("cuda", dtype) if bias else None
    return x, q, s, b


def check_int8(out, x, q, s, b, activation="identity", gated=False, residual=None):
    """As ``check``: every product of a code (exact in x's dtype) and x is exact in fp32, so the kernel differs from
    the fp64 reference by the output's rounding and fp32 sums of K terms."""
    ref = quant.qlinear_reference(x, q, s, None, b, INT8, 128, activation, gated, residual=residual)
    tol = (8e-3 if x.dtype == torch.bfloat16 else 2e-3) + 1e-6 * x.shape[1]
    assert out.dtype == x.dtype and out.shape == ref.shape
    torch.testing.assert_close(out.double(), ref.double(), rtol=tol, atol=tol)


@needs_gpu
@pytest.mark.parametrize("unroll", [1, 2])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("tile", ql.MMA_GEMV_INT8_TILES, ids=str)
@pytest.mark.parametrize("M,N,K", [(1, 24, 64), (3, 200, 192), (8, 512, 1024), (5, 4096, 256), (12, 200, 640),
                                   (16, 512, 1088)])
def test_int8_each_tile_against_the_reference(M, N, K, tile, dtype, unroll):
    x, q, s, b = int8_inputs(M, N, K, dtype, bias=True)
    cfg = int8_config(*tile, token_tiles=2 if M > 8 else 1, unroll=unroll)
    check_int8(ql.qlinear(x, q, s, None, b, INT8, 128, "identity", False, _config=cfg), x, q, s, b)


@needs_gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_int8_every_code_at_every_byte_of_a_word(dtype):
    # code (n + k) mod 255 - 127: along a row every code -127..127 lands on each byte position of a word in turn;
    # x = 1 at one k a token reads one code a row exactly (8 tokens, 8 k), and random x checks the sums
    N, K = 256, 1024
    n, k = torch.arange(N)[:, None], torch.arange(K)[None, :]
    q = ((n + k) % 255 - 127).to(torch.int8).cuda()
    s = torch.full((N,), 0.5, device="cuda")  # (row scales are fp32)
    picks = torch.tensor([0, 1, 2, 3, 5, 254, 513, 1023])
    x = torch.zeros(8, K, dtype=dtype, device="cuda")
    x[torch.arange(8), picks] = 1.0
    out = ql.qlinear(x, q, s, None, None, INT8, 128, "identity", False, _config=int8_config(1, 4, 1))
    expect = 0.5 * q[:, picks.cuda()].t().to(dtype)
    assert torch.equal(out, expect)
    x = torch.randn(8, K, dtype=dtype, device="cuda")
    check_int8(ql.qlinear(x, q, s, None, None, INT8, 128, "identity", False, _config=int8_config(2, 2, 1, 2)),
               x, q, s, None)


@needs_gpu
@pytest.mark.parametrize("unroll", [1, 2])
@pytest.mark.parametrize("split", [2, 3])
def test_int8_split_k_gated_and_residual_both_reductions(split, unroll, monkeypatch):
    allocs = poison_allocations(monkeypatch)
    x, q, s, _ = int8_inputs(11, 200, 704, torch.bfloat16)  # 11 steps of 64: splits end inside a loop pass
    r = torch.randn(11, 200, device="cuda", dtype=torch.bfloat16)
    cfg = int8_config(2, 2, 1, split, token_tiles=2, unroll=unroll)
    for counters in (None, torch.zeros(64, dtype=torch.int32, device="cuda")):  # epilogue kernel, last program
        out = ql.qlinear(x, q, s, None, None, INT8, 128, "identity", False, None, None, r, counters, _config=cfg)
        check_int8(out, x, q, s, None, residual=r)
        if counters is not None:
            assert not counters.any()
    assert (split, 11, 200) in allocs
    x, q, s, b = int8_inputs(6, 2 * 96, 640, torch.bfloat16, bias=True)
    gated = ql.qlinear(x, q, s, None, b, INT8, 128, "silu", True, _config=int8_config(1, 4, 1, split, unroll=unroll))
    check_int8(gated, x, q, s, b, "silu", gated=True)


@needs_gpu
def test_int8_agrees_with_the_word_gemv():
    x, q, s, _ = int8_inputs(1, 4096, 4096, torch.bfloat16, seed=3)
    words = ql.candidate_configs(1, 4096, 4096, INT8, 128, False, 2, 132)[0]
    assert words["kernel"] == "gemv"
    a = ql.qlinear(x, q, s, None, None, INT8, 128, "identity", False, _config=words).float()
    b = ql.qlinear(x, q, s, None, None, INT8, 128, "identity", False, _config=int8_config(1, 4, 2, 4, unroll=2))
    assert ((a - b.float()).abs().max() / a.abs().max()).item() < 8e-3


def test_rejects_what_the_mma_gemv_cannot_do():
    cfg = mma_config(1, 4, 1)
    q, s, z = quant.quantize_weight(torch.randn(32, 256), INT4, 128)
    two = mma_config(1, 4, 1, token_tiles=2)
    for x, c, why in ((torch.randn(9, 256, dtype=torch.bfloat16), cfg, "at most 8 rows"),
                      (torch.randn(17, 256, dtype=torch.bfloat16), two, "at most 16 rows"),
                      (torch.randn(1, 256), cfg, "fp16 / bf16 x")):
        with pytest.raises(RuntimeError, match=why):
            ql.qlinear(x, q, s, z, None, INT4, 128, "identity", False, _config=c)
    q, s, z = quant.quantize_weight(torch.randn(32, 256), INT4, 64)
    with pytest.raises(RuntimeError, match="int4 groups"):
        ql.qlinear(torch.randn(1, 256, dtype=torch.bfloat16), q, s, z, None, INT4, 64, "identity", False, _config=cfg)


def test_candidates_only_where_the_kernel_applies(monkeypatch):
    monkeypatch.setattr(ql, "_INTERPRET", False)
    assert not ql._mma_configs(1, 14336, 4096, INT4, 128, False, 2, 132)  # the word GEMV wins M = 1
    mma = ql._mma_configs(2, 14336, 4096, INT4, 128, False, 2, 132)
    assert {(c["ROW_WARPS"], c["K_WARPS"], c["ROW_TILES"]) for c in mma} == set(ql.MMA_GEMV_TILES)
    assert all(c["BLOCK_N"] == 16 * c["ROW_WARPS"] * c["ROW_TILES"] and c["BLOCK_K"] == 128
               and c["num_warps"] == c["ROW_WARPS"] * c["K_WARPS"] for c in mma)
    assert all(c["SPLIT_K"] == 1 for c in mma if c["BLOCK_N"] <= 32)  # ≥ 448 programs: a wave without splitting
    assert {c["SPLIT_K"] for c in mma if c["BLOCK_N"] == 64} == {1, 2}  # 224 programs: split 2 to a wave
    down = ql._mma_configs(2, 4096, 14336, INT4, 128, False, 2, 132)  # 64-256 programs: also split
    assert {c["SPLIT_K"] for c in down} == {1, 2, 4, 8}
    # each tile split to half a wave and to a wave: 128 programs of 1 × 4 warps with two row tiles split 2 and 4
    m16 = ql._mma_configs(16, 4096, 14336, INT4, 128, False, 2, 132)
    assert {c["SPLIT_K"] for c in m16 if (c["ROW_WARPS"], c["K_WARPS"], c["ROW_TILES"]) == (1, 4, 2)} == {1, 2, 4}
    assert len({ql.autotune_cache.config_name(c) for c in m16}) == len(m16)
    assert all(c["ROW_TILES"] == 1 for c in ql._mma_configs(2, 8192, 2048, INT4, 128, True, 2, 132))
    assert {c["TOKEN_TILES"] for c in mma} == {1}
    two = ql._mma_configs(9, 14336, 4096, INT4, 128, False, 2, 132)
    assert two and all(c["TOKEN_TILES"] == 2 and c["BLOCK_M"] == 16 for c in two)
    for args in ((17, 4096, 4096, INT4, 128), (2, 4096, 4096, INT4, 64), (2, 4096, 4160, INT4, 128),
                 (17, 4096, 4096, "int8_weight_only", 128), (2, 4096, 4128, "int8_weight_only", 128),
                 (2, 4096, 4096, "w8a8_int8", 128)):
        assert not ql._mma_configs(*args, False, 2, 132)
    assert not ql._mma_configs(2, 4096, 4096, INT4, 128, False, 4, 132)  # fp32 x
    # in the tuner's lists after the word GEMVs (M ≤ 4), or after the skinny tiles and two word GEMVs (M > 4)
    for M in (2, 8, 16):
        kinds = [c["kernel"] for c in ql.candidate_configs(M, 4096, 4096, INT4, 128, False, 2, 132)]
        first = "gemv" if M == 2 else "gemm"
        assert kinds[0] == first and "mma" in kinds
        assert kinds.index("mma") > max(i for i, k in enumerate(kinds) if k == first)
    # int8 (K a multiple of 64) from two rows of x, each tile also with two 64-k steps a loop pass
    int8 = ql._mma_configs(2, 4096, 14336, "int8_weight_only", 128, False, 2, 132)
    assert all(c["BLOCK_K"] == 64 for c in int8) and {c.get("UNROLL", 1) for c in int8} == {1, 2}
    assert len(int8) == 2 * len([c for c in int8 if "UNROLL" not in c])
    assert {(c["ROW_WARPS"], c["K_WARPS"], c["ROW_TILES"]) for c in int8} == set(ql.MMA_GEMV_INT8_TILES)
    assert not ql._mma_configs(1, 4096, 14336, "int8_weight_only", 128, False, 2, 132)  # the word GEMV's
    monkeypatch.setattr(ql, "MMA_GEMV_INT8", False)
    assert not ql._mma_configs(2, 4096, 4096, "int8_weight_only", 128, False, 2, 132)
    monkeypatch.setattr(ql, "_INTERPRET", True)
    assert not ql._mma_configs(2, 14336, 4096, INT4, 128, False, 2, 132)


def test_the_norm_goes_into_the_mma_gemv_only_when_switched_on_and_unsplit(monkeypatch):
    assert not ql.MMA_GEMV_NORM  # off by default (session 20: the batch-8 step was slower with it)
    assert not ql.fuses_norm(mma_config(1, 4, 1), INT4, 4096)
    monkeypatch.setattr(ql, "MMA_GEMV_NORM", True)
    assert ql.fuses_norm(mma_config(1, 4, 1), INT4, 4096)
    assert not ql.fuses_norm(mma_config(1, 4, 1, split=2), INT4, 4096)
    x = torch.randn(2, 256, dtype=torch.bfloat16)
    assert ql._norm_weight_pairs(None, x) and ql._norm_weight_pairs(torch.ones(256, dtype=torch.bfloat16), x)
    assert not ql._norm_weight_pairs(torch.ones(256), x)  # fp32: not x's pairs
    assert not ql._norm_weight_pairs(torch.ones(257, dtype=torch.bfloat16)[1:], x)  # an odd offset


@needs_gpu
def test_a_compiled_int4_decoder_at_twelve_rows_runs_the_mma_gemv_in_inductors_code(monkeypatch):
    """The kernel as Inductor runs it: copied into the generated module (its PTX strings, helpers from three
    modules), launched with PDL inside a CUDA graph. Every quantized linear that the MMA GEMV serves is forced to it;
    the logits must match the same compile with the heuristic default kernels (no tuning, no forcing)."""
    from torch._functorch import config as functorch_config
    from torch._inductor import config as inductor_config
    from transformers import LlamaConfig, LlamaForCausalLM

    from accel.compiler.backend import last_report

    cfg = LlamaConfig(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=512)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).cuda().to(torch.bfloat16).eval()
    ids = torch.randint(0, 512, (12, 1), device="cuda")  # 12 rows of x: two token tiles
    monkeypatch.setenv("ACCEL_AUTOTUNE", "0")
    monkeypatch.setattr(ql, "MMA_GEMV_NORM", True)  # off by default; its code path inside Inductor's as well
    default_select = ql.select_config
    forced = []

    def select(x, qweight, scale, zero, bias, scheme, group_size, act, gated, norm=False, counters=None):
        M, n_rows, K = x.shape[0], qweight.shape[0], x.shape[1]
        mma = ql._mma_configs(M, n_rows // 2 if gated else n_rows, K, scheme, group_size, gated, x.element_size(),
                              132) if isinstance(M, int) else []
        forced.extend(mma[:1])
        return mma[0] if mma else default_select(x, qweight, scale, zero, bias, scheme, group_size, act, gated,
                                                 norm, counters)

    outs = {}
    with torch.no_grad(), inductor_config.patch(fx_graph_cache=False), \
            functorch_config.patch(enable_autograd_cache=False):
        for force in (False, True):
            if force:
                monkeypatch.setattr(ql, "select_config", select)
            torch._dynamo.reset()
            compiled = torch.compile(model, backend="accel", options={"quantize": INT4, "group_size": 128,
                                                                      "cudagraphs": True})
            for _ in range(3):  # warm-up, capture, replay
                torch.compiler.cudagraph_mark_step_begin()
                outs[force] = compiled(ids).logits.float().clone()
    assert forced, "no quantized linear took the MMA GEMV"
    code = "".join(open(path).read() for path in last_report().graphs[0].output_code)
    assert "_qgemv_mma_kernel" in code and "mma.sync.aligned.m16n8k16" in code
    assert qm.MUL_BF16.value in code  # the qkv and gate/up projections' norm weight, in the MMA GEMV's prologue
    # both runs hold the same quantized weights; the kernels sum in other orders and round once
    torch.testing.assert_close(outs[True], outs[False], rtol=2e-2, atol=2e-2)
