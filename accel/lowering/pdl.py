"""Programmatic dependent launch (PDL) for accel's kernels in Inductor's generated code.

A GEMV compiled with PDL=True loads its first weight tile, waits for the previous kernel's writes
(``accel.runtime.kernels.utils.pdl_wait``) before its first read of an activation, and lets the next kernel launch
after its main loop (``pdl_launch_dependents``). That only overlaps anything
when the kernel is also *launched* with CUDA's programmatic-stream-serialization attribute, which Triton does for
a kernel compiled with the ``launch_pdl`` option. Inductor sets that option for its own kernels when
``triton.enable_pdl`` is on, but never for user-defined Triton kernels: their options come from the
``triton_meta`` dict that Inductor writes into the generated module
(``PythonWrapperCodegen.define_user_defined_triton_kernel``).

:func:`pdl_launches` turns the runtime switch on (the launchers then pass PDL=True on Hopper and newer) and, for
the accel kernels launched with PDL=True only, adds ``'launch_pdl': True`` to that dict as the kernel's code is
defined. On a PyTorch whose generated code does not have the expected form nothing is added, the kernels'
griddepcontrol instructions are then no-ops, and the record says how many kernels got the attribute.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Iterator

from accel.lowering.kernel_access_cache import is_accel_kernel
from accel.runtime.kernels.utils import (ATTENTION, ATTENTION_PRE, GEMV, GEMV_EARLY, GEMV_EARLY_SMALL,
                                         launching_with_pdl)

log = logging.getLogger(__name__)

_META = "triton_meta={"
_META_WITH_PDL = "triton_meta={'launch_pdl': True, "


@dataclass
class PdlRecord:
    """What one compile did: accel kernels compiled for PDL (``asked``) and those given the launch attribute."""

    asked: int = 0
    launched: int = 0


def with_launch_pdl(code: str) -> str | None:
    """The generated definition of a user-defined kernel with ``launch_pdl`` in its ``triton_meta``; None when the
    code does not have exactly one ``triton_meta={`` to extend."""
    if code.count(_META) != 1:
        return None
    return code.replace(_META, _META_WITH_PDL)


def wants_pdl(kernel: Any, kwargs: dict) -> bool:
    """Whether this launch is an accel kernel that its launcher compiled with PDL=True."""
    return kwargs.get("PDL") is True and is_accel_kernel(kernel)


@contextlib.contextmanager
def pdl_launches(enabled: bool, attention: bool = True, early: bool | str = False,
                 cudagraphs: bool = False) -> Iterator[PdlRecord]:
    """Within the block (one accel compile): launchers compile for PDL where the GPU has it (the GEMVs, and with
    ``attention`` the decode attention's kernels and the rotary / KV-cache kernel before them; with ``early`` the
    GEMVs let the next kernel launch first thing, with ``early="small"`` only those whose launch fits in half of
    the GPU's warp slots), and Inductor launches those kernels with the attribute. With ``attention`` and
    ``cudagraphs`` (each step a graph replay, which starts once the one before has ended) a one-block decode
    attention also reads its own state before its wait (``ATTENTION_PRE``). Yields the record."""
    record = PdlRecord()
    if not enabled:
        yield record
        return
    from torch._inductor.codegen.wrapper import PythonWrapperCodegen

    original = PythonWrapperCodegen.define_user_defined_triton_kernel

    def define_user_defined_triton_kernel(self, kernel, configs, kwargs, *args, **kw):
        if not wants_pdl(kernel, kwargs):
            return original(self, kernel, configs, kwargs, *args, **kw)
        define_kernel = self.define_kernel

        def define_kernel_with_pdl(name, code, *a, **k):
            record.asked += 1
            patched = with_launch_pdl(code)
            if patched is None:
                log.warning("accel: cannot add launch_pdl to the generated code of %s; it launches without PDL", name)
            else:
                record.launched += 1
            return define_kernel(name, code if patched is None else patched, *a, **k)

        self.define_kernel = define_kernel_with_pdl  # shadows the method for this one call
        try:
            return original(self, kernel, configs, kwargs, *args, **kw)
        finally:
            del self.define_kernel

    PythonWrapperCodegen.define_user_defined_triton_kernel = define_user_defined_triton_kernel
    try:
        early_family = {True: (GEMV_EARLY,), "small": (GEMV_EARLY_SMALL,)}.get(early, ())
        families = (GEMV,) + (ATTENTION,) * attention + (ATTENTION_PRE,) * (attention and cudagraphs) + early_family
        with launching_with_pdl(families):
            yield record
    finally:
        PythonWrapperCodegen.define_user_defined_triton_kernel = original
