"""``accel.runtime.kernels.qlinear``: every kernel path of every scheme, forced through ``_config``, against
``quant.qlinear_reference`` on the same quantized weights (the tight "kernel oracle" of notes/testing.md §4: it
isolates kernel bugs from quantization loss, which is not measured here).

Without a GPU the kernels run on CPU tensors through the Triton interpreter (conftest sets TRITON_INTERPRET=1),
hence tiny tiles and fp32 / fp16 activations (the interpreter has no bf16 arithmetic). fp8 runs faithfully
there: W8A8 quantizes x with exact fp32 arithmetic (the interpreter's fp32→fp8 cast, which mis-rounds, only
sees values already on the fp8 grid) and the interpreter's fp8 tl.dot multiplies exactly in fp32. On a GPU the
same tests run compiled, bf16 included, with the fp8 MMA tolerance below.
"""
import math

import pytest
import torch
import triton
import triton.language as tl
from hypothesis import given
from hypothesis import strategies as st

from accel.runtime import quant, reference
from accel.runtime.kernels import linear as kl
from accel.runtime.kernels import qlinear as ql
from accel.runtime.kernels import qlinear_kernels as qk
from tests.runtime.poison import poison_allocations

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
LOW_PRECISION = [torch.float16] + ([torch.bfloat16] if DEVICE == "cuda" else [])
SCHEMES = quant.SCHEMES
W8A8 = ("w8a8_int8", "w8a8_fp8")

# Small tiles so that odd shapes span several blocks; GEMV tiles are wide because the interpreter pays per
# program. BLOCK_K 32 divides every int4 group size and meets the 8-bit tl.dot minimum.
CONFIGS = {
    "gemv": {"kernel": "gemv", "BLOCK_M": 4, "BLOCK_N": 16, "BLOCK_K": 32, "SPLIT_K": 1, "num_warps": 4,
             "num_stages": 1},
    "gemv-sub2": {"kernel": "gemv", "BLOCK_M": 8, "BLOCK_N": 16, "BLOCK_K": 64, "SPLIT_K": 1, "SUB": 2,
                  "num_warps": 4, "num_stages": 1},
    "gemv-splitk3": {"kernel": "gemv", "BLOCK_M": 4, "BLOCK_N": 16, "BLOCK_K": 32, "SPLIT_K": 3, "num_warps": 4,
                     "num_stages": 1},
    # the GEMV's tile axes in the other order (the chunk axis moved to the front, or back)
    "gemv-reordered": {"kernel": "gemv", "BLOCK_M": 4, "BLOCK_N": 16, "BLOCK_K": 64, "SPLIT_K": 2, "SUB": 2,
                       "CHUNKS_FIRST": not ql.CHUNKS_FIRST, "num_warps": 4, "num_stages": 1},
    "skinny": {"kernel": "gemm", "BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 32, "SPLIT_K": 1, "GROUP_M": 1,
               "num_warps": 4, "num_stages": 2},
    "skinny-splitk2": {"kernel": "gemm", "BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 32, "SPLIT_K": 2, "GROUP_M": 1,
                       "num_warps": 4, "num_stages": 2},
    "tiled-grouped": {"kernel": "gemm", "BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 32, "SPLIT_K": 1, "GROUP_M": 2,
                      "num_warps": 4, "num_stages": 2},
    # grouped tiles with K split as well (_split_to_fill: too few tiles for the SMs)
    "tiled-splitk2": {"kernel": "gemm", "BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 32, "SPLIT_K": 2, "GROUP_M": 2,
                      "num_warps": 4, "num_stages": 2},
    # weight-only MMA with the weight tile first (outᵀ = w xᵀ); W8A8 ignores SWAP
    "skinny-swap": {"kernel": "gemm", "BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 32, "SPLIT_K": 2, "GROUP_M": 1,
                    "num_warps": 4, "num_stages": 2, "SWAP": True},
    "tiled-swap": {"kernel": "gemm", "BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 32, "SPLIT_K": 1, "GROUP_M": 2,
                   "num_warps": 4, "num_stages": 2, "SWAP": True},
    "cublas": ql.CUBLAS,
}
GEMV_PATHS = [n for n, c in CONFIGS.items() if c["kernel"] == "gemv"]
# (M, N, K): odd sizes, K not a multiple of BLOCK_K (130: int8 weight-only falls back to bytes, K % 4 != 0);
# int4 shapes add the group size, which must divide K. The GEMV is for small M: it gets the first three.
SHAPES = [(1, 24, 136), (3, 40, 64), (17, 24, 130), (33, 40, 72)]
INT4_SHAPES = [(1, 24, 128, 32), (3, 40, 64, 64), (17, 24, 256, 128), (33, 40, 96, 32)]


def paths(scheme: str) -> list[str]:
    return [n for n in CONFIGS if n != "cublas" or scheme in ql.WEIGHT_ONLY]


def tolerance(scheme: str, dtype: torch.dtype, K: int) -> tuple[float, float]:
    """(rtol, atol) against the reference on the same quantized inputs, outputs O(1)."""
    # fp32 sums in another order (and association) than the reference: the error grows like K·2^-24 times
    # Σ|x·w| = O(√K) for these inputs; the GEMV's offset decoding (Σ x·f - c·Σ x, f ∈ [1, 2)) sums terms a
    # few times larger than x·w. 1e-6·K is loose for that yet far below indexing or masking bugs (errors O(1)).
    summation = 1e-6 * K
    if scheme == "w8a8_int8":
        # integer products are exact and the scales are applied in the reference's order: only split-K's fp32
        # partial sums and the activation's last bits differ (test_w8a8_int8_is_exact checks the rest)
        summation = 1e-6
    if scheme == "w8a8_fp8" and DEVICE == "cuda":
        # Hopper's fp8 MMA adds products with a ~14-bit accumulator (by default for the whole K, here ≤ 256
        # products): |error| ≲ √K·2^-14 of Σ|x·w|, with margin
        summation = 1e-2
    # one output rounding (2^-11 fp16, 2^-8 bf16, relative) and, for the tl.dot and cuBLAS paths of weight-only,
    # the weight rounded to x's dtype (√K·2^-11 |x||w| ≈ the same size again) plus cuBLAS's second rounding
    rounding = {torch.float32: 0.0, torch.float16: 4e-3, torch.bfloat16: 3e-2}[dtype]
    return rounding + summation, rounding + summation


