"""Compile time: analyze each distinct accel kernel launch once, not once per launch per phase.

To learn which tensors a user-defined Triton kernel reads and writes, PyTorch lowers the kernel to Triton IR and
walks it (``torch._higher_order_ops.triton_kernel_wrap.identify_accessed_tensors``; ``identify_mutated_tensors``
in older releases). It does so for every launch in the graph, and again in each phase that needs the answer:
functionalization's metadata pass, its tracing pass, and Inductor's lowering. A 16-layer decoder has about a
hundred accel launches, most of them the same kernel with the same arguments. On an H200 (1B Llama-shaped decode
step, cold caches) memoizing it took accel's compile from 35.5 s to 21.7 s (``benchmarks/profile_compile.py`` found it).

The answer depends only on the kernel and on what Triton specializes the IR on: each tensor argument's dtype
and the value of every other argument (constexprs, sizes, strides, flags). :func:`cached_kernel_access` memoizes
it on exactly that key, for accel's own kernels only, for the duration of one compile. The kernel is keyed by its
Python function: PyTorch hands the analysis a different kernel object for each launch. A launch compiled for
programmatic dependent launch (``accel.lowering.pdl``) is analyzed as the same launch without it.

One correction to the answer: an accel kernel argument named in ``RESTORED_ARGS`` is reported as read, not
written. Those are the tile counters of split-K kernels (``linear._reduce_if_last``;
``accel.lowering.add_split_counters``): every launch counts up and sets them back to zero before it ends, so the
tensor holds the same values before and after each launch. Reported as written, a counter (a graph input) would
be cloned before every launch, one copy kernel per split-K launch, more than the launch the counters save.
Outside this block (no memo) the results are still correct, only cloned.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
from typing import Any, Callable, Iterator

import torch

_ANALYZERS = ("identify_accessed_tensors", "identify_mutated_tensors")
# accel kernel arguments that each launch leaves as it found them (see the module docstring)
RESTORED_ARGS = frozenset({"cnt_ptr"})


def without_restored_writes(result: Any) -> Any:
    """An analysis result without ``RESTORED_ARGS`` among its writes. By release it is a list of written argument
    names, a ``ReadWrites`` or a ``TensorAccesses`` around one (``read_writes``)."""
    if isinstance(result, list):
        return [name for name in result if name not in RESTORED_ARGS]
    inner = getattr(result, "read_writes", None)
    if inner is not None:
        filtered = without_restored_writes(inner)
        return result if filtered is inner else dataclasses.replace(result, read_writes=filtered)
    writes = getattr(result, "writes", None)
    if writes is None or not any(getattr(dep, "name", None) in RESTORED_ARGS for dep in writes):
        return result
    return dataclasses.replace(result, writes=type(writes)(dep for dep in writes if dep.name not in RESTORED_ARGS))


def python_function(kernel: Any) -> Any:
    """The Python function under a JITFunction (or an Autotuner around one)."""
    fn = kernel
    while hasattr(fn, "fn"):
        fn = fn.fn
    return fn


def is_accel_kernel(kernel: Any) -> bool:
    """Whether ``kernel`` (a JITFunction, or an Autotuner around one) is defined in the accel package."""
    return (getattr(python_function(kernel), "__module__", None) or "").startswith("accel.")


def _value_key(value: Any) -> Any:
    """What the Triton IR of a launch can depend on, for one argument; raises TypeError when not hashable."""
    import sympy

    if isinstance(value, (torch.SymInt, torch.SymFloat, torch.SymBool, sympy.Expr)):
        return ("sym",)  # the analysis replaces every symbol by one placeholder value
    dtype = getattr(value, "dtype", None)
    if isinstance(dtype, torch.dtype):
        return ("tensor", dtype)
    if hasattr(value, "get_dtype"):  # an Inductor TensorBox
        return ("tensor", value.get_dtype())
    hash(value)
    return (type(value).__name__, value)


def launch_key(kernel: Any, kwargs: dict[str, Any], rest: tuple) -> tuple | None:
    """The memo key of one analysis call, or None when an argument cannot be keyed (then it is not cached)."""
    try:
        return (id(python_function(kernel)), tuple((name, _value_key(kwargs[name])) for name in sorted(kwargs)),
                repr(rest))
    except TypeError:
        return None


class AccessMemo:
    """The memo of one compile: ``calls`` analyses asked for accel kernels, ``entries`` of them computed."""

    def __init__(self) -> None:
        self.results: dict[tuple, tuple] = {}
        self.calls = 0

    @property
    def entries(self) -> int:
        return len(self.results)

    def varying(self) -> dict[str, list[str]]:
        """For each kernel with several entries, the arguments whose keys differ between them (diagnostics)."""
        by_kernel: dict[str, list[dict]] = {}
        for (_, args, _), (kernel, _) in self.results.items():
            by_kernel.setdefault(getattr(kernel, "__name__", repr(kernel)), []).append(dict(args))
        return {name: sorted(a for a in entries[0] if len({repr(e.get(a)) for e in entries}) > 1)
                for name, entries in by_kernel.items() if len(entries) > 1}

    def wrap(self, original: Callable) -> Callable:
        def analyze(kernel, kwargs, *rest, **kw):
            if not is_accel_kernel(kernel):
                return original(kernel, kwargs, *rest, **kw)
            if kwargs.get("PDL") is True:
                # PDL adds griddepcontrol instructions and no memory access. Triton 3.6 emits them as inline asm,
                # which the analysis cannot read (it would then assume that every input is written).
                kwargs = {**kwargs, "PDL": False}
            key = launch_key(kernel, kwargs, (rest, sorted(kw.items())))
            if key is None:
                return without_restored_writes(original(kernel, kwargs, *rest, **kw))
            self.calls += 1
            if key not in self.results:  # the kernel names the entry in varying() and keeps its function alive
                self.results[key] = (kernel, without_restored_writes(original(kernel, kwargs, *rest, **kw)))
            return copy.deepcopy(self.results[key][1])  # callers own what they get, as from the original

        analyze.__wrapped__ = original
        return analyze


@contextlib.contextmanager
def cached_kernel_access() -> Iterator[AccessMemo]:
    """Within the block, the kernel access analysis is memoized for accel kernels; yields the memo."""
    from torch._higher_order_ops import triton_kernel_wrap as tkw

    memo = AccessMemo()
    saved = {name: getattr(tkw, name) for name in _ANALYZERS if hasattr(tkw, name)}
    for name, original in saved.items():
        setattr(tkw, name, memo.wrap(original))
    try:
        yield memo
    finally:
        for name, original in saved.items():
            setattr(tkw, name, original)
