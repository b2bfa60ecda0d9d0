"""Small helpers shared by the kernel launchers: static-shape probes, block sizes, the PDL switch and the
compile-only launch of the autotuner's parallel precompile."""
from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import threading
from typing import Iterable, Iterator

import torch
import triton
import triton.language as tl


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


# Programmatic dependent launch (PDL, Hopper and newer). While accel's lowering compiles a graph with the ``pdl``
# option, the launchers of the kernel families it names compile their kernels with PDL=True: a GEMV (family
# ``GEMV``) loads its first weight tile, waits (griddepcontrol.wait) for the previous kernel before it reads an
# activation, and lets the next kernel launch after its main loop; the decode attention's kernels and the rotary /
# KV-cache kernel in front of them (family ``ATTENTION``) let the next kernel launch at once and then wait. The
# lowering asks Inductor to launch them with the PDL attribute (accel.lowering.pdl). Anywhere else (eager calls,
# tests, the interpreter) no family is on and the kernels compile without those instructions. ``GEMV_EARLY`` (option
# ``pdl_early_trigger=True``) moves the GEMVs' launch_dependents from after their main loop to their first line;
# ``GEMV_EARLY_SMALL`` ("small", the int4 default) only in launches that take at most half of the GPU's warp slots
# (``early_trigger``). ``ATTENTION_PRE`` (the lowering turns it on with ``ATTENTION`` under CUDA graphs) lets a
# one-block ``rope_attention_append`` read its counter and cached rows before its wait (``attention._preloads``).
GEMV, ATTENTION, GEMV_EARLY, GEMV_EARLY_SMALL = "gemv", "attention", "gemv_early", "gemv_early_small"
ATTENTION_PRE = "attention_pre"
PDL_FAMILIES = frozenset((GEMV, ATTENTION, GEMV_EARLY, GEMV_EARLY_SMALL, ATTENTION_PRE))
WARPS_PER_SM = 64  # resident warps an SM holds on sm_90 (PDL needs sm_90 or newer)
_PDL: contextvars.ContextVar[frozenset] = contextvars.ContextVar("accel_pdl", default=frozenset())


@contextlib.contextmanager
def launching_with_pdl(families: bool | Iterable[str]) -> Iterator[None]:
    """Within the block, ``use_pdl`` answers for the kernel ``families`` named (True: all of them)."""
    chosen = PDL_FAMILIES if families is True else frozenset(families or ())
    unknown = chosen - PDL_FAMILIES
    if unknown:
        raise ValueError(f"unknown PDL kernel families {sorted(unknown)}; known: {sorted(PDL_FAMILIES)}")
    token = _PDL.set(chosen)
    try:
        yield
    finally:
        _PDL.reset(token)


@functools.cache
def _supports_pdl(device_index: int) -> bool:
    return torch.cuda.get_device_capability(device_index)[0] >= 9


def use_pdl(device: torch.device, family: str = GEMV) -> bool:
    """Whether a kernel of ``family`` launched now on ``device`` should be compiled for programmatic dependent
    launch."""
    if family not in _PDL.get() or device.type != "cuda" or not torch.cuda.is_available():
        return False
    return _supports_pdl(device.index if device.index is not None else torch.cuda.current_device())


H100_SMS = 132  # SM count assumed when no CUDA device can be queried (interpreter, CPU tests)


@functools.cache
def num_sms(device: torch.device) -> int:
    """The GPU's SM count; off CUDA (the interpreter, CPU tests) an H100's, so that the launch plans made there are
    those the GPU would make."""
    if device.type != "cuda":
        return H100_SMS
    return torch.cuda.get_device_properties(device).multi_processor_count


# The tuner's PDL chain. Inside a compiled graph a GEMV launched with PDL loads its first weights before it waits for
# the kernel before, and one that triggers early lets the next kernel launch while its own programs still run: what a
# config does there depends on its neighbours, which a candidate timed alone after an L2 flush does not have (session
# 33, H200: a gate/up pick 0.6 µs faster alone made the 1B int4 step 60 µs slower, through its early trigger). So the
# tuner times a decode GEMV's candidate as a chain of launches on copies of the weights
# (``qlinear._measurement_inputs``), each launched with the PDL attribute inside ``pdl_chain()``.
_CHAINED: contextvars.ContextVar[bool] = contextvars.ContextVar("accel_pdl_chain", default=False)


@contextlib.contextmanager
def pdl_chain() -> Iterator[None]:
    """Within the block, kernels compiled for PDL are launched with CUDA's PDL attribute (``launch_options``): for
    the tuner's direct launches only (Inductor's generated code gets the attribute from ``accel.lowering.pdl``)."""
    token = _CHAINED.set(True)
    try:
        yield
    finally:
        _CHAINED.reset(token)


def launch_options(pdl: bool) -> dict:
    """Extra launch options of a kernel compiled with ``PDL=pdl``: Triton's ``launch_pdl`` inside :func:`pdl_chain`,
    else none."""
    return {"launch_pdl": True} if pdl and _CHAINED.get() else {}


