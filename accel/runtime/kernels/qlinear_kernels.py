"""Triton kernels of ``accel.runtime.kernels.qlinear`` (launchers, configs and dispatch live there).

Every kernel computes fp32 (int32 for w8a8_int8) sums of x·q, applies the scales (per weight row after the K loop,
per int4 group inside it, per token for W8A8) and hands the fp32 tile to ``linear._write_back``: the fused
bias + activation (+ act(gate)·up) epilogue, or the split-K workspace, which the tile's last program
(``linear._reduce_if_last``, REDUCE_LAST) or a second launch (``linear._epilogue_kernel``) reduces.
All tensors are contiguous along K (the launcher makes x so), so every K offset below is in elements.

Numerics shared with ``accel.runtime.quant.qlinear_reference``: codes become fp32 exactly; the activation scale
is max|x|/127 (or /448) divided with IEEE rounding (``tl.math.div_rn``; Triton's ``/`` is approximate), x/scale is
rounded once to fp32 as div_rn rounds it (``_div_by_scale``), and then to nearest-even like ``torch.round`` /
``Tensor.to(float8_e4m3fn)``.
"""
import triton
import triton.language as tl

from accel.runtime.kernels.linear import (_dot, _dot_slice, _first_step_ok, _gemv_slice, _load_tile, _reduce_if_last,
                                         _write_back)
from accel.runtime.kernels.utils import pdl_launch_dependents, pdl_wait

# Scheme codes, in the order of ``quant.SCHEMES``; the two W8A8 schemes are the codes ≥ W8A8_INT8.
INT8_WO = tl.constexpr(0)
INT4_WO = tl.constexpr(1)
W8A8_INT8 = tl.constexpr(2)
W8A8_FP8 = tl.constexpr(3)


@triton.jit
def _codes_to_f32(q, OFFSET: tl.constexpr):
    """Exact fp32 of int32 codes q ∈ [-OFFSET, 2^22): the bits of 2^23 + OFFSET + q read as fp32 hold q in the
    mantissa, so one integer add and one fp32 subtraction replace the int→float conversion (I2F, which runs at
    a quarter of the FMA rate on sm_90)."""
    return tl.cast(q + (0x4B000000 + OFFSET), tl.float32, bitcast=True) - (8388608.0 + OFFSET)


@triton.jit
def _unpack_int4(packed):
    """uint8 [..., B] → int32 codes [..., 2B] in [0, 15], the low nibble first (even k)."""
    p = packed.to(tl.int32)
    return tl.interleave(p & 15, p >> 4)


@triton.jit
def _abs_max(x_ptrs, row_ok, k_idx, K, BLOCK_K: tl.constexpr):
    """Elementwise running max of |x| over K for a tile of pointers at k = k_idx (k_idx < BLOCK_K); reduce
    the result over its K axes to get each row's max|x|."""
    amax = tl.abs(tl.load(x_ptrs, mask=row_ok & (k_idx < K), other=0.0).to(tl.float32))
    for k in range(BLOCK_K, K, BLOCK_K):
        x = tl.load(x_ptrs + k, mask=row_ok & (k_idx < K - k), other=0.0)
        amax = tl.maximum(amax, tl.abs(x.to(tl.float32)))
    return amax


@triton.jit
def _token_scale(amax, SCHEME: tl.constexpr):
    # quant.quantize_activation: clamp_min(1e-12) / 127 (int8) or / 448 (largest finite float8_e4m3fn)
    amax = tl.maximum(amax, 1e-12)
    if SCHEME == W8A8_INT8:
        scale = tl.math.div_rn(amax, tl.full(amax.shape, 127.0, tl.float32))
    else:
        scale = tl.math.div_rn(amax, tl.full(amax.shape, 448.0, tl.float32))
    return scale


@triton.jit
def _div_by_scale(x, scale, rcp):
    """x / scale rounded once to fp32, as ``tl.math.div_rn`` rounds it, for an activation scale (scale broadcast
    to x; scale ≥ 1e-12 / 448 and finite, ``_token_scale``) and rcp = div_rn(1, scale), computed once a row.
    Markstein's correction: q = x·rcp is within an ulp of x / scale, r = x - q·scale is exact as one fma, and
    q + r·rcp rounded once is the correctly rounded quotient whenever nothing under- or overflows; here
    |x / scale| ≤ 448 (127), and where |x| < 2^-102 (r may be subnormal) the quotient is below 2^-53 and both
    ways round to a zero code. Zero x keeps its sign (the correction would turn -0 into +0). Five
    instructions an element against div_rn's ten, a reciprocal on the quarter-rate MUFU pipe and a branch to its
    slow path (sm_90 SASS)."""
    s = tl.broadcast_to(scale, x.shape)
    r = tl.broadcast_to(rcp, x.shape)
    q = x * r
    q = tl.fma(tl.fma(-q, s, x), r, q)
    return tl.where(x == 0.0, x, q)


@triton.jit
def _scale_rcp(scale):
    """1 / scale rounded once: ``_div_by_scale``'s reciprocal, one a row."""
    return tl.math.div_rn(tl.full(scale.shape, 1.0, tl.float32), scale)


@triton.jit
def _quantize(x, scale, rcp, SCHEME: tl.constexpr):
    """x / scale (scale and its reciprocal rcp broadcast to x; ``_div_by_scale``) rounded half-to-even: int32 codes
    in [-127, 127] for w8a8_int8, the float8_e4m3fn value (as fp32) for w8a8_fp8. Adding and subtracting
    c = 1.5·2^23·u rounds to a multiple of u, ties to even, for |y| < 2^22·u. fp8 is rounded that way too, with
    u = 2^(e-3) for |y| in [2^e, 2^(e+1)) (3 mantissa bits; e ≥ -6, below which e4m3 is subnormal with u = 2^-9),
    so the cast to fp8 that follows is exact: the interpreter's fp32→fp8 cast does not carry a rounded-up mantissa
    into the exponent."""
    y = _div_by_scale(x, scale, rcp)
    if SCHEME == W8A8_INT8:
        q = tl.minimum(tl.maximum((y + 12582912.0) - 12582912.0, -127.0), 127.0).to(tl.int32)
    else:
        e = tl.maximum((tl.cast(y, tl.int32, bitcast=True) >> 23) & 0xFF, 127 - 6)  # biased exponent
        c = tl.cast(((e + 20) << 23) | 0x400000, tl.float32, bitcast=True)  # 1.5 · 2^(e-127+20) = 1.5·2^23·u
        q = tl.minimum(tl.maximum((y + c) - c, -448.0), 448.0)
        q = tl.where(q == 0.0, y * 0.0, q)  # a negative y that rounds to zero gives -0.0, as the cast does
    return q


@triton.jit
def _dequant_tile(w, s, z, SCHEME: tl.constexpr, HAS_ZERO: tl.constexpr, EXACT: tl.constexpr):
    """A weight tile [BLOCK_N, BLOCK_K] (int4: packed [BLOCK_N, BLOCK_K / 2]) as fp32 weights: q·s[n] (int8) or
    (q - zero)·s (int4; s, z [BLOCK_N, 1] of the tile's group, zero 8 when symmetric), as
    quant.dequantize_weight. Without EXACT (the result is rounded to fp16 / bf16 next) int4 takes one FFMA,
    f·16s - (1 + z/16)·16s with f = 1 + q/16: its error, below 2^-19·s, vanishes in that rounding."""
    if SCHEME == INT4_WO:
        q = _unpack_int4(w)
        if not HAS_ZERO:
            z = 8.0
        if EXACT:
            w = (_codes_to_f32(q, 0) - z) * s
        else:
            f = tl.cast((q << 19) | 0x3F800000, tl.float32, bitcast=True)
            w = f * (16.0 * s) - (16.0 * s + z * s)
    else:
        w = _codes_to_f32(w.to(tl.int32), 128) * s
    return w


@triton.jit
def _decode_words(words, PER_WORD: tl.constexpr):
    """int32 words [1, BLOCK_N, SUB, C] holding PER_WORD unsigned codes u of b = 32 / PER_WORD bits (the first
    in the low bits) → fp32 1 + u / 2^b [1, BLOCK_N, SUB, C, PER_WORD], exactly: u goes to the top mantissa
    bits of 1.0 with one constant shift and one and-or per code. The 1 is removed per chunk (Σ x is known)."""
    BITS: tl.constexpr = 32 // PER_WORD
    shift = BITS * tl.arange(0, PER_WORD)[None, None, None, None, :] - (23 - BITS)  # right shift, or left if < 0
    w = words[:, :, :, :, None]
    u = tl.where(shift >= 0, w >> tl.maximum(shift, 0), w << tl.maximum(-shift, 0))
    return tl.cast((u & (((1 << BITS) - 1) << (23 - BITS))) | 0x3F800000, tl.float32, bitcast=True)


# int4 words → fp32 by byte permutes (``_decode_nibbles``), for the 4-byte word $8: the low nibbles (even codes) and
# the high nibbles (odd codes), each masked to its byte and topped with 0x80; PRMT then puts one such byte under 0x3F
# with zero low bytes: the bits 0x3F80_0000 | u << 16, fp32 1 + u/128 exactly. 11 instructions for 8 codes, where
# shift, and, or per code take 24 (ptxas splits an and-or of two constants into two LOP3s).
_NIBBLES_ASM = """{
.reg .b32 lo, hi, mg;
mov.b32 mg, 0x3F000000;
lop3.b32 lo, $8, 0x0F0F0F0F, 0x80808080, 0xEA;
shr.u32 hi, $8, 4;
lop3.b32 hi, hi, 0x0F0F0F0F, 0x80808080, 0xEA;
prmt.b32 $0, lo, mg, 0x7044;
prmt.b32 $1, hi, mg, 0x7044;
prmt.b32 $2, lo, mg, 0x7144;
prmt.b32 $3, hi, mg, 0x7144;
prmt.b32 $4, lo, mg, 0x7244;
prmt.b32 $5, hi, mg, 0x7244;
prmt.b32 $6, lo, mg, 0x7344;
prmt.b32 $7, hi, mg, 0x7344;
}"""
NIBBLES_ASM = tl.constexpr(" ".join(_NIBBLES_ASM.split()))  # one line: see _INT4_PAIRS_ASM


