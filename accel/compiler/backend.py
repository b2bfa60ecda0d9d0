"""The ``torch.compile`` entry: ``torch.compile(model, backend="accel", options={...})``.

For each graph Dynamo captures: copy it, run the pass pipeline on the copy, compile the result with Inductor,
and return a callable that appends the tensors accel derived at compile time (merged weights) to every call.
Anything that goes wrong in a pass, or in compiling the rewritten graph, is logged as a warning naming the
pass and the graph is compiled unmodified by plain Inductor instead (``strict=True`` raises). Graphs compiled
for training (grad mode on with parameters that require grad) are left to Inductor: accel's ops are inference ops.
"""
from __future__ import annotations

import copy
import logging
from collections import Counter
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.fx as fx

from accel.compiler.context import CompileContext
from accel.compiler.debug import GraphDumper, log_at
from accel.compiler.options import AccelOptions
from accel.compiler.pass_base import AccelPass
from accel.compiler.pass_manager import PassFailed, PassManager
from accel.compiler.pipeline import build_pipeline
from accel.compiler.report import GraphReport, Report
from accel.lowering.inductor import compile_with_inductor, uses_grad
from accel.runtime.ops import ALL_OPS

log = logging.getLogger("accel")

# Exceptions Dynamo uses to restart or skip tracing; they must pass through the fallback untouched.
_DYNAMO_CONTROL_FLOW = (torch._dynamo.exc.RestartAnalysis, torch._dynamo.exc.SkipFrame)

_last_report: Report | None = None


def last_report() -> Report | None:
    """The report of the most recent ``backend="accel"`` compile in this process."""
    return _last_report


def _fresh_copy(gm: fx.GraphModule) -> fx.GraphModule:
    """A GraphModule over a copy of ``gm``'s graph; Dynamo reads its own graph after the backend returns,
    so new inputs must not be added to it."""
    new = fx.GraphModule(gm, copy.deepcopy(gm.graph))
    new.meta.update(gm.meta)
    if hasattr(gm, "_param_name_to_source"):
        new._param_name_to_source = gm._param_name_to_source
    for a, b in zip(gm.graph.find_nodes(op="placeholder"), new.graph.find_nodes(op="placeholder")):
        if hasattr(a, "_dynamo_source"):
            b._dynamo_source = a._dynamo_source
    return new


def _static_fakes(derived: list[torch.Tensor]) -> list[torch.Tensor]:
    """Derived tensors as the example inputs AOTAutograd should see: fake, with static shapes, in the tracing
    context's fake mode. Handed over as real tensors, they would be given symbolic sizes that have no Dynamo
    source, and any guard on them (a ``chunk`` of the merged gate_up, say) would break guard generation."""
    from torch._guards import TracingContext

    tc = TracingContext.try_get()
    if tc is None or tc.fake_mode is None:
        return derived
    return [tc.fake_mode.from_tensor(t, static_shapes=True) for t in derived]


def _with_derived(compiled, derived: list[torch.Tensor], graph_report: GraphReport):
    """The callable Dynamo gets: appends the derived tensors and counts calls."""

    def run(*args):
        graph_report.calls += 1
        return compiled(*args, *derived)

    run._accel_derived = derived  # keeps them alive and inspectable
    return run


class AccelBackend:
    """A backend object carrying options and a :class:`Report` (what ``accel.explain`` uses).

    Hooks for tests and tools: ``passes`` replaces the pipeline (tests inject failing passes this way);
    ``inner_compile(gm, example_inputs, options, graph_report, with_accel_pass=...)`` replaces
    ``compile_with_inductor`` (the property tests run the rewritten graph eagerly to stay fast).
    """

    def __init__(self, options: AccelOptions | dict | None = None, *, passes: Sequence[AccelPass] | None = None,
                 inner_compile: Callable | None = None):
        self.options = AccelOptions.from_dict(options)
        self.passes = passes
        self.inner_compile = inner_compile or compile_with_inductor
        self.report = Report()

    def __call__(self, gm: fx.GraphModule, example_inputs: Sequence[Any], **kwargs: Any):
        if kwargs.get("options"):
            raise TypeError("pass options when constructing AccelBackend, not through torch.compile")
        return compile_graph(gm, example_inputs, self.options, self.report, self.passes, self.inner_compile)