def make_inputs(scheme, M, N, K, dtype=torch.float32, group_size=32, symmetric=False, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(N, K, generator=g) / math.sqrt(K)  # outputs O(1) in every dtype
    # int4 scales and zero points are kept in the weight's dtype: give them x's (fp16 on CPU)
    w_dtype = dtype if scheme == "int4_weight_only" else torch.float32
    qw, scale, zero = quant.quantize_weight(w.to(DEVICE, w_dtype), scheme, group_size, symmetric)
    x = torch.randn(M, K, generator=g).to(DEVICE, dtype)
    b = torch.randn(N, generator=g).to(DEVICE, dtype) if bias else None
    return x, qw, scale, zero, b


def run(x, qw, scale, zero, b, scheme, group_size=32, activation="identity", gated=False, config=None):
    return ql.qlinear(x, qw, scale, zero, b, scheme, group_size, activation, gated, _config=config)


def check(out, x, qw, scale, zero, b, scheme, group_size=32, activation="identity", gated=False):
    ref = quant.qlinear_reference(x, qw, scale, zero, b, scheme, group_size, activation, gated)
    assert out.shape == ref.shape and out.dtype == x.dtype and out.is_contiguous()
    rtol, atol = tolerance(scheme, x.dtype, x.shape[1])
    torch.testing.assert_close(out.double(), ref.double(), rtol=rtol, atol=atol)


def shapes_for(scheme: str, path: str):
    shapes = INT4_SHAPES if scheme == "int4_weight_only" else [(*s, 32) for s in SHAPES]
    return shapes[:3] if CONFIGS[path]["kernel"] == "gemv" else shapes


CASES = [(s, p, shape) for s in SCHEMES for p in paths(s) for shape in shapes_for(s, p)]


@pytest.mark.parametrize("scheme,path,shape", CASES, ids=[f"{s}-{p}-{'x'.join(map(str, sh))}" for s, p, sh in CASES])
def test_each_path_fp32(scheme, path, shape):
    M, N, K, G = shape
    x, qw, scale, zero, b = make_inputs(scheme, M, N, K, group_size=G)
    check(run(x, qw, scale, zero, b, scheme, G, config=CONFIGS[path]), x, qw, scale, zero, b, scheme, G)


@pytest.mark.parametrize("dtype", LOW_PRECISION, ids=str)
@pytest.mark.parametrize("scheme,path", [(s, p) for s in SCHEMES for p in paths(s)])
def test_each_path_low_precision_without_bias(scheme, path, dtype):
    x, qw, scale, zero, b = make_inputs(scheme, 5, 40, 128, dtype, bias=False)
    check(run(x, qw, scale, zero, None, scheme, config=CONFIGS[path]), x, qw, scale, zero, None, scheme)


@pytest.mark.parametrize("symmetric", [False, True], ids=["asymmetric", "symmetric"])
@pytest.mark.parametrize("group_size", quant.GROUP_SIZES)
@pytest.mark.parametrize("path", ["gemv", "skinny", "cublas"])
def test_int4_group_sizes_and_zero_points(path, group_size, symmetric):
    x, qw, scale, zero, b = make_inputs("int4_weight_only", 3, 24, 256, torch.float16, group_size, symmetric)
    assert (zero is None) == symmetric
    out = run(x, qw, scale, zero, b, "int4_weight_only", group_size, config=CONFIGS[path])
    check(out, x, qw, scale, zero, b, "int4_weight_only", group_size)


@pytest.mark.parametrize("activation", ["silu", "gelu_tanh", "relu2"])
@pytest.mark.parametrize("scheme,path", [(s, p) for s in SCHEMES
                                         for p in ("gemv-splitk3", "skinny", "skinny-swap", "cublas") if p in paths(s)])
def test_gated_activation_epilogue(scheme, path, activation):
    # weight rows [0, N) are the gate and [N, 2N) the up projection, each with its own scales (and biases)
    x, qw, scale, zero, b = make_inputs(scheme, 3, 48, 128)
    out = run(x, qw, scale, zero, b, scheme, activation=activation, gated=True, config=CONFIGS[path])
    assert out.shape == (3, 24)
    check(out, x, qw, scale, zero, b, scheme, activation=activation, gated=True)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("path", ["gemv", "tiled-grouped"])
@pytest.mark.parametrize("layout", ["strided", "transposed"])
def test_non_contiguous_x(scheme, path, layout):
    _, qw, scale, zero, b = make_inputs(scheme, 6, 24, 64)
    base = torch.randn(6, 128, device=DEVICE) if layout == "strided" else torch.randn(64, 6, device=DEVICE)
    x = base[:, ::2] if layout == "strided" else base.t()
    assert not x.is_contiguous()
    check(run(x, qw, scale, zero, b, scheme, config=CONFIGS[path]), x, qw, scale, zero, b, scheme)


def poison_everything(monkeypatch) -> list[tuple]:
    """poison_allocations, extended to the quantized activations: int8 buffers start as -128 (never a code:
    the codes are clamped to ±127), float8 ones as NaN."""
    allocs = poison_allocations(monkeypatch)
    poisoned_float = kl._alloc

    def poisoned(shape, dtype, device):
        if dtype == torch.int8:
            allocs.append(tuple(shape))
            return torch.full(shape, -128, dtype=dtype, device=device)
        return poisoned_float(shape, dtype, device)

    monkeypatch.setattr(kl, "_alloc", poisoned)
    return allocs


@pytest.mark.parametrize("scheme,path", [(s, p) for s in SCHEMES for p in ("gemv", "skinny", "cublas")
                                         if p in paths(s)])
def test_outputs_and_workspaces_fully_written(scheme, path, monkeypatch):
    # every buffer the launchers allocate (output, split-K workspace, quantized x and its scales, dequantized
    # weight) starts as NaN / -128: any element left unwritten, or an empty split's partial never stored,
    # shows up in the result. K = 128 in 64-steps over 4 splits: the last two splits are empty.
    allocs = poison_everything(monkeypatch)
    x, qw, scale, zero, b = make_inputs(scheme, 17, 24, 128, group_size=64)
    cfg = CONFIGS[path] if path == "cublas" else {**CONFIGS[path], "SPLIT_K": 4, "BLOCK_K": 64}
    check(run(x, qw, scale, zero, b, scheme, 64, config=cfg), x, qw, scale, zero, b, scheme, 64)
    if path != "cublas":
        assert (4, 17, 24) in allocs
    if path == "skinny" and scheme in W8A8:
        assert (17, 128) in allocs and (17,) in allocs  # quantized x and its per-token scales
    if path == "cublas":
        assert (24, 128) in allocs  # the dequantized weight


def tie_heavy_x(M: int, K: int, dtype) -> torch.Tensor:
    """Rows whose quantization has exact ties: max|x| = 127 (int8 scale 1) with half-integers, or 448 (fp8
    scale 1) with midpoints of the e4m3 grid (17 between 16 and 18, 1.0625, 2^-10 below the smallest
    subnormal); plus an all-zero row (scale clamped to 1e-12 / QMAX)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(M, K, generator=g) * 20
    x[0, :6] = torch.tensor([127.0, 0.5, 1.5, -2.5, 126.5, -0.5])
    x[1, :7] = torch.tensor([448.0, 17.0, -1.0625, 2.0**-10, -3 * 2.0**-10, 104.0, -2.0**-12])  # last: -0.0
    x[2] = 0.0
    return x.to(DEVICE, dtype)


@pytest.mark.parametrize("max_k", [2048, 16], ids=["one-pass", "two-pass"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("scheme", W8A8)
def test_activation_quantization_matches_reference_exactly(scheme, dtype, max_k, monkeypatch):
    # rows up to QUANTIZE_ROW_MAX_K[scheme] are read once into registers, longer ones in two passes of
    # QUANTIZE_BLOCK_K (here 256: five steps of the 1100 columns, the last one partly masked)
    monkeypatch.setitem(ql.QUANTIZE_ROW_MAX_K, scheme, max_k)
    monkeypatch.setattr(ql, "QUANTIZE_BLOCK_K", 256)
    x = tie_heavy_x(5, 1100, dtype)
    qx, sx = ql.quantize_rows(x, scheme)
    ref_q, ref_s = quant.quantize_activation(x, scheme)
    assert qx.dtype == ref_q.dtype and torch.equal(sx, ref_s)
    assert torch.equal(qx.view(torch.uint8), ref_q.view(torch.uint8))  # bit patterns: -0.0 and NaN included


@triton.jit
def _div_by_scale_probe(x_ptr, s_ptr, out_ptr, N, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    s = tl.load(s_ptr + tl.program_id(0) + tl.arange(0, 1))
    x = tl.load(x_ptr + offs, mask=offs < N, other=0.0)
    q = qk._div_by_scale(x, s, qk._scale_rcp(s))
    tl.store(out_ptr + tl.program_id(0) * N + offs, q, mask=offs < N)


def test_division_by_the_activation_scale_is_correctly_rounded():
    # _div_by_scale (a reciprocal a row and Markstein's fma correction) against IEEE division, for every finite
    # bf16 value and random fp32 values as x, over scales from the clamp (1e-12 / 448) to 1e30, wherever
    # |x| ≤ 448·scale (x ≤ the row's max): the fp32 quotient bit for bit from 2^-50 up, and the fp8 code and
    # the sign everywhere (below, x·2^-24 may be subnormal and the correction inexact: such quotients round to
    # zero codes of x's sign)
    g = torch.Generator().manual_seed(3)
    every_bf16 = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16).view(torch.bfloat16).float()
    x = torch.cat([every_bf16[torch.isfinite(every_bf16)], torch.randn(2**14, generator=g) * 10.0 ** torch.randint(
        -30, 30, (2**14,), generator=g).float()])
    s = torch.cat([torch.tensor([1e-12 / 448, 1.0, 1 / 448, 2.0**-20]),
                   torch.exp(torch.empty(60).uniform_(math.log(1e-12 / 448), math.log(1e30), generator=g))])
    x, s = x.to(DEVICE), s.float().to(DEVICE)
    out = torch.empty(len(s), len(x), device=DEVICE)
    _div_by_scale_probe[(len(s),)](x, s, out, len(x), BLOCK=triton.next_power_of_2(len(x)))
    ref = x[None, :] / s[:, None]
    seen = x[None, :].abs() <= 448 * s[:, None]
    normal = seen & (ref.abs() >= 2.0**-50)
    assert normal.sum() > 10**6 and (seen & ~normal & (x[None, :] != 0)).sum() > 10**5
    assert torch.equal(out[normal].view(torch.int32), ref[normal].view(torch.int32))
    fp8 = torch.float8_e4m3fn
    assert torch.equal(out[seen].to(fp8).view(torch.uint8), ref[seen].to(fp8).view(torch.uint8))
    assert torch.equal(out[seen].signbit(), ref[seen].signbit())  # -0.0 included


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("path", ["gemv", "gemv-sub2", "skinny", "tiled-grouped"])
def test_w8a8_int8_is_exact(path, dtype):
    # int32 accumulation is exact and the kernels scale in the reference's order, (acc·s_x)·s_w: without a
    # bias (which a GPU may fuse into that product with one rounding) the outputs are bit-identical
    _, qw, scale, _, _ = make_inputs("w8a8_int8", 5, 40, 72, bias=False)
    x = tie_heavy_x(5, 72, dtype)
    out = run(x, qw, scale, None, None, "w8a8_int8", config=CONFIGS[path])
    assert torch.equal(out, quant.qlinear_reference(x, qw, scale, None, None, "w8a8_int8", 32))


@pytest.mark.parametrize("scheme", W8A8)
def test_w8a8_gemv_quantizes_ties_like_the_reference(scheme):
    # the GEMV quantizes x itself (max|x| over all of K, also across split-K programs)
    _, qw, scale, _, b = make_inputs(scheme, 5, 24, 72)
    x = tie_heavy_x(5, 72, torch.float32)
    for path in ("gemv", "gemv-splitk3"):
        check(run(x, qw, scale, None, b, scheme, config=CONFIGS[path]), x, qw, scale, None, b, scheme)


@pytest.mark.parametrize("scheme,symmetric", [("int8_weight_only", True), ("int4_weight_only", True),
                                              ("int4_weight_only", False)])
def test_dequantize_matches_reference_exactly(scheme, symmetric):
    _, qw, scale, zero, _ = make_inputs(scheme, 1, 40, 192, group_size=64, symmetric=symmetric)
    w = ql.dequantize(qw, scale, zero, scheme, 64, torch.float32)
    assert torch.equal(w, quant.dequantize_weight(qw, scale, zero, scheme, 64))


def record_launches(monkeypatch) -> list[tuple[str, dict]]:
    launched = []

    def record(kernel):
        class Launcher:
            def __getitem__(self, grid):
                return lambda *args, **kwargs: launched.append((kernel.__name__, kwargs))

        return Launcher()

    monkeypatch.setattr(ql, "wrap_triton", record)
    monkeypatch.setattr(kl, "wrap_triton", record)
    return launched


@pytest.mark.parametrize("scheme", W8A8)
def test_w8a8_launch_structure(scheme, monkeypatch):
    # decode quantizes x inside the GEMV (one launch); tiles quantize it first, into int8 / fp8; the fp8 MMA
    # keeps its own accumulator by default (FP8_PROMOTE 0), else promotes to fp32 in whole tile steps
    launched = record_launches(monkeypatch)
    x, qw, scale, _, b = make_inputs(scheme, 2, 24, 256)
    run(x, qw, scale, None, b, scheme, config=CONFIGS["gemv"])
    assert [name for name, _ in launched] == ["_qgemv_bytes_kernel"]
    launched.clear()
    cfg = {**CONFIGS["skinny"], "BLOCK_K": 128}
    run(x, qw, scale, None, b, scheme, config=cfg)
    assert [name for name, _ in launched] == ["_quantize_rows_kernel", "_qgemm_kernel"]
    assert launched[1][1]["FP8_PROMOTE"] == 0
    if scheme == "w8a8_fp8":
        monkeypatch.setattr(ql, "FP8_PROMOTE_K", 512)
        launched.clear()
        run(x, qw, scale, None, b, scheme, config=cfg)
        assert launched[1][1]["FP8_PROMOTE"] == 4


@pytest.mark.parametrize("gated", [False, True], ids=["plain", "gated"])
@pytest.mark.parametrize("path", ["skinny", "skinny-splitk2"])
@pytest.mark.parametrize("promote_k", [None, 32, 64, 96])
def test_fp8_promotion_intervals(promote_k, path, gated, monkeypatch):
    # K = 11 tile steps of 32: no promotion (the default), and intervals of 1, 2 and 3 steps that end inside the
    # loop, at its end and before it (a partial last interval, added after the loop); split-K counts steps from
    # its own slice start
    monkeypatch.setattr(ql, "FP8_PROMOTE_K", promote_k)
    x, qw, scale, zero, b = make_inputs("w8a8_fp8", 3, 48, 352)
    out = run(x, qw, scale, zero, b, "w8a8_fp8", gated=gated, config=CONFIGS[path])
    check(out, x, qw, scale, zero, b, "w8a8_fp8", gated=gated)


def test_tiled_candidates_split_k_only_where_tiles_leave_sms_idle():
    # M = 128: a down projection's N = 4096 makes 32 tiles of 128×128 on 132 SMs, so split variants follow the
    # unsplit tiles (the heuristic default stays first), each doubled until it fills over half the SMs; at
    # M = 2048 the tiles fill the SMs (the 128×256 ones 128 of 132) and none is added
    few = [c for c in ql.candidate_configs(128, 4096, 14336, "w8a8_fp8", 128, False, 2, 132) if c != ql.SCALED_MM]
    unsplit = [c for c in few if c["SPLIT_K"] == 1]
    split = [c for c in few if c["SPLIT_K"] > 1]
    assert few[0] == unsplit[0] and len(split) == 4 and few.index(split[0]) > few.index(unsplit[-1])
    for c in split:
        tiles = -(-128 // c["BLOCK_M"]) * -(-4096 // c["BLOCK_N"])
        assert 2 * tiles * c["SPLIT_K"] > 132 >= tiles * c["SPLIT_K"]
        assert {**c, "SPLIT_K": 1} in unsplit
    assert all(c["SPLIT_K"] == 1 for c in ql.candidate_configs(2048, 4096, 14336, "w8a8_fp8", 128, False, 2, 132)
               if c != ql.SCALED_MM)


def test_weight_only_gemv_reads_words(monkeypatch):
    # int4 and int8 (K % 4 = 0) decode whole int32 words; int8 with K % 4 != 0 falls back to bytes
    launched = record_launches(monkeypatch)
    for scheme, K in [("int4_weight_only", 64), ("int8_weight_only", 64), ("int8_weight_only", 66)]:
        x, qw, scale, zero, b = make_inputs(scheme, 1, 8, K)
        run(x, qw, scale, zero, b, scheme, config=CONFIGS["gemv"])
    assert [name for name, _ in launched] == ["_qgemv_words_kernel"] * 2 + ["_qgemv_bytes_kernel"]


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("M", [1, 5, 70])
def test_every_generated_candidate(scheme, M):
    # the configs the tuner may pick (block sizes clamped to this small problem) all compute the same thing
    N, K = 24, 128
    x, qw, scale, zero, b = make_inputs(scheme, M, N, K)
    cands = ql.candidate_configs(M, N, K, scheme, 32, False, 4, sms=2)
    assert cands and all(ql.keep_config(c, scheme, False, 4) for c in cands)
    for cfg in cands:
        check(run(x, qw, scale, zero, b, scheme, config=cfg), x, qw, scale, zero, b, scheme)


def test_heuristic_default(monkeypatch):
    # without measurement (no CUDA, or ACCEL_AUTOTUNE=0) the first candidate runs
    monkeypatch.setenv("ACCEL_AUTOTUNE", "0")
    for scheme, M, kernel in [("int4_weight_only", 2, "gemv"), ("w8a8_fp8", 2, "gemv"), ("w8a8_int8", 4, "gemm"),
                              ("int8_weight_only", 20, "gemm")]:
        x, qw, scale, zero, b = make_inputs(scheme, M, 24, 64)
        cfg = ql.select_config(x, qw, scale, zero, b, scheme, 32, 0, False)
        assert cfg["kernel"] == kernel
        check(run(x, qw, scale, zero, b, scheme), x, qw, scale, zero, b, scheme)


def test_symbolic_m_takes_the_general_gemm_without_guards():
    from torch._dynamo.source import ConstantSource
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import ShapeEnv

    env = ShapeEnv()
    with FakeTensorMode(shape_env=env):
        m = env.create_symintnode(env.create_symbol(8, source=ConstantSource("m")), hint=8)
        x = torch.empty(m, 64)
        for scheme in SCHEMES:
            qw, scale, zero = quant.quantize_weight(torch.empty(48, 64), scheme, 32)
            cfg = ql.select_config(x, qw, scale, zero, None, scheme, 32, 4, True)
            assert cfg == ql.general_config(scheme, 32, 24, 64) and cfg["kernel"] == "gemm"
    assert not env.guards  # a guard on M would recompile for every new batch size


# Llama-3 projections (N, K), as in the linear tests, plus the 8B MLP.
LLAMA_SHAPES = [(3072, 2048), (2048, 8192), (128256, 2048), (6144, 4096), (28672, 4096), (4096, 14336),
                (14336, 4096)]


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("M", [1, 2, 4, 16, 64, 256, 2048])
@pytest.mark.parametrize("N,K", LLAMA_SHAPES)
def test_candidates_for_llama_shapes(scheme, M, N, K):
    cands = ql.candidate_configs(M, N, K, scheme, 128, False, 2, sms=132)
    # each is measured once per shape (then cached): keep the first compile short. The most: 18, for an int8 GEMV
    # with K = 8192, whose narrow tiles are also tried unsplit (session 12); the tensor-core GEMVs add their tiles,
    # each unsplit and split, at 2 ≤ M ≤ 16 (compiled runs only)
    assert 2 <= len(cands) <= 18 + len(ql._mma_configs(M, N, K, scheme, 128, False, 2, 132))
    assert (ql.CUBLAS in cands) == (scheme in ql.WEIGHT_ONLY)
    assert (ql.SCALED_MM in cands) == (scheme == "w8a8_fp8" and M >= ql.SCALED_MM_MIN_M)
    gemv_max = ql.GEMV_MAX_M["weight_only" if scheme in ql.WEIGHT_ONLY else "w8a8"]
    first = "gemv" if M <= gemv_max else "gemm" if M <= ql.CUBLAS_FIRST_M or scheme in W8A8 else "cublas"
    assert cands[0]["kernel"] == first
    for c in cands:
        assert ql.keep_config(c, scheme, False, 2)
        if c["kernel"] in ("cublas", "scaled_mm"):
            continue
        assert c["BLOCK_K"] % 32 == 0 or scheme in ql.WEIGHT_ONLY
        if scheme == "int4_weight_only":  # an int4 step (tl.dot) or thread chunk (GEMV) lies in one group
            assert 128 % (c["BLOCK_K"] if c["kernel"] in ("gemm", "mma") else 8 * c["SUB"]) == 0
        if c["SPLIT_K"] > 1:
            # at least one BLOCK_K step per split; split only as far as needed to fill the SMs
            assert K >= c["SPLIT_K"] * c["BLOCK_K"]
            programs = -(-N // c["BLOCK_N"]) * -(-M // c["BLOCK_M"])
            assert programs * c["SPLIT_K"] < 2 * 4 * 132
            if c["kernel"] == "mma":
                # the tensor-core GEMV's own rule (compiled runs only): K split to half a wave and to a wave of
                # programs (``qlinear.MMA_SPLIT_PROGRAMS`` a SM), the workspace not bounded
                base = {**c, "SPLIT_K": 1}
                assert c["SPLIT_K"] in {ql._split_to(base, M, N, K, p * 132)["SPLIT_K"] for p in ql.MMA_SPLIT_PROGRAMS}
            elif M <= ql.SKINNY_MAX_M:
                # skinny splits: fp32 workspace traffic (8 B per split, row and column) within 1/8 of the weight
                # bytes, or (_split_to_wave) the split that first makes a wave of 4 programs a SM. Tiled ones (M > 64)
                # split only tiles that leave over half the SMs idle, then up to one wave
                # (test_tiled_candidates_split_k_only_where_tiles_leave_sms_idle)
                wave = (2 * programs * c["SPLIT_K"] > 4 * 132 or K < 4 * c["SPLIT_K"] * c["BLOCK_K"]
                        or c["SPLIT_K"] == ql.kl.MAX_SPLIT_K)
                assert 8 * c["SPLIT_K"] * M <= K * ql._weight_bytes(scheme) / 8 or wave
            else:
                assert 2 * programs <= 132 < 2 * programs * c["SPLIT_K"]


def test_rejects_bad_inputs():
    x, qw, scale, zero, b = make_inputs("int4_weight_only", 3, 8, 64)
    with pytest.raises(RuntimeError, match="qlinear"):
        run(x[:, :32], qw, scale, zero, b, "int4_weight_only")  # K mismatch
    with pytest.raises(RuntimeError, match="qlinear"):
        run(x, qw.view(torch.int8), scale, zero, b, "int4_weight_only")  # not packed uint8
    with pytest.raises(RuntimeError, match="qlinear"):
        run(x, qw, scale, zero, b, "int4_weight_only", group_size=48)
    with pytest.raises(RuntimeError, match="groups"):  # a tl.dot step across two int4 groups
        run(x, qw, scale, zero, b, "int4_weight_only", config={**CONFIGS["skinny"], "BLOCK_K": 64})
    x8, qw8, scale8, _, _ = make_inputs("w8a8_int8", 3, 8, 64)
    with pytest.raises(RuntimeError, match="qlinear"):
        run(x8, qw8, scale8, scale8, None, "w8a8_int8")  # no zero point outside int4
    with pytest.raises(ValueError, match="scheme"):
        run(x8, qw8, scale8, None, None, "int2")


@given(
    M=st.integers(1, 12), N=st.integers(1, 24), k_steps=st.integers(1, 3),
    scheme=st.sampled_from(SCHEMES), path=st.sampled_from(sorted(CONFIGS)), split=st.sampled_from([1, 2, 3]),
    bias=st.booleans(), strided_x=st.booleans(), gated=st.booleans(), odd_k=st.integers(0, 7),
)
def test_property_any_small_shape(M, N, k_steps, scheme, path, split, bias, strided_x, gated, odd_k):
    int4 = scheme == "int4_weight_only"
    if path == "cublas" and scheme not in ql.WEIGHT_ONLY:
        path = "skinny"
    K = 32 * k_steps if int4 else 32 * k_steps - odd_k  # int4: whole groups of 32; else any K
    n_rows = 2 * N if gated else N
    x, qw, scale, zero, b = make_inputs(scheme, M, n_rows, K, bias=bias, seed=M * 10007 + N * 101 + K)
    if strided_x:
        x = torch.zeros(M, 2 * K, dtype=x.dtype, device=DEVICE)[:, ::2].copy_(x)  # same values, strides (2K, 2)
    cfg = CONFIGS[path] if path == "cublas" else {**CONFIGS[path], "SPLIT_K": split}
    out = run(x, qw, scale, zero, b, scheme, activation="silu" if gated else "identity", gated=gated, config=cfg)
    check(out, x, qw, scale, zero, b, scheme, activation="silu" if gated else "identity", gated=gated)


@pytest.mark.parametrize("M,K,group", [(1, 48, 32), (17, 200, 64), (3, 576, 128)])  # 576: SmolLM2's hidden size
def test_int4_partial_last_group(M, K, group):
    """K not a multiple of the group: the packed weight covers whole (zero-padded) groups and x is padded to match."""
    x, qw, scale, zero, b = make_inputs("int4_weight_only", M, 24, K, group_size=group)
    assert qw.shape[1] * 2 > K
    check(run(x, qw, scale, zero, b, "int4_weight_only", group), x, qw, scale, zero, b, "int4_weight_only", group)


PDL_CASES = [(s, *shape) for s in SCHEMES for shape in [(1, 24, 64, 32), (3, 40, 128, 64)]
             + ([] if s == "int4_weight_only" else [(1, 8, 130, 32)])]


@pytest.mark.parametrize("scheme,M,N,K,G", PDL_CASES)
@pytest.mark.parametrize("path", ["gemv", "gemv-splitk3", "gemv-reordered"])
@pytest.mark.parametrize("gated", [False, True])
def test_pdl_gemv_gives_the_same_bits(scheme, M, N, K, G, path, gated, request):
    """With PDL the weight-only GEMV loads its first word tile before waiting for x and does that step outside the
    loop (the W8A8 GEMV only waits first): the output must be bit-identical to the plain kernel's. K = 64 with
    three splits of 32 leaves the last split empty; int8's K = 130 takes the byte GEMV."""
    x, qw, scale, zero, b = make_inputs(scheme, M, 2 * N if gated else N, K, group_size=G, seed=5)
    act = "silu" if gated else "identity"
    plain = run(x, qw, scale, zero, b, scheme, G, act, gated, config=CONFIGS[path])
    check(plain, x, qw, scale, zero, b, scheme, G, act, gated)
    request.getfixturevalue("compiled_for_pdl")
    assert torch.equal(run(x, qw, scale, zero, b, scheme, G, act, gated, config=CONFIGS[path]), plain)


@pytest.mark.parametrize("scheme,M,N,K,G", PDL_CASES)
@pytest.mark.parametrize("tiles", [0, 2], ids=["loop", "tiles"])
def test_pdl_early_trigger_gives_the_same_bits(scheme, M, N, K, G, tiles, request):
    """The ``pdl_early_trigger`` experiment moves launch_dependents to the GEMV's first line (from after its K loop,
    or after its last tile with TILES); nothing else moves, so the bits are those of PDL's usual trigger."""
    if tiles and (scheme not in ql.WEIGHT_ONLY or K % 4):
        pytest.skip("TILES is a word-GEMV switch")
    cfg = {**CONFIGS["gemv-sub2"], "BLOCK_K": K, "TILES": tiles} if tiles else CONFIGS["gemv"]
    x, qw, scale, zero, b = make_inputs(scheme, M, 2 * N, K, group_size=G, seed=6)
    request.getfixturevalue("compiled_for_pdl")
    usual = run(x, qw, scale, zero, b, scheme, G, "silu", True, config=cfg)
    check(usual, x, qw, scale, zero, b, scheme, G, "silu", True)
    request.getfixturevalue("compiled_for_early_pdl")
    assert ql.early_trigger(x.device, (1, 1, 1), 1, 1)  # every GEMV launch triggers first thing
    assert torch.equal(run(x, qw, scale, zero, b, scheme, G, "silu", True, config=cfg), usual)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_tuner_times_decode_candidates_in_a_pdl_chain(scheme, monkeypatch, request):
    """Compiled for PDL, the tuner times a decode candidate as ACCEL_TUNE_CHAIN launches, each on its own copy of
    the weights and launched with the PDL attribute (``utils.pdl_chain``); each launch computes its own weights'
    product, and the tuning key names the chain. Off PDL, or beyond decode rows, each candidate runs alone."""
    from accel.runtime import autotune_cache
    from accel.runtime.kernels import utils

    x, qw, scale, zero, b = make_inputs(scheme, 1, 48, 64, seed=9)
    assert ql.chain_length(x) == 1  # no PDL
    request.getfixturevalue("compiled_for_pdl")
    monkeypatch.setenv("ACCEL_TUNE_CHAIN", "3")
    assert ql.chain_length(x) == 3 and ql.chain_length(x.new_zeros(ql.MMA_GEMV_MAX_M + 1, 64)) == 1
    seen, real = [], ql.launch

    def spy(cfg, x, q, s, z, b, *args, **kwargs):
        out = real(cfg, x, q, s, z, b, *args, **kwargs)
        seen.append((utils.launch_options(True), out, (x, q, s, z, b)))
        return out

    monkeypatch.setattr(ql, "launch", spy)
    run_chain = ql._measurement_inputs(x, qw, scale, zero, b, scheme, 32, chain=3)(CONFIGS["gemv"], 0, False)
    assert run_chain.launches == 3 and len(run_chain()) == 3 and len(seen) == 3
    assert all(opts == {"launch_pdl": True} for opts, _, _ in seen) and utils.launch_options(True) == {}
    assert len({inputs[1].data_ptr() for _, _, inputs in seen}) == 3  # three copies of the weights
    for _, out, inputs in seen:
        check(out, *inputs, scheme)
    seen.clear()
    alone = ql._measurement_inputs(x, qw, scale, zero, b, scheme, 32)(CONFIGS["gemv"], 0, False)
    alone()
    assert not hasattr(alone, "launches") and [opts for opts, _, _ in seen] == [{}]
    keys = []
    monkeypatch.setattr(autotune_cache, "tune", lambda key, cands, *a, **k: keys.append(key) or cands[0])
    if DEVICE == "cuda":  # (off CUDA select_config takes the first candidate before it makes a key)
        ql.select_config(x, qw, scale, zero, b, scheme, 32, 0, False)
        monkeypatch.setenv("ACCEL_TUNE_CHAIN", "1")
        ql.select_config(x, qw, scale, zero, b, scheme, 32, 0, False)
        assert len(keys) == 2 and keys[0] != keys[1]


@pytest.mark.parametrize("scheme", ql.WEIGHT_ONLY)
@pytest.mark.parametrize("path", ["gemv", "gemv-reordered"])
@pytest.mark.parametrize("even_k", [True, False], ids=["even-k", "masked-k"])
def test_pdl_gemv_with_norm_gives_the_same_bits(scheme, path, even_k, request):
    """The PDL step before the loop also accumulates x² and multiplies x by the norm's weight (its own masked load):
    bit-identical to the plain kernel with the RMSNorm prologue and the residual epilogue. Words decoded by byte
    permutes (CUDA, int4 and int8) may sum the peeled step's products in another fp32 order (H100, Triton 3.6):
    there the two must agree to 1e-4 of O(1) outputs, where a lost or doubled step is off by O(1)."""
    M, N, K, G = 3, 40, 128 if even_k else 96, 32
    x, qw, scale, zero, b = make_inputs(scheme, M, N, K, group_size=G, seed=7)
    x = 3.0 * x
    g = (1.0 + 0.5 * torch.randn(K, generator=torch.Generator().manual_seed(8))).to(DEVICE, x.dtype)
    r = torch.randn(M, N, generator=torch.Generator().manual_seed(9)).to(DEVICE, x.dtype)
    cfg = {**CONFIGS[path], "SPLIT_K": 1, "BLOCK_K": 64}
    plain = ql.qlinear(x, qw, scale, zero, b, scheme, G, "identity", False, 1e-5, g, r, _config=cfg)
    ref = quant.qlinear_reference(x, qw, scale, zero, b, scheme, G, "identity", False, 1e-5, g, r)
    rtol, atol = tolerance(scheme, x.dtype, K)
    torch.testing.assert_close(plain.double(), ref.double(), rtol=rtol, atol=atol)
    request.getfixturevalue("compiled_for_pdl")
    pdl = ql.qlinear(x, qw, scale, zero, b, scheme, G, "identity", False, 1e-5, g, r, _config=cfg)
    if scheme in ql.WEIGHT_ONLY and ql._byte_permutes(cfg, scheme == "int4_weight_only"):
        torch.testing.assert_close(pdl, plain, rtol=1e-4, atol=1e-4)
    else:
        assert torch.equal(pdl, plain)


# (scheme, M, N, K, group): whole K steps and a K that ends in a partial one (int8 136, int4 96 at BLOCK_K 64)
PREFETCH_CASES = [("int8_weight_only", 3, 40, 256, 32), ("int8_weight_only", 1, 24, 136, 32),
                  ("int4_weight_only", 3, 40, 128, 32), ("int4_weight_only", 1, 24, 96, 32)]


@pytest.mark.parametrize("scheme,M,N,K,G", PREFETCH_CASES)
@pytest.mark.parametrize("path", GEMV_PATHS)
@pytest.mark.parametrize("gated", [False, True])
def test_prefetch_gemv_gives_the_same_bits(scheme, M, N, K, G, path, gated):
    """PREFETCH loads each K step one step ahead: the same sums in the same order as the plain loop, so the same
    bits (``_same_sums``), over several steps, splits (the last of three splits of K = 96 is empty) and a partial
    last step."""
    x, qw, scale, zero, b = make_inputs(scheme, M, 2 * N if gated else N, K, group_size=G, seed=11)
    act = "silu" if gated else "identity"
    cfg = CONFIGS[path]
    assert -(-K // (cfg["SPLIT_K"] * cfg["BLOCK_K"])) >= 2 or cfg["SPLIT_K"] > 1  # several steps a program
    plain = run(x, qw, scale, zero, b, scheme, G, act, gated, config=cfg)
    check(plain, x, qw, scale, zero, b, scheme, G, act, gated)
    _same_sums(run(x, qw, scale, zero, b, scheme, G, act, gated, config={**cfg, "PREFETCH": True}), plain, scheme)


def _same_sums(got: torch.Tensor, want: torch.Tensor, scheme: str) -> None:
    """Bit-identical, except words decoded by byte permutes on CUDA (int4, and int8 with ``INT8_PRMT``): Triton may
    lay the decoded codes out otherwise in another loop and round the fp32 chunk sums in another order (see the PDL
    tests; PREFETCH's loop loads x before the words, the plain loop after them); there within 1e-4 of O(1) outputs,
    where a tile summed twice, skipped or shifted is off by O(1)."""
    if DEVICE == "cuda" and (scheme == "int4_weight_only" or scheme == "int8_weight_only" and ql.INT8_PRMT):
        torch.testing.assert_close(got.double(), want.double(), rtol=1e-4, atol=1e-4)
    else:
        assert torch.equal(got, want)


# a switch of the word GEMV and the config it is tried on: PREFETCH over several K steps; TILES (no K loop, 2 tiles of
# weight rows a program) over one step, 5 tiles of 8 rows
NORM_SWITCHES = {"PREFETCH": ({**CONFIGS["gemv-sub2"], "SPLIT_K": 1}, True),
                 "TILES": ({**CONFIGS["gemv-sub2"], "SPLIT_K": 1, "BLOCK_K": 256, "BLOCK_N": 8}, 2)}


@pytest.mark.parametrize("scheme", ql.WEIGHT_ONLY)
@pytest.mark.parametrize("pdl", [False, True], ids=["plain", "pdl"])
@pytest.mark.parametrize("even_k", [True, False], ids=["even-k", "masked-k"])
@pytest.mark.parametrize("switch", list(NORM_SWITCHES))
def test_gemv_switches_with_norm_give_the_same_bits(scheme, pdl, even_k, switch, request):
    """With the RMSNorm prologue (x² and the norm's weight per step, or once a program without the K loop) and the
    residual epilogue, and compiled for PDL (the step it peels off the loop): PREFETCH and TILES give the plain
    K loop's sums (``_same_sums``)."""
    M, N, K, G = 3, 40, 256 if even_k else 224, 32
    x, qw, scale, zero, b = make_inputs(scheme, M, N, K, group_size=G, seed=12)
    g = (1.0 + 0.5 * torch.randn(K, generator=torch.Generator().manual_seed(13))).to(DEVICE, x.dtype)
    r = torch.randn(M, N, generator=torch.Generator().manual_seed(14)).to(DEVICE, x.dtype)
    if pdl:
        request.getfixturevalue("compiled_for_pdl")
    cfg, value = NORM_SWITCHES[switch]
    plain = ql.qlinear(3.0 * x, qw, scale, zero, b, scheme, G, "identity", False, 1e-5, g, r, _config=cfg)
    ref = quant.qlinear_reference(3.0 * x, qw, scale, zero, b, scheme, G, "identity", False, 1e-5, g, r)
    rtol, atol = tolerance(scheme, x.dtype, K)
    torch.testing.assert_close(plain.double(), ref.double(), rtol=rtol, atol=atol)
    switched = ql.qlinear(3.0 * x, qw, scale, zero, b, scheme, G, "identity", False, 1e-5, g, r,
                          _config={**cfg, switch: value})
    _same_sums(switched, plain, scheme)


# (scheme, M, N, K, group): N a multiple of no tile count below, K whole (EVEN_K) or masked (int8 136 and int4 96
# under a BLOCK_K of 256)
TILES_CASES = [("int8_weight_only", 1, 40, 256, 32), ("int8_weight_only", 3, 36, 136, 32),
               ("int4_weight_only", 1, 40, 256, 32), ("int4_weight_only", 2, 36, 96, 32)]


@pytest.mark.parametrize("scheme,M,N,K,G", TILES_CASES)
@pytest.mark.parametrize("tiles", [2, 3])
@pytest.mark.parametrize("gated", [False, True])
def test_tiles_gemv_gives_the_same_bits(scheme, M, N, K, G, tiles, gated):
    """TILES: each program keeps its x for several tiles of weight rows, grid-strided, the last program's last
    tiles past N (N/BLOCK_N = 5 or 9 tiles, 2 or 3 a program), with bias and a gated epilogue. The sums are the K
    loop's."""
    x, qw, scale, zero, b = make_inputs(scheme, M, 2 * N if gated else N, K, group_size=G, seed=21)
    act = "silu" if gated else "identity"
    cfg = {**CONFIGS["gemv-sub2"], "BLOCK_N": 8 if N == 40 else 4, "BLOCK_K": 256, "BLOCK_M": 4}
    plain = run(x, qw, scale, zero, b, scheme, G, act, gated, config=cfg)
    check(plain, x, qw, scale, zero, b, scheme, G, act, gated)
    _same_sums(run(x, qw, scale, zero, b, scheme, G, act, gated, config={**cfg, "TILES": tiles}), plain, scheme)


def test_tiles_need_one_unsplit_step():
    """A TILES config whose K takes two steps, or is split, is refused with a message naming the config."""
    x, qw, scale, zero, b = make_inputs("int8_weight_only", 1, 24, 256, group_size=32, seed=25)
    for bad in ({**CONFIGS["gemv-sub2"], "TILES": 2}, {**CONFIGS["gemv-sub2"], "BLOCK_K": 128, "SPLIT_K": 2,
                                                         "TILES": 2}):
        with pytest.raises(RuntimeError, match="needs K = 256 in one step"):
            run(x, qw, scale, zero, b, "int8_weight_only", 32, config=bad)


def test_tile_twins_of_the_fastest_one_step_word_gemvs_that_keep_a_wave(monkeypatch):
    """The tuner's refine step: the GEMV_TILE_TWINS fastest word-GEMV candidates whose K is one unsplit step get a
    twin per tile count, where the fewer programs still fill the SMs once; multi-step, split and reordered
    candidates, and those already tiled, get none."""
    monkeypatch.setattr(ql, "GEMV_TILE_COUNTS", (2, 4))
    for scheme in ql.WEIGHT_ONLY:
        for N, K, gated in [(3072, 2048, False), (8192, 2048, True), (2048, 8192, False), (14336, 4096, False)]:
            ranked = ql.candidate_configs(1, N, K, scheme, 128, gated, 2, 132)[::-1]  # any order: the tuner's
            twins = ql.tile_twins(ranked, 1, N, K, 132)
            one_step = [c for c in ranked if ql._one_step(c, K) and c["CHUNKS_FIRST"] == ql.CHUNKS_FIRST]
            assert len(twins) <= 2 * ql.GEMV_TILE_TWINS and bool(twins) <= bool(one_step)
            if scheme == "int4_weight_only" and K == 2048:  # one step at 32 codes a thread and 2-4 warps
                assert {(c["num_warps"], c["BLOCK_N"], c["SUB"]) for c in twins} == {
                    (c["num_warps"], c["BLOCK_N"], c["SUB"]) for c in one_step[:ql.GEMV_TILE_TWINS]}
            for t in twins:
                assert ql._one_step(t, K) and t["TILES"] in (2, 4)
                assert {k: v for k, v in t.items() if k != "TILES"} in one_step[:ql.GEMV_TILE_TWINS]
                assert -(-(-(-N // t["BLOCK_N"])) // t["TILES"]) >= 132
            assert ql.tile_twins(twins, 1, N, K, 132) == []
    assert ql.tile_twins(ql.candidate_configs(1, 2048, 8192, "int8_weight_only", 128, False, 2, 132),
                         1, 2048, 8192, 132) == []  # K = 8192 takes several steps in every tile
    assert ql.tile_twins(ql.candidate_configs(1, 256, 2048, "int4_weight_only", 128, False, 2, 132),
                         1, 256, 2048, 132) == []  # 64 programs or fewer: no wave left to halve


@pytest.mark.parametrize("module,changes", [
    (ql, [("GEMV_TILE_COUNTS", (2,)), ("GEMV_TILES", ql.GEMV_TILES[:-1]), ("GEMV_REGS", ql.GEMV_REGS + 8),
          ("MMA_GEMV_TILES", ql.MMA_GEMV_TILES[:-1]), ("MMA_GEMV_MIN_M", 1), ("MMA_SPLIT_PROGRAMS", (4,)),
          ("MMA_L2PF", not ql.MMA_L2PF)]),
    (kl, [("GEMV_TILES", kl.GEMV_TILES[:-1]), ("SKINNY_TILES", kl.SKINNY_TILES[1:])])], ids=["qlinear", "linear"])
def test_the_tuning_key_changes_with_the_candidate_lists(monkeypatch, module, changes):
    """A stored winner is only the best of the candidates measured: a cache tuned with other tile lists, tile
    counts or pruning limits must not be read as this version's choice, so they are part of the key's source hash
    (qlinear and linear alike)."""
    base = module._sources()
    try:
        for name, value in changes:
            with monkeypatch.context() as m:
                m.setattr(module, name, value)
                module._sources.cache_clear()
                assert module._sources() != base, name
        module._sources.cache_clear()
        assert module._sources() == base  # the same lists give the same hash
    finally:
        module._sources.cache_clear()


def test_prefetch_twins_only_for_multi_step_word_gemvs(monkeypatch):
    """With GEMV_PREFETCH_TWINS > 0 (none by default), the first that many word-GEMV candidates of two or more K steps
    a program get a PREFETCH twin, in this Triton version's axis order; a GEMV whose whole K is one step (the 1B
    shape's K = 2048 at 16 codes a thread and 4 warps) gets none from that tile."""
    assert not any(c.get("PREFETCH") for c in ql.candidate_configs(1, 4096, 14336, "int8_weight_only", 128, False, 2,
                                                                    132))
    monkeypatch.setattr(ql, "GEMV_PREFETCH_TWINS", 3)
    for scheme in ql.WEIGHT_ONLY:
        for N, K in [(14336, 4096), (4096, 14336), (2048, 8192), (3072, 2048)]:
            cands = ql.candidate_configs(1, N, K, scheme, 128, False, 2, 132)
            twins = [c for c in cands if c.get("PREFETCH")]
            multi_step = [c for c in cands if c["kernel"] == "gemv" and not c.get("PREFETCH")
                          and c["CHUNKS_FIRST"] == ql.CHUNKS_FIRST and ql._steps_per_split(c, K) >= 2]
            assert len(twins) <= ql.GEMV_PREFETCH_TWINS and bool(twins) == bool(multi_step)
            for t in twins:
                assert {**t, "PREFETCH": False} != t and {k: v for k, v in t.items() if k != "PREFETCH"} in cands
                assert t["CHUNKS_FIRST"] == ql.CHUNKS_FIRST and ql._steps_per_split(t, K) >= 2
            assert not any(c.get("PREFETCH") for c in cands if c["kernel"] == "gemv" and ql._steps_per_split(c, K) < 2)
    assert not any(c.get("PREFETCH") for c in ql.candidate_configs(1, 4096, 4096, "w8a8_int8", 128, False, 2, 132))


@pytest.mark.skipif(DEVICE != "cuda", reason="packed-pair dequantization is inline PTX (no interpreter)")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("symmetric", [False, True], ids=["asymmetric", "symmetric"])
@pytest.mark.parametrize("path", ["skinny", "tiled-grouped"])
def test_int4_pairs_match_fp32_decoding(path, symmetric, dtype):
    """int4 tl.dot tiles dequantized on packed bf16 / fp16 instructions (the default on CUDA) against the fp32
    decoding: the two differ by one rounding of each weight and by ≤ 2^-9·s for a fractional zero point, far
    tighter than the reference tolerance. A dropped zero-point fraction or swapped nibbles is O(s) per weight."""
    x, qw, scale, zero, b = make_inputs("int4_weight_only", 24, 40, 256, dtype, 64, symmetric)
    pairs = run(x, qw, scale, zero, b, "int4_weight_only", 64, config=CONFIGS[path])
    fp32 = run(x, qw, scale, zero, b, "int4_weight_only", 64, config={**CONFIGS[path], "PAIRS": False})
    check(pairs, x, qw, scale, zero, b, "int4_weight_only", 64)
    torch.testing.assert_close(pairs.double(), fp32.double(), rtol=1e-2, atol=1e-2)


@pytest.mark.skipif(DEVICE != "cuda", reason="byte-permute decoding is inline PTX (no interpreter)")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=str)
@pytest.mark.parametrize("scheme,symmetric", [("int4_weight_only", False), ("int4_weight_only", True),
                                              ("int8_weight_only", True)], ids=["int4-asym", "int4-sym", "int8"])
@pytest.mark.parametrize("path", ["gemv", "gemv-sub2", "gemv-splitk3"])  # (not "gemv-reordered": see _byte_permutes)
def test_words_byte_permutes_match_shift_decoding(path, scheme, symmetric, dtype, monkeypatch):
    """GEMV words decoded by byte permutes (the default on CUDA; int4: ``_decode_nibbles``, 1 + u/128; int8:
    ``_decode_bytes``, q itself) against shifts and masks (1 + u/16, 1 + u/256): both give every code exactly, so the
    two differ only in fp32 roundings of the chunk sums, far inside the output's rounding. A code read from the
    wrong nibble or byte, or with its sign lost, is O(s·|x|) per weight."""
    monkeypatch.setattr(ql, "INT8_PRMT", True)
    assert ql._byte_permutes(CONFIGS[path], scheme == "int4_weight_only")
    x, qw, scale, zero, b = make_inputs(scheme, 3, 40, 256, dtype, 64, symmetric)
    prmt = run(x, qw, scale, zero, b, scheme, 64, config=CONFIGS[path])
    shifts = run(x, qw, scale, zero, b, scheme, 64, config={**CONFIGS[path], "PRMT": False})
    check(prmt, x, qw, scale, zero, b, scheme, 64)
    # fp32 outputs: int4's 1 + u/128 leaves 3 fewer bits below the code than 1 + u/16 (measured on the H100: 1.5e-5)
    tol = 1e-2 if dtype != torch.float32 else 1e-4
    torch.testing.assert_close(prmt.double(), shifts.double(), rtol=tol, atol=tol)


@triton.jit
def _decode_bytes_probe(w_ptr, out_ptr, N: tl.constexpr):
    offs = tl.arange(0, N)
    f = qk._decode_bytes(tl.load(w_ptr + offs))
    tl.store(out_ptr + offs[:, None] * 4 + tl.arange(0, 4)[None, :], f)


@pytest.mark.skipif(DEVICE != "cuda", reason="byte-permute decoding is inline PTX (no interpreter)")
def test_decode_bytes_gives_every_int8_code_at_every_byte():
    """``_decode_bytes`` against the codes: all 256 values of q in each of the word's 4 bytes, exactly."""
    q = torch.arange(-128, 128, dtype=torch.int32)
    codes = torch.stack([q, q.roll(1), q.roll(2), q.roll(3)], dim=1)  # [256, 4]: byte b of word i is codes[i, b]
    words = sum((codes[:, b] & 0xFF) << (8 * b) for b in range(4)).to(torch.int64)
    words = torch.where(words >= 2**31, words - 2**32, words).to(torch.int32).to(DEVICE)
    out = torch.empty(256, 4, dtype=torch.float32, device=DEVICE)
    _decode_bytes_probe[(1,)](words, out, 256)
    assert torch.equal(out.cpu(), codes.float())


def test_byte_permutes_only_for_compiled_words_in_this_versions_axis_order(monkeypatch):
    monkeypatch.setattr(ql, "_INTERPRET", False)
    assert ql._byte_permutes(CONFIGS["gemv"], True)
    monkeypatch.setattr(ql, "INT8_PRMT", False)
    assert not ql._byte_permutes(CONFIGS["gemv"], False)  # int8 words: only with INT8_PRMT
    monkeypatch.setattr(ql, "INT8_PRMT", True)
    assert ql._byte_permutes(CONFIGS["gemv"], False)
    assert not ql._byte_permutes(CONFIGS["gemv-reordered"], True)
    assert not ql._byte_permutes({**CONFIGS["gemv"], "PRMT": False}, True)
    monkeypatch.setattr(ql, "_INTERPRET", True)  # the interpreter runs no PTX
    assert not ql._byte_permutes(CONFIGS["gemv"], True)


@triton.jit
def _decode_halves_probe(w_ptr, out_ptr, up, N: tl.constexpr):
    offs = tl.arange(0, N)
    f = qk._decode_halves(tl.load(w_ptr + offs), up)
    tl.store(out_ptr + offs * 8 + 0, f[0])
    tl.store(out_ptr + offs * 8 + 1, f[1])
    tl.store(out_ptr + offs * 8 + 2, f[2])
    tl.store(out_ptr + offs * 8 + 3, f[3])
    tl.store(out_ptr + offs * 8 + 4, f[4])
    tl.store(out_ptr + offs * 8 + 5, f[5])
    tl.store(out_ptr + offs * 8 + 6, f[6])
    tl.store(out_ptr + offs * 8 + 7, f[7])


def test_decode_halves_gives_every_code_at_each_nibble_with_the_stated_offset():
    """``_decode_halves`` on every code at every nibble of a word (the other nibbles random): code v is
    HALVES_OFFSET + u + e, e = -4 / 2^16 for v < 4 (exact), and (u[v - 4] - 4) / 2^16 for v ≥ 4 (the low half's
    code under it). A code read from the wrong nibble or half is off by ≥ 1 - 2^-12."""
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 16, (128, 8), generator=g)
    codes[:, :] = torch.where(torch.arange(128)[:, None] % 8 == torch.arange(8), torch.arange(128)[:, None] // 8,
                              codes)  # word i holds code i // 8 at nibble i % 8
    words = (codes << (4 * torch.arange(8))).sum(1)
    words = torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)
    out = torch.empty(128 * 8, dtype=torch.float32, device=DEVICE)
    _decode_halves_probe[(1,)](words.to(DEVICE), out, 65536, N=128)
    f = out.view(128, 8).cpu().double()
    offset = 128.0 + (0x4300 + 4) / 65536
    expect = offset - 4 / 65536 + codes.double()
    expect[:, 4:] += codes[:, :4].double() / 65536
    assert qk.HALVES_OFFSET.value == offset
    assert torch.equal(f, expect)


@pytest.mark.parametrize("dtype", [torch.float32] + LOW_PRECISION, ids=str)
@pytest.mark.parametrize("symmetric", [False, True], ids=["asymmetric", "symmetric"])
@pytest.mark.parametrize("path", ["gemv", "gemv-sub2", "gemv-splitk3", "gemv-reordered"])
def test_int4_words_halves_match_exact_decoding(path, symmetric, dtype):
    """int4 GEMV words decoded two codes an instruction (HALVES, ``_decode_halves``) against the exact shift
    decoding: each code carries at most ±11·2^-16 of a step from its neighbour, so outputs agree to ~1e-5 of
    their size plus the output's rounding; a wrong code or offset is O(s) per weight."""
    x, qw, scale, zero, b = make_inputs("int4_weight_only", 3, 40, 256, dtype, 64, symmetric)
    halves = run(x, qw, scale, zero, b, "int4_weight_only", 64, config={**CONFIGS[path], "HALVES": True})
    exact = run(x, qw, scale, zero, b, "int4_weight_only", 64, config={**CONFIGS[path], "PRMT": False,
                                                                      "HALVES": False})
    check(halves, x, qw, scale, zero, b, "int4_weight_only", 64)
    tol = {torch.float32: 1e-4, torch.float16: 4e-3, torch.bfloat16: 1e-2}[dtype]
    torch.testing.assert_close(halves.double(), exact.double(), rtol=tol, atol=tol)


@triton.jit
def _bf16x2_words_probe(w_ptr, x_ptr, out_ptr, N: tl.constexpr):
    offs = tl.arange(0, N)
    x = tl.load(x_ptr + offs[:, None] * 8 + tl.arange(0, 8)[None, :])
    tl.store(out_ptr + offs, qk._bf16x2_sum(qk._bf16x2_words(x, tl.load(w_ptr + offs))))


def _int4_words(codes: torch.Tensor) -> torch.Tensor:
    """[n, 8] int4 codes → n int32 words, code v at bits 4v."""
    words = (codes.long() << (4 * torch.arange(8))).sum(1)
    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)


@pytest.mark.skipif(DEVICE != "cuda", reason="packed bf16 sums are inline PTX (no interpreter)")
@pytest.mark.parametrize("x_dtype", [torch.float32, torch.bfloat16])
def test_bf16x2_words_take_each_code_with_its_own_x(x_dtype):
    """``_bf16x2_words`` on packed bf16 instructions: with every code 8 (u - 8 = 0) but code v = c and x a power of
    two, a word's sum is x[v]·(c - 8) exactly (one product, no rounding), for every v and c; so each nibble meets
    its own x and the offset is 8. Random words: within 4 bf16 roundings (2^-7) of Σ|x·(u - 8)| of the exact sum,
    where a code paired with the wrong x is off by O(Σ|x·(u - 8)|). x in fp32 is rounded to bf16 pairs; bf16 x's
    pairs are byte permutes of its own words."""
    g = torch.Generator().manual_seed(0)
    v, c = torch.meshgrid(torch.arange(8), torch.arange(16), indexing="ij")
    codes = torch.full((128, 8), 8, dtype=torch.int64)
    codes[torch.arange(128), v.flatten()] = c.flatten()
    x = 2.0 ** torch.randint(-6, 6, (128, 8), generator=g).float() * torch.where(torch.rand(128, 8, generator=g) < 0.5,
                                                                                   -1.0, 1.0)
    rand_codes = torch.randint(0, 16, (128, 8), generator=g)
    rand_x = torch.randn(128, 8, generator=g).bfloat16().float()  # what the kernel multiplies (x rounded to bf16)
    for cs, xs, exact in ((codes, x, True), (rand_codes, rand_x, False)):
        out = torch.empty(128, dtype=torch.float32, device=DEVICE)
        _bf16x2_words_probe[(1,)](_int4_words(cs).to(DEVICE), xs.to(DEVICE, x_dtype), out, N=128)
        terms = xs.double() * (cs.double() - 8)
        if exact:
            assert torch.equal(out.cpu().double(), terms.sum(1))
        else:
            err = (out.cpu().double() - terms.sum(1)).abs()
            assert (err <= 2.0**-7 * terms.abs().sum(1)).all(), err.max()


@pytest.mark.skipif(DEVICE != "cuda", reason="packed bf16 sums are inline PTX (no interpreter)")
@pytest.mark.parametrize("mode", [1, 2, 3], ids=["words", "chunks", "chunks-x"])
@pytest.mark.parametrize("symmetric", [False, True], ids=["asymmetric", "symmetric"])
@pytest.mark.parametrize("path", ["gemv", "gemv-sub2", "gemv-splitk3", "gemv-reordered"])
def test_int4_words_on_bf16x2_match_exact_decoding(path, symmetric, mode):
    """int4 GEMV words summed on packed bf16 instructions (BF16X2: each word's products in bf16, 1, or each chunk's
    words too, 2, and Σx on bf16 pairs too, 3) against byte-permute decoding with fp32 products. Each bf16 rounding
    errs by at most 2^-9 of the partial sum it rounds, which is at most the lane's Σ|x·(u - 8)·s| over the word (4
    roundings a lane: 4 products, the 3 adds fused) or over the chunk (4·SUB, and SUB - 1 adds of words), so the
    outputs differ by at most 2^-9·5·SUB·Σ_k |x·(u - 8)·s| plus their own bf16 roundings; mode 3's Σx errs by at
    most 2^-9·(2 + log2 SUB) of the chunk's Σ|x|, which the zero point multiplies by |z - 8|·s. A code met with the
    wrong x, or a wrong offset, is O(Σ|x·(u - 8)·s|)."""
    G, cfg = 64, CONFIGS[path]
    x, qw, scale, zero, b = make_inputs("int4_weight_only", 3, 40, 256, torch.bfloat16, G, symmetric, bias=False)
    packed = run(x, qw, scale, zero, b, "int4_weight_only", G, config={**cfg, "BF16X2": mode})
    exact = run(x, qw, scale, zero, b, "int4_weight_only", G, config={**cfg, "BF16X2": 0})
    check(packed, x, qw, scale, zero, b, "int4_weight_only", G)
    terms = x.double().abs() @ ((quant.unpack_int4(qw).double() - 8).abs()
                                * scale.double().repeat_interleave(G, dim=1)).T
    bound = 2.0**-9 * 5 * cfg.get("SUB", 1) * terms + 2.0**-8 * exact.double().abs()
    if mode == 3 and not symmetric:
        bound += 2.0**-9 * (2 + cfg.get("SUB", 1)) * (x.double().abs() @ (
            (zero.double() - 8).abs() * scale.double()).repeat_interleave(G, dim=1).T)
    assert ((packed.double() - exact.double()).abs() <= bound).all()
    # with the norm prologue (x times the norm's weight, rounded to bf16 for the products) and gated rows
    xs = 3.0 * x
    g = (1.0 + 0.5 * torch.randn(256, generator=torch.Generator().manual_seed(2))).to(DEVICE, x.dtype)
    xg, qwg, sg, zg, _ = make_inputs("int4_weight_only", 3, 80, 256, torch.bfloat16, G, symmetric, seed=3)
    ref = quant.qlinear_reference(xs, qwg, sg, zg, None, "int4_weight_only", G, "silu", True, 1e-5, g)
    for m in (mode, 0):
        out = ql.qlinear(xs, qwg, sg, zg, None, "int4_weight_only", G, "silu", True, 1e-5, g,
                         _config={**cfg, "SPLIT_K": 1, "BF16X2": m})
        torch.testing.assert_close(out.double(), ref.double(), rtol=3e-2, atol=3e-2)


def test_refine_adds_bf16x2_twins_of_the_fastest_int4_word_gemvs_and_their_tile_twins(monkeypatch):
    monkeypatch.setattr(ql, "_INTERPRET", False)
    N, K = 14336, 4096
    ranked = ql.candidate_configs(1, N, K, "int4_weight_only", 128, False, 2, 132)
    tiles = ql.tile_twins(ranked, 1, N, K, 132)
    got = ql.refine(ranked, 1, N, K, 132, "int4_weight_only", torch.bfloat16)
    assert got[:len(tiles)] == tiles
    words = [c for c in ranked if c["kernel"] == "gemv" and "SUB" in c][:ql.GEMV_BF16X2_TWINS]
    bases = got[len(tiles):]
    assert bases and all(c["BF16X2"] == ql.GEMV_BF16X2_TWIN_MODE == 3 for c in bases)
    assert {tuple(sorted({k: v for k, v in c.items() if k not in ("BF16X2", "TILES")}.items())) for c in bases} \
        == {tuple(sorted(c.items())) for c in words}
    assert any(c.get("TILES") for c in bases) == any(c in words for c in
                                                     ({k: v for k, v in t.items() if k != "TILES"} for t in tiles))
    for scheme, dtype in (("int8_weight_only", torch.bfloat16), ("int4_weight_only", torch.float16)):
        assert ql.refine(ranked, 1, N, K, 132, scheme, dtype) == tiles
    monkeypatch.setattr(ql, "GEMV_BF16X2_TWIN_MODE", 2)
    assert ql.refine(ranked, 1, N, K, 132, "int4_weight_only", torch.bfloat16) == tiles + [{**c, "BF16X2": 2}
                                                                                          for c in bases]
    monkeypatch.setattr(ql, "GEMV_BF16X2_TWINS", 0)
    assert ql.refine(ranked, 1, N, K, 132, "int4_weight_only", torch.bfloat16) == tiles


def test_bf16x2_only_for_compiled_int4_words_with_bf16_x(monkeypatch):
    monkeypatch.setattr(ql, "_INTERPRET", False)
    monkeypatch.setattr(ql, "INT4_BF16X2", 0)
    assert ql._bf16x2({**CONFIGS["gemv"], "BF16X2": 2}, True, torch.bfloat16) == 2
    assert ql._bf16x2(CONFIGS["gemv"], True, torch.bfloat16) == 0  # the default
    monkeypatch.setattr(ql, "INT4_BF16X2", 1)
    assert ql._bf16x2(CONFIGS["gemv"], True, torch.bfloat16) == 1
    assert ql._bf16x2({**CONFIGS["gemv"], "BF16X2": 0}, True, torch.bfloat16) == 0  # a config turns it off
    assert ql._bf16x2(CONFIGS["gemv"], False, torch.bfloat16) == 0  # int8 words
    for dtype in (torch.float16, torch.float32):  # x would lose bits rounded to bf16
        assert ql._bf16x2(CONFIGS["gemv"], True, dtype) == 0
    monkeypatch.setattr(ql, "_INTERPRET", True)  # the interpreter runs no PTX
    assert ql._bf16x2(CONFIGS["gemv"], True, torch.bfloat16) == 0


@pytest.mark.parametrize("M,activation,gated,bias,residual", [(16, "identity", False, False, False),
                                                               (33, "identity", False, True, True),
                                                               (64, "silu", True, True, True)])
def test_scaled_mm_candidate_matches_reference(M, activation, gated, bias, residual):
    """w8a8_fp8 through torch._scaled_mm (x quantized by quantize_rows, row-wise scales): the reference's sums of
    the same fp8 codes, bias, activation, gating and residual; a transposed scale or a dropped one is O(1)."""
    N, K = 48, 96
    x, qw, scale, zero, b = make_inputs("w8a8_fp8", M, (2 if gated else 1) * N, K, torch.bfloat16, bias=bias)
    res = torch.randn(M, N, generator=torch.Generator().manual_seed(1)).to(DEVICE, torch.bfloat16) if residual \
        else None
    out = ql.qlinear(x, qw, scale, zero, b, "w8a8_fp8", 32, activation, gated, residual=res, _config=ql.SCALED_MM)
    ref = quant.qlinear_reference(x, qw, scale, zero, b, "w8a8_fp8", 32, activation, gated)
    ref = ref if res is None else ref + res
    assert out.shape == (M, N) and out.dtype == torch.bfloat16
    rtol, atol = tolerance("w8a8_fp8", torch.bfloat16, K)
    torch.testing.assert_close(out.double(), ref.double(), rtol=rtol, atol=atol)


def test_scaled_mm_is_a_candidate_for_bf16_fp8_only():
    for M, N, K, scheme, x_elem, expect in [(2048, 14336, 4096, "w8a8_fp8", 2, True),
                                            (ql.SCALED_MM_MIN_M, 4096, 14336, "w8a8_fp8", 2, True),
                                            (ql.SCALED_MM_MIN_M - 1, 4096, 14336, "w8a8_fp8", 2, False),
                                            (2048, 14336, 4096, "w8a8_fp8", 4, False),  # fp32 x
                                            (2048, 14344, 4096, "w8a8_fp8", 2, False),  # N not a multiple of 16
                                            (2048, 14336, 4096, "w8a8_int8", 2, False),
                                            (2048, 14336, 4096, "int8_weight_only", 2, False)]:
        cands = ql.candidate_configs(M, N, K, scheme, 128, False, x_elem, sms=132)
        assert (ql.SCALED_MM in cands) == expect, (M, N, K, scheme, x_elem)
        assert cands[0] != ql.SCALED_MM  # a tuning candidate, never the untuned default
    x, qw, scale, zero, b = make_inputs("w8a8_fp8", 16, 32, 64, torch.float16)
    with pytest.raises(RuntimeError, match="w8a8_fp8 with bf16 x"):
        ql.qlinear(x, qw, scale, zero, b, "w8a8_fp8", 32, "identity", False, _config=ql.SCALED_MM)


def test_only_int4_tiled_candidates_swap_operands():
    # measured on an H100 (notes/qlinear-kernels.md, session 8): the swapped MMA wins for int4 tiles at M = 128, not
    # for int8 or skinny tiles; the down shape's few tiles also get the swapped tile with K split
    for scheme in ql.WEIGHT_ONLY:
        for M, N, K in [(16, 14336, 4096), (128, 14336, 4096), (128, 4096, 14336)]:
            swapped = [c for c in ql.candidate_configs(M, N, K, scheme, 128, False, 2, sms=132) if c.get("SWAP")]
            if scheme == "int4_weight_only" and M > ql.SKINNY_MAX_M:
                assert swapped and swapped[0]["BLOCK_K"] == 128 and swapped[0]["SPLIT_K"] == 1
                assert any(c["SPLIT_K"] > 1 for c in swapped) == (N == 4096)
            else:
                assert not swapped


def test_skinny_candidates_split_to_a_wave_past_the_workspace_bound():
    # int4 down projection at M = 64: the workspace bound allows no split (64 programs for 132 SMs); the extra
    # candidate splits K 8 ways (512 programs), as far as doubling stays within 4 programs a SM
    cands = ql.candidate_configs(64, 4096, 14336, "int4_weight_only", 128, False, 2, sms=132)
    skinny = [c for c in cands if c["kernel"] == "gemm"]
    assert skinny[0]["SPLIT_K"] == 1
    wave = [c for c in skinny if c["SPLIT_K"] > 1]
    assert wave and all(c["BLOCK_N"] in (64, 128) for c in wave)
    first = next(c for c in wave if c["BLOCK_N"] == skinny[0]["BLOCK_N"])
    programs = 4096 // first["BLOCK_N"]
    assert programs * first["SPLIT_K"] <= 4 * 132 < 2 * programs * first["SPLIT_K"]


NORM_CASES = [(s, p) for s in SCHEMES for p in paths(s) if p in ("gemv", "gemv-reordered", "gemv-splitk3", "skinny",
                                                                 "skinny-splitk2", "cublas")]


@pytest.mark.parametrize("gated", [False, True], ids=["plain", "gated"])
@pytest.mark.parametrize("scheme,path", NORM_CASES)
def test_norm_and_residual(scheme, path, gated):
    """x RMS-normalized and times the norm's weight first (in the word GEMV's prologue, else by ``ql.rms_norm``'s
    kernel before it) and the residual added in the epilogue (by the split-K epilogue kernel when split, after cuBLAS):
    as the reference."""
    M, N, K, G = (3, 24, 128, 32)
    x, qw, scale, zero, b = make_inputs(scheme, M, 2 * N if gated else N, K, group_size=G)
    x = 3.0 * x  # rows far from unit RMS, so a missing norm shows
    r = torch.randn(M, N, generator=torch.Generator().manual_seed(1)).to(DEVICE, x.dtype)
    g = (1.0 + 0.5 * torch.randn(K, generator=torch.Generator().manual_seed(2))).to(DEVICE, x.dtype)
    act = "silu" if gated else "identity"
    out = ql.qlinear(x, qw, scale, zero, b, scheme, G, act, gated, 1e-5, g, r, _config=CONFIGS[path])
    ref = quant.qlinear_reference(x, qw, scale, zero, b, scheme, G, act, gated, 1e-5, g, r)
    rtol, atol = tolerance(scheme, x.dtype, K)
    torch.testing.assert_close(out.double(), ref.double(), rtol=rtol, atol=atol)
    for changed in (quant.qlinear_reference(x, qw, scale, zero, b, scheme, G, act, gated),  # no norm, no residual
                    quant.qlinear_reference(x, qw, scale, zero, b, scheme, G, act, gated, 1e-5, None, r)):  # no g
        assert (changed - ref).abs().max() > 0.1


def test_word_gemv_normalizes_in_its_prologue(monkeypatch):
    """One launch for norm + GEMV + residual at decode; a split GEMV or a tl.dot tile normalizes x first."""
    launched = record_launches(monkeypatch)
    x, qw, scale, zero, b = make_inputs("int4_weight_only", 1, 24, 128)
    r = torch.randn(1, 24).to(DEVICE, x.dtype)
    g = torch.rand(128).to(DEVICE, x.dtype)
    ql.qlinear(x, qw, scale, zero, b, "int4_weight_only", 32, "identity", False, 1e-5, g, r, _config=CONFIGS["gemv"])
    assert [name for name, _ in launched] == ["_qgemv_words_kernel"]
    assert launched[0][1]["NORM"] and launched[0][1]["HAS_NORM_W"] and launched[0][1]["HAS_RES"]
    assert ql.fuses_norm(CONFIGS["gemv"], "int4_weight_only", 128)
    for path in ("gemv-splitk3", "skinny"):
        assert not ql.fuses_norm(CONFIGS[path], "int4_weight_only", 128)
    assert not ql.fuses_norm(CONFIGS["gemv"], "w8a8_int8", 128)  # the byte GEMV has no prologue norm
    launched.clear()
    ql.qlinear(x, qw, scale, zero, b, "int4_weight_only", 32, "identity", False, 1e-5, g, r,
               _config=CONFIGS["skinny"])
    assert [name for name, _ in launched][:2] == ["_rms_norm_kernel", "_qgemm_kernel"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("K", [48, 200, 4096, 5000])  # one block, a masked block, one full block, two passes
def test_rms_norm_kernel_matches_the_reference(K, dtype):
    """The one-kernel RMSNorm before configs that cannot normalize in their prologue: the reference's fp32 math,
    rounded once (the sum of squares in another order: fp32 roundings apart), on a strided x."""
    gen = torch.Generator().manual_seed(K)
    wide = (4.0 * torch.randn(3, K + 8, generator=gen)).to(DEVICE, dtype)
    x = wide[:, 3:K + 3]  # rows with a stride, not contiguous
    g = (1.0 + 0.5 * torch.randn(K, generator=gen)).to(DEVICE, dtype)
    tol = 1e-6 if dtype == torch.float32 else 1e-3  # fp16: one rounding apart at most
    for weight in (g, None, g.float()):
        out = ql.rms_norm(x, 1e-5, weight)
        assert out.dtype == dtype and out.shape == x.shape and out.is_contiguous()
        torch.testing.assert_close(out, reference.rms_norm(x, 1e-5, weight), rtol=tol, atol=tol)


def test_kernel_string_constants_are_one_line():
    """Inductor copies a user kernel's global constexprs into the kernel source by repr and embeds that source in a
    triple-quoted string, where an escaped newline turns into a real one inside a one-line literal: the generated
    module then fails to import (it did, for the inline-PTX int4 decoding, in a compiled prefill on the H100)."""
    import importlib
    import pkgutil

    import triton.language as tl

    import accel.runtime.kernels as kernels

    strings = {}
    for info in pkgutil.iter_modules(kernels.__path__):
        module = importlib.import_module(f"accel.runtime.kernels.{info.name}")
        for name, value in vars(module).items():
            if isinstance(value, tl.constexpr) and isinstance(value.value, str):
                strings[f"{info.name}.{name}"] = value.value
    assert "qlinear_kernels.INT4_PAIRS_BF16" in strings
    assert not [name for name, text in strings.items() if "\n" in text or "\r" in text]


SPLIT_PATHS = ["gemv-splitk3", "gemv-reordered", "skinny-splitk2", "tiled-splitk2", "skinny-swap"]
REDUCE_CASES = [(s, p) for s in SCHEMES for p in SPLIT_PATHS if not (p == "skinny-swap" and s in W8A8)]


@pytest.mark.parametrize("gated", [False, True], ids=["plain", "gated"])
@pytest.mark.parametrize("scheme,path", REDUCE_CASES)
def test_split_k_reduced_in_the_last_program(scheme, path, gated, monkeypatch):
    """With tile counters, a split-K launch reduces its workspace in each tile's last program (bias, activation and
    residual included): the same bits as the second launch gives, every output written (NaN-poisoned buffers), the
    counters left zero for the next launch, which then gives the same bits again."""
    M, N, K, G = (3, 40, 136, 32) if "gemv" in path else (17, 40, 128, 32)
    if scheme == "int4_weight_only":
        K = 128
    x, qw, scale, zero, b = make_inputs(scheme, M, 2 * N if gated else N, K, group_size=G, seed=11)
    r = torch.randn(M, N, generator=torch.Generator().manual_seed(12)).to(DEVICE, x.dtype)
    act = "silu" if gated else "identity"
    poison_everything(monkeypatch)
    cfg = CONFIGS[path]
    two_launches = ql.qlinear(x, qw, scale, zero, b, scheme, G, act, gated, None, None, r, _config=cfg)
    counters = torch.zeros(64, dtype=torch.int32, device=DEVICE)
    for _ in range(2):
        one_launch = ql.qlinear(x, qw, scale, zero, b, scheme, G, act, gated, None, None, r, counters, _config=cfg)
        assert torch.equal(one_launch, two_launches)
        assert not counters.any()
    check(two_launches - r, x, qw, scale, zero, b, scheme, G, act, gated)


def test_split_k_reduction_launch_structure(monkeypatch):
    """One launch when the counters cover every output tile, the second launch when they are too few (or absent,
    or the config does not split); the residual goes to whichever launch finishes the tiles."""
    launched = record_launches(monkeypatch)
    x, qw, scale, zero, b = make_inputs("int8_weight_only", 3, 40, 136)
    r = torch.randn(3, 40).to(DEVICE, x.dtype)
    cfg = CONFIGS["gemv-splitk3"]  # BLOCK_N 16, BLOCK_M 4: 3 tiles of 40 columns for 3 rows
    assert ql._tiles(cfg, 3, 40) == 3 and ql._tiles(CONFIGS["skinny-splitk2"], 17, 40) == 4
    for counters, names in [(torch.zeros(3, dtype=torch.int32), ["_qgemv_words_kernel"]),
                            (torch.zeros(2, dtype=torch.int32), ["_qgemv_words_kernel", "_epilogue_kernel"]),
                            (None, ["_qgemv_words_kernel", "_epilogue_kernel"])]:
        launched.clear()
        ql.qlinear(x, qw, scale, zero, b, "int8_weight_only", 32, "identity", False, None, None, r, counters,
                   _config=cfg)
        assert [name for name, _ in launched] == names
        assert launched[0][1]["REDUCE_LAST"] == (len(names) == 1)
        assert launched[0][1]["HAS_RES"] == (len(names) == 1)
    launched.clear()
    ql.qlinear(x, qw, scale, zero, b, "int8_weight_only", 32, "identity", False, None, None, r,
               torch.zeros(3, dtype=torch.int32), _config=CONFIGS["gemv"])
    assert [name for name, _ in launched] == ["_qgemv_words_kernel"] and not launched[0][1]["REDUCE_LAST"]
