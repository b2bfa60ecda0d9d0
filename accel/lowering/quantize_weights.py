"""QuantizeWeightsPass: ``accel::linear`` / ``accel::ffn`` → ``accel::qlinear`` with weights quantized now.

Before (Llama MLP after fuse_ffn)::

    out = torch.ops.accel.ffn(x, accel_gate_up_0, None, w_down, None, "silu", True)

After (``quantize="int4_weight_only"``)::

    h = torch.ops.accel.qlinear(x, accel_q_1, accel_qscale_2, accel_qzero_3, None, "int4_weight_only", 128, "silu", True)
    out = torch.ops.accel.qlinear(h, accel_q_4, accel_qscale_5, accel_qzero_6, None, "int4_weight_only", 128, "identity", False)

Each weight is quantized once, from the real parameter (or merged weight), into new graph inputs; the graph no
longer reads the full-precision copy. ``fuse_norm`` runs first: a projection's fused RMSNorm (``norm_eps``) and
residual carry over to its qlinear nodes, and for a weight the norm's weight was folded into (``ctx.norm_folds``),
the unfolded weight is quantized and the norm's weight passed as ``norm_weight`` (the folded copy is never made).
The accuracy guard measures every layer's SQNR — on the example inputs' real activations when
``capture_linear_inputs`` could record them, else on the weight itself — records it in the report, and keeps layers
below ``min_sqnr_db`` in full precision. int4, w8a8_int8 and w8a8_fp8 also use those activations:
GPTQ on their Hessian (``runtime/gptq.py``; option ``gptq``, on by default); int4 without GPTQ weights each
group's clipping search by them (``quant.quantize_weight``'s ``importance``). Without them every scheme rounds
to nearest. An FFN is quantized as a unit (both its projections or neither). Skipped with a reason: the LM head
(unless ``quantize_lm_head``), modules matching ``quantize_exclude``, fp8 on GPUs older than sm_89.

SmoothQuant (option ``smoothquant`` = α, w8a8 only) rescales each input channel j by
``s_j = max|X_j|^α / max|W_j|^(1−α)`` from those activations: the weight is quantized as W·diag(s) and the input
is multiplied by a constant 1/s just before the qlinear (``x * accel_smooth_7``), which Inductor fuses into x's
producer (the norm). A gated FFN's down projection has no such input in the graph (act(gate)·up is made inside the
first qlinear), so its 1/s is folded into the up rows of the gate/up weight instead; a plain FFN's fc2 is not
smoothed. Without captured activations layers are quantized unsmoothed, with a reported reason.

AWQ (option ``awq``, int4) uses the same rewrite with s_j = mean|X_j|^α, α searched per layer
(``quant.awq_scales``); a layer whose best α is 0 stays unscaled. GPTQ and the clipping search then see the
scaled layer's input x / s.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import torch
import torch.fx as fx

from accel.compiler import fx_utils as fu
from accel.compiler.context import CompileContext
from accel.compiler.pass_base import AccelPass
from accel.runtime import gptq, quant
from accel.runtime.progress import Progress
from accel.runtime.ops import FFN, LINEAR, QLINEAR

LM_HEAD_NAMES = ("lm_head", "embed_out")
# GPTQ fits the rows it is given: below this many (a decode step's single token, say) it would tune every layer to
# a handful of tokens, so int4 takes the activation-weighted clipping search instead
GPTQ_MIN_ROWS = 128


@dataclass
class _Layer:
    """A weight to quantize: [N, K] as the linear multiplies it, and its captured input rows [M, K] if any."""

    weight: torch.Tensor
    x: torch.Tensor | None


@dataclass
class _Plan:
    qweight: torch.Tensor
    scale: torch.Tensor
    zero: torch.Tensor | None
    db: float
    kind: str
    smooth: torch.Tensor | None
    """SmoothQuant's 1/s [K] in the activation dtype (the weight was quantized as W·diag(s)), or None."""


