"""The pointwise activations accel's fused kernels implement, by name.

The FFN pattern matches *any* pointwise chain between two linears and then identifies it by evaluating it
(see ``accel.patterns.pointwise``); this table is what it is compared against. Each entry is the float
reference used on CPU and in tests; ``ACTIVATION_IDS`` gives the integer code the Triton kernels switch on
(``accel/runtime/kernels/activations.py`` implements the same functions in Triton, in the same order).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


def _quick_gelu(x: torch.Tensor) -> torch.Tensor:
    # CLIP's approximation: x * sigmoid(1.702 x)
    return x * torch.sigmoid(1.702 * x)


def _relu2(x: torch.Tensor) -> torch.Tensor:
    # "squared ReLU" (Primer, Nemotron)
    return torch.square(F.relu(x))


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "identity": lambda x: x,
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_tanh": _gelu_tanh,
    "silu": F.silu,
    "quick_gelu": _quick_gelu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu2": _relu2,
}
ACTIVATION_IDS: dict[str, int] = {name: i for i, name in enumerate(ACTIVATIONS)}


def activation_fn(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The torch reference for ``name``; raises ``ValueError`` naming the known activations."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; known: {', '.join(ACTIVATIONS)}") from None
