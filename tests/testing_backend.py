"""Helpers shared by the test tiers: compile through accel without Inductor, compare, count ops.

``rewrite_only`` runs accel's real pipeline on the Dynamo graph and then executes the rewritten graph eagerly
(the accel ops run their torch reference on CPU), so pattern and rewrite tests cost milliseconds instead of an
Inductor C++ compile. The end-to-end tests in tests/e2e use the full Inductor path.
"""
from __future__ import annotations

import torch
import torch.fx as fx

import accel
from accel.compiler.backend import run_rewritten_eagerly


eager_inner_compile = run_rewritten_eagerly


def rewrite_only(fn, *args, options: dict | None = None, **kwargs):
    """(output, report) of ``fn(*args, **kwargs)`` compiled by accel with the rewritten graph run eagerly."""
    torch._dynamo.reset()
    backend = accel.AccelBackend({"strict": True, **(options or {})}, inner_compile=eager_inner_compile)
    with torch.no_grad():
        out = torch.compile(fn, backend=backend, fullgraph=True)(*args, **kwargs)
    return out, backend.report


def rel_l2(out: torch.Tensor, ref: torch.Tensor) -> float:
    out, ref = out.double(), ref.double()
    return ((out - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def capture_graph(fn, *args, **kwargs) -> fx.GraphModule:
    """The graph Dynamo hands a backend for ``fn(*args)`` (fullgraph)."""
    captured = []

    def backend(gm, example_inputs):
        captured.append(gm)
        return gm.forward

    torch._dynamo.reset()
    with torch.no_grad():
        torch.compile(fn, backend=backend, fullgraph=True)(*args, **kwargs)
    return captured[0]