class QuantizeWeightsPass(AccelPass):
    name = "quantize_weights"

    def __call__(self, gm: fx.GraphModule, ctx: CompileContext) -> int:
        count = 0
        nodes = [n for n in gm.graph.nodes if n.target in (LINEAR, FFN)]
        gptq_on = ctx.options.gptq and ctx.options.quantize in quant.GPTQ_SCHEMES
        with Progress(len(nodes), f"accel: quantizing weights ({ctx.options.quantize}{', GPTQ' if gptq_on else ''})") \
                as bar:
            for node in nodes:
                count += self._quantize(node, ctx)
                bar.update()
        return count

    def _quantize(self, node: fx.Node, ctx: CompileContext) -> int:
        """Replace one linear or FFN node by qlinear nodes; how many it made (0: left as it was)."""
        # fuse_norm ran first: a norm in front (norm_eps) and a residual behind carry over
        a = fu.schema_args(node)
        eps, residual = a["norm_eps"], a["residual"]
        if node.target is LINEAR:
            x, b = a["x"], a["bias"]
            w, norm_w = ctx.norm_folds.get(a["weight"], (a["weight"], None))  # quantize the unfolded weight
            layer = _layer(ctx, node, w)
            plan = _plan(ctx, node, layer, _smoothing(ctx, node, layer)) if layer is not None else None
            if plan is None:
                return 0
            new = _qlinear(ctx, node, _smooth_input(ctx, node, x, plan), plan, b, "identity", False, "linear",
                           eps, norm_w, residual)
            made = 1
        else:
            x, w1, b1, w2, b2, act, gated = (a[k] for k in ("x", "w1", "b1", "w2", "b2", "activation", "gated"))
            w1, norm_w = ctx.norm_folds.get(w1, (w1, None))
            first = _layer(ctx, node, w1)
            second = _layer(ctx, node, w2) if first is not None else None  # all or nothing: reported once
            if second is None:
                return 0
            # The down projection's input act(gate)·up is made inside the first qlinear, where no multiply
            # can go; when gated, its 1/s scales the up rows instead. A plain FFN's fc2 (after a nonlinear
            # activation) stays unsmoothed.
            s2 = _smoothing(ctx, node, second) if gated and first.x is not None else None
            folded = _fold_into_up(ctx, first, b1, s2) if s2 is not None else None
            if folded is None:
                s2 = folded_bias = None
            else:
                first, folded_bias = folded
            plans = [_plan(ctx, node, first, _smoothing(ctx, node, first))]
            plans.append(_plan(ctx, node, second, s2) if plans[0] is not None else None)
            if None in plans:
                return 0
            if folded_bias is not None:
                b1 = ctx.add_derived("bias", lambda: folded_bias)
            h = _qlinear(ctx, node, _smooth_input(ctx, node, x, plans[0]), plans[0], b1, act, gated,
                         "gate_up" if gated else "fc1", eps, norm_w)
            new = _qlinear(ctx, node, h, plans[1], b2, "identity", False, "down" if gated else "fc2",
                           residual=residual)
            made = 2
        node.replace_all_uses_with(new)
        fu.erase_if_dead([node])
        return made


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


def _layer(ctx: CompileContext, node: fx.Node, w: fx.Node) -> _Layer | None:
    """The weight operand ``w`` of ``node`` with its captured inputs, or None (reported) to keep it unquantized."""
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
    return _Layer(weight, _captured_input(ctx, placeholder))


def _smoothing(ctx: CompileContext, node: fx.Node, layer: _Layer) -> torch.Tensor | None:
    """The per-input-channel s [K] of SmoothQuant (option ``smoothquant``) or AWQ (option ``awq``) for ``layer``
    when asked for and its inputs were captured (else None; a missing capture is reported)."""
    o = ctx.options
    if o.smoothquant is None and not o.awq:
        return None
    method = "awq" if o.awq else "smoothquant"
    if layer.x is None:
        ctx.fallback("quantize", node, f"{method}: no captured activations (the graph mutates its inputs); "
                                       "quantized without smoothing")
        return None
    if o.awq:
        s, alpha = quant.awq_scales(layer.x, layer.weight, o.group_size, o.symmetric)
        if alpha == 0.0:
            return None
    elif o.smoothquant == "auto":
        s, _ = quant.smoothquant_search(layer.x, layer.weight, o.quantize)
        if s is None:
            return None
    else:
        s = quant.smoothquant_scales(layer.x, layer.weight, o.smoothquant)
    # The graph multiplies x by 1/s rounded to the activation dtype: use exactly that value's reciprocal, or bf16
    # rounding would leave a per-channel gain error in the smoothed layer.
    return 1.0 / (1.0 / s).to(layer.x.dtype).float()


def _fold_into_up(ctx: CompileContext, first: _Layer, bias: fx.Node | None,
                  s: torch.Tensor) -> tuple[_Layer, torch.Tensor | None] | None:
    """A gated FFN's [gate; up] weight and bias with up row j divided by ``s_j``: act(gate)·up, the down
    projection's input, then comes out with channel j divided by ``s_j``. None when the bias is not a parameter."""
    inv = torch.cat([torch.ones_like(s), 1.0 / s])[:, None]
    folded_bias = None
    if bias is not None:
        value = ctx.weight_value(bias)
        if value is None:
            return None
        folded_bias = (value.float() * inv[:, 0]).to(value.dtype)
    return _Layer((first.weight.float() * inv).to(first.weight.dtype), first.x), folded_bias