@triton.jit
def _decode_nibbles(words):
    """int32 words [..., SUB, C] of 8 int4 codes u (the first in the low bits) → fp32 1 + u/128 [..., SUB, C, 8]
    exactly, by byte permutes (compiled only: inline PTX). The joins put code v at index v."""
    f0, f1, f2, f3, f4, f5, f6, f7 = tl.inline_asm_elementwise(
        NIBBLES_ASM, "=r,=r,=r,=r,=r,=r,=r,=r,r", [words], dtype=(tl.float32,) * 8, is_pure=True, pack=1)
    # join(a, b)[..., i] is a for i = 0: the last join's axis varies fastest, so index 4·b0 + 2·b1 + b2 = v
    f = tl.join(tl.join(tl.join(f0, f4), tl.join(f2, f6)), tl.join(tl.join(f1, f5), tl.join(f3, f7)))
    return tl.reshape(f, f.shape[:-3] + (8,))


# int8 words → fp32 by byte permutes (``_decode_bytes``), for the 4-byte word $4: each byte's sign bit flipped (u =
# q + 128), then PRMT puts byte i under 0x4B00_00: the bits 0x4B00_0000 | u, fp32 2^23 + u exactly. One PRMT a code
# and one XOR a word on the integer pipe, where shifts and masks take a shift, an AND and an OR a code.
_BYTES_ASM = """{
.reg .b32 u, mg;
mov.b32 mg, 0x4B000000;
xor.b32 u, $4, 0x80808080;
prmt.b32 $0, u, mg, 0x7650;
prmt.b32 $1, u, mg, 0x7651;
prmt.b32 $2, u, mg, 0x7652;
prmt.b32 $3, u, mg, 0x7653;
}"""
BYTES_ASM = tl.constexpr(" ".join(_BYTES_ASM.split()))  # one line: see _INT4_PAIRS_ASM


@triton.jit
def _decode_bytes(words):
    """int32 words [..., SUB, C] of 4 int8 codes q (the first in the low byte) → fp32 q [..., SUB, C, 4] exactly, by
    byte permutes (compiled only: inline PTX) and one subtraction of 2^23 + 128 a code (FMA pipe)."""
    f0, f1, f2, f3 = tl.inline_asm_elementwise(BYTES_ASM, "=r,=r,=r,=r,r", [words], dtype=(tl.float32,) * 4,
                                               is_pure=True, pack=1)
    f = tl.join(tl.join(f0, f2), tl.join(f1, f3))  # index 2·b0 + b1 = v, as in _decode_nibbles
    return tl.reshape(f, f.shape[:-2] + (4,)) - 8388736.0


# int4 words → fp32 two codes an integer instruction (``_decode_halves``): (w >> 4i) & 0x000F_000F | 0x4300_4300 puts
# nibbles i and i + 4 under the bf16 128 of each half. Read as fp32 the word is 128 + u[i + 4] + (0x4300 + u[i]) / 2^16:
# code i + 4 with a known offset and, below it, code i at 2^-16 of a step. Code i is the low half moved up under
# 0x4300 (one IMAD, on the FMA pipe): 128 + u[i] + 0x4300 / 2^16 exactly. So one SHF + LOP3 (integer pipe) and one
# IMAD give two codes. HALVES_OFFSET is 128 + the offset, plus the mean of code i's trace in code i + 4 (7.5 / 2^16
# over half the codes, rounded to 4 / 2^16 so that it adds exactly to 128 + z): what is left is at most 11 / 2^16 of
# a step a code (below 2^-12; rounding to the int4 grid errs up to 2^11 times that) and averages -0.25 / 2^16 over
# uniform codes. Products summed in one FMA chain a word.
HALVES_OFFSET = tl.constexpr(128.0 + (0x4300 + 4) / 65536)


@triton.jit
def _low_half_up(t, up):
    """(t << 16) | 0x4300 read as fp32, as t·up + 0x4300 with up = 2^16 a kernel argument: ptxas makes a constant
    multiplier a LEA (integer pipe); a runtime one stays an IMAD, which the FMA pipe issues."""
    return tl.cast(t * up + 0x4300, tl.float32, bitcast=True)


@triton.jit
def _decode_halves(words, up):
    """int32 words [...] of 8 int4 codes u (the first in the low bits) → 8 fp32 tensors [...], code v's ≈
    HALVES_OFFSET + u[v] (see above); plain integer ops, so the interpreter runs them too."""
    t0 = (words & 0x000F000F) | 0x43004300
    t1 = ((words >> 4) & 0x000F000F) | 0x43004300
    t2 = ((words >> 8) & 0x000F000F) | 0x43004300
    t3 = ((words >> 12) & 0x000F000F) | 0x43004300
    return (_low_half_up(t0, up), _low_half_up(t1, up), _low_half_up(t2, up), _low_half_up(t3, up),
            tl.cast(t0, tl.float32, bitcast=True), tl.cast(t1, tl.float32, bitcast=True),
            tl.cast(t2, tl.float32, bitcast=True), tl.cast(t3, tl.float32, bitcast=True))


@triton.jit
def _split8(t):
    """[..., 8] → its 8 slices [...] in index order (a thread owns the 8 values: no data moves)."""
    a, b = tl.split(tl.reshape(t, t.shape[:-1] + (4, 2)))  # even, odd v
    a0, a1 = tl.split(tl.reshape(a, a.shape[:-1] + (2, 2)))  # v = 0, 4 and 2, 6
    b0, b1 = tl.split(tl.reshape(b, b.shape[:-1] + (2, 2)))  # v = 1, 5 and 3, 7
    t0, t4 = tl.split(a0)
    t2, t6 = tl.split(a1)
    t1, t5 = tl.split(b0)
    t3, t7 = tl.split(b1)
    return t0, t1, t2, t3, t4, t5, t6, t7


@triton.jit
def _halves_products(x, words, up):
    """Σ_v x[..., v]·f_v per word, one FMA chain (x [..., 8] broadcast against the words' [...]): the HALVES sums."""
    f0, f1, f2, f3, f4, f5, f6, f7 = _decode_halves(words, up)
    x0, x1, x2, x3, x4, x5, x6, x7 = _split8(x)
    p = x0 * f0
    p = tl.fma(x1, f1, p)
    p = tl.fma(x2, f2, p)
    p = tl.fma(x3, f3, p)
    p = tl.fma(x4, f4, p)
    p = tl.fma(x5, f5, p)
    p = tl.fma(x6, f6, p)
    return tl.fma(x7, f7, p)


# int4 words on packed bf16 arithmetic (``_bf16x2_words``, BF16X2), for the word $1 and x's pairs $2..$5 (bf16
# x[v] in the low half, x[v + 4] in the high half of $(2 + v)): (w >> 4v) & 0x000F_000F | 0x4300_4300 puts nibbles v
# and v + 4 under the bf16 128 of each half (one SHF and one LOP3 for two codes); one packed FMA takes off 136,
# leaving u - 8 exactly (|u - 8| <= 8), and one packed FMA a pair adds x·(u - 8) into a bf16x2 sum $0. 15
# instructions for 8 codes, and 3 more to add the two halves in fp32 (``_bf16x2_sum``), where byte permutes take 11
# and the fp32 products 8 more and their adds. The products and the adds round to bf16 (2^-9 relative each): on top
# of the output's own bf16 rounding, which int4's grid error (~s/3 a code) dwarfs. fma only (sm_80 and later).
_BF16X2_ASM = """{
.reg .b32 mg, one, off, nz, t;
mov.b32 mg, 0x43004300;
mov.b32 one, 0x3F803F80;
mov.b32 off, 0xC308C308;
mov.b32 nz, 0x80008000;
lop3.b32 t, $1, 0x000F000F, mg, 0xEA;
fma.rn.bf16x2 t, t, one, off;
fma.rn.bf16x2 $0, t, $2, nz;
shr.u32 t, $1, 4;
lop3.b32 t, t, 0x000F000F, mg, 0xEA;
fma.rn.bf16x2 t, t, one, off;
fma.rn.bf16x2 $0, t, $3, $0;
shr.u32 t, $1, 8;
lop3.b32 t, t, 0x000F000F, mg, 0xEA;
fma.rn.bf16x2 t, t, one, off;
fma.rn.bf16x2 $0, t, $4, $0;
shr.u32 t, $1, 12;
lop3.b32 t, t, 0x000F000F, mg, 0xEA;
fma.rn.bf16x2 t, t, one, off;
fma.rn.bf16x2 $0, t, $5, $0;
}"""
BF16X2_ASM = tl.constexpr(" ".join(_BF16X2_ASM.split()))  # one line: see _INT4_PAIRS_ASM
BF16X2_PACK_ASM = tl.constexpr("cvt.rn.bf16x2.f32 $0, $2, $1;")  # $0 = bf16 ($1 low half, $2 high half)
BF16X2_MOV_ASM = tl.constexpr("mov.b32 $0, {$1, $2};")  # the same of two bf16 (x's own bits: a byte permute)
# x's pair words (x0, x1), (x2, x3), (x4, x5), (x6, x7) of a word's 8 k → (x0, x4), (x1, x5), (x2, x6), (x3, x7): the
# pairs of ``_bf16x2_words`` and of the MMA GEMV's B fragments (``qlinear_mma``)
MMA_REPACK = tl.constexpr("{ prmt.b32 $0, $4, $6, 0x5410; prmt.b32 $1, $4, $6, 0x7632; "
                          "prmt.b32 $2, $5, $7, 0x5410; prmt.b32 $3, $5, $7, 0x7632; }")
# pair words a·b, rounded once to x's dtype (fma with -0.0: sm_80's packed bf16 has no mul)
_MUL_ASM = "{ .reg .b32 z; mov.b32 z, 0x80008000; fma.rn.TYPE $0, $1, $2, z; }"
MUL_BF16 = tl.constexpr(_MUL_ASM.replace("TYPE", "bf16x2"))
MUL_F16 = tl.constexpr(_MUL_ASM.replace("TYPE", "f16x2"))
BF16X2_ADD_ASM = tl.constexpr("{ .reg .b32 one; mov.b32 one, 0x3F803F80; fma.rn.bf16x2 $0, $1, one, $2; }")


@triton.jit
def _bf16x2_words(x, words):
    """Σ_v x[..., v]·(u_v - 8) per int4 word as a bf16 pair (v < 4 in the low half, v ≥ 4 in the high half; int32)
    on packed bf16 instructions (``BF16X2_ASM``; compiled only: inline PTX), x [..., 8] (fp32, rounded to bf16
    here, or bf16, whose words give the pairs by byte permutes) broadcast against the words' [...]: the BF16X2
    sums."""
    x0, x1, x2, x3, x4, x5, x6, x7 = _split8(x)
    if x.dtype == tl.bfloat16:
        p0, p1, p2, p3 = _repack(_bf16x2_pack(x0, x1), _bf16x2_pack(x2, x3), _bf16x2_pack(x4, x5),
                                 _bf16x2_pack(x6, x7))
    else:
        p0 = _bf16x2_pack(x0, x4)
        p1 = _bf16x2_pack(x1, x5)
        p2 = _bf16x2_pack(x2, x6)
        p3 = _bf16x2_pack(x3, x7)
    return tl.inline_asm_elementwise(BF16X2_ASM, "=r,r,r,r,r,r", [words, p0, p1, p2, p3], dtype=tl.int32,
                                     is_pure=True, pack=1)


