"""Weight and activation quantization: the formats accel's quantized linears store and the exact reference of
what ``accel::qlinear`` computes.

Formats (weight [N, K], rows are output features):

| scheme | weight | scale | zero | activation |
|---|---|---|---|---|
| ``int8_weight_only`` | int8 [N, K], symmetric per row | fp32 [N] | – | as is |
| ``int4_weight_only`` | uint8 [N, Kp/2], two 4-bit codes per byte (even k low nibble) | weight dtype [N, Kp/G] | weight dtype [N, Kp/G], fractional (asymmetric), or ``None`` (symmetric) | as is |
| ``w8a8_int8`` | int8 [N, K], symmetric per row | fp32 [N] | – | int8, symmetric per token, scale max\\|x\\|/127 |
| ``w8a8_fp8`` | float8_e4m3fn [N, K], per row | fp32 [N] | – | float8_e4m3fn per token, scale max\\|x\\|/448 |

Kp is K rounded up to a multiple of the group size G (a partial last group is zero-padded). int4 codes are unsigned: asymmetric ``w ≈ (q - zero)·scale`` with q ∈ [0, 15] and a fractional zero point
(``zero = -min/scale``, so the group minimum is code 0); symmetric ``w ≈ (q - 8)·scale`` with ``scale = max|w| / 7``. Products accumulate in fp32 (int32 for w8a8_int8: exact), the bias is added in
fp32 and the optional activation epilogue (``act(gate)·up`` for gated FFNs, w = [gate; up]) is applied before the
single rounding to the activation dtype.
"""
from __future__ import annotations

import torch

from accel.runtime.activations import activation_fn

SCHEMES = ("int8_weight_only", "int4_weight_only", "w8a8_int8", "w8a8_fp8")
GROUP_SIZES = (32, 64, 128)
FP8_MAX = 448.0  # largest finite float8_e4m3fn
_EPS = 1e-12  # floor for all-zero rows and groups
# where the compiler's option gptq applies: the lossy 4- and 8-bit schemes. int8 weight-only stays round-to-nearest
# (+0.1% perplexity on SmolLM2 already; GPTQ would only add compile time)
GPTQ_SCHEMES = ("int4_weight_only", "w8a8_int8", "w8a8_fp8")
CLIP_RATIOS = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75)
CLIP_REFINE = 0.025  # asymmetric: step around the best pair of ratios


def check_scheme(scheme: str) -> None:
    if scheme not in SCHEMES:
        raise ValueError(f"unknown quantization scheme {scheme!r}; valid: {', '.join(SCHEMES)}")


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """uint8 [N, K/2] → uint8 codes [N, K] (even k from the low nibble)."""
    low, high = packed & 0xF, packed >> 4
    return torch.stack([low, high], dim=-1).reshape(packed.shape[0], -1)


def row_scale(w32: torch.Tensor, scheme: str) -> torch.Tensor:
    """The per-row scale [N] of the 8-bit schemes: max|w| / 127 (int8) or / 448 (fp8), floored for zero rows."""
    return w32.abs().amax(dim=1).clamp_min(_EPS) / (FP8_MAX if scheme == "w8a8_fp8" else 127.0)


def pack_int4(codes: torch.Tensor) -> torch.Tensor:
    """uint8 codes [N, K] in [0, 15] → uint8 [N, K/2]."""
    codes = codes.to(torch.uint8).reshape(codes.shape[0], -1, 2)
    return codes[..., 0] | (codes[..., 1] << 4)


