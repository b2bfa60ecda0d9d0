"""Attention, in its SDPA form and written out.

| form | graph (forward order) |
|---|---|
| SDPA | ``scaled_dot_product_attention(q, k, v, attn_mask, dropout_p=0, is_causal, scale, enable_gqa)`` |
| written out | ``matmul(q, kᵀ)`` → ``* scale`` / ``/ c`` → ``+ mask`` / ``masked_fill(m, v)`` → [``.float()``] → ``softmax(-1)`` → [``.to(dtype)``] → ``dropout(p=0)`` → ``matmul(·, v)`` |

Either form may read K and V through Hugging Face's ``repeat_kv`` (``k[:, :, None].expand(...).reshape(...)``)
or ``repeat_interleave(n, dim=1)``: the match peels it off and the kernel reads the un-repeated KV heads
(GQA). kᵀ may be ``transpose(-1, -2)``, ``transpose(2, 3)`` or ``permute(0, 1, 3, 2)``. The scale is the product
of every constant multiplier / divisor (a Python number, or a constant scalar tensor such as GPT-2's
``torch.full([], sqrt(d))``); without one it is 1 (e.g. T5, whose position bias is the additive mask). Masks
combine: several additive masks sum; ``masked_fill(m, -inf)`` alone becomes a boolean mask; a finite fill
value becomes the additive mask ``where(m, value, 0)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.fx as fx

from accel.compiler import fx_utils as fu
from accel.patterns.base import NoMatch

# masked_fill values at or below this are "minus infinity" for every practical score (HF uses finfo.min).
_HUGE_NEGATIVE = -1e30


@dataclass
class MaskTerm:
    """One mask contribution: ``kind`` "add" (tensor added to the scores, times ``factor``) or "fill"
    (``masked_fill(node, value)``)."""

    kind: str
    node: fx.Node
    value: float = 0.0
    factor: float = 1.0


@dataclass
class AttentionMatch:
    out: fx.Node
    q: fx.Node
    k: fx.Node
    v: fx.Node
    scale: float
    is_causal: bool
    mask: fx.Node | None = None
    """An SDPA ``attn_mask`` used as is (bool or additive)."""
    terms: list[MaskTerm] = field(default_factory=list)
    """Written-out mask contributions, to be combined into one mask by the rewrite."""
    q_scales: list[tuple[str, fx.Node]] = field(default_factory=list)
    """Symbolic scale factors ("mul" or "div", SymFloat node): under ``dynamic=True`` Dynamo passes float
    attributes such as ``self.scaling`` as graph inputs, so the rewrite applies them to q instead."""
    pattern: str = ""
    gqa_groups: int = 1
    covered: tuple[fx.Node, ...] = ()


def peel_repeat_kv(node: fx.Node) -> tuple[fx.Node, int, list[fx.Node]]:
    """(un-repeated KV tensor, repeat factor, nodes of the repeat) for HF ``repeat_kv`` / ``repeat_interleave``
    along the head dim of a [B, H, S, D] tensor; (node, 1, []) when there is none."""
    if fu.is_op(node, "repeat_interleave"):
        rep, dim = fu.arg(node, 1, "repeats"), fu.arg(node, 2, "dim")
        src = node.args[0]
        if isinstance(rep, int) and fu.rank(src) == 4 and fu.normalize_dim(dim, 4) == 1:
            return src, rep, [node]
    if fu.is_op(node, "reshape") and fu.rank(node) == 4:
        exp = node.args[0]
        if fu.is_op(exp, "expand") and fu.rank(exp) == 5 and len(exp.users) == 1:
            ins = exp.args[0]
            base = None
            if fu.is_op(ins, "getitem") and isinstance(ins.args[1], tuple) and len(ins.args[1]) == 5:
                idx = ins.args[1]
                full = slice(None, None, None)
                if idx[2] is None and all(i == full for j, i in enumerate(idx) if j != 2):
                    base = ins.args[0]
            elif fu.is_op(ins, "unsqueeze") and fu.normalize_dim(fu.arg(ins, 1, "dim"), 5) == 2:
                base = ins.args[0]
            bm, em, om = fu.tensor_meta(base), fu.tensor_meta(exp), fu.tensor_meta(node)
            if base is not None and bm is not None and bm.dim() == 4 and len(ins.users) == 1:
                rep = em.shape[2]
                if isinstance(rep, int) and om.shape[1] == bm.shape[1] * rep and om.shape[2:] == bm.shape[2:]:
                    return base, rep, [node, exp, ins]
    return node, 1, []


def _skip(node, *names):
    """Follow single-input no-op spellings (casts, contiguous, eval dropout) backwards."""
    while isinstance(node, fx.Node) and (fu.is_op(node, *names) or fu.is_noop_dropout(node)) and len(node.users) == 1:
        node = node.args[0]
    return node


def _is_symbolic_scalar(x) -> bool:
    return isinstance(fu.val(x), torch.SymFloat | torch.SymInt)


def _finish(q, k, v, out, scale, is_causal, pattern, covered, mask=None, terms=(), q_scales=()) -> AttentionMatch | NoMatch:
    k0, rep_k, k_nodes = peel_repeat_kv(k)
    v0, rep_v, v_nodes = peel_repeat_kv(v)
    if rep_k != rep_v:
        k0, v0, rep_k, k_nodes, v_nodes = k, v, 1, [], []
    qm, km, vm = fu.tensor_meta(q), fu.tensor_meta(k0), fu.tensor_meta(v0)
    if qm is None or km is None or vm is None:
        return NoMatch("attention", out, "q/k/v shapes are unknown")
    if not (qm.dtype == km.dtype == vm.dtype) or not qm.dtype.is_floating_point:
        return NoMatch("attention", out, f"q/k/v dtypes differ ({qm.dtype}, {km.dtype}, {vm.dtype})")
    if qm.dim() not in (3, 4) or km.dim() != qm.dim() or vm.dim() != qm.dim():
        return NoMatch("attention", out, f"q/k/v of rank {qm.dim()}/{km.dim()}/{vm.dim()} (need 3 or 4)")
    if qm.shape[-1] != km.shape[-1] or km.shape[-1] != vm.shape[-1]:
        return NoMatch("attention", out, f"head dims differ (q {qm.shape[-1]}, k {km.shape[-1]}, v {vm.shape[-1]})")
    if not isinstance(qm.shape[-1], int) or qm.shape[-1] > 256:
        return NoMatch("attention", out, f"head dim {qm.shape[-1]} is not a static size <= 256")
    m = AttentionMatch(out, q, k0, v0, scale, is_causal, mask, list(terms), list(q_scales), pattern, rep_k, covered)
    m.covered = (*covered, *k_nodes, *v_nodes)
    return m


def match_sdpa(node: fx.Node) -> AttentionMatch | NoMatch | None:
    if not fu.is_op(node, "sdpa"):
        return None
    q, k, v = (fu.arg(node, i, n) for i, n in enumerate(("query", "key", "value")))
    mask = fu.arg(node, 3, "attn_mask")
    p = fu.arg(node, 4, "dropout_p", 0.0)
    is_causal = fu.arg(node, 5, "is_causal", False)
    scale = node.kwargs.get("scale", fu.arg(node, 6, "scale"))
    if not isinstance(p, (int, float)) or p != 0:
        return NoMatch("attention", node, f"dropout_p={p} (accel fuses inference attention only)")
    if not isinstance(is_causal, bool):
        return NoMatch("attention", node, "is_causal depends on data")
    if scale is None:
        d = fu.tensor_meta(q).shape[-1] if fu.tensor_meta(q) is not None else None
        if not isinstance(d, int):
            return NoMatch("attention", node, "head dim is not static")
        scale = 1.0 / math.sqrt(d)
    q_scales = []
    if _is_symbolic_scalar(scale):
        q_scales, scale = [("mul", scale)], 1.0
    if not isinstance(scale, (int, float)):
        return NoMatch("attention", node, "scale depends on data")
    if mask is not None and not isinstance(mask, fx.Node):
        return NoMatch("attention", node, "attn_mask is not a tensor")
    return _finish(q, k, v, node, float(scale), is_causal, "sdpa", (node,), mask=mask, q_scales=q_scales)


def _softmax_input_maybe(p: fx.Node) -> tuple[fx.Node, fx.Node] | NoMatch | None:
    """(softmax node, its input) if ``p`` (the left operand of the P·V matmul) is a last-dim softmax."""
    sm = _skip(p, "to", "contiguous")
    if not fu.is_op(sm, "softmax"):
        return None
    dim = fu.arg(sm, 1, "dim")
    r = fu.rank(sm)
    if r is None or fu.normalize_dim(dim, r) != r - 1:
        return NoMatch("attention", sm, f"softmax over dim {dim}, not the key dim")
    return sm, sm.args[0]


def match_written_out(node: fx.Node) -> AttentionMatch | NoMatch | None:
    """softmax(q kᵀ · scale + masks) · v, anchored on the final matmul."""
    if not fu.is_op(node, "matmul") or len(node.args) != 2:
        return None
    p, v = node.args
    if not isinstance(p, fx.Node) or not isinstance(v, fx.Node):
        return None
    found = _softmax_input_maybe(p)
    if not isinstance(found, tuple):
        return found
    sm, s = found
    covered = [node, sm]
    n = p
    while n is not sm:  # the casts / dropouts between softmax and the matmul
        if len(n.users) != 1:
            return NoMatch("attention", node, "attention probabilities are also used elsewhere (output_attentions?)")
        covered.append(n)
        n = n.args[0]
    if len(sm.users) != 1:
        return NoMatch("attention", node, "attention probabilities are also used elsewhere (output_attentions?)")
    scale, terms, q_scales = 1.0, [], []
    s = _skip(s, "to", "contiguous")
    while True:  # walk back from the softmax input to matmul(q, kᵀ)
        if len(s.users) != 1:
            return NoMatch("attention", node, "attention scores are also used elsewhere")
        covered.append(s)
        if fu.is_op(s, "matmul") and len(s.args) == 2 and fu.transposes_last_two(s.args[1]):
            kt = s.args[1]
            if len(kt.users) == 1:
                covered.append(kt)
            return _finish(s.args[0], kt.args[0], v, node, scale, False, "matmul-softmax-matmul", tuple(covered),
                           terms=terms, q_scales=q_scales)
        if fu.is_op(s, "mul", "div") and len(s.args) == 2:
            x, factor = s.args
            if fu.is_op(s, "mul") and (fu.scalar_constant(x) is not None or _is_symbolic_scalar(x)):
                x, factor = factor, x  # c * scores
            c = fu.scalar_constant(factor)
            if not isinstance(x, fx.Node):
                return NoMatch("attention", node, "scores are scaled in an unrecognised way")
            if c is not None:
                if c <= 0:
                    return NoMatch("attention", node, f"non-positive score scale {c}")
                scale *= c if fu.is_op(s, "mul") else 1.0 / c
            elif _is_symbolic_scalar(factor):
                q_scales.append((fu.op_name(s), factor))
            else:
                return NoMatch("attention", node, "scores are scaled by a tensor that is not a constant")
            s = _skip(x, "to", "contiguous")
            continue
        if q_scales and fu.is_op(s, "add", "masked_fill"):
            return NoMatch("attention", node, "a symbolic scale applied after the mask")
        if fu.is_op(s, "add") and len(s.args) == 2 and all(isinstance(a, fx.Node) for a in s.args):
            scores, mask = _pick_scores(s.args)
            # Scales seen so far sit between this mask and the softmax: in forward order they scale it too.
            terms.append(MaskTerm("add", mask, factor=scale))
            s = _skip(scores, "to", "contiguous")
            continue
        if fu.is_op(s, "masked_fill"):
            m, value = fu.arg(s, 1, "mask"), fu.arg(s, 2, "value")
            value = fu.scalar_constant(value)
            if value is None or not isinstance(m, fx.Node):
                return NoMatch("attention", node, "masked_fill value is not a constant")
            if value != -math.inf and value > _HUGE_NEGATIVE:
                # score + value != value here, so an additive mask would change fully masked rows
                return NoMatch("attention", node, f"masked_fill with the finite value {value:g}")
            terms.append(MaskTerm("fill", m, value, factor=scale))
            s = _skip(s.args[0], "to", "contiguous")
            continue
        return NoMatch("attention", node, f"unrecognised op {fu.op_name(s) or s.target} between q·kᵀ and softmax")


def _pick_scores(args) -> tuple[fx.Node, fx.Node]:
    """Of the two operands of a score ``add``, the one that leads back to q·kᵀ (the other is the mask)."""
    a, b = args
    for cand, other in ((a, b), (b, a)):
        n = cand
        for _ in range(8):
            if fu.is_op(n, "matmul") and len(n.args) == 2 and fu.transposes_last_two(n.args[1]):
                return cand, other
            if not isinstance(n, fx.Node) or not n.args or not isinstance(n.args[0], fx.Node):
                break
            n = n.args[0]
    return a, b


def combine_mask_terms(terms: list[MaskTerm]) -> tuple[str, list] | None:
    """How to build one mask from ``terms``: ("none", []), ("bool", [node]) for a lone -inf masked_fill
    (SDPA's bool mask is the complement), or ("additive", terms)."""
    if not terms:
        return ("none", [])
    if len(terms) == 1 and terms[0].kind == "fill" and terms[0].value == -math.inf:
        return ("bool", [terms[0].node])
    return ("additive", terms)