def _plan(ctx: CompileContext, node: fx.Node, layer: _Layer, s: torch.Tensor | None) -> _Plan | None:
    """``layer``'s weight quantized (as W·diag(s) when smoothing by ``s``), or None (reported) when the accuracy
    guard keeps it in full precision."""
    o = ctx.options
    weight, x = layer.weight, layer.x
    importance = hessian = None
    if x is not None and s is not None:
        x = x * (1.0 / s).to(x.dtype)  # the layer's input as it will run: GPTQ and the clipping weights see x / s
    if x is not None and o.quantize in quant.GPTQ_SCHEMES and o.gptq and x.shape[0] >= GPTQ_MIN_ROWS:
        hessian = gptq.hessian(x)
    elif x is not None and o.quantize == "int4_weight_only":
        importance = x.float().pow(2).mean(0)  # per input channel: where the signal is
    with torch.no_grad():
        smooth = None if s is None else (1.0 / s).to(x.dtype)
        target = weight if s is None else weight.float() * s
        qw, scale, zero = quant.quantize_weight(target, o.quantize, o.group_size, o.symmetric, importance, hessian)
        db, kind = _sqnr(ctx, layer.x, weight, qw, scale, zero, smooth)
    if o.min_sqnr_db is not None and db < o.min_sqnr_db:
        ctx.fallback("quantize", node, f"SQNR {db:.1f} dB ({kind}) below min_sqnr_db={o.min_sqnr_db:g}: kept in "
                                       f"{str(weight.dtype).replace('torch.', '')}")
        return None
    return _Plan(qw, scale, zero, db, kind, smooth)


def _captured_input(ctx: CompileContext, placeholder: fx.Node) -> torch.Tensor | None:
    """Sampled activations this weight multiplies (for a merged weight: those of its parts), if captured."""
    sources = ctx.derived_sources.get(placeholder) or (placeholder,)
    return (ctx.linear_inputs or {}).get(sources[0])


def _sqnr(ctx: CompileContext, x: torch.Tensor | None, weight: torch.Tensor, qw: torch.Tensor, scale: torch.Tensor,
          zero: torch.Tensor | None, smooth: torch.Tensor | None) -> tuple[float, str]:
    """(dB, "outputs") of the layer as it will run — input times ``smooth`` (1/s) through the quantized weight —
    against x @ weightᵀ on the captured inputs, else (dB, "weights") of the dequantized weight."""
    o = ctx.options
    if x is None:
        approx = quant.dequantize_weight(qw, scale, zero, o.quantize, o.group_size)
        return quant.sqnr_db(weight.float(), approx), "weights"
    ref = x.float() @ weight.float().t()
    approx = quant.qlinear_reference(x if smooth is None else x * smooth, qw, scale, zero, None, o.quantize,
                                     o.group_size)
    return quant.sqnr_db(ref, approx), "outputs"


def _smooth_input(ctx: CompileContext, node: fx.Node, x: fx.Node, plan: _Plan) -> fx.Node:
    """``x * (1/s)`` before ``node`` when ``plan`` is smoothed (Inductor fuses the multiply into x's producer,
    e.g. the RMSNorm), else ``x``."""
    if plan.smooth is None:
        return x
    smooth = plan.smooth
    return ctx.call(torch.mul, (x, ctx.add_derived("smooth", lambda: smooth)), like=node)


def _qlinear(ctx: CompileContext, node: fx.Node, x: fx.Node, plan: _Plan, bias: fx.Node | None, activation: str,
             gated: bool, part: str, norm_eps: float | None = None, norm_weight: fx.Node | None = None,
             residual: fx.Node | None = None) -> fx.Node:
    o = ctx.options
    q = ctx.add_derived("q", lambda: plan.qweight)
    s = ctx.add_derived("qscale", lambda: plan.scale)
    z = ctx.add_derived("qzero", lambda: plan.zero) if plan.zero is not None else None
    args = (x, q, s, z, bias, o.quantize, o.group_size, activation, gated)
    if norm_eps is not None or residual is not None:
        args += (norm_eps, norm_weight, residual)
    new = ctx.call(QLINEAR, args, like=node)
    smoothed = "" if plan.smooth is None else " awq" if o.awq else f" smoothquant={o.smoothquant}"
    ctx.matched("quantize", o.quantize, node, f"{part}{smoothed} sqnr={plan.db:.1f} dB ({plan.kind})")
    return new
