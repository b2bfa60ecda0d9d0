"""int4 (groups of 128) and int8 weight-only GEMVs on the tensor cores (``mma.sync.m16n8k16``) for 2-16 tokens.

Why: the word GEMV (``qlinear_kernels._qgemv_words_kernel``) turns each int4 code into an fp32 and multiplies it by
each row of x on the CUDA cores: about 4 instructions a code and row of x, half of them on sm_90's half-rate integer
pipe (``benchmarks/sass_stats.py``). Here the dequantized weight tile is the MMA's first operand and x its second,
so the tensor cores do the products and the sums for up to 8 rows of x at once. The compiled loop takes about 2.9
instructions a code, 1.6 of them on the integer pipe, whether x has 1 row or 8. On the H100 this wins at 2-8 rows
(and some shapes at 16); at one row the word GEMV stays faster (``notes/perf.md``, session 19).

Lanes and fragments (PTX ISA, ``mma.m16n8k16`` with .bf16 / .f16 operands). A warp owns 16 weight rows a tile. Lane
l = 4·r + c (r = l / 4, c = l % 4) loads 16 bytes (4 words, 32 codes) of rows r and r + 8 per group: word j of lane
c holds the group's k = 32c + 8j + i in nibble i. One LOP3 per register puts two nibbles, i and i + 4, under a magic
exponent: bf16 0x4300 | u = 128 + u (fp16 0x6400 | u = 1024 + u), exact. The four registers of word j (nibble pairs
(0, 4), (1, 5), (2, 6), (3, 7)) of rows r and r + 8 are the A fragments of two MMAs: A's columns 2c, 2c + 1 and
2c + 8, 2c + 9 are any four k the B fragment agrees on, so B holds x at the same k, four PRMTs a word repacking
x's pairs (x[2i], x[2i + 1]). B's column n is token n: lane l holds x of token r, and D's lane l holds tokens 2c,
2c + 1 of rows r and r + 8.

The offset: D = Σ (OFF + u)·x, so the group's sum is s·(D - (OFF + z)·Σx) with the group's scale s and zero point z
(8 when symmetric). Σx per token comes from one more MMA per k slice with A = ones, shared by the warp's tiles. The
products are exact and the MMA sums them in fp32. The subtraction works on values about OFF / |u - z| times larger
than the result, so it loses that many times fp32's rounding. That stays far below the output's bf16 / fp16
rounding, which the GPU tests hold it to.

An RMSNorm before the projection can run in the prologue (NORM; off unless ``qlinear.MMA_GEMV_NORM``, which says
why): token r's Σx² is the diagonal of the Gram matrix that the Σx MMAs give when A's rows 0-7 are x itself, and the
norm weight multiplies x's pair words before the repack (one packed fma a pair word).

The lane mapping holds because every tensor the inline PTX sees is 1-D over the program's 32·num_warps threads,
element t in thread t (Triton's blocked layout for such a shape; tests/runtime/sm90_compile.py reads it back from
every compiled launch). Compiled only: the Triton interpreter runs no PTX.

int8 (``_qgemv_mma_int8_kernel``, below) keeps the lanes, warps and tiles and changes the fragments: a word holds 4
codes and is one MMA, x's pair words need no repack, and the signed codes are exact in bf16 / fp16, so there is
no offset and no Σx (see the comment above the kernel).
"""
import triton
import triton.language as tl

from accel.runtime.kernels.qlinear_kernels import (INT4_WO, INT8_WO, MUL_BF16, MUL_F16, _repack,
                                                   _scale_and_write_back)
from accel.runtime.kernels.utils import pdl_launch_dependents, pdl_wait

# One line each: Inductor copies these globals by repr into the kernel source it generates (see _INT4_PAIRS_ASM).
_DECODE_ASM = ("{ .reg .b32 t; lop3.b32 $0, $4, 0x000F000F, MAGIC, 0xEA; shr.u32 t, $4, 4; "
               "lop3.b32 $1, t, 0x000F000F, MAGIC, 0xEA; shr.u32 t, $4, 8; lop3.b32 $2, t, 0x000F000F, MAGIC, 0xEA; "
               "shr.u32 t, $4, 12; lop3.b32 $3, t, 0x000F000F, MAGIC, 0xEA; }")
MMA_DECODE_BF16 = tl.constexpr(_DECODE_ASM.replace("MAGIC", "0x43004300"))
MMA_DECODE_F16 = tl.constexpr(_DECODE_ASM.replace("MAGIC", "0x64006400"))
_MMA_ASM = ("mma.sync.aligned.m16n8k16.row.col.f32.TYPE.TYPE.f32 {$0,$1,$2,$3}, {$4,$5,$6,$7}, {$8,$9}, "
            "{$10,$11,$12,$13};")
MMA_BF16 = tl.constexpr(_MMA_ASM.replace("TYPE", "bf16"))
MMA_F16 = tl.constexpr(_MMA_ASM.replace("TYPE", "f16"))
ONES_BF16 = tl.constexpr(0x3F803F80)  # two 1.0s
ONES_F16 = tl.constexpr(0x3C003C00)


@triton.jit
def _split4(t):
    """[T, 4] → four [T] (column 0 first)."""
    a, b = tl.split(tl.reshape(t, (t.shape[0], 2, 2)))
    a0, a1 = tl.split(a)
    b0, b1 = tl.split(b)
    return a0, b0, a1, b1


# A lane's 16 weight bytes through the read-only path, with the L2 asked to fetch the whole 256-byte block around them
# (``.L2::256B``): the block's other 240 bytes are the neighbouring lanes' and the next steps' words of the same rows.
# Predicated on ``ok``, 0 where it is false, as Triton's masked loads are.
L2PF_LOAD = tl.constexpr("{ .reg .pred p; setp.ne.b32 p, $5, 0; mov.b32 $0, 0; mov.b32 $1, 0; mov.b32 $2, 0; "
                         "mov.b32 $3, 0; @p ld.global.nc.L1::no_allocate.L2::256B.v4.b32 {$0, $1, $2, $3}, [$4]; }")


@triton.jit
def _load_words(ptrs, ok, L2PF: tl.constexpr):
    """[T, 4] weight words at ptrs [T, 4] (4 consecutive words a lane), 0 where not ok [T]: one 16-byte load a lane,
    with the L2's 256-byte prefetch when L2PF (``qlinear.MMA_L2PF``), else Triton's load (evict_first)."""
    if L2PF:
        p0, _, _, _ = _split4(ptrs)
        w0, w1, w2, w3 = tl.inline_asm_elementwise(L2PF_LOAD, "=r,=r,=r,=r,l,r",
                                                   [p0.to(tl.int64, bitcast=True), ok.to(tl.int32)],
                                                   dtype=(tl.int32,) * 4, is_pure=True, pack=1)
        return tl.reshape(tl.join(tl.join(w0, w2), tl.join(w1, w3)), (w0.shape[0], 4))
    return tl.load(ptrs, mask=ok[:, None], other=0, eviction_policy="evict_first")


