"""Shared by the GEMM/FFN kernel tests: make every launcher allocation start as NaN and record its shape."""
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
