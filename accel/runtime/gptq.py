"""GPTQ for accel's int4 and row-scaled 8-bit formats: rounding with second-order error feedback from calibration
activations.

Round-to-nearest treats each weight alone. GPTQ (Frantar et al., 2022) quantizes a row's columns one at a time
and, after each, moves the not-yet-quantized columns to cancel that column's error on the layer *output*
``x·wᵀ``, using the activations' Hessian ``H = XᵀX`` (the output error of a weight change ``d`` is ``d·H·dᵀ``).
With ``U`` the upper Cholesky factor of ``H⁻¹``, quantizing column ``j`` to ``q`` spreads ``(w_j − q)/U_jj`` times
row ``j`` of ``U`` over the later columns. Columns go in blocks of ``BLOCK`` (updates inside a block, one matmul
per block for the rest). A compile calibrates on one call's activations, often fewer rows than a layer has inputs,
so before factoring, H is shrunk toward its diagonal (``SHRINK``: its off-diagonal correlations are the noisy part)
and damped (``DAMP``); both were picked on held-out activations of SmolLM2-135M, where raw H overfits.

The output is exactly ``quant.quantize_weight``'s int4 format: per group, a scale and a (fractional) zero point
chosen by ``quant.int4_group_params`` — on entering each group, from the group's weights as the earlier
columns' feedback left them, or, with ``act_order``, once up front from the original weights ("static groups"),
so that columns can go in order of decreasing Hessian diagonal without the kernel needing a permutation.
"""
from __future__ import annotations

import torch

from accel.runtime import quant

BLOCK = 128  # columns per lazy-update block (a multiple of every int4 group size)
DAMP = 0.01  # Tikhonov damping of H, as a fraction of its mean diagonal
SHRINK = 0.25  # weight of diag(H) in the shrunk Hessian (1 − SHRINK)·H + SHRINK·diag(H)


def hessian(x: torch.Tensor) -> torch.Tensor:
    """``XᵀX / M`` in fp32 for activations x [..., K] (M rows)."""
    x2 = x.reshape(-1, x.shape[-1]).float()
    return x2.t() @ x2 / max(1, x2.shape[0])


def _inverse_cholesky(h: torch.Tensor, damp: float) -> torch.Tensor:
    """Upper Cholesky factor of ``(H + λI)⁻¹``, λ = ``damp``·mean diag(H), damping more until it factors."""
    k = h.shape[0]
    eye = torch.eye(k, dtype=h.dtype, device=h.device)
    lam = damp * h.diagonal().mean().clamp_min(1e-12)
    for _ in range(8):
        chol, info = torch.linalg.cholesky_ex(h + lam * eye)
        if info == 0:
            inv = torch.cholesky_inverse(chol)
            upper, info = torch.linalg.cholesky_ex(inv, upper=True)
            if info == 0:
                return upper
        lam = lam * 10
    raise RuntimeError("GPTQ: the activation Hessian is not positive definite even with heavy damping")