@triton.jit
def _mma(a0, a1, a2, a3, b0, b1, d0, d1, d2, d3, FP16: tl.constexpr):
    """D += A·B for one m16n8k16 (fragments as int32 pairs, D fp32), per warp."""
    args = [a0, a1, a2, a3, b0, b1, d0, d1, d2, d3]
    if FP16:
        return tl.inline_asm_elementwise(MMA_F16, "=f,=f,=f,=f,r,r,r,r,r,r,f,f,f,f", args, dtype=(tl.float32,) * 4,
                                         is_pure=True, pack=1)
    return tl.inline_asm_elementwise(MMA_BF16, "=f,=f,=f,=f,r,r,r,r,r,r,f,f,f,f", args, dtype=(tl.float32,) * 4,
                                     is_pure=True, pack=1)


@triton.jit
def _decode(w, FP16: tl.constexpr):
    """A word's 8 codes u → four registers of two OFF + u each: nibble pairs (0, 4), (1, 5), (2, 6), (3, 7)."""
    if FP16:
        return tl.inline_asm_elementwise(MMA_DECODE_F16, "=r,=r,=r,=r,r", [w], dtype=(tl.int32,) * 4, is_pure=True,
                                         pack=1)
    return tl.inline_asm_elementwise(MMA_DECODE_BF16, "=r,=r,=r,=r,r", [w], dtype=(tl.int32,) * 4, is_pure=True,
                                     pack=1)


@triton.jit
def _mul_pairs(a, b, FP16: tl.constexpr):
    """Pair words a·b (x's times the norm weight's), elementwise in x's dtype."""
    if FP16:
        return tl.inline_asm_elementwise(MUL_F16, "=r,r,r", [a, b], dtype=tl.int32, is_pure=True, pack=1)
    return tl.inline_asm_elementwise(MUL_BF16, "=r,r,r", [a, b], dtype=tl.int32, is_pure=True, pack=1)


@triton.jit
def _x_fragments(xw, gw, HAS_G: tl.constexpr, FP16: tl.constexpr):
    """x's 4 pair words [T, 4] of word j's 8 k (times the norm weight's pair words gw at the same k when HAS_G) →
    the B fragments of word j's two MMAs, (b0, b1) and (b2, b3)."""
    x0, x1, x2, x3 = _split4(xw)
    if HAS_G:
        g0, g1, g2, g3 = _split4(gw)
        x0 = _mul_pairs(x0, g0, FP16)
        x1 = _mul_pairs(x1, g1, FP16)
        x2 = _mul_pairs(x2, g2, FP16)
        x3 = _mul_pairs(x3, g3, FP16)
    return _repack(x0, x1, x2, x3)


@triton.jit
def _word_mmas(w, v, b0, b1, b2, b3, d0, d1, d2, d3, FP16: tl.constexpr):
    """Word j of rows r (w) and r + 8 (v) times its B fragments: two MMAs into D."""
    p0, p1, p2, p3 = _decode(w, FP16)
    q0, q1, q2, q3 = _decode(v, FP16)
    d0, d1, d2, d3 = _mma(p0, q0, p1, q1, b0, b1, d0, d1, d2, d3, FP16)
    return _mma(p2, q2, p3, q3, b2, b3, d0, d1, d2, d3, FP16)


@triton.jit
def _tile_loads(w_ptrs, s_ptrs, z_ptrs, ok, ok8, stride_wn, stride_sn, HAS_ZERO: tl.constexpr,
                L2PF: tl.constexpr):
    """A tile's group: the 4 words [T, 4] of rows r and r + 8, their scales and zero points (fp32; 8 when
    symmetric). ``ok`` / ``ok8``: rows r / r + 8 exist and the group is in this split."""
    w = _load_words(w_ptrs, ok, L2PF)
    v = _load_words(w_ptrs + 8 * stride_wn, ok8, L2PF)
    s = tl.load(s_ptrs, mask=ok, other=0.0).to(tl.float32)
    s8 = tl.load(s_ptrs + 8 * stride_sn, mask=ok8, other=0.0).to(tl.float32)
    if HAS_ZERO:
        z = tl.load(z_ptrs, mask=ok, other=0.0).to(tl.float32)
        z8 = tl.load(z_ptrs + 8 * stride_sn, mask=ok8, other=0.0).to(tl.float32)
    else:
        z = tl.full(s.shape, 8.0, tl.float32)
        z8 = z
    return w, v, s, s8, z, z8


@triton.jit
def _tile_group(w, v, s, s8, z, z8, e0, e1, f0, f1, f2, f3, f4, f5, f6, f7, g0, g1, g2, g3, g4, g5, g6, g7,
                o0, o1, o2, o3, OFF: tl.constexpr, FP16: tl.constexpr):
    """One group of one tile into its accumulators: D over the 4 words (8 MMAs; B fragments f*, g*), then
    o += s·(D - (OFF + z)·Σx) for rows r (o0, o1: tokens 2c, 2c + 1) and r + 8 (o2, o3)."""
    w0, w1, w2, w3 = _split4(w)
    v0, v1, v2, v3 = _split4(v)
    zero = tl.zeros(o0.shape, tl.float32)
    d0, d1, d2, d3 = _word_mmas(w0, v0, f0, f1, g0, g1, zero, zero, zero, zero, FP16)
    d0, d1, d2, d3 = _word_mmas(w1, v1, f2, f3, g2, g3, d0, d1, d2, d3, FP16)
    d0, d1, d2, d3 = _word_mmas(w2, v2, f4, f5, g4, g5, d0, d1, d2, d3, FP16)
    d0, d1, d2, d3 = _word_mmas(w3, v3, f6, f7, g6, g7, d0, d1, d2, d3, FP16)
    c = OFF + z
    c8 = OFF + z8
    o0 += s * (d0 - c * e0)
    o1 += s * (d1 - c * e1)
    o2 += s8 * (d2 - c8 * e0)
    o3 += s8 * (d3 - c8 * e1)
    return o0, o1, o2, o3


