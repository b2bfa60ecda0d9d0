"""QuantizeWeightsPass: ``accel::linear`` / ``accel::ffn`` → ``accel::qlinear`` with weights quantized now.

Before (Llama MLP after fuse_ffn)::

    out = torch.ops.accel.ffn(x, accel_gate_up_0, None, w_down, None, "silu", True)

After (``quantize="int4_weight_only"``)::

    h = torch.ops.accel.qlinear(x, accel_q_1, accel_qscale_2, accel_qzero_3, None, "int4_weight_only", 128, "silu", True)
    out = torch.ops.accel.qlinear(h, accel_q_4, accel_qscale_5, accel_qzero_6, None, "int4_weight_only", 128, "identity", False)

Each weight is quantized once, from the real parameter (or merged weight), into new graph inputs; the graph no
longer reads the full-precision copy. The accuracy guard measures every layer's SQNR — on the example inputs' real
activations when ``capture_linear_inputs`` could record them, else on the weight itself — records it in the report,
and keeps layers below ``min_sqnr_db`` in full precision. int4 also uses those activations: GPTQ on their Hessian
(``runtime/gptq.py``; option ``gptq``, on by default), else to weight each group's clipping search
(``quant.quantize_weight``'s ``importance``). Without them int4 rounds to nearest. An FFN is quantized as a unit
(both its projections or neither). Skipped with a reason: the LM head (unless ``quantize_lm_head``), modules
matching ``quantize_exclude``, fp8 on GPUs older than sm_89.
"""
from __future__ import annotations

import fnmatch

import torch
import torch.fx as fx

from accel.compiler import fx_utils as fu
from accel.compiler.context import CompileContext
from accel.compiler.pass_base import AccelPass
from accel.runtime import gptq, quant
from accel.runtime.ops import FFN, LINEAR, QLINEAR

LM_HEAD_NAMES = ("lm_head", "embed_out")
# GPTQ fits the rows it is given: below this many (a decode step's single token, say) it would tune every layer to
# a handful of tokens, so int4 takes the activation-weighted clipping search instead
GPTQ_MIN_ROWS = 128


class QuantizeWeightsPass(AccelPass):
    name = "quantize_weights"

    def __call__(self, gm: fx.GraphModule, ctx: CompileContext) -> int:
        count = 0
        for node in list(gm.graph.nodes):
            if node.target is LINEAR:
                x, w, b = node.args
                plan = _plan(ctx, node, w)
                if plan is None:
                    continue
                new = _qlinear(ctx, node, x, plan, b, "identity", False, "linear")
                count += 1
            elif node.target is FFN:
                x, w1, b1, w2, b2, act, gated = node.args
                first = _plan(ctx, node, w1)
                plans = [first, _plan(ctx, node, w2) if first is not None else None]
                if None in plans:
                    continue
                h = _qlinear(ctx, node, x, plans[0], b1, act, gated, "gate_up" if gated else "fc1")
                new = _qlinear(ctx, node, h, plans[1], b2, "identity", False, "down" if gated else "fc2")
                count += 2
            else:
                continue
            node.replace_all_uses_with(new)
            fu.erase_if_dead([node])
        return count


def _weight_source(w: fx.Node) -> tuple[fx.Node, bool]:
    """(placeholder, transposed) behind a weight operand (itself, or the ``t()`` of a Conv1D weight)."""
    if fu.is_op(w, "t"):
        return w.args[0], True
    return w, False


def _is_lm_head(node: fx.Node, placeholder: fx.Node) -> bool:
    if fu.module_path(node).rsplit(".", 1)[-1] in LM_HEAD_NAMES:
        return True
    # tied embeddings: the same parameter also feeds an embedding lookup
    return any(u.op == "call_function" and "embedding" in getattr(u.target, "__name__", "") for u in placeholder.users)


def _plan(ctx: CompileContext, node: fx.Node, w: fx.Node):
    """(qweight, scale, zero, sqnr, kind) for the weight operand ``w`` of ``node``, or None (reported) to keep it."""
    o = ctx.options
    placeholder, transposed = _weight_source(w)
    value = ctx.weight_value(placeholder)
    if value is None:
        ctx.fallback("quantize", node, "weight is not a parameter available at compile time")
        return None
    weight = value.t() if transposed else value
    path = fu.module_path(node)
    if not o.quantize_lm_head and _is_lm_head(node, placeholder):
        ctx.fallback("quantize", node, "LM head (set quantize_lm_head=True to quantize it)")
        return None
    if any(fnmatch.fnmatch(path, p) for p in o.quantize_exclude):
        ctx.fallback("quantize", node, f"excluded by quantize_exclude ({path})")
        return None
    if o.quantize == "w8a8_fp8" and weight.is_cuda and torch.cuda.get_device_capability(weight.device) < (8, 9):
        ctx.fallback("quantize", node, "fp8 needs compute capability 8.9 or newer")
        return None
    x = _captured_input(ctx, placeholder)
    importance = hessian = None
    if x is not None and o.quantize == "int4_weight_only":
        if o.gptq and x.shape[0] >= GPTQ_MIN_ROWS:
            hessian = gptq.hessian(x)
        else:
            importance = x.float().pow(2).mean(0)  # per input channel: where the signal is
    with torch.no_grad():
        qw, scale, zero = quant.quantize_weight(weight, o.quantize, o.group_size, o.symmetric, importance, hessian)
        db, kind = _sqnr(ctx, x, weight, qw, scale, zero)
    if o.min_sqnr_db is not None and db < o.min_sqnr_db:
        ctx.fallback("quantize", node, f"SQNR {db:.1f} dB ({kind}) below min_sqnr_db={o.min_sqnr_db:g}: kept in "
                                       f"{str(weight.dtype).replace('torch.', '')}")
        return None
    return qw, scale, zero, db, kind


def _captured_input(ctx: CompileContext, placeholder: fx.Node) -> torch.Tensor | None:
    """Sampled activations this weight multiplies (for a merged weight: those of its parts), if captured."""
    sources = ctx.derived_sources.get(placeholder) or (placeholder,)
    return (ctx.linear_inputs or {}).get(sources[0])


def _sqnr(ctx: CompileContext, x, weight, qw, scale, zero) -> tuple[float, str]:
    o = ctx.options
    if x is None:
        approx = quant.dequantize_weight(qw, scale, zero, o.quantize, o.group_size)
        return quant.sqnr_db(weight.float(), approx), "weights"
    ref = x.float() @ weight.float().t()
    approx = quant.qlinear_reference(x, qw, scale, zero, None, o.quantize, o.group_size)
    return quant.sqnr_db(ref, approx), "outputs"


def _qlinear(ctx: CompileContext, node: fx.Node, x: fx.Node, plan, bias, activation: str, gated: bool,
             part: str) -> fx.Node:
    qw, scale, zero, db, kind = plan
    o = ctx.options
    q = ctx.add_derived("q", lambda: qw)
    s = ctx.add_derived("qscale", lambda: scale)
    z = ctx.add_derived("qzero", lambda: zero) if zero is not None else None
    new = ctx.call(QLINEAR, (x, q, s, z, bias, o.quantize, o.group_size, activation, gated), like=node)
    ctx.matched("quantize", o.quantize, node, f"{part} sqnr={db:.1f} dB ({kind})")
    return new
