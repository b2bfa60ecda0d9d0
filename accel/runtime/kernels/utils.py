"""Small helpers shared by the kernel launchers: static-shape probes and block sizes."""
from __future__ import annotations

import torch


def static_int(v) -> int | None:
    """``v`` as a Python int if it is known at trace time, else ``None`` (a symbolic size under dynamic shapes).

    Launchers branch on sizes only through this, so a symbolic size takes the general kernel instead of adding
    a guard that would recompile for every new size.
    """
    if isinstance(v, int):
        return v
    if isinstance(v, torch.SymInt):
        maybe = v.node.maybe_as_int()  # a SymInt that is really a constant
        return int(maybe) if maybe is not None else None
    return None


def next_pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())
