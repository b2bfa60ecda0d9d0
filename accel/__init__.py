"""accel: a torch.compile backend that rewrites attention, linear and FFN subgraphs into fused Triton kernels
inside TorchInductor.

    model = torch.compile(model, backend="accel")                      # lossless defaults
    report = accel.explain(model, *example_args)                      # what was rewritten, and why not
"""
from __future__ import annotations

from typing import Any

import torch

from accel.compiler.backend import AccelBackend, accel_backend, last_report
from accel.compiler.options import AccelOptions, AccelOptionsError
from accel.compiler.report import Report

__version__ = "0.1.0"
__all__ = ["AccelBackend", "AccelOptions", "AccelOptionsError", "Report", "accel_backend", "compile", "explain",
           "last_report"]


def _register_backend() -> None:
    """Make ``backend="accel"`` resolve after ``import accel``.

    An installed accel is found through its ``torch_dynamo_backends`` entry point; registering here as well
    would collide with the registration Dynamo does when it loads that entry point ("duplicate name"), so
    we register only when no entry point exists (a source checkout on ``sys.path``).
    """
    from importlib.metadata import entry_points

    from torch._dynamo.backends.registry import _COMPILER_FNS, register_backend

    if "accel" in _COMPILER_FNS:
        return
    if any(ep.name == "accel" for ep in entry_points(group="torch_dynamo_backends")):
        return
    register_backend(compiler_fn=accel_backend, name="accel")


_register_backend()


def compile(model: Any, *, dynamic: bool | None = None, fullgraph: bool = False, **options: Any):
    """``torch.compile(model, backend="accel", options=options)``, with the options validated now rather
    than at the first call."""
    AccelOptions.from_dict(options)
    return torch.compile(model, backend="accel", options=options or None, dynamic=dynamic, fullgraph=fullgraph)


def explain(model_or_fn: Any, *args: Any, options: dict | AccelOptions | None = None, **kwargs: Any) -> Report:
    """Compile ``model_or_fn`` with accel, run it once on ``args``/``kwargs`` under ``torch.no_grad()``, and
    return the :class:`Report`: ``counts`` per family, ``matches`` (pattern, module, source line),
    ``fallbacks`` (what was left to Inductor and why), per-pass timings."""
    backend = AccelBackend(options)
    compiled = torch.compile(model_or_fn, backend=backend)
    with torch.no_grad():
        compiled(*args, **kwargs)
    return backend.report
