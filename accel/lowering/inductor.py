"""Handing the rewritten graph to Inductor.

``compile_with_inductor`` calls ``compile_fx`` with accel's config patches: CUDA graphs when asked, the user's
extra Inductor config, and :class:`RecordAccelKernels` as ``post_grad_custom_post_pass``. That pass records
how many accel Triton kernels reached the post-grad graph, and its ``uuid()`` — the options hash, a hash of every
accel source file and the tuning switches (``ACCEL_AUTOTUNE``, ``ACCEL_TUNE_CHAIN``) — puts accel's version and
options into Inductor's FX-graph and AOTAutograd cache keys, so editing a kernel or a launcher can never return a
stale cached artifact. (The tunings themselves are not in the key: a compile that hits Inductor's cache reuses the
kernel configs it was compiled with, whatever the autotune cache now holds.) During the compile, the
analysis of which tensors each accel kernel launch reads and writes is memoized (``kernel_access_cache``).
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.fx as fx
from torch._inductor.custom_graph_pass import CustomGraphPass

from accel import envs
from accel.compiler.options import INDUCTOR_DEFAULTS, AccelOptions
from accel.compiler.report import GraphReport
from accel.lowering.kernel_access_cache import cached_kernel_access
from accel.lowering.pdl import pdl_launches


@functools.cache
def accel_source_hash() -> str:
    """Hash of every .py file of the accel package (kernels, launchers and passes alike)."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _tuning_switches() -> str:
    """The environment switches that change which kernel configs a compile chooses (tuning on or off, the tuner's
    PDL chain): part of the cache key, so that a compile with them changed tunes rather than reuse cached code."""
    return f"tune{int(envs.ACCEL_AUTOTUNE())}-chain{envs.ACCEL_TUNE_CHAIN()}"


class RecordAccelKernels(CustomGraphPass):
    """Post-grad pass: counts accel's Triton kernel launches in the graph Inductor is about to lower."""

    def __init__(self, options: AccelOptions, report: GraphReport | None):
        self._key = f"accel-{accel_source_hash()}-{options.compute_hash()}-{_tuning_switches()}"
        self._report = report

    def __call__(self, graph: fx.Graph) -> None:
        from torch._higher_order_ops.triton_kernel_wrap import kernel_side_table

        names = []
        for node in graph.nodes:
            if node.op == "call_function" and "triton_kernel_wrapper" in str(node.target):
                kernel = kernel_side_table.get_kernel(node.kwargs["kernel_idx"])
                names.append(getattr(kernel, "__name__", None) or getattr(getattr(kernel, "fn", None), "__name__", "?"))
        if self._report is not None:
            self._report.kernels = names

    def uuid(self) -> Any:
        return self._key


def _new_output_modules(before: int) -> list[str]:
    from torch._inductor.codecache import PyCodeCache

    paths = []
    for mod in PyCodeCache.modules[before:]:
        path = getattr(mod, "__file__", None)
        if path and path not in paths and hasattr(mod, "call"):
            paths.append(path)
    return paths


def _inductor_caches_disabled() -> bool:
    from torch._inductor import config as inductor_config

    return bool(getattr(inductor_config, "force_disable_caches", False))


def compile_with_inductor(
    gm: fx.GraphModule,
    example_inputs: Sequence[Any],
    options: AccelOptions,
    report: GraphReport | None = None,
    *,
    with_accel_pass: bool = True,
):
    """``compile_fx`` with accel's config patches; records Inductor's generated module paths in ``report``."""
    from torch._inductor.codecache import PyCodeCache
    from torch._inductor.compile_fx import compile_fx

    patches: dict[str, Any] = {**INDUCTOR_DEFAULTS, **options.inductor_config}
    if options.cudagraphs:
        patches["triton.cudagraphs"] = True
    if with_accel_pass:
        patches["post_grad_custom_post_pass"] = RecordAccelKernels(options, report)
    before = len(PyCodeCache.modules)
    pdl_on = options.pdl and with_accel_pass
    with cached_kernel_access() as memo, \
            pdl_launches(pdl_on, options.pdl_attention, options.early_trigger(), options.cudagraphs) as pdl:
        compiled = compile_fx(gm, list(example_inputs), config_patches=patches)
    if report is not None:
        report.output_code = _new_output_modules(before)
        if not report.output_code and _inductor_caches_disabled():
            report.output_code_note = ("not kept: Inductor's caches are disabled (TORCHINDUCTOR_FORCE_DISABLE_CACHES), "
                                       "and accel cannot find its generated modules")
        report.kernel_analyses = {"asked": memo.calls, "ran": memo.entries, "varying": memo.varying()}
        report.pdl_kernels = {"asked": pdl.asked, "launched": pdl.launched}
    return compiled


def uses_grad(example_inputs: Sequence[Any]) -> bool:
    """Whether this graph would be compiled for training (grad mode on and an input that requires grad)."""
    return torch.is_grad_enabled() and any(isinstance(t, torch.Tensor) and t.requires_grad for t in example_inputs)
