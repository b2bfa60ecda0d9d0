"""Triton kernels of ``accel.runtime.kernels.qlinear`` (launchers, configs and dispatch live there).

Every kernel computes fp32 (int32 for w8a8_int8) sums of x·q, applies the scales (per weight row after the K loop,
per int4 group inside it, per token for W8A8) and hands the fp32 tile to ``linear._write_back``: the fused
bias + activation (+ act(gate)·up) epilogue, or the split-K workspace that ``linear._epilogue_kernel`` reduces.
All tensors are contiguous along K (the launcher makes x so), so every K offset below is in elements.

Numerics shared with ``accel.runtime.quant.qlinear_reference``: codes become fp32 exactly; the activation scale
is max|x|/127 (or /448) divided with IEEE rounding (``tl.math.div_rn``; Triton's ``/`` is approximate), and
x/scale is rounded to nearest-even like ``torch.round`` / ``Tensor.to(float8_e4m3fn)``.
"""
import triton
import triton.language as tl

from accel.runtime.kernels.activations import apply_activation  # noqa: F401  (hashed with the kernels)
from accel.runtime.kernels.linear import _dot, _load_tile, _write_back

# Scheme codes, in the order of ``quant.SCHEMES``; the two W8A8 schemes are the codes ≥ W8A8_INT8.
INT8_WO = tl.constexpr(0)
INT4_WO = tl.constexpr(1)
W8A8_INT8 = tl.constexpr(2)
W8A8_FP8 = tl.constexpr(3)


@triton.jit
def _codes_to_f32(q, OFFSET: tl.constexpr):
    """Exact fp32 of int32 codes q ∈ [-OFFSET, 2^22): the bits of 2^23 + OFFSET + q read as fp32 hold q in the
    mantissa, so one integer add and one fp32 subtraction replace the int→float conversion (I2F, a
    quarter-rate instruction on sm_90 that would bound the GEMV at one weight byte per 4 instructions)."""
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
def _quantize(x, scale, SCHEME: tl.constexpr):
    """x / scale (scale broadcast to x) rounded half-to-even: int32 codes in [-127, 127] for w8a8_int8, the
    float8_e4m3fn value (as fp32) for w8a8_fp8. Adding and subtracting c = 1.5·2^23·u rounds to a multiple of u,
    ties to even, for |y| < 2^22·u. fp8 is rounded that way too, with u = 2^(e-3) for |y| in [2^e, 2^(e+1))
    (3 mantissa bits; e ≥ -6, below which e4m3 is subnormal with u = 2^-9), so the cast to fp8 that follows is
    exact: the interpreter's fp32→fp8 cast does not carry a rounded-up mantissa into the exponent."""
    y = tl.math.div_rn(x, tl.broadcast_to(scale, x.shape))
    if SCHEME == W8A8_INT8:
        q = tl.minimum(tl.maximum((y + 12582912.0) - 12582912.0, -127.0), 127.0).to(tl.int32)
    else:
        e = tl.maximum((tl.cast(y, tl.int32, bitcast=True) >> 23) & 0xFF, 127 - 6)  # biased exponent
        c = tl.cast(((e + 20) << 23) | 0x400000, tl.float32, bitcast=True)  # 1.5 · 2^(e-127+20) = 1.5·2^23·u
        q = tl.minimum(tl.maximum((y + c) - c, -448.0), 448.0)
    return q


@triton.jit
def _dequant_tile(w, s, z, SCHEME: tl.constexpr, HAS_ZERO: tl.constexpr):
    """A weight tile [BLOCK_N, BLOCK_K] (int4: packed [BLOCK_N, BLOCK_K / 2]) as fp32 weights: q·s[n] (int8) or
    (q - zero)·s (int4; s, z [BLOCK_N, 1] of the tile's group, zero 8 when symmetric), as quant.dequantize_weight."""
    if SCHEME == INT4_WO:
        q = _codes_to_f32(_unpack_int4(w), 0)
        if HAS_ZERO:
            w = (q - z) * s
        else:
            w = (q - 8.0) * s
    else:
        w = _codes_to_f32(w.to(tl.int32), 128) * s
    return w


