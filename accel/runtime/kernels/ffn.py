"""``ffn_up``: the first half of an FFN, x [M, H] → act(x w_gateᵀ + b_gate) · (x w_upᵀ + b_up) [M, I]
(gated: w1 = [w_gate; w_up] is [2I, H]), or act(x w1ᵀ + b1) (plain: w1 is [I, H]).

Dataflow (gated): each program owns BLOCK_N output columns j and streams weight rows j and I + j in the same
K loop, so every x tile is loaded once for both, and only the activated product [M, I] is written; the
[M, 2I] pre-activation never reaches memory. Bias and activation are applied in fp32 to the fp32
accumulators, and the result is rounded to x's dtype once.

The kernels are those of ``accel.runtime.kernels.linear`` with GATED and ACT set, and so are the
candidates: the fused GEMV (M ≤ 4), the fused tl.dot GEMM (skinny with split-K, or tiled), and cuBLAS
``F.linear`` over the whole w1 followed by the act·mul kernel (``linear._epilogue_kernel`` with one split),
which is also the path for a symbolic M. The cuBLAS candidate rounds h to x's dtype before the activation,
exactly as ``accel.runtime.reference.ffn_up`` does; the fused kernels round once, at the end.
"""
from __future__ import annotations

import torch

from accel.runtime.activations import ACTIVATION_IDS, activation_fn
from accel.runtime.kernels import linear as kl


def ffn_up(x2d: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor | None, activation: str, gated: bool,
           norm_eps: float | None = None, *, _config: dict | None = None) -> torch.Tensor:
    """x2d [M, H] → [M, I] as in ``reference.ffn_up``, x2d first RMS-normalized when ``norm_eps`` is given (in the
    GEMV's prologue: see ``linear.launch``). ``_config`` forces a config (tests and benchmarks)."""
    activation_fn(activation)  # raises ValueError naming the known activations
    act = ACTIVATION_IDS[activation]
    if gated:
        torch._check(w1.shape[0] % 2 == 0, lambda: f"ffn_up: gated w1 needs an even row count, got {w1.shape[0]}")
    if _config is None:
        name = f"ffn_up.{activation}.{'gated' if gated else 'plain'}"
        _config = kl.select_config(name, x2d, w1, b1, act, gated, norm_eps is not None)
    return kl.launch(_config, x2d, w1, b1, act, gated, norm_eps)