@triton.jit
def _as_tile(o0, o1, o2, o3, ROW_WARPS: tl.constexpr, K_WARPS: tl.constexpr):
    """The accumulators of the warp tiles (thread t = 32·(ROW_WARPS·kw + rw) + 4·r + c; rows r, r + 8; tokens 2c,
    2c + 1), summed over the K_WARPS warps of a row tile, as the logical tile [8 tokens, 16·ROW_WARPS rows]: token
    2c + j, row 16·rw + 8·h + r."""
    t = tl.join(tl.join(o0, o1), tl.join(o2, o3))  # [T, j, h] (join adds the last axis)
    t = tl.sum(tl.reshape(t, (K_WARPS, ROW_WARPS, 8, 4, 2, 2)), axis=0)  # [rw, r, c, j, h]
    t = tl.permute(t, (2, 3, 0, 4, 1))  # [c, j, rw, h, r]
    return tl.reshape(t, (8, 16 * ROW_WARPS))


@triton.jit
def _stack_tokens(a, b):
    """[8, BLOCK_N] tiles of tokens 0-7 and 8-15 → [16, BLOCK_N]."""
    return tl.reshape(tl.permute(tl.join(a, b), (2, 0, 1)), (2 * a.shape[0], a.shape[1]))


@triton.jit
def _x_loads(x_ptrs, ok, k2):
    """x's pair words [T, 4] of a group at pair offsets k2 [T]: the four 16-byte chunks of the lane's 32 k."""
    ok = ok[:, None]
    k2 = k2[:, None]
    return (tl.load(x_ptrs + k2, mask=ok, other=0), tl.load(x_ptrs + k2 + 4, mask=ok, other=0),
            tl.load(x_ptrs + k2 + 8, mask=ok, other=0), tl.load(x_ptrs + k2 + 12, mask=ok, other=0))


@triton.jit
def _x_fragments4(xa, xb, xc, xd, na, nb, nc, nd, HAS_G: tl.constexpr, FP16: tl.constexpr):
    """The B fragments of a group's four words j from x's pair words (times the norm weight's, na..nd, when HAS_G):
    (f_2j, f_2j+1) and (g_2j, g_2j+1) each."""
    f0, f1, g0, g1 = _x_fragments(xa, na, HAS_G, FP16)
    f2, f3, g2, g3 = _x_fragments(xb, nb, HAS_G, FP16)
    f4, f5, g4, g5 = _x_fragments(xc, nc, HAS_G, FP16)
    f6, f7, g6, g7 = _x_fragments(xd, nd, HAS_G, FP16)
    return f0, f1, f2, f3, f4, f5, f6, f7, g0, g1, g2, g3, g4, g5, g6, g7


@triton.jit
def _sum_mma(b0, b1, one, e0, e1, e2, e3, GRAM: tl.constexpr, FP16: tl.constexpr):
    """D += A·B for B = (b0, b1) and A = ones, or with GRAM A's rows r = x of token r (the same registers: A's row r
    at the slice's k is what lane (r, c) holds as b0, b1) and rows r + 8 = ones."""
    if GRAM:
        return _mma(b0, one, b1, one, b0, b1, e0, e1, e2, e3, FP16)
    return _mma(one, one, one, one, b0, b1, e0, e1, e2, e3, FP16)


@triton.jit
def _x_sums(f0, f1, f2, f3, f4, f5, f6, f7, g0, g1, g2, g3, g4, g5, g6, g7, GRAM: tl.constexpr,
            FP16: tl.constexpr):
    """Σx of the group per token in D's layout (tokens 2c, 2c + 1), from MMAs with A = ones over the 8 k slices;
    with GRAM also D's rows r of the group's Gram matrix Σ x_r·x_n (token r's Σx² where n = r): (Σx, Σx, Gram,
    Gram), else (Σx, Σx, 0, 0)."""
    if FP16:
        one = tl.full(f0.shape, ONES_F16, tl.int32)
    else:
        one = tl.full(f0.shape, ONES_BF16, tl.int32)
    e0 = tl.zeros(f0.shape, tl.float32)
    e1 = e0
    e2 = e0
    e3 = e0
    e0, e1, e2, e3 = _sum_mma(f0, f1, one, e0, e1, e2, e3, GRAM, FP16)
    e0, e1, e2, e3 = _sum_mma(g0, g1, one, e0, e1, e2, e3, GRAM, FP16)
    e0, e1, e2, e3 = _sum_mma(f2, f3, one, e0, e1, e2, e3, GRAM, FP16)
    e0, e1, e2, e3 = _sum_mma(g2, g3, one, e0, e1, e2, e3, GRAM, FP16)
    e0, e1, e2, e3 = _sum_mma(f4, f5, one, e0, e1, e2, e3, GRAM, FP16)
    e0, e1, e2, e3 = _sum_mma(g4, g5, one, e0, e1, e2, e3, GRAM, FP16)
    e0, e1, e2, e3 = _sum_mma(f6, f7, one, e0, e1, e2, e3, GRAM, FP16)
    e0, e1, e2, e3 = _sum_mma(g6, g7, one, e0, e1, e2, e3, GRAM, FP16)
    if GRAM:
        return e2, e3, e0, e1
    zero = tl.zeros(f0.shape, tl.float32)
    return e0, e1, zero, zero


@triton.jit
def _token_rstd(s0, s1, K, eps, ROW_WARPS: tl.constexpr, K_WARPS: tl.constexpr):
    """RMSNorm's rsqrt(mean(x²) + eps) per token [8, 1] from the Gram accumulators (thread layout of ``_as_tile``):
    token n = 2c + j's Σx² is the diagonal element, D[r = n][2c + j], of the lanes with r = n. The K warps' sums are
    added; the row warps hold the same sums (the same x), one is taken."""
    t = tl.arange(0, s0.shape[0])
    r = (t % 32) // 4
    c = t % 4
    d = tl.join(tl.where(2 * c == r, s0, 0.0), tl.where(2 * c + 1 == r, s1, 0.0))  # [T, j]
    d = tl.sum(tl.reshape(d, (K_WARPS, ROW_WARPS, 8, 4, 2)), axis=0)
    d = tl.max(tl.sum(d, axis=1), axis=0)  # [c, j]
    return tl.rsqrt(tl.reshape(d, (8, 1)) / K + tl.cast(eps, tl.float32))  # eps: fp64 under Inductor