@triton.jit
def _gemv_chunk_sums(x, w_ptrs, s_ptrs, z_ptrs, n_ok, k_ok, s_ok, x_sum,
                     SCHEME: tl.constexpr, HAS_ZERO: tl.constexpr, EVEN_K: tl.constexpr):
    """Σ over each chunk of x[m, k]·w[n, k] for x [BLOCK_M, 1, C, CHUNK] and the weight chunks at w_ptrs
    [1, BLOCK_N, C, CHUNK / PACK]: [BLOCK_M, BLOCK_N, C]. int4 chunks lie in one group, so the group's scale and
    zero apply once per chunk: Σ x (q - z) s = s (Σ x q - z Σ x)."""
    w = _load_tile(w_ptrs, n_ok, k_ok, EVEN_K, "evict_first")  # weights are streamed once
    if SCHEME == INT4_WO:
        t = tl.sum(x * _codes_to_f32(_unpack_int4(w), 0), axis=3)
        s = tl.load(s_ptrs, mask=s_ok, other=0.0).to(tl.float32)
        if HAS_ZERO:
            z = tl.load(z_ptrs, mask=s_ok, other=0.0).to(tl.float32)
        else:
            z = 8.0
        t = (t - z * x_sum) * s
    elif SCHEME == INT8_WO:
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
def _qgemv_kernel(
    # Pointers
    x_ptr, w_ptr, scale_ptr, zero_ptr, b_ptr, out_ptr, ws_ptr,
    # Matrix dimensions (N: output columns; the weight has 2N rows when GATED)
    M, N, K, K_PER_SPLIT,
    # Strides (rows; unit stride along K)
    stride_xm, stride_wn, stride_sn, stride_om,
    # Meta-parameters
    SCHEME: tl.constexpr, GROUP_SIZE: tl.constexpr, HAS_ZERO: tl.constexpr, HAS_BIAS: tl.constexpr,
    ACT: tl.constexpr, GATED: tl.constexpr, SPLIT_K: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CHUNK: tl.constexpr, NUM_CHUNKS: tl.constexpr,
    PACK: tl.constexpr, EVEN_K: tl.constexpr,
):
    """out[m, n] = epilogue(scales · Σ_k x[m, k] q[n, k]) on CUDA cores, for small M. Tiles are 4-D, [rows of
    x, weight rows, chunks, values per chunk], CHUNK = 16 bytes of x: the x tile and the weight tile then get
    the same layout (no shuffle in the loop); each thread sums its chunk in registers every step. W8A8 programs
    first scan their rows of x for max|x| and quantize each x tile as they load it."""
    BLOCK_K: tl.constexpr = CHUNK * NUM_CHUNKS
    # -- map program ids to output columns, rows of x and a slice of K
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    pid_m = tl.program_id(2)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    k_start = pid_k * K_PER_SPLIT
    k_end = tl.minimum(k_start + K_PER_SPLIT, K)
    # -- create pointers (row offsets in int64); chunk c of a step covers k = c·CHUNK ... c·CHUNK + CHUNK - 1
    m4 = offs_m[:, None, None, None]
    n4 = offs_n[None, :, None, None]
    c4 = tl.arange(0, NUM_CHUNKS)[None, None, :, None]
    kx = c4 * CHUNK + tl.arange(0, CHUNK)[None, None, None, :]
    kb = c4 * (CHUNK // PACK) + tl.arange(0, CHUNK // PACK)[None, None, None, :]  # weight bytes of a step
    m_ok = m4 < M
    n_ok = n4 < N
    x_ptrs = x_ptr + m4.to(tl.int64) * stride_xm + kx
    w_ptrs = w_ptr + n4.to(tl.int64) * stride_wn + k_start // PACK + kb
    wu_ptrs = w_ptrs + tl.cast(N, tl.int64) * stride_wn
    # int4 group parameters per chunk [1, BLOCK_N, NUM_CHUNKS]; the group index moves with k
    s_rows = offs_n.to(tl.int64)[None, :, None] * stride_sn
    su_rows = s_rows + tl.cast(N, tl.int64) * stride_sn
    c3 = tl.arange(0, NUM_CHUNKS)[None, None, :] * CHUNK
    n3_ok = (offs_n < N)[None, :, None]
    # -- W8A8: each row's activation scale, from max|x| over the whole K (not only this split)
    x_scale = tl.zeros((BLOCK_M, 1), dtype=tl.float32)
    if SCHEME >= W8A8_INT8:
        amax = _abs_max(x_ptrs, m_ok, kx, K, BLOCK_K)
        x_scale = _token_scale(tl.max(tl.max(amax, axis=3), axis=2), SCHEME)
    x_ptrs += k_start
    # -- iterate over this split's K range
    acc = tl.zeros((BLOCK_M, BLOCK_N, NUM_CHUNKS), dtype=tl.float32)
    if SCHEME == W8A8_INT8:
        acc = tl.zeros((BLOCK_M, BLOCK_N, NUM_CHUNKS), dtype=tl.int32)
    acc_up = acc
    for k in range(k_start, k_end, BLOCK_K):
        x = _load_tile(x_ptrs, m_ok, kx < K - k, EVEN_K, "").to(tl.float32)
        if SCHEME >= W8A8_INT8:
            x = _quantize(x, x_scale[:, :, None, None], SCHEME)
        x_sum = tl.sum(x, axis=3)  # used by int4 only, removed as dead code otherwise
        k_ok = kb * PACK < K - k
        grp = (k + c3) // GROUP_SIZE
        s_ok = n3_ok & (c3 < K - k)
        acc += _gemv_chunk_sums(x, w_ptrs, scale_ptr + s_rows + grp, zero_ptr + s_rows + grp, n_ok, k_ok, s_ok,
                                x_sum, SCHEME, HAS_ZERO, EVEN_K)
        if GATED:
            acc_up += _gemv_chunk_sums(x, wu_ptrs, scale_ptr + su_rows + grp, zero_ptr + su_rows + grp, n_ok,
                                       k_ok, s_ok, x_sum, SCHEME, HAS_ZERO, EVEN_K)
            wu_ptrs += BLOCK_K // PACK
        x_ptrs += BLOCK_K
        w_ptrs += BLOCK_K // PACK
    # -- scale and write back
    out = _apply_scales(tl.sum(acc, axis=2), x_scale, scale_ptr, offs_n, N, SCHEME)
    out_up = out
    if GATED:
        out_up = _apply_scales(tl.sum(acc_up, axis=2), x_scale, scale_ptr + N, offs_n, N, SCHEME)
    _write_back(out, out_up, offs_m, offs_n, pid_k, M, N, b_ptr, out_ptr, ws_ptr, stride_om,
                HAS_BIAS, ACT, GATED, SPLIT_K)


@triton.jit
def _gemm_weight_tile(w_ptrs, s_rows, z_rows, n_ok, k_ok, k, dtype,
                      SCHEME: tl.constexpr, GROUP_SIZE: tl.constexpr, HAS_ZERO: tl.constexpr,
                      EVEN_K: tl.constexpr):
    """The [BLOCK_K, BLOCK_N] operand of tl.dot: weight-only tiles dequantized in registers to x's dtype (int8
    codes are exact in it; int8's row scale is applied after the loop); W8A8 tiles as stored."""
    if SCHEME == INT4_WO:
        # packed [BLOCK_N, BLOCK_K / 2] rows; BLOCK_K divides GROUP_SIZE, so the whole tile is in group k / G
        s = tl.load(s_rows + k // GROUP_SIZE, mask=n_ok, other=0.0).to(tl.float32)
        z = s
        if HAS_ZERO:
            z = tl.load(z_rows + k // GROUP_SIZE, mask=n_ok, other=0.0).to(tl.float32)
        w = tl.trans(_dequant_tile(tl.load(w_ptrs, mask=n_ok, other=0), s, z, SCHEME, HAS_ZERO).to(dtype))
    elif SCHEME == INT8_WO:
        w = _load_tile(w_ptrs, n_ok, k_ok, EVEN_K, "").to(dtype)
    else:
        w = _load_tile(w_ptrs, n_ok, k_ok, EVEN_K, "")
    return w


@triton.jit
def _qdot(x, w, acc, SCHEME: tl.constexpr, FP32_IEEE: tl.constexpr, FP8_ACC_K: tl.constexpr):
    if SCHEME == W8A8_INT8:
        acc = tl.dot(x, w, acc, out_dtype=tl.int32)
    elif SCHEME == W8A8_FP8:
        # Hopper's fp8 MMA accumulates with fewer than 24 bits: add its partial sums into the fp32 accumulator
        # every FP8_ACC_K products (one tile step), as the reference accumulates in fp32
        acc = tl.dot(x, w, acc, max_num_imprecise_acc=FP8_ACC_K)
    else:
        acc = _dot(x, w, acc, FP32_IEEE)
    return acc


@triton.jit
def _qgemm_kernel(
    # Pointers
    x_ptr, x_scale_ptr, w_ptr, scale_ptr, zero_ptr, b_ptr, out_ptr, ws_ptr,
    # Matrix dimensions (N: output columns; the weight has 2N rows when GATED)
    M, N, K, K_PER_SPLIT,
    # Strides (rows; unit stride along K)
    stride_xm, stride_wn, stride_sn, stride_om,
    # Meta-parameters
    SCHEME: tl.constexpr, GROUP_SIZE: tl.constexpr, HAS_ZERO: tl.constexpr, HAS_BIAS: tl.constexpr,
    ACT: tl.constexpr, GATED: tl.constexpr, SPLIT_K: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
    EVEN_K: tl.constexpr, FP32_IEEE: tl.constexpr, FP8_ACC_K: tl.constexpr,
):
    """out = epilogue(scales · x qᵀ) with tl.dot on [BLOCK_M, BLOCK_N] tiles: x in its dtype against weight
    tiles dequantized in registers (weight-only), or per-token quantized x (``_quantize_rows_kernel``) against
    the int8 (→ int32) / fp8 (→ fp32) weight. Programs are visited GROUP_M rows of tiles at a time, column by
    column, so a weight tile is still in L2 when the next row of tiles needs it; skinny use adds split-K."""
    # -- map program ids to a tile (grouped ordering) and a slice of K
    pid = tl.program_id(0)
    pid_k = tl.program_id(1)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    per_group = GROUP_M * tl.cdiv(N, BLOCK_N)
    first_m = (pid // per_group) * GROUP_M
    rows_in_group = tl.minimum(num_pid_m - first_m, GROUP_M)
    pid_m = first_m + (pid % per_group) % rows_in_group
    pid_n = (pid % per_group) // rows_in_group
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    k_start = pid_k * K_PER_SPLIT
    k_end = tl.minimum(k_start + K_PER_SPLIT, K)
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
    for k in range(k_start, k_end, BLOCK_K):
        x = _load_tile(x_ptrs, m_ok, offs_k[None, :] < K - k, EVEN_K, "")
        k_ok = offs_k[:, None] < K - k
        w = _gemm_weight_tile(w_ptrs, s_rows, z_rows, n_ok, k_ok, k, x.dtype, SCHEME, GROUP_SIZE, HAS_ZERO,
                              EVEN_K)
        acc = _qdot(x, w, acc, SCHEME, FP32_IEEE, FP8_ACC_K)
        if GATED:
            w_up = _gemm_weight_tile(w_ptrs + up_rows, s_rows + up_s_rows, z_rows + up_s_rows, n_ok, k_ok, k,
                                     x.dtype, SCHEME, GROUP_SIZE, HAS_ZERO, EVEN_K)
            acc_up = _qdot(x, w_up, acc_up, SCHEME, FP32_IEEE, FP8_ACC_K)
        x_ptrs += BLOCK_K
        if SCHEME == INT4_WO:
            w_ptrs += BLOCK_K // 2
        else:
            w_ptrs += BLOCK_K
    # -- scale and write back
    x_scale = tl.load(x_scale_ptr + offs_m, mask=offs_m < M, other=0.0)[:, None]  # W8A8 only
    out = _apply_scales(acc, x_scale, scale_ptr, offs_n, N, SCHEME)
    out_up = out
    if GATED:
        out_up = _apply_scales(acc_up, x_scale, scale_ptr + N, offs_n, N, SCHEME)
    _write_back(out, out_up, offs_m, offs_n, pid_k, M, N, b_ptr, out_ptr, ws_ptr, stride_om,
                HAS_BIAS, ACT, GATED, SPLIT_K)


@triton.jit
def _quantize_rows_kernel(
    # Pointers
    x_ptr, qx_ptr, scale_ptr,
    # Matrix dimensions
    M, K,
    # Strides (rows; unit stride along K)
    stride_xm, stride_qm,
    # Meta-parameters
    SCHEME: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """qx[m] = round(x[m] / scale[m]) with scale[m] = max|x[m]| / 127 (int8) or / 448 (fp8), as
    quant.quantize_activation: one program per row, two passes over K (max, then quantize)."""
    offs_m = tl.program_id(0) + tl.arange(0, 1)
    offs_k = tl.arange(0, BLOCK_K)[None, :]
    m_ok = (offs_m < M)[:, None]
    x_ptrs = x_ptr + offs_m.to(tl.int64)[:, None] * stride_xm + offs_k
    q_ptrs = qx_ptr + offs_m.to(tl.int64)[:, None] * stride_qm + offs_k
    scale = _token_scale(tl.max(_abs_max(x_ptrs, m_ok, offs_k, K, BLOCK_K), axis=1), SCHEME)
    tl.store(scale_ptr + offs_m, scale, mask=offs_m < M)
    for k in range(0, K, BLOCK_K):
        x = tl.load(x_ptrs + k, mask=m_ok & (offs_k < K - k), other=0.0).to(tl.float32)
        q = _quantize(x, scale[:, None], SCHEME).to(qx_ptr.dtype.element_ty)  # exact (already on the grid)
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
        w = _dequant_tile(tl.load(p_ptrs, mask=n_ok, other=0), s, z, SCHEME, HAS_ZERO)
        mask = n_ok
    else:
        mask = n_ok & (offs_k < K)[None, :]
        s = tl.load(scale_ptr + offs_n, mask=offs_n < N_W, other=0.0)[:, None]
        w = _dequant_tile(tl.load(w_ptr + rows * stride_wn + offs_k[None, :], mask=mask, other=0), s, s,
                          SCHEME, HAS_ZERO)
    tl.store(out_ptr + rows * stride_on + offs_k[None, :], w.to(out_ptr.dtype.element_ty), mask=mask)