@triton.jit
def _repack(x0, x1, x2, x3):
    """Four pair words → the pairs (v, v + 4) (``MMA_REPACK``)."""
    return tl.inline_asm_elementwise(MMA_REPACK, "=r,=r,=r,=r,r,r,r,r", [x0, x1, x2, x3], dtype=(tl.int32,) * 4,
                                     is_pure=True, pack=1)


@triton.jit
def _bf16x2_pack(lo, hi):
    """lo, hi → one int32 of two bf16, lo in the low half: fp32 rounded to nearest, or bf16's own bits."""
    if lo.dtype == tl.bfloat16:
        return tl.inline_asm_elementwise(BF16X2_MOV_ASM, "=r,h,h", [lo, hi], dtype=tl.int32, is_pure=True, pack=1)
    return tl.inline_asm_elementwise(BF16X2_PACK_ASM, "=r,r,r", [lo, hi], dtype=tl.int32, is_pure=True, pack=1)


@triton.jit
def _bf16x2_x_sums(x, SUB_AXIS: tl.constexpr):
    """Σ x per chunk of x [..., SUB, ..., 8] (SUB at SUB_AXIS) in fp32, summed on bf16 pairs (BF16X2 = 3): each
    word's 4 pairs in a tree, then the chunk's words, on packed bf16 adds, then the two halves in fp32. The pairs are
    bf16 x's own words (x[2i], x[2i + 1]), or for fp32 x the pairs (x[v], x[v + 4]) ``_bf16x2_words`` rounds it to
    (the same packs, so the compiler makes them once). Each add rounds to bf16, erring by ≤ 2^-9 of its partial sum:
    ≤ 2^-9·(2 + log2 SUB)·Σ|x| a chunk, where fp32 sums take 8 conversions and 7 adds a word of x and these 3 packed
    adds."""
    x0, x1, x2, x3, x4, x5, x6, x7 = _split8(x)
    if x.dtype == tl.bfloat16:  # x's own pair words (x0, x1), ...
        p = _bf16x2_add(_bf16x2_add(_bf16x2_pack(x0, x1), _bf16x2_pack(x2, x3)),
                        _bf16x2_add(_bf16x2_pack(x4, x5), _bf16x2_pack(x6, x7)))
    else:  # the products' pairs (x0, x4), ... (fp32 x rounded to bf16 once for both)
        p = _bf16x2_add(_bf16x2_add(_bf16x2_pack(x0, x4), _bf16x2_pack(x1, x5)),
                        _bf16x2_add(_bf16x2_pack(x2, x6), _bf16x2_pack(x3, x7)))
    return _bf16x2_sum(tl.reduce(p, SUB_AXIS, _bf16x2_add))


@triton.jit
def _bf16x2_add(a, b):
    """Two bf16 pairs (int32) added half by half, rounded to bf16: the combine of BF16X2 = 2's sums over a chunk."""
    return tl.inline_asm_elementwise(BF16X2_ADD_ASM, "=r,r,r", [a, b], dtype=tl.int32, is_pure=True, pack=1)


@triton.jit
def _bf16x2_sum(a):
    """A bf16 pair (int32) → the fp32 sum of its halves."""
    return tl.cast(a << 16, tl.float32, bitcast=True) + tl.cast(a & -65536, tl.float32, bitcast=True)


@triton.jit
def _word_chunk_sums(x, x_sum, w, s, z, up, SCHEME: tl.constexpr, HAS_ZERO: tl.constexpr,
                     PER_WORD: tl.constexpr, SUB_AXIS: tl.constexpr, PRMT: tl.constexpr = False,
                     HALVES: tl.constexpr = False, BF16X2: tl.constexpr = False):
    """Weight-only Σ over each chunk of x[m, k]·q[n, k] - without int8's row scale - for x [BLOCK_M, 1, SUB, C,
    PER_WORD] (x_sum: Σ x per chunk), the int32 weight words w [1, BLOCK_N, SUB, C] and, for int4, the chunks'
    group scales s and zero points z (``_group_params``): [BLOCK_M,
    BLOCK_N, C] (axes in ``_chunks_first`` order, SUB at SUB_AXIS). Words decode to f = A + u/D with
    u = q + 128 (int8) or the int4 code, so that Σ x·(u - z) = D·(Σ x·f - (A + z/D)·Σ x), z = 128 (int8),
    8 (symmetric int4) or the group's zero point; A = 1 and D = 2^b (``_decode_words``), or 128 for int4 words
    decoded by byte permutes (PRMT, ``_decode_nibbles``), while int8 words decoded by byte permutes (PRMT,
    ``_decode_bytes``) give q itself; A = HALVES_OFFSET and D = 1 for int4 words decoded two
    codes an instruction (HALVES, ``_decode_halves``); A = -8 and D = 1 for int4 words summed on packed bf16
    instructions (BF16X2, ``_bf16x2_words``, which give Σ x·(u - 8)). A chunk (SUB·PER_WORD ≤ 32 values) lies in
    one int4 group, whose scale applies once per chunk."""
    if SCHEME == INT4_WO:
        A: tl.constexpr = HALVES_OFFSET if HALVES else -8.0 if BF16X2 else 1.0
        D: tl.constexpr = 1.0 if HALVES or BF16X2 else 128.0 if PRMT else 16.0
        if HALVES:
            t = tl.sum(_halves_products(x, w, up), axis=SUB_AXIS)
        elif BF16X2 >= 2:  # each chunk's words summed in bf16 too, then its halves in fp32
            t = _bf16x2_sum(tl.reduce(_bf16x2_words(x, w), SUB_AXIS, _bf16x2_add))
        elif BF16X2:
            t = tl.sum(_bf16x2_sum(_bf16x2_words(x, w)), axis=SUB_AXIS)
        elif PRMT:
            t = tl.sum(tl.sum(x * _decode_nibbles(w), axis=4), axis=SUB_AXIS)
        else:
            t = tl.sum(tl.sum(x * _decode_words(w, PER_WORD), axis=4), axis=SUB_AXIS)
        s = s.to(tl.float32)
        if HAS_ZERO:
            t = (t - (A + z.to(tl.float32) * (1.0 / D)) * x_sum) * (D * s)
        elif A + 8.0 / D == 0.0:  # (BF16X2, symmetric: the sums are of x·(u - 8) already, Σ x is not needed)
            t = t * (D * s)
        else:
            t = (t - (A + 8.0 / D) * x_sum) * (D * s)
    elif PRMT:  # int8 codes q exactly (``_decode_bytes``): the products need no offset correction
        t = tl.sum(tl.sum(x * _decode_bytes(w), axis=4), axis=SUB_AXIS)
    else:
        # flipping each byte's sign bit turns int8 q into u = q + 128 (0x80808080 as int32)
        t = tl.sum(tl.sum(x * _decode_words(w ^ -2139062144, PER_WORD), axis=4), axis=SUB_AXIS)
        t = (t - 1.5 * x_sum) * 256.0  # 1 + 128/256
    return t


@triton.jit
def _words_step(x, w, wu, s, z, su, zu, acc, acc_up, up, SCHEME: tl.constexpr, HAS_ZERO: tl.constexpr,
                GATED: tl.constexpr, PER_WORD: tl.constexpr, SUB_AXIS: tl.constexpr, PRMT: tl.constexpr = False,
                HALVES: tl.constexpr = False, BF16X2: tl.constexpr = False):
    """One K step of ``_qgemv_words_kernel``: x (fp32, or bf16 with X_RAW) times the word tiles w (and wu, the up
    rows, when GATED) into the chunk accumulators, with the step's int4 group parameters (``_step_params``)."""
    if BF16X2 == 3:
        x_sum = _bf16x2_x_sums(x, SUB_AXIS)
    else:
        x_sum = tl.sum(tl.sum(x, axis=4), axis=SUB_AXIS)
    acc += _word_chunk_sums(x, x_sum, w, s, z, up, SCHEME, HAS_ZERO, PER_WORD, SUB_AXIS, PRMT, HALVES, BF16X2)
    if GATED:
        acc_up += _word_chunk_sums(x, x_sum, wu, su, zu, up, SCHEME, HAS_ZERO, PER_WORD, SUB_AXIS, PRMT, HALVES,
                                   BF16X2)
    return acc, acc_up


@triton.jit
def _step_params(k, limit, c3, n3_ok, s_rows, su_rows, scale_ptr, zero_ptr, SCHEME: tl.constexpr,
                 GROUP_SIZE: tl.constexpr, HAS_ZERO: tl.constexpr, GATED: tl.constexpr):
    """The int4 group parameters (s, z, up rows' su, zu) of the K step at k, as loaded (zeros for int8, whose row
    scales apply after the loop, and for z without HAS_ZERO). Chunks at or past ``limit`` (relative to k) read
    nothing. They are weights: a GEMV loads them with the step's words, before the PDL wait and at the top of the
    loop; loaded where they are used, at the step's end, their latency is the step's last wait (session 33)."""
    grp = (k + c3) // GROUP_SIZE
    s_ok = n3_ok & (c3 < limit)
    s, z = _group_params(scale_ptr + s_rows + grp, zero_ptr + s_rows + grp, s_ok, SCHEME, HAS_ZERO)
    su, zu = s, z
    if GATED:
        su, zu = _group_params(scale_ptr + su_rows + grp, zero_ptr + su_rows + grp, s_ok, SCHEME, HAS_ZERO)
    return s, z, su, zu


@triton.jit
def _group_params(s_ptrs, z_ptrs, s_ok, SCHEME: tl.constexpr, HAS_ZERO: tl.constexpr):
    """int4's group (scale, zero point) of each chunk, as loaded: see ``_step_params``."""
    s = tl.zeros(s_ok.shape, dtype=tl.float32)
    z = s
    if SCHEME == INT4_WO:
        s = tl.load(s_ptrs, mask=s_ok, other=0.0)
        if HAS_ZERO:
            z = tl.load(z_ptrs, mask=s_ok, other=0.0)
    return s, z