@triton.jit
def _step_weights(w_a, w_b, s_a, s_b, z_a, z_b, k, ok_a, ok8_a, ok_b, ok8_b, stride_wn, stride_sn,
                  GROUP_SIZE: tl.constexpr, HAS_ZERO: tl.constexpr, TWO: tl.constexpr, L2PF: tl.constexpr):
    """``_tile_loads`` of tile A and (when TWO) tile B for each warp's group at k [T]; tile B repeats A without TWO.
    The word offset is written as the group's index times its 16 words: Triton then knows it is a multiple of 16, and
    each lane's 4 words of a row load as one 16-byte vector (as k // 8, whose divisibility Triton derives from
    K_PER_SPLIT's hint of 16 as 2, they loaded as two 8-byte halves)."""
    g = k // GROUP_SIZE
    wk = (g * (GROUP_SIZE // 8))[:, None]
    wa, va, sa, sa8, za, za8 = _tile_loads(w_a + wk, s_a + g, z_a + g, ok_a, ok8_a, stride_wn, stride_sn, HAS_ZERO,
                                           L2PF)
    wb, vb, sb, sb8, zb, zb8 = wa, va, sa, sa8, za, za8
    if TWO:
        wb, vb, sb, sb8, zb, zb8 = _tile_loads(w_b + wk, s_b + g, z_b + g, ok_b, ok8_b, stride_wn, stride_sn,
                                               HAS_ZERO, L2PF)
    return wa, va, sa, sa8, za, za8, wb, vb, sb, sb8, zb, zb8


@triton.jit
def _step_x(x_ptrs, nw_ptrs, stride_xm, k, ok, ok2, live, TOKEN_TILES: tl.constexpr, HAS_NORM_W: tl.constexpr):
    """x's pair words of each warp's group at k [T] for tokens r (ok) and, with two token tiles, r + 8 (ok2), and
    the norm weight's (HAS_NORM_W; ``live``: the group is in this split)."""
    xa, xb, xc, xd = _x_loads(x_ptrs, ok, k // 2)
    ya, yb, yc, yd = xa, xb, xc, xd
    if TOKEN_TILES == 2:
        ya, yb, yc, yd = _x_loads(x_ptrs + 8 * stride_xm, ok2, k // 2)
    na, nb, nc, nd = xa, xb, xc, xd
    if HAS_NORM_W:
        na, nb, nc, nd = _x_loads(nw_ptrs, live, k // 2)
    return xa, xb, xc, xd, ya, yb, yc, yd, na, nb, nc, nd


@triton.jit
def _token_tile(xa, xb, xc, xd, na, nb, nc, nd, wa, va, sa, sa8, za, za8, wb, vb, sb, sb8, zb, zb8,
                o0, o1, o2, o3, u0, u1, u2, u3, ss0, ss1, TWO: tl.constexpr, OFF: tl.constexpr, FP16: tl.constexpr,
                NORM: tl.constexpr, HAS_NORM_W: tl.constexpr):
    """One group of one token tile (x's pair words xa..xd): its Σx, then tile A into o and (TWO) tile B into u.
    NORM adds the group's Σx² (the Gram matrix, ``_x_sums``) into ss0, ss1; with HAS_NORM_W the products and Σx
    take x times the norm weight (pair words na..nd), rounded to x's dtype, and Σx² x itself (8 more MMAs)."""
    f0, f1, f2, f3, f4, f5, f6, f7, g0, g1, g2, g3, g4, g5, g6, g7 = _x_fragments4(xa, xb, xc, xd, na, nb, nc, nd,
                                                                                 False, FP16)
    e0, e1, q0, q1 = _x_sums(f0, f1, f2, f3, f4, f5, f6, f7, g0, g1, g2, g3, g4, g5, g6, g7, NORM, FP16)
    if NORM:
        ss0 += q0
        ss1 += q1
    if HAS_NORM_W:
        f0, f1, f2, f3, f4, f5, f6, f7, g0, g1, g2, g3, g4, g5, g6, g7 = _x_fragments4(xa, xb, xc, xd, na, nb, nc,
                                                                                     nd, True, FP16)
        e0, e1, _, _ = _x_sums(f0, f1, f2, f3, f4, f5, f6, f7, g0, g1, g2, g3, g4, g5, g6, g7, False, FP16)
    o0, o1, o2, o3 = _tile_group(wa, va, sa, sa8, za, za8, e0, e1, f0, f1, f2, f3, f4, f5, f6, f7,
                                 g0, g1, g2, g3, g4, g5, g6, g7, o0, o1, o2, o3, OFF, FP16)
    if TWO:
        u0, u1, u2, u3 = _tile_group(wb, vb, sb, sb8, zb, zb8, e0, e1, f0, f1, f2, f3, f4, f5, f6, f7,
                                     g0, g1, g2, g3, g4, g5, g6, g7, u0, u1, u2, u3, OFF, FP16)
    return o0, o1, o2, o3, u0, u1, u2, u3, ss0, ss1


@triton.jit
def _lanes(N, ROW_WARPS: tl.constexpr, K_WARPS: tl.constexpr, BLOCK_N: tl.constexpr, GATED: tl.constexpr):
    """A program's lanes: thread t = 32·(ROW_WARPS·kw + rw) + 4·r + c owns rows n and n + 8 of tile A and n_b,
    n_b + 8 of tile B (the up rows N + n when GATED, else the next 16·ROW_WARPS rows). Returns r, c, the warp's
    index along K, n, n_b and whether each of the four rows exists."""
    t = tl.arange(0, 32 * ROW_WARPS * K_WARPS)
    r = (t % 32) // 4
    c = t % 4
    kw = t // 32 // ROW_WARPS
    n = tl.program_id(0) * BLOCK_N + (t // 32 % ROW_WARPS) * 16 + r
    if GATED:
        n_b = n + N
        lim_b = 2 * N
    else:
        n_b = n + 16 * ROW_WARPS
        lim_b = N
    return r, c, kw, n, n_b, n < N, n + 8 < N, n_b < lim_b, n_b + 8 < lim_b


@triton.jit
def _accumulators(T: tl.constexpr):
    """Zeros for the 16 fp32 accumulators a lane keeps: tiles A and B × tokens 0-7 and 8-15 × 4 of D's registers."""
    z = tl.zeros((T,), tl.float32)
    return z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z


@triton.jit
def _tiles_out(o0, o1, o2, o3, u0, u1, u2, u3, p0, p1, p2, p3, q0, q1, q2, q3, ROW_WARPS: tl.constexpr,
               K_WARPS: tl.constexpr, TOKEN_TILES: tl.constexpr, TWO: tl.constexpr, GATED: tl.constexpr,
               BLOCK_N: tl.constexpr):
    """The lanes' accumulators as (acc, acc_up) [8·TOKEN_TILES, BLOCK_N]: tile A (o: tokens 0-7, p: 8-15) and tile B
    (u, q) as the up rows (GATED) or the tile's next 16·ROW_WARPS rows."""
    acc = _as_tile(o0, o1, o2, o3, ROW_WARPS, K_WARPS)
    if TOKEN_TILES == 2:  # tokens 8-15 below tokens 0-7
        acc = _stack_tokens(acc, _as_tile(p0, p1, p2, p3, ROW_WARPS, K_WARPS))
    acc_up = acc
    if TWO:
        tile_b = _as_tile(u0, u1, u2, u3, ROW_WARPS, K_WARPS)
        if TOKEN_TILES == 2:
            tile_b = _stack_tokens(tile_b, _as_tile(q0, q1, q2, q3, ROW_WARPS, K_WARPS))
        if GATED:
            acc_up = tile_b
        else:  # tile B's rows follow tile A's
            acc = tl.reshape(tl.permute(tl.join(acc, tile_b), (0, 2, 1)), (8 * TOKEN_TILES, BLOCK_N))
            acc_up = acc
    return acc, acc_up


@triton.jit
def _qgemv_mma_kernel(
    # Pointers (x and the weight as int32 words: x's pairs, 8 int4 codes a word)
    x_ptr, w_ptr, scale_ptr, zero_ptr, b_ptr, out_ptr, ws_ptr, res_ptr, cnt_ptr, nw_ptr,
    # Matrix dimensions (N: output columns; the weight has 2N rows when GATED), K a multiple of the split's groups;
    # the norm's epsilon
    M, N, K, K_PER_SPLIT, eps,
    # Strides (x and w in words; scales in elements)
    stride_xm, stride_wn, stride_sn, stride_om, stride_rm,
    # Meta-parameters (num_warps = ROW_WARPS·K_WARPS)
    GROUP_SIZE: tl.constexpr, HAS_ZERO: tl.constexpr, HAS_BIAS: tl.constexpr, ACT: tl.constexpr,
    GATED: tl.constexpr, SPLIT_K: tl.constexpr, ROW_WARPS: tl.constexpr, K_WARPS: tl.constexpr,
    ROW_TILES: tl.constexpr, FP16: tl.constexpr, PDL: tl.constexpr, TOKEN_TILES: tl.constexpr = 1,
    HAS_RES: tl.constexpr = False, REDUCE_LAST: tl.constexpr = False, PDL_EARLY: tl.constexpr = False,
    NORM: tl.constexpr = False, HAS_NORM_W: tl.constexpr = False, L2PF: tl.constexpr = False,
):
    """Weight-only int4 out[m, n] = epilogue(Σ_g s·Σ_k x[m, k] (q[n, k] - z)) for m < M ≤ 8 on mma.sync (see the
    module docstring). A program's ROW_WARPS·K_WARPS warps split its rows in ROW_WARPS and its K in K_WARPS: the
    warps of a row tile take its groups in turn (warp kw the groups kw, kw + K_WARPS, ...: together they read
    adjacent groups), and their sums are added once, after the loop. Each warp owns ROW_TILES tiles of 16 weight rows
    (2 when GATED: the gate rows and their up rows): BLOCK_N = 16·ROW_WARPS·ROW_TILES output columns
    (16·ROW_WARPS when GATED). TOKEN_TILES = 2 (M ≤ 16) runs each decoded A fragment through a second
    MMA with tokens 8-15 as B (lane r holds x of tokens r and r + 8). Each warp's next group (words, scales, zero
    points and x) is loaded while it sums one.
    NORM (SPLIT_K = 1) projects x · rsqrt(mean(x²) + eps) [· g] as the word GEMV does: each token's Σx² comes from
    the MMAs that sum x (``_x_sums``) and its rsqrt scales the sums after the loop. The norm weight g
    (HAS_NORM_W, ``nw_ptr``: pair words like x) multiplies x before the products, rounded to x's dtype.
    The tail is the other quantized kernels' (``_scale_and_write_back``: bias, activation, gate·up, residual,
    split-K workspace)."""
    tl.static_assert(GROUP_SIZE == 128)
    tl.static_assert(ROW_TILES == 1 or (ROW_TILES == 2 and not GATED))
    tl.static_assert(TOKEN_TILES == 1 or TOKEN_TILES == 2)
    tl.static_assert(not NORM or SPLIT_K == 1)
    tl.static_assert(NORM or not HAS_NORM_W)
    if PDL_EARLY:
        pdl_launch_dependents(PDL)
    OFF: tl.constexpr = 1024.0 if FP16 else 128.0
    TWO: tl.constexpr = GATED or ROW_TILES == 2
    T: tl.constexpr = 32 * ROW_WARPS * K_WARPS
    STEP: tl.constexpr = GROUP_SIZE * K_WARPS
    BLOCK_N: tl.constexpr = 16 * ROW_WARPS * (1 if GATED else ROW_TILES)
    r, c, kw, n, n_b, rows_ok, rows8_ok, rows_b_ok, rows8_b_ok = _lanes(N, ROW_WARPS, K_WARPS, BLOCK_N, GATED)
    kg = kw * GROUP_SIZE  # this warp's group within a step
    pid_k = tl.program_id(1)
    k_start = pid_k * K_PER_SPLIT
    k_end = tl.minimum(k_start + K_PER_SPLIT, K)
    w_a = w_ptr + n.to(tl.int64)[:, None] * stride_wn + (c * 4)[:, None] + tl.arange(0, 4)[None, :]
    w_b = w_ptr + n_b.to(tl.int64)[:, None] * stride_wn + (c * 4)[:, None] + tl.arange(0, 4)[None, :]
    s_a = scale_ptr + n.to(tl.int64) * stride_sn
    s_b = scale_ptr + n_b.to(tl.int64) * stride_sn
    z_a = zero_ptr + n.to(tl.int64) * stride_sn
    z_b = zero_ptr + n_b.to(tl.int64) * stride_sn
    x_ptrs = x_ptr + r.to(tl.int64)[:, None] * stride_xm + (c * 16)[:, None] + tl.arange(0, 4)[None, :]
    nw_ptrs = nw_ptr + (c * 16)[:, None] + tl.arange(0, 4)[None, :]
    x_ok = r < M
    x_ok2 = r + 8 < M
    o0, o1, o2, o3, u0, u1, u2, u3, p0, p1, p2, p3, q0, q1, q2, q3 = _accumulators(T)
    ss0, ss1, ss2, ss3 = o0, o0, o0, o0  # Σx² (NORM): tokens 0-7, then 8-15
    # the first step's weights before waiting for the kernel that writes x (PDL)
    k = k_start + kg
    live = k < k_end
    wa, va, sa, sa8, za, za8, wb, vb, sb, sb8, zb, zb8 = _step_weights(
        w_a, w_b, s_a, s_b, z_a, z_b, k, rows_ok & live, rows8_ok & live, rows_b_ok & live, rows8_b_ok & live,
        stride_wn, stride_sn, GROUP_SIZE, HAS_ZERO, TWO, L2PF)
    pdl_wait(PDL)
    xa, xb, xc, xd, ya, yb, yc, yd, na, nb, nc, nd = _step_x(x_ptrs, nw_ptrs, stride_xm, k, x_ok & live,
                                                             x_ok2 & live, live, TOKEN_TILES, HAS_NORM_W)
    for step in range(k_start, k_end, STEP):
        # the next step's group in flight while this one is summed
        k = step + STEP + kg
        more = k < k_end
        wa_n, va_n, sa_n, sa8_n, za_n, za8_n, wb_n, vb_n, sb_n, sb8_n, zb_n, zb8_n = _step_weights(
            w_a, w_b, s_a, s_b, z_a, z_b, k, rows_ok & more, rows8_ok & more, rows_b_ok & more, rows8_b_ok & more,
            stride_wn, stride_sn, GROUP_SIZE, HAS_ZERO, TWO, L2PF)
        xa_n, xb_n, xc_n, xd_n, ya_n, yb_n, yc_n, yd_n, na_n, nb_n, nc_n, nd_n = _step_x(
            x_ptrs, nw_ptrs, stride_xm, k, x_ok & more, x_ok2 & more, more, TOKEN_TILES, HAS_NORM_W)
        o0, o1, o2, o3, u0, u1, u2, u3, ss0, ss1 = _token_tile(
            xa, xb, xc, xd, na, nb, nc, nd, wa, va, sa, sa8, za, za8, wb, vb, sb, sb8, zb, zb8,
            o0, o1, o2, o3, u0, u1, u2, u3, ss0, ss1, TWO, OFF, FP16, NORM, HAS_NORM_W)
        if TOKEN_TILES == 2:  # the same A fragments (the decoding is pure: compiled once) times tokens 8-15
            p0, p1, p2, p3, q0, q1, q2, q3, ss2, ss3 = _token_tile(
                ya, yb, yc, yd, na, nb, nc, nd, wa, va, sa, sa8, za, za8, wb, vb, sb, sb8, zb, zb8,
                p0, p1, p2, p3, q0, q1, q2, q3, ss2, ss3, TWO, OFF, FP16, NORM, HAS_NORM_W)
        wa, va, sa, sa8, za, za8 = wa_n, va_n, sa_n, sa8_n, za_n, za8_n
        wb, vb, sb, sb8, zb, zb8 = wb_n, vb_n, sb_n, sb8_n, zb_n, zb8_n
        xa, xb, xc, xd, ya, yb, yc, yd = xa_n, xb_n, xc_n, xd_n, ya_n, yb_n, yc_n, yd_n
        na, nb, nc, nd = na_n, nb_n, nc_n, nd_n
    if not PDL_EARLY:
        pdl_launch_dependents(PDL)
    acc, acc_up = _tiles_out(o0, o1, o2, o3, u0, u1, u2, u3, p0, p1, p2, p3, q0, q1, q2, q3, ROW_WARPS, K_WARPS,
                             TOKEN_TILES, TWO, GATED, BLOCK_N)
    if NORM:
        rstd = _token_rstd(ss0, ss1, K, eps, ROW_WARPS, K_WARPS)
        if TOKEN_TILES == 2:
            rstd = _stack_tokens(rstd, _token_rstd(ss2, ss3, K, eps, ROW_WARPS, K_WARPS))
        acc *= rstd
        acc_up *= rstd
    offs_m = tl.arange(0, 8 * TOKEN_TILES)
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    _scale_and_write_back(acc, acc_up, tl.zeros((8 * TOKEN_TILES, 1), dtype=tl.float32), scale_ptr, offs_m, offs_n,
                          pid_k, M, N, b_ptr, out_ptr, ws_ptr, stride_om, res_ptr, stride_rm, cnt_ptr, INT4_WO,
                          HAS_BIAS, ACT, GATED, SPLIT_K, HAS_RES, REDUCE_LAST)


# ---------------------------------------------------------------------------------------------------------
# int8 weight-only: the same lanes and fragments, a word of 4 codes per MMA
#
# Lane l = 4·r + c loads 16 bytes (4 words) of rows r and r + 8 per step: word j holds k = 16c + 4j + i in byte i.
# Word j is one MMA: A's slots (2c, 2c + 1) are bytes 0, 1 and slots (2c + 8, 2c + 9) bytes 2, 3, so B holds x's
# pair words (16c + 4j) / 2 and + 1 as they lie in memory: no repack. A warp's step covers 64 k of 16 rows.
# The codes are signed (-127..127) and exact in bf16 and fp16, so D is Σ q·x itself: no offset, no Σx MMAs, and the
# row scale multiplies the sums after the loop (``_scale_and_write_back``).
# bf16 cannot hold 256 consecutive integers in one binade, so a pair is (128 + low 7 bits) − (128 + 128·sign bit):
# each half put under the exponent byte 0x43 by a PRMT, the difference exact (2 LOP3 a word, 2 PRMT and 1 packed
# fma a pair). fp16 takes the sign-flipped byte u = q + 128 under 0x64 (1024 + u) and subtracts 1152 (1 LOP3 a
# word, 1 PRMT and 1 packed fma a pair).
_I8_BF16_ASM = ("{ .reg .b32 l, h, a, b, m; lop3.b32 l, $2, 0x7F7F7F7F, 0, 0xC0; lop3.b32 h, $2, 0x80808080, 0, 0xC0; "
                "mov.b32 m, 0xBF80BF80; prmt.b32 a, l, 0x43, 0x4140; prmt.b32 b, h, 0x43, 0x4140; "
                "fma.rn.bf16x2 $0, b, m, a; prmt.b32 a, l, 0x43, 0x4342; prmt.b32 b, h, 0x43, 0x4342; "
                "fma.rn.bf16x2 $1, b, m, a; }")
_I8_F16_ASM = ("{ .reg .b32 u, a, m, one; lop3.b32 u, $2, 0x80808080, 0, 0x3C; mov.b32 m, 0xE480E480; "
               "mov.b32 one, 0x3C003C00; prmt.b32 a, u, 0x64, 0x4140; fma.rn.f16x2 $0, a, one, m; "
               "prmt.b32 a, u, 0x64, 0x4342; fma.rn.f16x2 $1, a, one, m; }")
I8_DECODE_BF16 = tl.constexpr(_I8_BF16_ASM)
I8_DECODE_F16 = tl.constexpr(_I8_F16_ASM)


@triton.jit
def _decode_i8(w, FP16: tl.constexpr):
    """A word's 4 signed codes → two registers of two exact 16-bit values each: bytes (0, 1) and (2, 3)."""
    if FP16:
        return tl.inline_asm_elementwise(I8_DECODE_F16, "=r,=r,r", [w], dtype=(tl.int32,) * 2, is_pure=True, pack=1)
    return tl.inline_asm_elementwise(I8_DECODE_BF16, "=r,=r,r", [w], dtype=(tl.int32,) * 2, is_pure=True, pack=1)


@triton.jit
def _i8_word_mma(w, v, b0, b1, d0, d1, d2, d3, FP16: tl.constexpr):
    """Word j of rows r (w) and r + 8 (v) times x's pair words b0, b1 at the same k: one MMA into D."""
    p0, p1 = _decode_i8(w, FP16)
    q0, q1 = _decode_i8(v, FP16)
    return _mma(p0, q0, p1, q1, b0, b1, d0, d1, d2, d3, FP16)


@triton.jit
def _i8_tile_step(w, v, xa, xb, d0, d1, d2, d3, FP16: tl.constexpr):
    """One 16-byte chunk of one tile and token tile: the 4 words [T, 4] of rows r (w) and r + 8 (v) against x's 8
    pair words (xa: words 0-3, xb: 4-7 of the lane's 16 k)."""
    w0, w1, w2, w3 = _split4(w)
    v0, v1, v2, v3 = _split4(v)
    x0, x1, x2, x3 = _split4(xa)
    x4, x5, x6, x7 = _split4(xb)
    d0, d1, d2, d3 = _i8_word_mma(w0, v0, x0, x1, d0, d1, d2, d3, FP16)
    d0, d1, d2, d3 = _i8_word_mma(w1, v1, x2, x3, d0, d1, d2, d3, FP16)
    d0, d1, d2, d3 = _i8_word_mma(w2, v2, x4, x5, d0, d1, d2, d3, FP16)
    return _i8_word_mma(w3, v3, x6, x7, d0, d1, d2, d3, FP16)


@triton.jit
def _i8_weights(w_a, w_b, kw, ok_a, ok8_a, ok_b, ok8_b, stride_wn, TWO: tl.constexpr, L2PF: tl.constexpr):
    """A chunk's words [T, 4] of tile A (rows r, r + 8) and, when TWO, tile B; ``kw``: word offsets [T]. (Loaded past
    L1, ``.cg``, to keep x there, the best tile was 13-15% slower in 5 of the 6 8B MLP shapes at M = 2-16 and 5%
    faster in one: results/int8_mma_cg_ab_s23run4_*.)"""
    wa = _load_words(w_a + kw[:, None], ok_a, L2PF)
    va = _load_words(w_a + kw[:, None] + 8 * stride_wn, ok8_a, L2PF)
    wb, vb = wa, va
    if TWO:
        wb = _load_words(w_b + kw[:, None], ok_b, L2PF)
        vb = _load_words(w_b + kw[:, None] + 8 * stride_wn, ok8_b, L2PF)
    return wa, va, wb, vb


@triton.jit
def _i8_x(x_ptrs, stride_xm, k2, ok, ok2, TOKEN_TILES: tl.constexpr):
    """x's 8 pair words of the lane's 16 k at pair offsets k2 [T], as two [T, 4], for tokens r (ok) and, with two
    token tiles, r + 8 (ok2)."""
    xa = tl.load(x_ptrs + k2[:, None], mask=ok[:, None], other=0)
    xb = tl.load(x_ptrs + k2[:, None] + 4, mask=ok[:, None], other=0)
    ya, yb = xa, xb
    if TOKEN_TILES == 2:
        ya = tl.load(x_ptrs + 8 * stride_xm + k2[:, None], mask=ok2[:, None], other=0)
        yb = tl.load(x_ptrs + 8 * stride_xm + k2[:, None] + 4, mask=ok2[:, None], other=0)
    return xa, xb, ya, yb


@triton.jit
def _i8_chunk(wa, va, wb, vb, xa, xb, ya, yb, o0, o1, o2, o3, u0, u1, u2, u3, p0, p1, p2, p3, q0, q1, q2, q3,
              TWO: tl.constexpr, TOKEN_TILES: tl.constexpr, FP16: tl.constexpr):
    """One 16-byte chunk a lane and weight row: tile A (o: tokens 0-7, p: 8-15) and, when TWO, tile B (u, q)."""
    o0, o1, o2, o3 = _i8_tile_step(wa, va, xa, xb, o0, o1, o2, o3, FP16)
    if TWO:
        u0, u1, u2, u3 = _i8_tile_step(wb, vb, xa, xb, u0, u1, u2, u3, FP16)
    if TOKEN_TILES == 2:  # the same words (the decoding is pure: compiled once) times tokens 8-15
        p0, p1, p2, p3 = _i8_tile_step(wa, va, ya, yb, p0, p1, p2, p3, FP16)
        if TWO:
            q0, q1, q2, q3 = _i8_tile_step(wb, vb, ya, yb, q0, q1, q2, q3, FP16)
    return o0, o1, o2, o3, u0, u1, u2, u3, p0, p1, p2, p3, q0, q1, q2, q3


@triton.jit
def _qgemv_mma_int8_kernel(
    # Pointers (x and the weight as int32 words: x's pairs, 4 int8 codes a word)
    x_ptr, w_ptr, scale_ptr, b_ptr, out_ptr, ws_ptr, res_ptr, cnt_ptr,
    # Matrix dimensions (N: output columns; the weight has 2N rows when GATED), K a multiple of 64
    M, N, K, K_PER_SPLIT,
    # Strides (x and w in words)
    stride_xm, stride_wn, stride_om, stride_rm,
    # Meta-parameters (num_warps = ROW_WARPS·K_WARPS)
    HAS_BIAS: tl.constexpr, ACT: tl.constexpr, GATED: tl.constexpr, SPLIT_K: tl.constexpr,
    ROW_WARPS: tl.constexpr, K_WARPS: tl.constexpr, ROW_TILES: tl.constexpr, FP16: tl.constexpr,
    PDL: tl.constexpr, TOKEN_TILES: tl.constexpr = 1, HAS_RES: tl.constexpr = False,
    REDUCE_LAST: tl.constexpr = False, PDL_EARLY: tl.constexpr = False, UNROLL: tl.constexpr = 1,
    L2PF: tl.constexpr = False,
):
    """Weight-only int8 out[m, n] = epilogue(s[n]·Σ_k x[m, k] q[n, k]) for m < M ≤ 16 on mma.sync: the int4
    kernel's lanes, warps, tiles and tail (``_qgemv_mma_kernel``) with the int8 fragments above. A warp's step is
    64 k; a loop pass takes UNROLL (1 or 2) steps, and the next pass's words and x are loaded while this one is
    summed (x read where it is used instead, from L1 / L2, made the 8B MLP shapes at M = 16 slower: 27.9 → 34.2
    µs for the best tile, results/gemv_sweep_m16_int8_mma_xatuse_s23run2_*)."""
    tl.static_assert(ROW_TILES == 1 or (ROW_TILES == 2 and not GATED))
    tl.static_assert(TOKEN_TILES == 1 or TOKEN_TILES == 2)
    tl.static_assert(UNROLL == 1 or UNROLL == 2)
    if PDL_EARLY:
        pdl_launch_dependents(PDL)
    TWO: tl.constexpr = GATED or ROW_TILES == 2
    T: tl.constexpr = 32 * ROW_WARPS * K_WARPS
    STEP: tl.constexpr = 64 * K_WARPS
    BLOCK_N: tl.constexpr = 16 * ROW_WARPS * (1 if GATED else ROW_TILES)
    r, c, kw, n, n_b, rows_ok, rows8_ok, rows_b_ok, rows8_b_ok = _lanes(N, ROW_WARPS, K_WARPS, BLOCK_N, GATED)
    kl_ = kw * 64 + 16 * c  # the lane's first k within a step
    pid_k = tl.program_id(1)
    k_start = pid_k * K_PER_SPLIT
    k_end = tl.minimum(k_start + K_PER_SPLIT, K)
    w_a = w_ptr + n.to(tl.int64)[:, None] * stride_wn + tl.arange(0, 4)[None, :]
    w_b = w_ptr + n_b.to(tl.int64)[:, None] * stride_wn + tl.arange(0, 4)[None, :]
    x_ptrs = x_ptr + r.to(tl.int64)[:, None] * stride_xm + tl.arange(0, 4)[None, :]
    x_ok = r < M
    x_ok2 = r + 8 < M
    o0, o1, o2, o3, u0, u1, u2, u3, p0, p1, p2, p3, q0, q1, q2, q3 = _accumulators(T)
    # the first pass's words before waiting for the kernel that writes x (PDL); a chunk past k_end loads words and
    # x of 0, which add 0
    k = k_start + kl_
    live = k < k_end
    wa, va, wb, vb = _i8_weights(w_a, w_b, k // 4, rows_ok & live, rows8_ok & live, rows_b_ok & live,
                                 rows8_b_ok & live, stride_wn, TWO, L2PF)
    k2 = k + STEP
    live2 = k2 < k_end
    wa2, va2, wb2, vb2 = wa, va, wb, vb
    if UNROLL == 2:
        wa2, va2, wb2, vb2 = _i8_weights(w_a, w_b, k2 // 4, rows_ok & live2, rows8_ok & live2, rows_b_ok & live2,
                                         rows8_b_ok & live2, stride_wn, TWO, L2PF)
    pdl_wait(PDL)
    xa, xb, ya, yb = _i8_x(x_ptrs, stride_xm, k // 2, x_ok & live, x_ok2 & live, TOKEN_TILES)
    xa2, xb2, ya2, yb2 = xa, xb, ya, yb
    if UNROLL == 2:
        xa2, xb2, ya2, yb2 = _i8_x(x_ptrs, stride_xm, k2 // 2, x_ok & live2, x_ok2 & live2, TOKEN_TILES)
    for step in range(k_start, k_end, STEP * UNROLL):
        k = step + STEP * UNROLL + kl_
        more = k < k_end
        wa_n, va_n, wb_n, vb_n = _i8_weights(w_a, w_b, k // 4, rows_ok & more, rows8_ok & more, rows_b_ok & more,
                                             rows8_b_ok & more, stride_wn, TWO, L2PF)
        xa_n, xb_n, ya_n, yb_n = _i8_x(x_ptrs, stride_xm, k // 2, x_ok & more, x_ok2 & more, TOKEN_TILES)
        wa2_n, va2_n, wb2_n, vb2_n = wa_n, va_n, wb_n, vb_n
        xa2_n, xb2_n, ya2_n, yb2_n = xa_n, xb_n, ya_n, yb_n
        if UNROLL == 2:
            k2 = k + STEP
            more2 = k2 < k_end
            wa2_n, va2_n, wb2_n, vb2_n = _i8_weights(w_a, w_b, k2 // 4, rows_ok & more2, rows8_ok & more2,
                                                     rows_b_ok & more2, rows8_b_ok & more2, stride_wn, TWO, L2PF)
            xa2_n, xb2_n, ya2_n, yb2_n = _i8_x(x_ptrs, stride_xm, k2 // 2, x_ok & more2, x_ok2 & more2, TOKEN_TILES)
        o0, o1, o2, o3, u0, u1, u2, u3, p0, p1, p2, p3, q0, q1, q2, q3 = _i8_chunk(
            wa, va, wb, vb, xa, xb, ya, yb, o0, o1, o2, o3, u0, u1, u2, u3, p0, p1, p2, p3, q0, q1, q2, q3,
            TWO, TOKEN_TILES, FP16)
        if UNROLL == 2:
            o0, o1, o2, o3, u0, u1, u2, u3, p0, p1, p2, p3, q0, q1, q2, q3 = _i8_chunk(
                wa2, va2, wb2, vb2, xa2, xb2, ya2, yb2, o0, o1, o2, o3, u0, u1, u2, u3, p0, p1, p2, p3,
                q0, q1, q2, q3, TWO, TOKEN_TILES, FP16)
        wa, va, wb, vb = wa_n, va_n, wb_n, vb_n
        xa, xb, ya, yb = xa_n, xb_n, ya_n, yb_n
        wa2, va2, wb2, vb2 = wa2_n, va2_n, wb2_n, vb2_n
        xa2, xb2, ya2, yb2 = xa2_n, xb2_n, ya2_n, yb2_n
    if not PDL_EARLY:
        pdl_launch_dependents(PDL)
    acc, acc_up = _tiles_out(o0, o1, o2, o3, u0, u1, u2, u3, p0, p1, p2, p3, q0, q1, q2, q3, ROW_WARPS, K_WARPS,
                             TOKEN_TILES, TWO, GATED, BLOCK_N)
    offs_m = tl.arange(0, 8 * TOKEN_TILES)
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    _scale_and_write_back(acc, acc_up, tl.zeros((8 * TOKEN_TILES, 1), dtype=tl.float32), scale_ptr, offs_m, offs_n,
                          pid_k, M, N, b_ptr, out_ptr, ws_ptr, stride_om, res_ptr, stride_rm, cnt_ptr, INT8_WO,
                          HAS_BIAS, ACT, GATED, SPLIT_K, HAS_RES, REDUCE_LAST)
