"""CaptureLinearInputsPass: record what each linear sees on the example inputs, for the quantization guard.

Runs the (still unmodified) graph once on the real example inputs Dynamo passed and keeps, for every parameter
linear, rows of its input activation (evenly spaced over all of them), keyed by the weight node: up to ``MAX_ROWS``
when they calibrate the quantization, ``SQNR_ROWS`` otherwise. ``QuantizeWeightsPass`` then calibrates on them
(GPTQ's Hessian, which wants many rows: with fewer rows than input features it overfits; SmoothQuant's per-channel
maxima) and measures each quantized layer's output SQNR on real activations. Skipped — the guard
falls back to weight SQNR — when the graph mutates its inputs (a KV cache update would be applied twice) or an input
is not a real tensor (fake or symbolic example inputs). Rewrites nothing; returns 0.
"""
from __future__ import annotations

import operator

import torch
import torch.fx as fx

from accel.compiler.context import CompileContext
from accel.compiler.pass_base import AccelPass
from accel.patterns.linear import find_linears
from accel.runtime.quant import GPTQ_SCHEMES

# rows kept per input: when they calibrate (any int4: GPTQ's Hessian or the clipping's channel weights; GPTQ for
# W8A8; SmoothQuant)
MAX_ROWS = 2048
SQNR_ROWS = 256  # rows kept when they only measure the accuracy guard's SQNR


_INPLACE_OPERATORS = {operator.setitem, operator.iadd, operator.isub, operator.imul, operator.itruediv,
                      operator.ifloordiv, operator.imod, operator.ipow, operator.imatmul, operator.iand, operator.ior,
                      operator.ixor, operator.ilshift, operator.irshift}


def _mutates(node: fx.Node) -> bool:
    """In-place: ``x.add_(...)``-style methods and functions, ``x += y``, ``x[i] = y`` (not ``operator.and_``)."""
    if node.op == "call_method":
        return node.target.endswith("_") and not node.target.endswith("__")
    if node.op == "call_function":
        if node.target in _INPLACE_OPERATORS:
            return True
        name = getattr(node.target, "__name__", "")
        return node.target not in vars(operator).values() and name.endswith("_") and not name.endswith("__")
    return False


def _real(v) -> bool:
    from torch._subclasses.fake_tensor import FakeTensor

    return isinstance(v, int | float | bool) or (isinstance(v, torch.Tensor) and not isinstance(v, FakeTensor))


class CaptureLinearInputsPass(AccelPass):
    name = "capture_linear_inputs"

    def __call__(self, gm: fx.GraphModule, ctx: CompileContext) -> int:
        if any(_mutates(n) for n in gm.graph.nodes) or not all(_real(v) for v in ctx.example_inputs):
            return 0
        wanted: dict[fx.Node, list[fx.Node]] = {}
        for m in find_linears(gm, ctx):
            wanted.setdefault(m.x, []).append(m.weight)
        captured: dict[fx.Node, torch.Tensor] = {}
        o = ctx.options
        calibrates = (o.quantize == "int4_weight_only" or o.smoothquant is not None
                      or (o.gptq and o.quantize in GPTQ_SCHEMES))
        max_rows = MAX_ROWS if calibrates else SQNR_ROWS

        class Recorder(fx.Interpreter):
            def run_node(self, n):
                out = super().run_node(n)
                if n in wanted and isinstance(out, torch.Tensor):
                    flat = out.detach().reshape(-1, out.shape[-1])
                    rows = flat[:: -(-flat.shape[0] // max_rows)].clone()  # ceil stride: at most max_rows
                    for w in wanted[n]:
                        captured[w] = rows
                return out

        with torch.no_grad():
            Recorder(gm).run(*ctx.example_inputs)
        ctx.linear_inputs = captured
        return 0
