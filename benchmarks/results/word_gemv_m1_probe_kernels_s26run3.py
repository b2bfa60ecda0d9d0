"""Session 26 scratch: the word GEMV's chunk sums without the decoding and/or the int4 group parameters
(``m1_probe.py``)."""
import triton
import triton.language as tl
from accel.runtime.kernels import qlinear_kernels as qk


@triton.jit
def _sums_probe(x, x_sum, w, s_ptrs, z_ptrs, s_ok, up, SCHEME: tl.constexpr, HAS_ZERO: tl.constexpr,
                PER_WORD: tl.constexpr, SUB_AXIS: tl.constexpr, PRMT: tl.constexpr = False,
                HALVES: tl.constexpr = False, DECODE: tl.constexpr = True, PARAMS: tl.constexpr = True):
    if DECODE:
        if SCHEME == qk.INT4_WO:
            if HALVES:
                t = tl.sum(qk._halves_products(x, w, up), axis=SUB_AXIS)
            else:
                t = tl.sum(tl.sum(x * qk._decode_nibbles(w), axis=4), axis=SUB_AXIS)
        elif PRMT:
            t = tl.sum(tl.sum(x * qk._decode_bytes(w), axis=4), axis=SUB_AXIS)
        else:
            t = tl.sum(tl.sum(x * qk._decode_words(w ^ -2139062144, PER_WORD), axis=4), axis=SUB_AXIS)
    else:
        t = tl.sum(w, axis=SUB_AXIS).to(tl.float32) * x_sum
    if SCHEME == qk.INT4_WO:
        A: tl.constexpr = qk.HALVES_OFFSET if HALVES else 1.0
        D: tl.constexpr = 1.0 if HALVES else 128.0
        if PARAMS:
            s = tl.load(s_ptrs, mask=s_ok, other=0.0).to(tl.float32)
            c = A + tl.load(z_ptrs, mask=s_ok, other=0.0).to(tl.float32) * (1.0 / D)
        else:
            s = 0.01
            c = A + 8.0 / D
        t = (t - c * x_sum) * (D * s)
    return t


@triton.jit
def _sums_nodec(x, x_sum, w, s_ptrs, z_ptrs, s_ok, up, SCHEME: tl.constexpr, HAS_ZERO: tl.constexpr,
                PER_WORD: tl.constexpr, SUB_AXIS: tl.constexpr, PRMT: tl.constexpr = False, HALVES: tl.constexpr = False):
    return _sums_probe(x, x_sum, w, s_ptrs, z_ptrs, s_ok, up, SCHEME, HAS_ZERO, PER_WORD, SUB_AXIS, PRMT, HALVES, False, True)


@triton.jit
def _sums_noprm(x, x_sum, w, s_ptrs, z_ptrs, s_ok, up, SCHEME: tl.constexpr, HAS_ZERO: tl.constexpr,
                PER_WORD: tl.constexpr, SUB_AXIS: tl.constexpr, PRMT: tl.constexpr = False, HALVES: tl.constexpr = False):
    return _sums_probe(x, x_sum, w, s_ptrs, z_ptrs, s_ok, up, SCHEME, HAS_ZERO, PER_WORD, SUB_AXIS, PRMT, HALVES, True, False)


@triton.jit
def _sums_bare(x, x_sum, w, s_ptrs, z_ptrs, s_ok, up, SCHEME: tl.constexpr, HAS_ZERO: tl.constexpr,
               PER_WORD: tl.constexpr, SUB_AXIS: tl.constexpr, PRMT: tl.constexpr = False, HALVES: tl.constexpr = False):
    return _sums_probe(x, x_sum, w, s_ptrs, z_ptrs, s_ok, up, SCHEME, HAS_ZERO, PER_WORD, SUB_AXIS, PRMT, HALVES, False, False)


def patch(variant):
    if variant != "base":
        qk._word_chunk_sums = {"nodec": _sums_nodec, "noprm": _sums_noprm, "bare": _sums_bare}[variant]