@triton.jit
def _byte_chunk_sums(x, w_ptrs, n_ok, k_ok, SCHEME: tl.constexpr, EVEN_K: tl.constexpr):
    """Σ over each chunk of x[m, k]·q[n, k] for x [BLOCK_M, 1, C, CHUNK] and the weight bytes at w_ptrs [1,
    BLOCK_N, C, CHUNK]: [BLOCK_M, BLOCK_N, C], scales not applied. W8A8 x is already quantized."""
    w = _load_tile(w_ptrs, n_ok, k_ok, EVEN_K, "evict_first")  # weights are streamed once
    if SCHEME == INT8_WO:
        t = tl.sum(x * _codes_to_f32(w.to(tl.int32), 128), axis=3)
    elif SCHEME == W8A8_INT8:
        t = tl.sum(x * w.to(tl.int32), axis=3)  # int32: exact
    else:
        t = tl.sum(x * w.to(tl.float32), axis=3)  # products of two fp8 values are exact in fp32
    return t


@triton.jit
def _apply_scales(acc, x_scale, w_scale_ptr, offs_n, N, SCHEME: tl.constexpr):
    """fp32 [rows, BLOCK_N] after the K loop: ·w_scale[n] (int8), then for W8A8 in the reference's order
    (acc · x_scale[m]) · w_scale[n]; int4 sums are already scaled."""
    if SCHEME != INT4_WO:
        w_scale = tl.load(w_scale_ptr + offs_n, mask=offs_n < N, other=0.0)[None, :]
        if SCHEME == INT8_WO:
            acc = acc * w_scale
        else:
            acc = (acc.to(tl.float32) * x_scale) * w_scale
    return acc


@triton.jit
def _scale_and_write_back(acc, acc_up, x_scale, scale_ptr, offs_m, offs_n, pid_k, M, N, b_ptr, out_ptr, ws_ptr,
                          stride_om, res_ptr, stride_rm, cnt_ptr, SCHEME: tl.constexpr, HAS_BIAS: tl.constexpr,
                          ACT: tl.constexpr, GATED: tl.constexpr, SPLIT_K: tl.constexpr, HAS_RES: tl.constexpr,
                          REDUCE_LAST: tl.constexpr):
    """The tail every quantized kernel shares: the K-reduced [rows, BLOCK_N] sums (gate rows, and the up rows
    from ``scale_ptr + N`` when GATED) through ``_apply_scales``, then ``linear._write_back`` (plus the residual
    rows when HAS_RES). With split-K the partials go to the workspace; with REDUCE_LAST the tile's last program
    then finishes it (``linear._reduce_if_last``; one counter per tile at ``cnt_ptr``, tiles numbered along grid
    axis 0, then axis 2), else ``_epilogue_kernel`` does, and adds the residual."""
    out = _apply_scales(acc, x_scale, scale_ptr, offs_n, N, SCHEME)
    out_up = out
    if GATED:
        out_up = _apply_scales(acc_up, x_scale, scale_ptr + N, offs_n, N, SCHEME)
    _write_back(out, out_up, offs_m, offs_n, pid_k, M, N, b_ptr, out_ptr, ws_ptr, stride_om,
                res_ptr, stride_rm, HAS_BIAS, ACT, GATED, SPLIT_K, HAS_RES)
    if SPLIT_K > 1 and REDUCE_LAST:
        tile = tl.program_id(0) + tl.program_id(2) * tl.num_programs(0)
        _reduce_if_last(offs_m, offs_n, M, N, b_ptr, out_ptr, ws_ptr, stride_om, res_ptr, stride_rm, cnt_ptr + tile,
                        HAS_BIAS, ACT, GATED, SPLIT_K, HAS_RES)


@triton.jit
def _chunks_first(t, CHUNK_AXIS: tl.constexpr, CHUNKS_FIRST: tl.constexpr):
    """Move a GEMV tile's chunk axis (3 of 5 or 4 axes, or 2 of 4 or 3) to the front when CHUNKS_FIRST. Triton
    gives threads to the axes of a load that are not contiguous in memory in an order that depends on its
    version (3.6: first axis first; 3.9: last axis first): the chunk axis must win in both, so that a thread
    owns whole chunks of x and of the weights and the loop needs no layout conversion (checked in the SASS)."""
    if CHUNKS_FIRST:
        if len(t.shape) == 5:
            t = tl.permute(t, (3, 0, 1, 2, 4))
        elif len(t.shape) == 4 and CHUNK_AXIS == 3:
            t = tl.permute(t, (3, 0, 1, 2))
        elif len(t.shape) == 4:
            t = tl.permute(t, (2, 0, 1, 3))
        else:
            t = tl.permute(t, (2, 0, 1))
    return t


@triton.jit
def _words_ahead(w_ptrs, wu_ptrs, n_ok, kw, limit, PER_WORD: tl.constexpr, GATED: tl.constexpr,
                 EVEN_K: tl.constexpr):
    """(words, up words) of a step loaded outside the K loop (the step PDL peels off, or PREFETCH's next one);
    ``limit`` = what is left of the split from it (≤ 0: none left, nothing read). The K mask is
    ``linear._first_step_ok``'s: one predicate along K for whole steps, so the loads stay 16-byte vectors."""
    w_ok = n_ok & _first_step_ok(kw * PER_WORD, limit, EVEN_K)
    w = tl.load(w_ptrs, mask=w_ok, other=0, eviction_policy="evict_first")
    wu = w
    if GATED:
        wu = tl.load(wu_ptrs, mask=w_ok, other=0, eviction_policy="evict_first")
    return w, wu


@triton.jit
def _words_then_x(w_ptrs, wu_ptrs, x_ptrs, n_ok, m_ok, kw, kx, limit, PER_WORD: tl.constexpr, GATED: tl.constexpr,
                  EVEN_K: tl.constexpr, PDL: tl.constexpr, X_RAW: tl.constexpr):
    """A word GEMV's first step loaded outside the K loop (the step PDL peels off, or the whole K without the loop):
    its words first, then (with PDL, once the kernel before has finished) its x (``_words_x``); also x's K mask."""
    w, wu = _words_ahead(w_ptrs, wu_ptrs, n_ok, kw, limit, PER_WORD, GATED, EVEN_K)
    pdl_wait(PDL)
    x_ok = _first_step_ok(kx, limit, EVEN_K)
    x = _words_x(tl.load(x_ptrs, mask=m_ok & x_ok, other=0.0), X_RAW)
    return w, wu, x, x_ok


@triton.jit
def _words_x(x, X_RAW: tl.constexpr):
    """x as a word GEMV sums it: in fp32, or as loaded (bf16) when X_RAW (BF16X2 = 3, and a bf16 norm weight if any:
    the packed bf16 pairs come from x's own bits, and Σ x from them)."""
    if not X_RAW:
        x = x.to(tl.float32)
    return x


@triton.jit
def _squares(x):
    """x² in fp32 (the norm's sums), x in fp32 or its own bf16."""
    x = x.to(tl.float32)
    return x * x


@triton.jit
def _norm_weighted(x, g):
    """x times the norm's weight g (HAS_NORM_W): in fp32, or for bf16 x kept as loaded (X_RAW, g bf16 then) on packed
    bf16 fmas with -0 (``MUL_BF16``), which round the exact product once to bf16: the bf16 that the packed sums
    make of the fp32 product, so the products are the same."""
    if x.dtype == tl.bfloat16:
        x = tl.inline_asm_elementwise(MUL_BF16, "=r,r,r", [x, g], dtype=tl.bfloat16, is_pure=True, pack=2)
    else:
        x = x * g.to(tl.float32)
    return x


@triton.jit
def _row_ptrs(w_ptr, offs_n, N, stride_wn, stride_sn, w_start, kw, CHUNKS_FIRST: tl.constexpr):
    """What a word GEMV needs of its weight rows offs_n: (n_ok, word pointers of the rows and of their up rows
    (N rows on), int4 group-parameter row offsets of both [1, BLOCK_N, 1], n3_ok), in ``_chunks_first`` order."""
    n_ok = _chunks_first(offs_n[None, :, None, None] < N, 3, CHUNKS_FIRST)
    w_ptrs = w_ptr + _chunks_first(offs_n.to(tl.int64)[None, :, None, None], 3, CHUNKS_FIRST) * stride_wn
    w_ptrs += w_start + kw
    wu_ptrs = w_ptrs + tl.cast(N, tl.int64) * stride_wn
    s_rows = _chunks_first(offs_n.to(tl.int64)[None, :, None], 2, CHUNKS_FIRST) * stride_sn
    su_rows = s_rows + tl.cast(N, tl.int64) * stride_sn
    n3_ok = _chunks_first((offs_n < N)[None, :, None], 2, CHUNKS_FIRST)
    return n_ok, w_ptrs, wu_ptrs, s_rows, su_rows, n3_ok


@triton.jit
def _norm_rstd(squares, K, eps, CHUNKS_FIRST: tl.constexpr):
    """RMSNorm's rsqrt(mean(x²) + eps) per row of x [BLOCK_M, 1] from the 5-D tile of x² sums."""
    row_sq = tl.sum(tl.sum(tl.sum(squares, axis=4), axis=3), axis=2)  # [chunks, BLOCK_M] or [BLOCK_M, 1]
    if CHUNKS_FIRST:
        row_sq = tl.sum(row_sq, axis=0)
    else:
        row_sq = tl.sum(row_sq, axis=1)
    return tl.rsqrt(row_sq / K + tl.cast(eps, tl.float32))[:, None]  # eps: fp64 under Inductor


