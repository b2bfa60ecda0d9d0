"""Runs the pass list on one graph: times each pass, records its match count, dumps before/after.

If a pass raises, the manager stops, records the error against the pass, and re-raises a
:class:`PassFailed` naming it; the backend then compiles the unmodified graph with Inductor (or, with
``strict=True``, lets the error out).
"""
from __future__ import annotations

import time
from typing import Sequence

import torch.fx as fx

from accel.compiler.context import CompileContext
from accel.compiler.debug import GraphDumper, log_at
from accel.compiler.pass_base import AccelPass
from accel.compiler.report import PassRecord


class PassFailed(RuntimeError):
    def __init__(self, pass_name: str, error: BaseException):
        super().__init__(f"accel pass {pass_name!r} failed: {type(error).__name__}: {error}")
        self.pass_name = pass_name
        self.error = error


class PassManager:
    def __init__(self, passes: Sequence[AccelPass]):
        self.passes = list(passes)

    def names(self) -> list[str]:
        return [p.name for p in self.passes]

    def __call__(self, gm: fx.GraphModule, ctx: CompileContext, dumper: GraphDumper) -> int:
        total = 0
        for p in self.passes:
            dumper.dump(p.name, "before", gm)
            t0 = time.perf_counter()
            try:
                n = int(p(gm, ctx))
            except Exception as e:
                ms = (time.perf_counter() - t0) * 1e3
                ctx.report.passes.append(PassRecord(p.name, 0, ms, f"{type(e).__name__}: {e}"))
                raise PassFailed(p.name, e) from e
            gm.graph.lint()
            gm.recompile()
            ms = (time.perf_counter() - t0) * 1e3
            ctx.report.passes.append(PassRecord(p.name, n, ms))
            log_at(2, "pass %s: %d rewrite(s) in %.1f ms", p.name, n, ms)
            dumper.dump(p.name, "after", gm)
            total += n
        return total