def quantize_weight(w: torch.Tensor, scheme: str, group_size: int = 128, symmetric: bool = False,
                    importance: torch.Tensor | None = None, hessian: torch.Tensor | None = None,
                    act_order: bool = True):
    """(qweight, scale, zero) for ``w`` [N, K] (``zero`` is ``None`` except for asymmetric int4).

    With ``hessian`` [K, K] (the input activations' ``XᵀX/M``, see ``gptq.hessian``) the codes come from GPTQ
    (``accel/runtime/gptq.py``; ``act_order`` picks its column order), which minimizes the error of the layer's
    output rather than of the weights; the scales are those of round-to-nearest (int8 / fp8) or of the grid
    below (int4). Without it, int4 rounds to nearest on the grid ``int4_group_params`` picks per group: the
    clipping of its range with the least squared error weighted by ``importance`` [K] — the mean squared input
    activation per channel when known — or plain squared error; int8 and fp8 round to nearest.
    """
    check_scheme(scheme)
    w32 = w.detach().float()
    if scheme != "int4_weight_only" and hessian is not None:
        from accel.runtime import gptq

        q, scale = gptq.gptq_rowwise(w32, hessian, scheme, act_order)
        return q, scale, None
    if scheme in ("int8_weight_only", "w8a8_int8"):
        scale = row_scale(w32, scheme)
        q = torch.round(w32 / scale[:, None]).clamp(-127, 127).to(torch.int8)
        return q, scale, None
    if scheme == "w8a8_fp8":
        scale = row_scale(w32, scheme)
        return (w32 / scale[:, None]).to(torch.float8_e4m3fn), scale, None
    if group_size not in GROUP_SIZES:
        raise ValueError(f"int4 group_size must be one of {GROUP_SIZES}, got {group_size}")
    n, k = w32.shape
    pad = -k % group_size  # a partial last group is zero-padded (x never multiplies the padding)
    w32 = torch.nn.functional.pad(w32, (0, pad))
    if hessian is not None:
        from accel.runtime import gptq

        h = torch.nn.functional.pad(hessian.float(), (0, pad, 0, pad))
        codes, scale, zero = gptq.gptq_int4(w32, h, group_size, symmetric, act_order)
    else:
        imp = importance.float() if importance is not None else torch.ones(k, device=w32.device)
        imp = torch.nn.functional.pad(imp, (0, pad))
        g = w32.reshape(n, -1, group_size)
        codes, scale, zero = int4_group_params(g, symmetric, imp.reshape(1, -1, group_size))
    return pack_int4(codes.reshape(n, -1)), scale.to(w.dtype), None if symmetric else zero.to(w.dtype)