@triton.jit
def _words_tiles(x_ptrs, nw_ptrs, w_ptr, scale_ptr, zero_ptr, b_ptr, out_ptr, ws_ptr, res_ptr, cnt_ptr,
                 offs_m, offs_n, m_ok, kx, kw, c3, M, N, K, eps, halves_up, stride_wn, stride_sn, stride_om,
                 stride_rm,
                 SCHEME: tl.constexpr, GROUP_SIZE: tl.constexpr, HAS_ZERO: tl.constexpr, HAS_BIAS: tl.constexpr,
                 ACT: tl.constexpr, GATED: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                 NUM_CHUNKS: tl.constexpr, PER_WORD: tl.constexpr, CHUNKS_FIRST: tl.constexpr,
                 EVEN_K: tl.constexpr, PDL: tl.constexpr, NORM: tl.constexpr, HAS_NORM_W: tl.constexpr,
                 HAS_RES: tl.constexpr, PRMT: tl.constexpr, TILES: tl.constexpr, PDL_EARLY: tl.constexpr,
                 HALVES: tl.constexpr, BF16X2: tl.constexpr, X_RAW: tl.constexpr):
    """``_qgemv_words_kernel`` with TILES > 0: the whole K is one step and not split, so the program loads its
    rows of x (normalized, times the norm's weight) once and keeps them for TILES tiles of BLOCK_N weight rows,
    grid-strided (tile p, p + programs, ...). Each tile's words are loaded before the tile before is summed and
    written. The sums are those of the K loop, in the same order."""
    SUB_AXIS: tl.constexpr = 3 if CHUNKS_FIRST else 2
    CHUNK_AXIS: tl.constexpr = 0 if CHUNKS_FIRST else 2
    step_n = tl.num_programs(0) * BLOCK_N  # weight rows from one of the program's tiles to the next
    n_ok, w_ptrs, wu_ptrs, s_rows, su_rows, n3_ok = _row_ptrs(w_ptr, offs_n, N, stride_wn, stride_sn, 0, kw,
                                                              CHUNKS_FIRST)
    s, z, su, zu = _step_params(0, K, c3, n3_ok, s_rows, su_rows, scale_ptr, zero_ptr, SCHEME, GROUP_SIZE, HAS_ZERO,
                                GATED)
    w, wu, x, x_ok = _words_then_x(w_ptrs, wu_ptrs, x_ptrs, n_ok, m_ok, kw, kx, K, PER_WORD, GATED, EVEN_K, PDL,
                                   X_RAW)
    if NORM:
        rstd = _norm_rstd(_squares(x), K, eps, CHUNKS_FIRST)
        if HAS_NORM_W:
            x = _norm_weighted(x, tl.load(nw_ptrs, mask=x_ok, other=0.0))
    for t in range(TILES):
        # the next tile's words and group parameters (none after the last: a limit of 0 reads nothing)
        ahead = tl.where(t + 1 < TILES, K, 0)
        n_ok, w_ptrs, wu_ptrs, s_rows, su_rows, n3_ok = _row_ptrs(w_ptr, offs_n + step_n, N, stride_wn, stride_sn, 0,
                                                                  kw, CHUNKS_FIRST)
        w_next, wu_next = _words_ahead(w_ptrs, wu_ptrs, n_ok, kw, ahead, PER_WORD, GATED, EVEN_K)
        s_next, z_next, su_next, zu_next = _step_params(0, ahead, c3, n3_ok, s_rows, su_rows, scale_ptr, zero_ptr,
                                                        SCHEME, GROUP_SIZE, HAS_ZERO, GATED)
        acc = _chunks_first(tl.zeros((BLOCK_M, BLOCK_N, NUM_CHUNKS), dtype=tl.float32), 2, CHUNKS_FIRST)
        acc, acc_up = _words_step(x, w, wu, s, z, su, zu, acc, acc, halves_up, SCHEME, HAS_ZERO, GATED, PER_WORD,
                                  SUB_AXIS, PRMT, HALVES, BF16X2)
        acc_n = tl.sum(acc, axis=CHUNK_AXIS)
        acc_up_n = tl.sum(acc_up, axis=CHUNK_AXIS)
        if NORM:
            acc_n *= rstd
            acc_up_n *= rstd
        _scale_and_write_back(acc_n, acc_up_n, tl.zeros((BLOCK_M, 1), dtype=tl.float32), scale_ptr, offs_m, offs_n,
                              0, M, N, b_ptr, out_ptr, ws_ptr, stride_om, res_ptr, stride_rm, cnt_ptr, SCHEME,
                              HAS_BIAS, ACT, GATED, 1, HAS_RES, False)
        w, wu, s, z, su, zu = w_next, wu_next, s_next, z_next, su_next, zu_next
        offs_n += step_n
    if not PDL_EARLY:
        pdl_launch_dependents(PDL)