def early_trigger(device: torch.device, grid: tuple, num_warps: int, sms: int) -> bool:
    """PDL_EARLY for a GEMV launch of ``grid`` with programs of ``num_warps`` warps on a GPU of ``sms`` SMs: always
    under ``GEMV_EARLY``; under ``GEMV_EARLY_SMALL`` only when the launch's warps fit in half of the GPU's warp
    slots (static grid sizes only). The next kernel's programs, launched early, stay resident while they wait; in
    a launch with more programs than that they would hold slots that this launch's own later programs need
    (session 16, H200: the early trigger made the int4 decode step 4% faster, and the int8 one, whose gate/up
    GEMV fills nearly every warp slot, 7% slower)."""
    if use_pdl(device, GEMV_EARLY):
        return True
    sizes = [static_int(n) for n in grid]
    if None in sizes or not use_pdl(device, GEMV_EARLY_SMALL):
        return False
    return math.prod(sizes) * num_warps <= sms * WARPS_PER_SM // 2


@triton.jit
def pdl_wait(PDL: tl.constexpr):
    """With PDL: wait until the kernel before has finished and its writes are visible. Call it before the first
    load of anything another kernel writes (activations, caches) and before the first store. Without PDL it adds
    no instruction."""
    if PDL:
        tl.extra.cuda.gdc_wait()


@triton.jit
def pdl_launch_dependents(PDL: tl.constexpr):
    """With PDL: let the next kernel launch (once every program of this one has got here or exited), so that its
    set-up and first weight loads overlap this kernel's tail. A GEMV calls it after its main loop: triggering at the
    start lets a chain of kernels launch ahead and wait on the GPU's resources. The decode attention's small
    kernels (a few dozen programs) call it first thing, so that the chain up to the next GEMV launches at once and
    that GEMV loads its first weights while they run; the chain ends there."""
    if PDL:
        tl.extra.cuda.gdc_launch_dependents()


@triton.jit
def pdl_launch_then_wait(PDL: tl.constexpr):
    """The first line of a kernel of the ``ATTENTION`` family: let the next kernel launch, then wait for the kernel
    before, before any global load or store (``tests/runtime/sm90_compile.py`` checks this order in the PTX)."""
    pdl_launch_dependents(PDL)
    pdl_wait(PDL)


# Compile without launching. The autotuner builds its candidates on worker threads before timing any
# (``autotune_cache._precompile``): in a thread under ``compile_only()``, a launcher's
# ``wrap_triton(kernel)[grid](...)`` compiles the kernel for those arguments (``JITFunction.warmup``) and launches
# nothing, so no candidate runs on the GPU (or touches a split-K counter) while another does. The compiled kernel
# is found again only under the same cache key, which includes the launch options as the call spells them: where
# torch's wrap_triton dispatches through its higher-order op (a compiled kernel, the default), it moves num_warps /
# num_stages into a one-config Triton autotuner, whose Config adds num_ctas, so the warmup goes through the same
# kind of autotuner (a bare warmup's kernel was compiled again by such a launch on an H100). Where torch calls the
# kernel directly (under ``direct_launches``, as the tuner times; the interpreter's kernels), so does the warmup.
_LAUNCH_OPTIONS = ("num_warps", "num_stages", "num_ctas")


def _through_autotuner(kernel) -> bool:
    """Does ``torch.library.wrap_triton(kernel)[grid](...)`` in this thread reach the kernel through torch's
    one-config autotuner (``triton_kernel_wrap``'s higher-order op) rather than call it directly?"""
    try:
        from torch._library.triton import is_wrap_triton_enabled
    except ImportError:  # older torch: wrap_triton launches directly outside tracing
        return False
    # (torch's wrap_triton hands the interpreter's kernels back as they are)
    return isinstance(kernel, triton.runtime.jit.JITFunction) and is_wrap_triton_enabled()


@contextlib.contextmanager
def direct_launches() -> Iterator[None]:
    """In this thread, kernels reached through torch's wrap_triton are called directly, not through its
    higher-order op (whose dispatch costs about a millisecond a launch): for the tuner's timing and its precompile,
    which must spell the launch options the same way (see above)."""
    try:
        from torch._library.triton import set_wrap_triton_enabled
    except ImportError:  # older torch: wrap_triton launches directly outside tracing anyway
        yield
        return
    with set_wrap_triton_enabled(False):
        yield


_COMPILE_ONLY = threading.local()


@contextlib.contextmanager
def compile_only() -> Iterator[None]:
    """In this thread, Triton kernels reached through :func:`wrap_triton` compile and do not launch."""
    prev = getattr(_COMPILE_ONLY, "on", False)
    _COMPILE_ONLY.on = True
    try:
        yield
    finally:
        _COMPILE_ONLY.on = prev


class _CompileOnly:
    """``kernel[grid](*args, **kwargs)`` as ``kernel.warmup(*args, grid=grid, **kwargs)``: compile, do not launch."""

    def __init__(self, kernel):
        self.kernel = kernel

    def __getitem__(self, grid):
        def warmup(*args, **kwargs):
            kernel = self.kernel
            if _through_autotuner(kernel) and any(k in kwargs for k in _LAUNCH_OPTIONS):
                # as torch's wrap_triton does (triton_kernel_wrap.call_triton_kernel)
                options = {k: kwargs.pop(k) for k in _LAUNCH_OPTIONS if k in kwargs}
                kernel = triton.runtime.autotuner.autotune(configs=[triton.Config({}, **options)], key=[])(kernel)
            return kernel.warmup(*args, grid=grid, **kwargs)

        return warmup


def wrap_triton(kernel):
    """``torch.library.wrap_triton(kernel)``, through which every launcher calls its kernels (so that Inductor copies
    them into its generated code); in a thread under :func:`compile_only`, a stand-in that only compiles."""
    if getattr(_COMPILE_ONLY, "on", False):
        return _CompileOnly(kernel)
    return torch.library.wrap_triton(kernel)