def int4_group_params(g: torch.Tensor, symmetric: bool,
                      importance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(codes [N, G#, G], scale [N, G#], zero [N, G#]) for groups ``g`` [N, G#, G]: the clipping of each group's
    range whose round-to-nearest (``codes``) has the least squared error weighted by ``importance`` (broadcast to
    ``g``). Symmetric groups have zero 8 (``w ≈ (q − 8)·scale``) and try the ratios ``CLIP_RATIOS`` of max|w|.
    Asymmetric groups shrink their minimum and maximum separately (a skewed group wants its long tail clipped, not
    its short one): every pair of ``CLIP_RATIOS``, then each group's best pair ± ``CLIP_REFINE``. On SmolLM2-135M's
    linears (held-out activations) the separate shrink gains ~1.7 dB of output SQNR for round-to-nearest and
    ~0.9 dB as GPTQ's static grid, over one ratio for both ends."""
    if symmetric:
        pairs = [(r, r) for r in CLIP_RATIOS]
    else:
        pairs = [(lo, hi) for lo in CLIP_RATIOS for hi in CLIP_RATIOS]
    best = _best_grid(g, symmetric, importance, pairs)
    if not symmetric:  # refine around each group's best pair
        r_lo, r_hi = best[4], best[5]
        steps = [(a * CLIP_REFINE, b * CLIP_REFINE) for a in (-1, 0, 1) for b in (-1, 0, 1) if a or b]
        best = _best_grid(g, symmetric, importance, [(r_lo + a, r_hi + b) for a, b in steps], best)
    return best[0], best[1], best[2]


def _best_grid(g, symmetric, importance, pairs, best=None):
    """[codes, scale, zero, err, ratio_lo, ratio_hi] of the least-error grid over ``pairs`` (and ``best``)."""
    for r_lo, r_hi in pairs:
        codes, scale, zero = _int4_grid(g, r_lo, symmetric, r_hi)
        err = ((_int4_values(codes, scale, zero) - g) ** 2 * importance).sum(-1)
        r_lo = torch.as_tensor(r_lo, dtype=err.dtype, device=err.device).expand_as(err)
        r_hi = torch.as_tensor(r_hi, dtype=err.dtype, device=err.device).expand_as(err)
        if best is None:
            best = [codes, scale, zero, err, r_lo, r_hi]
        else:
            better = err < best[3]
            best = [torch.where(better[..., None], codes, best[0]), torch.where(better, scale, best[1]),
                    torch.where(better, zero, best[2]), torch.minimum(err, best[3]),
                    torch.where(better, r_lo, best[4]), torch.where(better, r_hi, best[5])]
    return best


def _int4_grid(g: torch.Tensor, ratio, symmetric: bool, ratio_hi=None):
    """(codes, scale, zero) of groups ``g`` [N, G#, G] with the range shrunk by ``ratio`` (values outside clip);
    asymmetric: the minimum by ``ratio`` and the maximum by ``ratio_hi`` (default ``ratio``); ratios are floats
    or [N, G#] tensors."""
    if symmetric:
        scale = (g.abs().amax(dim=-1) * ratio).clamp_min(_EPS) / 7.0
        return torch.round(g / scale[..., None]).clamp(-8, 7) + 8, scale, torch.full_like(scale, 8.0)
    # min/max grid, zero point kept fractional (as tinygemm and HQQ do): at ratio 1 the minimum is code 0
    # exactly, so weights already on a 4-bit min/max grid (GGUF Q4_1, say) come back unchanged
    lo, hi = g.amin(dim=-1) * ratio, g.amax(dim=-1) * (ratio if ratio_hi is None else ratio_hi)
    scale = ((hi - lo) / 15.0).clamp_min(_EPS)
    return torch.round((g - lo[..., None]) / scale[..., None]).clamp(0, 15), scale, -lo / scale


def _int4_values(codes, scale, zero):
    return (codes - zero[..., None]) * scale[..., None]


def dequantize_weight(qweight: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor | None, scheme: str,
                      group_size: int) -> torch.Tensor:
    """The fp32 weight [N, K] that ``qweight`` encodes (int4: [N, K rounded up to the group size])."""
    if scheme in ("int8_weight_only", "w8a8_int8", "w8a8_fp8"):
        return qweight.float() * scale.float()[:, None]
    codes = unpack_int4(qweight).float()
    n, k = codes.shape
    g = codes.reshape(n, k // group_size, group_size)
    offset = zero.float() if zero is not None else torch.full_like(scale, 8.0, dtype=torch.float32)
    return ((g - offset[..., None]) * scale.float()[..., None]).reshape(n, k)


def quantize_activation(x: torch.Tensor, scheme: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token (row) symmetric quantization of x [M, K] for the w8a8 schemes: (qx, scale [M] fp32)."""
    x32 = x.float()
    amax = x32.abs().amax(dim=1).clamp_min(_EPS)
    if scheme == "w8a8_int8":
        scale = amax / torch.full_like(amax, 127.0)  # a tensor divisor: CUDA divides a scalar by its reciprocal
        return torch.round(x32 / scale[:, None]).clamp(-127, 127).to(torch.int8), scale
    scale = amax / torch.full_like(amax, FP8_MAX)
    return (x32 / scale[:, None]).to(torch.float8_e4m3fn), scale


def _int8_matmul(qx: torch.Tensor, qw: torch.Tensor) -> torch.Tensor:
    """Exact int32 accumulation of qx [M, K] · qw [N, K]ᵀ."""
    try:
        return torch._int_mm(qx.contiguous(), qw.t().contiguous())
    except RuntimeError:  # shapes _int_mm rejects: float64 holds every partial sum exactly (|sum| < 2^53)
        return (qx.double() @ qw.double().t()).to(torch.int32)


def qlinear_reference(x: torch.Tensor, qweight: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor | None,
                      bias: torch.Tensor | None, scheme: str, group_size: int, activation: str = "identity",
                      gated: bool = False, norm_eps: float | None = None, norm_weight: torch.Tensor | None = None,
                      residual: torch.Tensor | None = None) -> torch.Tensor:
    """What ``accel::qlinear`` computes, for x [..., K]; the output has x's dtype. With ``norm_eps``, x is first
    RMS-normalized (``reference.rms_norm``, times ``norm_weight`` when given); a ``residual`` [..., N] is added in
    fp32 before the one rounding."""
    check_scheme(scheme)
    if norm_eps is not None:
        from accel.runtime.reference import rms_norm

        x = rms_norm(x, norm_eps, norm_weight)
    x2 = x.reshape(-1, x.shape[-1])
    if scheme in ("int8_weight_only", "int4_weight_only"):
        w = dequantize_weight(qweight, scale, zero, scheme, group_size)[:, : x2.shape[1]]  # drop int4 padding
        acc = x2.float() @ w.t()
    elif scheme == "w8a8_int8":
        qx, sx = quantize_activation(x2, scheme)
        acc = _int8_matmul(qx, qweight).float() * sx[:, None] * scale.float()[None, :]
    else:
        qx, sx = quantize_activation(x2, scheme)
        acc = (qx.float() @ qweight.float().t()) * sx[:, None] * scale.float()[None, :]
    if bias is not None:
        acc = acc + bias.float()
    act = activation_fn(activation)
    if gated:
        gate, up = acc.chunk(2, dim=-1)
        acc = act(gate) * up
    else:
        acc = act(acc)
    if residual is not None:
        acc = acc + residual.reshape(acc.shape).float()
    return acc.to(x.dtype).reshape(*x.shape[:-1], acc.shape[-1])


def smoothquant_scales(x: torch.Tensor, w: torch.Tensor, alpha: float, lo: float = 1e-4,
                       hi: float = 1e4) -> torch.Tensor:
    """SmoothQuant's per-input-channel factors s [K] (fp32) for activations x [M, K] and weight w [N, K]:
    ``s_j = max|x_j|^alpha / max|w_j|^(1 - alpha)``, clamped to [lo, hi] (the default keeps s and 1/s normal
    fp16 numbers); 1 for channels where either maximum is zero (nothing to balance). ``x·diag(1/s) @ (w·diag(s))ᵀ``
    equals ``x @ wᵀ``, with x's outliers moved into w."""
    ax = x.detach().float().abs().amax(dim=0)
    aw = w.detach().float().abs().amax(dim=0)
    s = (ax.pow(alpha) / aw.pow(1.0 - alpha)).clamp(lo, hi)
    return torch.where((ax > 0) & (aw > 0), s, torch.ones_like(s))


AWQ_GRID = tuple(i / 10 for i in range(10))  # migration strengths tried; 0 = no scaling
AWQ_ROWS = 512  # activation rows the search evaluates (a random subset when more were captured)
SMOOTHQUANT_GRID = tuple(i / 10 for i in range(1, 10))  # α of smoothquant="auto"; unsmoothed is tried too


def _search_rows(x: torch.Tensor) -> torch.Tensor:
    """x [M, K] in fp32, at most AWQ_ROWS rows of it (a fixed random subset)."""
    x32 = x.detach().float()
    if x32.shape[0] > AWQ_ROWS:
        gen = torch.Generator(device="cpu").manual_seed(0)
        x32 = x32[torch.randperm(x32.shape[0], generator=gen)[:AWQ_ROWS].to(x32.device)]
    return x32


def smoothquant_search(x: torch.Tensor, w: torch.Tensor, scheme: str) -> tuple[torch.Tensor | None, float | None]:
    """SmoothQuant with the migration strength chosen per layer (option ``smoothquant="auto"``): the α of
    ``SMOOTHQUANT_GRID`` whose s (``smoothquant_scales``) minimizes ‖x wᵀ − qlinear(x / s, Q(w · diag(s)))‖² on
    the rows x [M, K], both x and w quantized as ``scheme`` (w8a8) computes them. Returns (s, α), or (None, None)
    when no α beats leaving the layer unsmoothed."""
    x32, w32 = _search_rows(x), w.detach().float()
    ref = x32 @ w32.t()

    def error(s: torch.Tensor | None) -> float:
        xs, ws = (x32, w32) if s is None else (x32 / s, w32 * s)
        qw, scale, zero = quantize_weight(ws, scheme)
        return (qlinear_reference(xs, qw, scale, zero, None, scheme, 0) - ref).pow(2).mean().item()

    best_err, best = error(None), (None, None)
    for alpha in SMOOTHQUANT_GRID:
        s = smoothquant_scales(x32, w32, alpha)
        err = error(s)
        if err < best_err:
            best_err, best = err, (s, alpha)
    return best


def awq_scales(x: torch.Tensor, w: torch.Tensor, group_size: int, symmetric: bool) -> tuple[torch.Tensor, float]:
    """Activation-aware scaling for int4 weights (AWQ, arXiv 2306.00978): per input channel j,
    ``s_j = mean|x_j|^α`` (normalized to a geometric mean of max and min of 1), with α from ``AWQ_GRID`` chosen to
    minimize ‖x wᵀ − (x / s) Q(w · diag(s))ᵀ‖² on the rows x [M, K], Q = round-to-nearest on group min/max grids.
    Salient channels (large activations) get larger weights, hence finer steps relative to their size. Returns
    (s [K] fp32, α); α = 0 gives s = 1 (scaling did not help on these rows)."""
    x32, w32 = _search_rows(x), w.detach().float()
    n, k = w32.shape
    pad = -k % group_size
    ref = x32 @ w32.t()
    mean_abs = x32.abs().mean(0).clamp_min(1e-6)
    best_err, best = float("inf"), (torch.ones(k, device=w32.device), 0.0)
    for alpha in AWQ_GRID:
        s = mean_abs.pow(alpha)
        s = s / (s.amax() * s.amin()).sqrt()
        g = torch.nn.functional.pad(w32 * s, (0, pad)).reshape(n, -1, group_size)
        codes, scale, zero = _int4_grid(g, 1.0, symmetric)
        deq = _int4_values(codes, scale, zero).reshape(n, -1)[:, :k]
        err = ((x32 / s) @ deq.t() - ref).pow(2).mean().item()
        if err < best_err:
            best_err, best = err, (s, alpha)
    return best


def sqnr_db(reference: torch.Tensor, approx: torch.Tensor) -> float:
    """20·log10(‖ref‖ / ‖ref − approx‖) in dB (inf when equal)."""
    ref, err = reference.double(), (reference.double() - approx.double())
    e = err.norm().item()
    return float("inf") if e == 0 else 20.0 * torch.log10(ref.norm() / e).item()
