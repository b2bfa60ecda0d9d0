"""Shared by the kernel tests: make every launcher allocation start as NaN (and, for the GEMM/FFN launchers, record
its shape), so that an element a kernel fails to write shows up in the result."""
import torch

from accel.runtime.kernels import linear as kl


def poison_allocations(monkeypatch) -> list[tuple]:
    """Patch the launchers' allocator so buffers start as NaN (any unwritten element then shows in the result);
    returns the list the allocated shapes are appended to."""
    allocs: list[tuple] = []

    def poisoned(shape, dtype, device):
        allocs.append(tuple(shape))
        return torch.full(shape, float("nan"), dtype=dtype, device=device)

    monkeypatch.setattr(kl, "_alloc", poisoned)
    return allocs


def poison_empty(monkeypatch) -> None:
    """Patch ``torch.empty`` (the attention and RoPE launchers' allocator) to return NaN-filled float tensors."""
    empty = torch.empty

    def nan_empty(*args, **kwargs):
        t = empty(*args, **kwargs)
        return t.fill_(float("nan")) if t.is_floating_point() else t

    monkeypatch.setattr(torch, "empty", nan_empty)