@triton.jit
def _qgemv_words_kernel(
    # Pointers (w: the weight as int32 words, 4 int8 or 8 int4 codes each)
    x_ptr, w_ptr, scale_ptr, zero_ptr, b_ptr, out_ptr, ws_ptr, res_ptr, nw_ptr, cnt_ptr,
    # Matrix dimensions (N: output columns; the weight has 2N rows when GATED), the RMSNorm epsilon, and 2^16
    # (``_low_half_up``: HALVES's multiplier, an argument so that the compiler cannot fold it)
    M, N, K, K_PER_SPLIT, eps, halves_up,
    # Strides (rows, in elements and words; unit stride along K)
    stride_xm, stride_wn, stride_sn, stride_om, stride_rm,
    # Meta-parameters
    SCHEME: tl.constexpr, GROUP_SIZE: tl.constexpr, HAS_ZERO: tl.constexpr, HAS_BIAS: tl.constexpr,
    ACT: tl.constexpr, GATED: tl.constexpr, SPLIT_K: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, SUB: tl.constexpr, NUM_CHUNKS: tl.constexpr,
    PER_WORD: tl.constexpr, CHUNKS_FIRST: tl.constexpr, EVEN_K: tl.constexpr, PDL: tl.constexpr,
    NORM: tl.constexpr = False, HAS_NORM_W: tl.constexpr = False, HAS_RES: tl.constexpr = False,
    REDUCE_LAST: tl.constexpr = False, PRMT: tl.constexpr = False, PREFETCH: tl.constexpr = False,
    TILES: tl.constexpr = 0, PDL_EARLY: tl.constexpr = False, HALVES: tl.constexpr = False,
    BF16X2: tl.constexpr = False,
):
    """Weight-only out[m, n] = epilogue(scales · Σ_k x[m, k] q[n, k]) on CUDA cores, for small M. Every thread
    owns one chunk of SUB consecutive weight words (one 8- or 16-byte load) per weight row and step, and
    the matching SUB·PER_WORD values of x. Tiles are 5-D, [rows of x, weight rows, SUB, chunks, PER_WORD]:
    the word axis comes before the chunk axis, so that the vectorized loads of x (contiguous along the last
    axis) and of the words (contiguous along SUB) give every thread the same chunk, with no shuffle in the loop;
    CHUNKS_FIRST moves the chunk axis to the front (``_chunks_first``).

    NORM (SPLIT_K = 1) projects x · rsqrt(mean(x²) + eps) [· g] as ``linear._gemv_kernel`` does: x² is accumulated
    beside the products and the row's rsqrt scales the sums after the loop. The norm's weight g (HAS_NORM_W) is
    not folded into the quantized weight, which would change its quantization: x is multiplied by it as it is
    loaded, once per thread for all of its weight rows. HAS_RES adds the residual rows in the epilogue.

    PREFETCH loads each K step's x, words and group parameters one step ahead (registers double-buffered): step
    i+1's loads are in flight while step i is decoded and summed, where the plain loop waits for each step's loads
    after the last step's arithmetic. The sums are the same, in the same order.

    Every step's group parameters are loaded with its words (``_step_params``): before the PDL wait, at the top of
    the loop, and with each next tile's words under TILES. (Where the loop's loads are issued is ptxas's choice:
    in the 8B MLP shapes' tuned mode-3 tile it still issues 2 of a step's 4 word loads mid-loop, in any source
    order, at 64 registers; without PDL, words first gives 3 of 4 at the top.)

    TILES > 0 (one K step, SPLIT_K = 1): no K loop; each program does TILES tiles of weight rows with one load of
    x (``_words_tiles``), and the launcher's grid has that many times fewer programs along axis 0.

    PDL_EARLY (``pdl_early_trigger``, ``utils.early_trigger``) lets the next kernel launch first thing, not after
    the loop."""
    if PDL_EARLY:
        pdl_launch_dependents(PDL)
    CHUNK: tl.constexpr = SUB * PER_WORD
    BLOCK_K: tl.constexpr = CHUNK * NUM_CHUNKS
    SUB_AXIS: tl.constexpr = 3 if CHUNKS_FIRST else 2  # of the 5-D tiles
    CHUNK_AXIS: tl.constexpr = 0 if CHUNKS_FIRST else 2  # of the 3-D chunk sums
    # x kept in its dtype (bf16: ``_words_x``), times a bf16 norm weight on packed bf16 fmas (``_norm_weighted``)
    X_RAW: tl.constexpr = BF16X2 == 3 and (not HAS_NORM_W or nw_ptr.dtype.element_ty == tl.bfloat16)
    # -- map program ids to output columns, rows of x and a slice of K
    offs_m, offs_n, pid_k, k_start, k_end = _gemv_slice(K, K_PER_SPLIT, BLOCK_M, BLOCK_N)
    # -- create pointers (row offsets in int64): word j of chunk c holds k = (c·SUB + j)·PER_WORD + v
    j5 = tl.arange(0, SUB)[None, None, :, None, None]
    c5 = tl.arange(0, NUM_CHUNKS)[None, None, None, :, None]
    kx = _chunks_first((c5 * SUB + j5) * PER_WORD + tl.arange(0, PER_WORD)[None, None, None, None, :], 3,
                       CHUNKS_FIRST)
    kw = tl.arange(0, NUM_CHUNKS)[None, None, None, :] * SUB + tl.arange(0, SUB)[None, None, :, None]
    kw = _chunks_first(kw, 3, CHUNKS_FIRST)
    m_ok = _chunks_first(offs_m[:, None, None, None, None] < M, 3, CHUNKS_FIRST)
    x_ptrs = x_ptr + _chunks_first(offs_m.to(tl.int64)[:, None, None, None, None], 3, CHUNKS_FIRST) * stride_xm
    x_ptrs += k_start + kx
    # (k_start is a multiple of BLOCK_K; saying so keeps the word loads 16-byte vectors)
    w_start = tl.multiple_of(k_start // PER_WORD, SUB * NUM_CHUNKS)
    nw_ptrs = nw_ptr + k_start + kx  # the norm's weight, along K like x
    # int4 group parameters per chunk [1, BLOCK_N, NUM_CHUNKS]; the group index moves with k
    c3 = _chunks_first(tl.arange(0, NUM_CHUNKS)[None, None, :] * CHUNK, 2, CHUNKS_FIRST)
    if TILES > 0:
        tl.static_assert(SPLIT_K == 1)
        _words_tiles(x_ptrs, nw_ptrs, w_ptr, scale_ptr, zero_ptr, b_ptr, out_ptr, ws_ptr, res_ptr, cnt_ptr,
                     offs_m, offs_n, m_ok, kx, kw, c3, M, N, K, eps, halves_up, stride_wn, stride_sn, stride_om,
                     stride_rm,
                     SCHEME, GROUP_SIZE, HAS_ZERO, HAS_BIAS, ACT, GATED, BLOCK_M, BLOCK_N, NUM_CHUNKS, PER_WORD,
                     CHUNKS_FIRST, EVEN_K, PDL, NORM, HAS_NORM_W, HAS_RES, PRMT, TILES, PDL_EARLY, HALVES,
                     BF16X2, X_RAW)
        return
    n_ok, w_ptrs, wu_ptrs, s_rows, su_rows, n3_ok = _row_ptrs(w_ptr, offs_n, N, stride_wn, stride_sn, w_start, kw,
                                                              CHUNKS_FIRST)
    # -- iterate over this split's K range (K is a multiple of PER_WORD: masks per word)
    acc = _chunks_first(tl.zeros((BLOCK_M, BLOCK_N, NUM_CHUNKS), dtype=tl.float32), 2, CHUNKS_FIRST)
    acc_up = acc
    squares = _chunks_first(tl.zeros((BLOCK_M, 1, SUB, NUM_CHUNKS, PER_WORD), dtype=tl.float32), 3, CHUNKS_FIRST)
    k_loop = k_start
    if PDL:
        # the first step's words are loaded before waiting for x from the kernels before (see linear._gemv_kernel)
        limit = k_end - k_start  # this split may be empty
        s, z, su, zu = _step_params(k_start, limit, c3, n3_ok, s_rows, su_rows, scale_ptr, zero_ptr, SCHEME,
                                    GROUP_SIZE, HAS_ZERO, GATED)
        w, wu, x, x_ok = _words_then_x(w_ptrs, wu_ptrs, x_ptrs, n_ok, m_ok, kw, kx, limit, PER_WORD, GATED, EVEN_K,
                                       PDL, X_RAW)
        if NORM:
            squares += _squares(x)
            if HAS_NORM_W:
                x = _norm_weighted(x, tl.load(nw_ptrs, mask=x_ok, other=0.0))
        acc, acc_up = _words_step(x, w, wu, s, z, su, zu, acc, acc_up, halves_up, SCHEME, HAS_ZERO, GATED, PER_WORD,
                                  SUB_AXIS, PRMT, HALVES, BF16X2)
        x_ptrs += BLOCK_K
        w_ptrs += BLOCK_K // PER_WORD
        wu_ptrs += BLOCK_K // PER_WORD
        nw_ptrs += BLOCK_K
        k_loop += BLOCK_K
    if PREFETCH:  # the loop's first step, loaded as the loop loads each next one (x stays in its dtype until used)
        x_next = tl.load(x_ptrs, mask=m_ok & _first_step_ok(kx, k_end - k_loop, EVEN_K), other=0.0)
        w_next, wu_next = _words_ahead(w_ptrs, wu_ptrs, n_ok, kw, k_end - k_loop, PER_WORD, GATED, EVEN_K)
        s_next, z_next, su_next, zu_next = _step_params(k_loop, k_end - k_loop, c3, n3_ok, s_rows, su_rows,
                                                        scale_ptr, zero_ptr, SCHEME, GROUP_SIZE, HAS_ZERO, GATED)
    for k in range(k_loop, k_end, BLOCK_K):
        if PREFETCH:
            x, w, wu = _words_x(x_next, X_RAW), w_next, wu_next
            s, z, su, zu = s_next, z_next, su_next, zu_next
            ahead = k_end - k - BLOCK_K
            x_next = tl.load(x_ptrs + BLOCK_K, mask=m_ok & _first_step_ok(kx, ahead, EVEN_K), other=0.0)
            w_next, wu_next = _words_ahead(w_ptrs + BLOCK_K // PER_WORD, wu_ptrs + BLOCK_K // PER_WORD, n_ok, kw,
                                           ahead, PER_WORD, GATED, EVEN_K)
            s_next, z_next, su_next, zu_next = _step_params(k + BLOCK_K, ahead, c3, n3_ok, s_rows, su_rows, scale_ptr,
                                                            zero_ptr, SCHEME, GROUP_SIZE, HAS_ZERO, GATED)
        else:
            k_ok = kw * PER_WORD < K - k
            w = _load_tile(w_ptrs, n_ok, k_ok, EVEN_K, "evict_first")  # weights are streamed once
            wu = w
            if GATED:
                wu = _load_tile(wu_ptrs, n_ok, k_ok, EVEN_K, "evict_first")
            s, z, su, zu = _step_params(k, K - k, c3, n3_ok, s_rows, su_rows, scale_ptr, zero_ptr, SCHEME, GROUP_SIZE,
                                        HAS_ZERO, GATED)
            x = _words_x(_load_tile(x_ptrs, m_ok, kx < K - k, EVEN_K, ""), X_RAW)
        if NORM:
            squares += _squares(x)
            if HAS_NORM_W:
                if EVEN_K:
                    x = _norm_weighted(x, tl.load(nw_ptrs))
                else:
                    x = _norm_weighted(x, tl.load(nw_ptrs, mask=kx < K - k, other=0.0))
                nw_ptrs += BLOCK_K
        wu_ptrs += BLOCK_K // PER_WORD
        acc, acc_up = _words_step(x, w, wu, s, z, su, zu, acc, acc_up, halves_up, SCHEME, HAS_ZERO, GATED, PER_WORD,
                                  SUB_AXIS, PRMT, HALVES, BF16X2)
        x_ptrs += BLOCK_K
        w_ptrs += BLOCK_K // PER_WORD
    if not PDL_EARLY:
        pdl_launch_dependents(PDL)  # the next kernel may set up and load its weights during this tail
    # -- normalize, scale and write back (no activation scale)
    acc_n = tl.sum(acc, axis=CHUNK_AXIS)
    acc_up_n = tl.sum(acc_up, axis=CHUNK_AXIS)
    if NORM:
        rstd = _norm_rstd(squares, K, eps, CHUNKS_FIRST)
        acc_n *= rstd
        acc_up_n *= rstd
    _scale_and_write_back(acc_n, acc_up_n, tl.zeros((BLOCK_M, 1), dtype=tl.float32), scale_ptr, offs_m, offs_n,
                          pid_k, M, N, b_ptr, out_ptr, ws_ptr, stride_om, res_ptr, stride_rm, cnt_ptr, SCHEME,
                          HAS_BIAS, ACT, GATED, SPLIT_K, HAS_RES, REDUCE_LAST)


@triton.jit
def _qgemv_bytes_kernel(
    # Pointers
    x_ptr, w_ptr, scale_ptr, b_ptr, out_ptr, ws_ptr, res_ptr, cnt_ptr,
    # Matrix dimensions (N: output columns; the weight has 2N rows when GATED)
    M, N, K, K_PER_SPLIT,
    # Strides (rows; unit stride along K)
    stride_xm, stride_wn, stride_om, stride_rm,
    # Meta-parameters
    SCHEME: tl.constexpr, HAS_BIAS: tl.constexpr, ACT: tl.constexpr, GATED: tl.constexpr, SPLIT_K: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CHUNK: tl.constexpr, NUM_CHUNKS: tl.constexpr,
    CHUNKS_FIRST: tl.constexpr, EVEN_K: tl.constexpr, PDL: tl.constexpr, HAS_RES: tl.constexpr = False,
    REDUCE_LAST: tl.constexpr = False, PDL_EARLY: tl.constexpr = False,
):
    """out[m, n] = epilogue(scales · Σ_k x[m, k] q[n, k]) on CUDA cores for one-byte weights (W8A8, and int8
    when K is not a multiple of 4), for small M. Tiles are 4-D, [rows of x, weight rows, chunks, CHUNK],
    CHUNK = 16 bytes of x, so the x tile and the weight tile get the same layout. W8A8 programs first scan
    their rows of x for max|x| (over all of K, whatever the split) and quantize each x tile as they load it,
    so decode needs no separate quantization launch. CHUNKS_FIRST and PDL_EARLY as in ``_qgemv_words_kernel``."""
    if PDL_EARLY:
        pdl_launch_dependents(PDL)
    BLOCK_K: tl.constexpr = CHUNK * NUM_CHUNKS
    CHUNK_AXIS: tl.constexpr = 0 if CHUNKS_FIRST else 2  # of the 3-D chunk sums
    # -- map program ids to output columns, rows of x and a slice of K
    offs_m, offs_n, pid_k, k_start, k_end = _gemv_slice(K, K_PER_SPLIT, BLOCK_M, BLOCK_N)
    # -- create pointers (row offsets in int64); chunk c of a step covers k = c·CHUNK ... c·CHUNK + CHUNK - 1
    kx = tl.arange(0, NUM_CHUNKS)[None, None, :, None] * CHUNK + tl.arange(0, CHUNK)[None, None, None, :]
    kx = _chunks_first(kx, 2, CHUNKS_FIRST)
    m_ok = _chunks_first(offs_m[:, None, None, None] < M, 2, CHUNKS_FIRST)
    n_ok = _chunks_first(offs_n[None, :, None, None] < N, 2, CHUNKS_FIRST)
    x_ptrs = x_ptr + _chunks_first(offs_m.to(tl.int64)[:, None, None, None], 2, CHUNKS_FIRST) * stride_xm + kx
    w_ptrs = w_ptr + _chunks_first(offs_n.to(tl.int64)[None, :, None, None], 2, CHUNKS_FIRST) * stride_wn
    w_ptrs += k_start + kx
    wu_ptrs = w_ptrs + tl.cast(N, tl.int64) * stride_wn
    # -- W8A8: each row's activation scale
    x_scale = tl.zeros((BLOCK_M, 1), dtype=tl.float32)
    x_rcp = x_scale
    pdl_wait(PDL)  # x comes from the kernels before
    if SCHEME >= W8A8_INT8:
        amax = _abs_max(x_ptrs, m_ok, kx, K, BLOCK_K)
        x_scale = _token_scale(tl.max(tl.max(amax, axis=3), axis=CHUNK_AXIS), SCHEME)
        x_rcp = _scale_rcp(x_scale)
    x_ptrs += k_start
    # -- iterate over this split's K range
    acc = tl.zeros((BLOCK_M, BLOCK_N, NUM_CHUNKS), dtype=tl.float32)
    if SCHEME == W8A8_INT8:
        acc = tl.zeros((BLOCK_M, BLOCK_N, NUM_CHUNKS), dtype=tl.int32)
    acc = _chunks_first(acc, 2, CHUNKS_FIRST)
    acc_up = acc
    for k in range(k_start, k_end, BLOCK_K):
        k_ok = kx < K - k
        x = _load_tile(x_ptrs, m_ok, k_ok, EVEN_K, "").to(tl.float32)
        if SCHEME >= W8A8_INT8:
            x = _quantize(x, _chunks_first(x_scale[:, :, None, None], 2, CHUNKS_FIRST),
                          _chunks_first(x_rcp[:, :, None, None], 2, CHUNKS_FIRST), SCHEME)
        acc += _byte_chunk_sums(x, w_ptrs, n_ok, k_ok, SCHEME, EVEN_K)
        if GATED:
            acc_up += _byte_chunk_sums(x, wu_ptrs, n_ok, k_ok, SCHEME, EVEN_K)
            wu_ptrs += BLOCK_K
        x_ptrs += BLOCK_K
        w_ptrs += BLOCK_K
    if not PDL_EARLY:
        pdl_launch_dependents(PDL)
    # -- scale and write back
    _scale_and_write_back(tl.sum(acc, axis=CHUNK_AXIS), tl.sum(acc_up, axis=CHUNK_AXIS), x_scale, scale_ptr,
                          offs_m, offs_n, pid_k, M, N, b_ptr, out_ptr, ws_ptr, stride_om, res_ptr, stride_rm, cnt_ptr,
                          SCHEME, HAS_BIAS, ACT, GATED, SPLIT_K, HAS_RES, REDUCE_LAST)


# int4 → bf16 / fp16 pairs (``_dequant_int4_pairs``): for 4 packed bytes ($4), the low nibbles (even k) go to $0, $1
# and the high nibbles (odd k) to $2, $3, two values a register. PRMT sets each code u as the low byte under the
# magic byte MAGIC (bf16 0x43uu = 128 + u, fp16 0x64uu = 1024 + u, exact), a subtraction of the magic plus the
# integer part of the zero point ($7) leaves u - zi exactly, and one FMA per pair gives (u - zi)·s - zf·s ($5, $9).
_INT4_PAIRS_ASM = """{
.reg .b32 lo, hi, magic;
mov.b32 magic, MAGIC;
and.b32 lo, $4, 0x0F0F0F0F;
shr.u32 hi, $4, 4;
and.b32 hi, hi, 0x0F0F0F0F;
prmt.b32 $0, lo, magic, 0x4140;
prmt.b32 $1, lo, magic, 0x4342;
prmt.b32 $2, hi, magic, 0x4140;
prmt.b32 $3, hi, magic, 0x4342;
sub.rn.TYPE $0, $0, $7;
sub.rn.TYPE $1, $1, $7;
sub.rn.TYPE $2, $2, $7;
sub.rn.TYPE $3, $3, $7;
fma.rn.TYPE $0, $0, $5, $9;
fma.rn.TYPE $1, $1, $5, $9;
fma.rn.TYPE $2, $2, $5, $9;
fma.rn.TYPE $3, $3, $5, $9;
}"""
# One line: Inductor copies these globals by repr into kernel source that it embeds in a triple-quoted string, where
# an escaped newline would become a real one inside a one-line string literal (a SyntaxError at import).
_INT4_PAIRS_ASM = " ".join(_INT4_PAIRS_ASM.split())
INT4_PAIRS_BF16 = tl.constexpr(_INT4_PAIRS_ASM.replace("MAGIC", "0x43434343").replace("TYPE", "bf16x2"))
INT4_PAIRS_F16 = tl.constexpr(_INT4_PAIRS_ASM.replace("MAGIC", "0x64646464").replace("TYPE", "f16x2"))


@triton.jit
def _dequant_int4_pairs(packed, s, z, dtype: tl.constexpr):
    """A packed int4 tile [BLOCK_N, BLOCK_K / 2] (uint8, the low nibble first) → [BLOCK_N, BLOCK_K] in ``dtype``
    (bf16 or fp16) on packed half-precision instructions: about 2 instructions a weight against 4-5 for decoding
    through fp32. s, z [BLOCK_N, 1] (fp32) are the tile's group scale and zero point. The zero point's integer
    part zi comes off exactly and its fraction as one rounded term: w = (u - zi)·s - zf·s rounded once, off the
    reference (q - z)·s by at most 2^-9·s more than the final rounding (the int4 grid's own error is ~s/3)."""
    zi = tl.floor(z)
    packed, s_d = tl.broadcast(packed, s.to(dtype))
    packed, c = tl.broadcast(packed, (-(z - zi) * s).to(dtype))
    if dtype == tl.float16:
        packed, zz = tl.broadcast(packed, (zi + 1024.0).to(dtype))
        even, odd = tl.inline_asm_elementwise(INT4_PAIRS_F16, "=r,=r,=r,=r,r,r,r,r,r,r,r", [packed, s_d, zz, c],
                                              dtype=(tl.float16, tl.float16), is_pure=True, pack=4)
    else:
        packed, zz = tl.broadcast(packed, (zi + 128.0).to(dtype))
        even, odd = tl.inline_asm_elementwise(INT4_PAIRS_BF16, "=r,=r,=r,=r,r,r,r,r,r,r,r", [packed, s_d, zz, c],
                                              dtype=(tl.bfloat16, tl.bfloat16), is_pure=True, pack=4)
    return tl.interleave(even, odd)


@triton.jit
def _gemm_weight_tile(w_ptrs, s_rows, z_rows, n_ok, k_ok, k, dtype,
                      SCHEME: tl.constexpr, GROUP_SIZE: tl.constexpr, HAS_ZERO: tl.constexpr,
                      EVEN_K: tl.constexpr, PAIRS: tl.constexpr):
    """The [BLOCK_K, BLOCK_N] operand of tl.dot: weight-only tiles dequantized in registers to x's dtype (int8
    codes are exact in it; int8's row scale is applied after the loop); W8A8 tiles as stored. PAIRS: int4 through
    ``_dequant_int4_pairs`` (compiled bf16 / fp16 only: inline PTX)."""
    if SCHEME == INT4_WO:
        # packed [BLOCK_N, BLOCK_K / 2] rows; BLOCK_K divides GROUP_SIZE, so the whole tile is in group k / G
        s = tl.load(s_rows + k // GROUP_SIZE, mask=n_ok, other=0.0).to(tl.float32)
        z = s
        if HAS_ZERO:
            z = tl.load(z_rows + k // GROUP_SIZE, mask=n_ok, other=0.0).to(tl.float32)
        if PAIRS:
            if not HAS_ZERO:
                z = tl.full(s.shape, 8.0, tl.float32)
            w = tl.trans(_dequant_int4_pairs(tl.load(w_ptrs, mask=n_ok, other=0), s, z, dtype))
        else:
            w = _dequant_tile(tl.load(w_ptrs, mask=n_ok, other=0), s, z, SCHEME, HAS_ZERO, dtype == tl.float32)
            w = tl.trans(w.to(dtype))
    elif SCHEME == INT8_WO:
        w = _load_tile(w_ptrs, n_ok, k_ok, EVEN_K, "").to(dtype)
    else:
        w = _load_tile(w_ptrs, n_ok, k_ok, EVEN_K, "")
    return w


@triton.jit
def _qdot(x, w, acc, part, step, SCHEME: tl.constexpr, FP32_IEEE: tl.constexpr, BLOCK_K: tl.constexpr,
          FP8_PROMOTE: tl.constexpr):
    """acc (and fp8's partial sums ``part``) after tile step number ``step`` of the K loop.

    Hopper's fp8 MMA adds its products with a ~14-bit accumulator. FP8_PROMOTE = 0 keeps the sums there for the
    whole K loop, as cuBLAS's fast-accumulation mode does (torchao's fp8 inference default): ~0.1-0.3% output
    error at K = 4-14k, against the ~3.7% of rounding x and w to e4m3. Otherwise the sums go into fp32 every
    FP8_PROMOTE tile steps: at 1 the MMA does it itself after each step, which serializes the MMAs; above, the
    MMAs chain into ``part``, added to acc (and zeroed) at the end of each interval."""
    if SCHEME == W8A8_INT8:
        acc = tl.dot(x, w, acc, out_dtype=tl.int32)
    elif SCHEME == W8A8_FP8:
        if FP8_PROMOTE == 0:
            acc = tl.dot(x, w, acc)
        elif FP8_PROMOTE == 1:
            acc = tl.dot(x, w, acc, max_num_imprecise_acc=BLOCK_K)
        else:
            part = tl.dot(x, w, part)
            if step % FP8_PROMOTE == FP8_PROMOTE - 1:
                acc += part
                part = tl.zeros_like(part)
    else:
        acc = _dot(x, w, acc, FP32_IEEE)
    return acc, part


@triton.jit
def _qgemm_kernel(
    # Pointers
    x_ptr, x_scale_ptr, w_ptr, scale_ptr, zero_ptr, b_ptr, out_ptr, ws_ptr, res_ptr, cnt_ptr,
    # Matrix dimensions (N: output columns; the weight has 2N rows when GATED)
    M, N, K, K_PER_SPLIT,
    # Strides (rows; unit stride along K)
    stride_xm, stride_wn, stride_sn, stride_om, stride_rm,
    # Meta-parameters
    SCHEME: tl.constexpr, GROUP_SIZE: tl.constexpr, HAS_ZERO: tl.constexpr, HAS_BIAS: tl.constexpr,
    ACT: tl.constexpr, GATED: tl.constexpr, SPLIT_K: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
    EVEN_K: tl.constexpr, FP32_IEEE: tl.constexpr, FP8_PROMOTE: tl.constexpr, PAIRS: tl.constexpr = False,
    SWAP: tl.constexpr = False, HAS_RES: tl.constexpr = False, REDUCE_LAST: tl.constexpr = False,
):
    """out = epilogue(scales · x qᵀ) with tl.dot on [BLOCK_M, BLOCK_N] tiles: x in its dtype against weight
    tiles dequantized in registers (weight-only), or per-token quantized x (``_quantize_rows_kernel``) against
    the int8 (→ int32) / fp8 (→ fp32) weight. Programs are visited GROUP_M rows of tiles at a time, column by
    column, so a weight tile is still in L2 when the next row of tiles needs it; skinny use adds split-K.
    SWAP (weight-only): the MMA computes outᵀ = w xᵀ, the dequantized weight tile as its first operand, which
    Hopper's wgmma can take from registers (the second must come from shared memory); acc is transposed once
    after the loop."""
    # -- map program ids to a tile (grouped ordering) and a slice of K
    offs_m, offs_n, pid_k, k_start, k_end = _dot_slice(M, N, K, K_PER_SPLIT, BLOCK_M, BLOCK_N, GROUP_M)
    offs_k = tl.arange(0, BLOCK_K)
    # -- create pointers: x [BLOCK_M, BLOCK_K]; weight as wᵀ [BLOCK_K, BLOCK_N], int4 as packed rows
    m_ok = (offs_m < M)[:, None]
    rows = offs_n.to(tl.int64)
    x_ptrs = x_ptr + offs_m.to(tl.int64)[:, None] * stride_xm + (k_start + offs_k)[None, :]
    if SCHEME == INT4_WO:
        n_ok = (offs_n < N)[:, None]
        w_ptrs = w_ptr + rows[:, None] * stride_wn + (k_start // 2 + tl.arange(0, BLOCK_K // 2))[None, :]
        s_rows = scale_ptr + rows[:, None] * stride_sn
        z_rows = zero_ptr + rows[:, None] * stride_sn
    else:
        n_ok = (offs_n < N)[None, :]
        w_ptrs = w_ptr + rows[None, :] * stride_wn + (k_start + offs_k)[:, None]
        s_rows = scale_ptr
        z_rows = zero_ptr
    up_rows = tl.cast(N, tl.int64) * stride_wn
    up_s_rows = tl.cast(N, tl.int64) * stride_sn
    # -- iterate
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    if SCHEME == W8A8_INT8:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
    acc_up = acc
    part = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)  # fp8's sums since the last promotion
    part_up = part
    acc_t = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)  # SWAP: outᵀ
    acc_up_t = acc_t
    for k in range(k_start, k_end, BLOCK_K):
        x = _load_tile(x_ptrs, m_ok, offs_k[None, :] < K - k, EVEN_K, "")
        k_ok = offs_k[:, None] < K - k
        step = (k - k_start) // BLOCK_K
        w = _gemm_weight_tile(w_ptrs, s_rows, z_rows, n_ok, k_ok, k, x.dtype, SCHEME, GROUP_SIZE, HAS_ZERO,
                              EVEN_K, PAIRS)
        if SWAP:
            acc_t = _dot(tl.trans(w), tl.trans(x), acc_t, FP32_IEEE)
        else:
            acc, part = _qdot(x, w, acc, part, step, SCHEME, FP32_IEEE, BLOCK_K, FP8_PROMOTE)
        if GATED:
            w_up = _gemm_weight_tile(w_ptrs + up_rows, s_rows + up_s_rows, z_rows + up_s_rows, n_ok, k_ok, k,
                                     x.dtype, SCHEME, GROUP_SIZE, HAS_ZERO, EVEN_K, PAIRS)
            if SWAP:
                acc_up_t = _dot(tl.trans(w_up), tl.trans(x), acc_up_t, FP32_IEEE)
            else:
                acc_up, part_up = _qdot(x, w_up, acc_up, part_up, step, SCHEME, FP32_IEEE, BLOCK_K, FP8_PROMOTE)
        x_ptrs += BLOCK_K
        if SCHEME == INT4_WO:
            w_ptrs += BLOCK_K // 2
        else:
            w_ptrs += BLOCK_K
    if SCHEME == W8A8_FP8 and FP8_PROMOTE > 1:  # the last, possibly partial, interval
        acc += part
        acc_up += part_up
    if SWAP:
        acc = tl.trans(acc_t)
        acc_up = tl.trans(acc_up_t)
    # -- scale and write back
    x_scale = tl.zeros((BLOCK_M, 1), dtype=tl.float32)
    if SCHEME >= W8A8_INT8:  # weight-only passes the weight scales here: not M long
        x_scale = tl.load(x_scale_ptr + offs_m, mask=offs_m < M, other=0.0)[:, None]
    _scale_and_write_back(acc, acc_up, x_scale, scale_ptr, offs_m, offs_n, pid_k, M, N, b_ptr, out_ptr, ws_ptr,
                          stride_om, res_ptr, stride_rm, cnt_ptr, SCHEME, HAS_BIAS, ACT, GATED, SPLIT_K, HAS_RES,
                          REDUCE_LAST)


@triton.jit
def _rms_norm_kernel(x_ptr, w_ptr, out_ptr, K, eps, stride_xm, stride_om, HAS_W: tl.constexpr,
                     BLOCK_K: tl.constexpr):
    """out[m] = x[m] · rsqrt(mean(x[m]²) + eps) [· w] in fp32, rounded once to out's dtype, as
    ``reference.rms_norm``: one program per row, two passes over K (the second from L1 / L2)."""
    offs_k = tl.arange(0, BLOCK_K)
    x_row = x_ptr + tl.program_id(0).to(tl.int64) * stride_xm
    out_row = out_ptr + tl.program_id(0).to(tl.int64) * stride_om
    squares = tl.zeros((BLOCK_K,), tl.float32)
    for k in range(0, K, BLOCK_K):
        x = tl.load(x_row + k + offs_k, mask=offs_k < K - k, other=0.0).to(tl.float32)
        squares += x * x
    rstd = tl.rsqrt(tl.sum(squares, axis=0) / K + tl.cast(eps, tl.float32))  # eps: fp64 under Inductor
    for k in range(0, K, BLOCK_K):
        ok = offs_k < K - k
        y = tl.load(x_row + k + offs_k, mask=ok, other=0.0).to(tl.float32) * rstd
        if HAS_W:
            y *= tl.load(w_ptr + k + offs_k, mask=ok, other=0.0).to(tl.float32)
        tl.store(out_row + k + offs_k, y.to(out_ptr.dtype.element_ty), mask=ok)


@triton.jit
def _row_codes(x, scale, rcp, SCHEME: tl.constexpr, HW_CAST: tl.constexpr, dtype: tl.constexpr):
    """x / scale as ``dtype`` codes (see ``_quantize_rows_kernel``; rcp = ``_scale_rcp(scale)``)."""
    if HW_CAST:
        return _div_by_scale(x, scale, rcp).to(dtype)
    return _quantize(x, scale, rcp, SCHEME).to(dtype)  # exact (already on the grid)


@triton.jit
def _quantize_rows_kernel(
    # Pointers
    x_ptr, qx_ptr, scale_ptr,
    # Matrix dimensions
    M, K,
    # Strides (rows; unit stride along K)
    stride_xm, stride_qm,
    # Meta-parameters
    SCHEME: tl.constexpr, BLOCK_K: tl.constexpr, ONE_PASS: tl.constexpr, HW_CAST: tl.constexpr,
):
    """qx[m] = round(x[m] / scale[m]) with scale[m] = max|x[m]| / 127 (int8) or / 448 (fp8), as
    quant.quantize_activation: one program per row. ONE_PASS (BLOCK_K ≥ K) holds the row in registers and reads
    x once; otherwise two passes over K (max, then quantize; the second mostly from L2). HW_CAST (fp8, compiled
    only) rounds x / scale to e4m3 by the hardware's saturating round-to-nearest-even cast, which torch's cast
    also is, in place of ``_quantize``'s fp32 emulation (written for the interpreter)."""
    offs_m = tl.program_id(0) + tl.arange(0, 1)
    offs_k = tl.arange(0, BLOCK_K)[None, :]
    m_ok = (offs_m < M)[:, None]
    x_ptrs = x_ptr + offs_m.to(tl.int64)[:, None] * stride_xm + offs_k
    q_ptrs = qx_ptr + offs_m.to(tl.int64)[:, None] * stride_qm + offs_k
    if ONE_PASS:
        x = tl.load(x_ptrs, mask=m_ok & (offs_k < K), other=0.0)
        scale = _token_scale(tl.max(tl.abs(x), axis=1).to(tl.float32), SCHEME)  # (exact in x's dtype)
        tl.store(scale_ptr + offs_m, scale, mask=offs_m < M)
        q = _row_codes(x.to(tl.float32), scale[:, None], _scale_rcp(scale)[:, None], SCHEME, HW_CAST,
                       qx_ptr.dtype.element_ty)
        tl.store(q_ptrs, q, mask=m_ok & (offs_k < K))
    else:
        scale = _token_scale(tl.max(_abs_max(x_ptrs, m_ok, offs_k, K, BLOCK_K), axis=1), SCHEME)
        tl.store(scale_ptr + offs_m, scale, mask=offs_m < M)
        rcp = _scale_rcp(scale)
        for k in range(0, K, BLOCK_K):
            x = tl.load(x_ptrs + k, mask=m_ok & (offs_k < K - k), other=0.0).to(tl.float32)
            q = _row_codes(x, scale[:, None], rcp[:, None], SCHEME, HW_CAST, qx_ptr.dtype.element_ty)
            tl.store(q_ptrs + k, q, mask=m_ok & (offs_k < K - k))


@triton.jit
def _dequantize_kernel(
    # Pointers
    w_ptr, scale_ptr, zero_ptr, out_ptr,
    # Matrix dimensions (N_W: weight rows)
    N_W, K,
    # Strides (rows; unit stride along K)
    stride_wn, stride_sn, stride_on,
    # Meta-parameters
    SCHEME: tl.constexpr, GROUP_SIZE: tl.constexpr, HAS_ZERO: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """out [N_W, K] (x's dtype) = quant.dequantize_weight rounded once, for the cuBLAS candidate. int4 tiles
    span exactly one group (BLOCK_K = GROUP_SIZE)."""
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
    rows = offs_n.to(tl.int64)[:, None]
    n_ok = (offs_n < N_W)[:, None]
    if SCHEME == INT4_WO:
        p_ptrs = w_ptr + rows * stride_wn + (tl.program_id(1) * BLOCK_K // 2 + tl.arange(0, BLOCK_K // 2))[None, :]
        g = tl.program_id(1) * BLOCK_K // GROUP_SIZE
        s = tl.load(scale_ptr + rows * stride_sn + g, mask=n_ok, other=0.0).to(tl.float32)
        z = s
        if HAS_ZERO:
            z = tl.load(zero_ptr + rows * stride_sn + g, mask=n_ok, other=0.0).to(tl.float32)
        w = _dequant_tile(tl.load(p_ptrs, mask=n_ok, other=0), s, z, SCHEME, HAS_ZERO, True)
        mask = n_ok
    else:
        mask = n_ok & (offs_k < K)[None, :]
        s = tl.load(scale_ptr + offs_n, mask=offs_n < N_W, other=0.0)[:, None]
        w = _dequant_tile(tl.load(w_ptr + rows * stride_wn + offs_k[None, :], mask=mask, other=0), s, s,
                          SCHEME, HAS_ZERO, True)
    tl.store(out_ptr + rows * stride_on + offs_k[None, :], w.to(out_ptr.dtype.element_ty), mask=mask)