def compile_graph(
    gm: fx.GraphModule,
    example_inputs: Sequence[Any],
    options: AccelOptions,
    report: Report,
    passes: Sequence[AccelPass] | None = None,
    inner_compile: Callable = compile_with_inductor,
):
    global _last_report
    _last_report = report
    graph_report = GraphReport(index=len(report.graphs), num_nodes=len(gm.graph.nodes))
    report.graphs.append(graph_report)
    dumper = GraphDumper(options.dump_dir, graph_report.index)
    t0 = time.perf_counter()
    try:
        if uses_grad(example_inputs):
            graph_report.compiled_with = "inductor"
            graph_report.error = ("grad mode is on and inputs require grad; accel rewrites inference graphs only "
                                  "(run under torch.no_grad() or torch.inference_mode())")
            log_at(1, "accel: graph %d: %s", graph_report.index, graph_report.error)
            return inner_compile(gm, example_inputs, options, graph_report, with_accel_pass=False)
        return _compile_rewritten(gm, example_inputs, options, graph_report, dumper, passes, inner_compile)
    finally:
        graph_report.compile_ms = (time.perf_counter() - t0) * 1e3
        if options.dump_dir:
            root = Path(options.dump_dir)
            dumper.copy_output_code(graph_report.output_code)
            (root / "report.json").write_text(report.to_json())
            (root / "report.md").write_text(report.to_markdown())
        log_at(1, "accel: graph %d compiled with %s in %.0f ms: %s", graph_report.index,
               graph_report.compiled_with, graph_report.compile_ms, report.counts)


def _compile_rewritten(gm, example_inputs, options, graph_report, dumper, passes, inner_compile):
    work = _fresh_copy(gm)
    ctx = CompileContext(work, example_inputs, options, graph_report)
    pipeline = PassManager(passes if passes is not None else build_pipeline(options))
    try:
        pipeline(work, ctx, dumper)
        if ctx.drop_unused_derived():
            work.recompile()
        ctx.materialize_derived()
        if options.pack_derived_inputs:
            graph_report.packed_inputs = ctx.pack_derived()
        graph_report.accel_ops = dict(Counter(n.target.name() for n in work.graph.nodes if n.target in ALL_OPS))
        for m in graph_report.matches:
            log_at(2, "accel: %s %s at %s (%s)", m.family, m.pattern, m.module or m.source, m.detail)
        for f in graph_report.fallbacks:
            log_at(2, "accel: not rewritten: %s", f)
        compiled = inner_compile(work, [*example_inputs, *_static_fakes(ctx.derived)], options, graph_report)
        return _with_derived(compiled, ctx.derived, graph_report)
    except _DYNAMO_CONTROL_FLOW:
        # Dynamo restarts its trace (e.g. to specialize a float): not a failure, and this graph is discarded.
        graph_report.compiled_with = "discarded"
        raise
    except Exception as e:
        if options.strict:
            raise
        where = f"pass {e.pass_name!r}" if isinstance(e, PassFailed) else "compiling the rewritten graph"
        cause = e.error if isinstance(e, PassFailed) else e
        graph_report.compiled_with = "inductor"
        graph_report.error = f"{where} failed: {type(cause).__name__}: {cause}"
        log.warning("accel: %s; compiling graph %d with plain Inductor instead (strict=True raises)",
                    graph_report.error, graph_report.index)
        return inner_compile(gm, example_inputs, options, graph_report, with_accel_pass=False)


def run_rewritten_eagerly(gm: fx.GraphModule, example_inputs, options, graph_report, with_accel_pass=True):
    """An ``inner_compile`` for :class:`AccelBackend` that skips Inductor: the rewritten graph runs op by op (accel
    ops run their reference on CPU). For fast tests and for accuracy measurements of what accel computes."""
    return gm.forward


def accel_backend(gm: fx.GraphModule, example_inputs: Sequence[Any], *, options: dict | None = None,
                  mode: str | None = None):
    """The function registered as ``backend="accel"``. ``mode`` takes torch.compile's mode names:
    "reduce-overhead" turns on CUDA graphs, "max-autotune" also Inductor's autotuning."""
    opts = AccelOptions.from_dict(options)
    if mode not in (None, "default"):
        from torch._inductor import list_mode_options

        try:
            patches = dict(list_mode_options(mode))
        except Exception:
            raise ValueError(f"unknown mode {mode!r}; use default, reduce-overhead, max-autotune or "
                             f"max-autotune-no-cudagraphs") from None
        cudagraphs = bool(patches.pop("triton.cudagraphs", False))
        opts = opts.replace(cudagraphs=opts.cudagraphs or cudagraphs,
                            inductor_config={**patches, **opts.inductor_config})
    return compile_graph(gm, example_inputs, opts, Report())