def _prepared(w: torch.Tensor, h: torch.Tensor, shrink: float) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 copies of ``w`` and of ``h`` shrunk toward its diagonal, with dead input channels (no input ever drives
    them: zero padding, say) given a unit diagonal and zero weights: their weights are free."""
    w = w.float().clone()
    diag = h.diagonal().float()
    h = h.float() * (1 - shrink)
    h.diagonal().add_(shrink * diag)  # (1 − shrink)·H + shrink·diag(H): fewer rows than K overfit raw H
    dead = h.diagonal() <= 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    return w, h


def _columns(w: torch.Tensor, h: torch.Tensor, perm: torch.Tensor, damp: float, quantize) -> None:
    """The GPTQ sweep over ``w``'s columns in the order ``perm``: ``quantize(j, i, wb)`` rounds column ``i`` of the
    current block ``wb`` (permuted column ``j``), records its codes and returns its dequantized value; the error
    goes to the later columns."""
    k = w.shape[1]
    w = w[:, perm]
    upper = _inverse_cholesky(h[perm][:, perm], damp)
    for b0 in range(0, k, BLOCK):
        b1 = min(b0 + BLOCK, k)
        wb = w[:, b0:b1].clone()
        ub = upper[b0:b1, b0:b1]
        err = torch.empty_like(wb)
        for i in range(b1 - b0):
            e = (wb[:, i] - quantize(b0 + i, i, wb)) / ub[i, i]
            wb[:, i + 1:] -= e[:, None] * ub[i, i + 1:][None, :]
            err[:, i] = e
        w[:, b1:] -= err @ upper[b0:b1, b1:]


def _order(h: torch.Tensor, act_order: bool) -> torch.Tensor:
    """Columns by decreasing Hessian diagonal (act order) or as stored."""
    if act_order:
        return torch.argsort(h.diagonal(), descending=True)
    return torch.arange(h.shape[0], device=h.device)


def gptq_int4(w: torch.Tensor, h: torch.Tensor, group_size: int, symmetric: bool, act_order: bool = True,
              damp: float = DAMP, shrink: float = SHRINK) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(codes [N, K] in [0, 15], scale [N, K/G], zero [N, K/G]) for ``w`` [N, K], K a multiple of ``group_size``.

    ``h`` [K, K] is the activation Hessian (``hessian``; padding channels zero). Symmetric groups have zero 8.
    All fp32; the dequantized weight is ``(codes − zero)·scale`` per group, as ``quant.dequantize_weight`` reads it.
    """
    n, k = w.shape
    if k % group_size or BLOCK % group_size:
        raise ValueError(f"GPTQ needs K ({k}) and {BLOCK} to be multiples of the group size ({group_size})")
    w, h = _prepared(w, h, shrink)
    importance = h.diagonal().clone()
    n_groups = k // group_size
    scale = torch.empty(n, n_groups, device=w.device)
    zero = torch.empty(n, n_groups, device=w.device)
    if act_order:  # static groups: the grid comes from the original weights, columns go most important first
        _, s, z = quant.int4_group_params(w.reshape(n, n_groups, group_size), symmetric,
                                       importance.reshape(1, n_groups, group_size))
        scale.copy_(s)
        zero.copy_(z)
    perm = _order(h, act_order)
    group_of = (perm // group_size).tolist()  # the storage group of each (permuted) column
    codes = torch.empty(n, k, device=w.device)

    def quantize(j: int, i: int, wb: torch.Tensor) -> torch.Tensor:
        if not act_order and j % group_size == 0:  # entering a group: fit its grid to the updated weights
            g = j // group_size
            _, s, z = quant.int4_group_params(wb[:, i:i + group_size].unsqueeze(1), symmetric,
                                           importance[j:j + group_size].reshape(1, 1, -1))
            scale[:, g], zero[:, g] = s[:, 0], z[:, 0]
        s, z = scale[:, group_of[j]], zero[:, group_of[j]]
        c = torch.round(wb[:, i] / s + z).clamp_(0, 15)
        codes[:, j] = c
        return (c - z) * s

    _columns(w, h, perm, damp, quantize)
    out = torch.empty_like(codes)
    out[:, perm] = codes
    return out, scale, zero


def gptq_rowwise(w: torch.Tensor, h: torch.Tensor, scheme: str, act_order: bool = True, damp: float = DAMP,
                 shrink: float = SHRINK) -> tuple[torch.Tensor, torch.Tensor]:
    """(qweight [N, K], scale [N]) in ``quant.quantize_weight``'s format for the row-scaled 8-bit schemes (int8
    codes in [-127, 127], or float8_e4m3fn values), chosen by GPTQ. Each row's scale comes from its original
    weights (max|w| / 127 or / 448); the error feedback may push a weight past that range, where it saturates."""
    if scheme == "int4_weight_only":
        raise ValueError("gptq_rowwise is for the 8-bit schemes; int4 has gptq_int4")
    n, k = w.shape
    fp8 = scheme == "w8a8_fp8"
    top = quant.FP8_MAX if fp8 else 127.0
    w, h = _prepared(w, h, shrink)
    scale = quant.row_scale(w, scheme)
    perm = _order(h, act_order)
    codes = torch.empty(n, k, device=w.device)  # the codes' values in fp32 (exact), stored as int8 / fp8 at the end

    def quantize(j: int, i: int, wb: torch.Tensor) -> torch.Tensor:
        y = (wb[:, i] / scale).clamp_(-top, top)
        c = y.to(torch.float8_e4m3fn).float() if fp8 else torch.round(y)
        codes[:, j] = c
        return c * scale

    _columns(w, h, perm, damp, quantize)
    out = torch.empty_like(codes)
    out[:, perm] = codes
    return out.to(torch.float8_e4m3fn if fp8 else torch.int8), scale
