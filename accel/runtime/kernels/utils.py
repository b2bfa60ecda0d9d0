"""Small helpers shared by the kernel launchers: static-shape probes, block sizes, platform probes."""
from __future__ import annotations

import functools
import os

import torch


def static_int(v) -> int | None:
    """``v`` as a Python int if it is known at trace time, else ``None`` (a symbolic size under dynamic shapes).

    Launchers branch on sizes only through this, so a symbolic size takes the general kernel instead of adding
    a guard that would recompile for every new size.
    """
    if isinstance(v, int):
        return v
    if isinstance(v, torch.SymInt):
        node = v.node
        if node.is_constant() if hasattr(node, "is_constant") else False:
            return int(node.maybe_as_int())
        maybe = node.maybe_as_int() if hasattr(node, "maybe_as_int") else None
        return int(maybe) if maybe is not None else None
    return None


def next_pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


def interpreting() -> bool:
    """True when Triton runs kernels on the CPU through its interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@functools.cache
def device_capability(index: int = 0) -> tuple[int, int]:
    if not torch.cuda.is_available():
        return (0, 0)
    return torch.cuda.get_device_capability(index)


def uses_triton(t: torch.Tensor) -> bool:
    """Whether an accel op on ``t`` runs its Triton kernel (CUDA, or any device under the interpreter)."""
    return t.device.type == "cuda" or interpreting()
