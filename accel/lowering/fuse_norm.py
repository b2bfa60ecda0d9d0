"""FuseNormPass: a decoder layer's RMSNorms and residual adds folded into the projections around them.

Before (one Llama layer, after the other passes)::

    h1 = h + accel.linear(attn, w_o, None)
    y = rms_norm(h1, g, eps)                       # the chain of accel.patterns.norm
    out = h1 + accel.ffn(y, w_gate_up, None, w_down, None, "silu", True)

After::

    h1 = accel.linear(attn, w_o, None, residual=h)
    out = accel.ffn(h1, w_gate_up · diag(g), None, w_down, None, "silu", True, norm_eps=eps, residual=h1)

The norm's weight g is folded into the columns of the projection's weight at compile time (a derived weight that
replaces the merged one); at decode (M ≤ 4) the GEMV applies the remaining x · rsqrt(mean(x²) + eps) in its prologue and every Triton matmul adds the residual in its
epilogue (``runtime.kernels.linear.launch``), so the two norm kernels of each layer are gone and the residual
stream is written once per projection; where a kernel cannot fuse (split-K, cuBLAS), the op computes the same
thing with torch ops. Numerics: the normalized x is never rounded to the model's dtype (one rounding fewer than
eager); the sum with the residual is rounded once instead of twice.

Runs after the projections are accel ops and before ``quantize_weights``, which carries ``norm_eps`` and
``residual`` over to the ``accel::qlinear`` nodes it makes. Quantized layers do not use the folded weight: folding g
into the weight changes what gets quantized (per-channel int8 on SmolLM2-135M: +0.65% perplexity folded against
+0.1% unfolded), so ``ctx.norm_folds`` records each fold and the quantized op gets the unfolded weight and g, which
the weight-only GEMV multiplies x by in its prologue. With SmoothQuant or AWQ the norms stay (their 1/s multiplies
the normalized x in the graph); residual adds are fused either way.

A decoder's final norm reaches the LM head through a slice of rows (``lm_head(hidden[:, slice_indices, :])``). A
row-wise norm commutes with taking rows, so the head can take ``x[rows]`` and the norm in its prologue: done when the
head is quantized (``quantize`` and ``quantize_lm_head``), whose GEMV takes the norm's weight unfolded. An unquantized
head would need a folded copy of the vocabulary matrix (often tied to the embedding) for one small kernel less, so
that norm stays.
"""
from __future__ import annotations

import operator

import torch
import torch.fx as fx

from accel.compiler import fx_utils as fu
from accel.compiler.context import CompileContext
from accel.compiler.pass_base import AccelPass
from accel.patterns.norm import match_rms_norm
from accel.runtime.ops import FFN, LINEAR

_PROJECTIONS = (LINEAR, FFN)


def _replace(ctx: CompileContext, node: fx.Node, like: fx.Node, **changes) -> fx.Node:
    """``node`` with ``changes`` to its arguments, inserted before ``like``; it keeps ``node``'s module path (which
    ``quantize_exclude`` matches)."""
    args = {**fu.schema_args(node), **changes}
    return ctx.call(node.target, tuple(args.values()), like=like, provenance=node)


def _residual_operand(add: fx.Node, proj: fx.Node) -> fx.Node | None:
    """r when ``add`` is ``proj + r`` or ``r + proj`` with r of proj's exact shape and dtype (no broadcast); ``proj``
    may be the projection behind a no-op dropout."""
    if not fu.is_op(add, "add") or len(add.args) != 2 or add.kwargs:
        return None
    a, b = add.args
    r = b if a is proj else a if b is proj else None
    if not isinstance(r, fx.Node) or r is proj:
        return None
    rm, pm, am = fu.tensor_meta(r), fu.tensor_meta(proj), fu.tensor_meta(add)
    ok = rm is not None and pm is not None and am is not None
    return r if ok and rm.shape == pm.shape == am.shape and rm.dtype == pm.dtype == am.dtype else None


class FuseNormPass(AccelPass):
    name = "fuse_norm"

    def __call__(self, gm: fx.GraphModule, ctx: CompileContext) -> int:
        count = 0
        for node in list(gm.graph.nodes):  # residual adds first: they produce the norms' inputs
            if node.op == "call_function" and node.target in _PROJECTIONS and fu.schema_args(node)["residual"] is None:
                out, add = node, fu.only_user(node)
                while add is not None and fu.is_noop_dropout(add) and add.args[0] is out:  # Phi-3's eval dropout
                    out, add = add, fu.only_user(add)
                r = _residual_operand(add, out) if add is not None else None
                if r is None:
                    continue
                new = _replace(ctx, node, add, residual=r)
                add.replace_all_uses_with(new)
                fu.erase_if_dead([add])
                ctx.matched("norm", "residual_add", new, "added in the projection's epilogue")
                count += 1
        o = ctx.options
        if o.quantize and (o.smoothquant is not None or o.awq):
            return count  # smoothing multiplies the normalized x by 1/s in the graph: the norms stay
        for node in list(gm.graph.nodes):
            if fu.is_op(node, "rsqrt"):
                count += self._fuse_norm(ctx, node)
        return count

    def _fuse_norm(self, ctx: CompileContext, rsqrt: fx.Node) -> int:
        m = match_rms_norm(rsqrt, ctx)
        if m is None:
            return 0
        users = list(m.out.users)
        k = fu.tensor_meta(m.x).shape[-1]
        # each user as (projection, the row slice between, if any): a decoder's final norm reaches the LM head
        # through hidden[:, slice_indices, :], and a row-wise norm commutes with taking rows
        reads = {u: _projection_reading(u, m.out) for u in users}
        fusable = [u for u, (p, _) in reads.items() if p is not None and fu.schema_args(p)["norm_eps"] is None
                   and m.out not in p.args[1:] and _weight_k(ctx, p) == k]
        if not fusable:  # not in front of a projection
            return 0
        o = ctx.options
        if any(reads[u][1] is not None for u in fusable) and not (o.quantize and o.quantize_lm_head):
            # The fold would copy the head's weight, where the layers' folds replace merged copies: for an
            # unquantized head that is a second copy of the vocabulary matrix (525 MB at the 1B shape, often tied
            # to the embedding) for one small kernel less. A quantized head takes the norm's weight in the GEMV's
            # prologue instead, and no folded copy is made. Not a fallback: the norm is left by design, as in
            # every unquantized decoder.
            return 0
        if len(fusable) != len(users):
            others = sorted({str(u.target) for u in users if u not in fusable})
            ctx.fallback("norm", m.out, f"the RMSNorm output feeds {', '.join(others)}, not only accel projections "
                                        "with a parameter weight [N, K]: left to Inductor")
            return 0
        g = ctx.weight_value(m.weight)
        for u in users:
            proj, rows = reads[u]
            name = "weight" if proj.target is LINEAR else "w1"
            w = fu.schema_args(proj)[name]
            sources = ctx.derived_sources.get(w) or (w,)
            # when quantizing, the folded weight is made only if a layer stays unquantized (the guard, exclusions):
            # quantize_weights quantizes the unfolded one (ctx.norm_folds)
            value = ctx.weight_value(w)  # held by the closure: a merged w may leave the graph before it runs
            folded = ctx.add_derived("norm_folded_w", lambda value=value: _fold(value, g), sources=sources,
                                     lazy_like=value if ctx.options.quantize else None)
            ctx.norm_folds[folded] = (w, m.weight)
            x = m.x if rows is None else ctx.call(operator.getitem, (m.x, rows.args[1]), like=proj, provenance=rows)
            new = _replace(ctx, proj, proj, x=x, norm_eps=m.eps, **{name: folded})
            proj.replace_all_uses_with(new)
            proj.graph.erase_node(proj)
            if rows is not None:
                rows.graph.erase_node(rows)
        for n in [m.out, *reversed(m.nodes)]:  # the chain is pure (``mean`` is not in fx_utils' op vocabulary)
            if not n.users:
                n.graph.erase_node(n)
        ctx.matched("norm", "rms_norm", new, f"into {len(users)} projection(s), weight folded, eps={m.eps:g}")
        return len(users)


def _projection_reading(user: fx.Node, out: fx.Node) -> tuple[fx.Node | None, fx.Node | None]:
    """(projection, None) when ``user`` is an accel projection reading ``out`` as its input; (projection, user) when
    ``user`` takes rows of ``out`` (``_row_slice``) and its only user is such a projection of them; else (None, None)."""
    def reads(p: fx.Node | None, x: fx.Node) -> bool:
        return p is not None and p.op == "call_function" and p.target in _PROJECTIONS and bool(p.args) \
            and p.args[0] is x
    if reads(user, out):
        return user, None
    proj = fu.only_user(user) if _row_slice(user, out) else None
    if reads(proj, user):
        return proj, user
    return None, None


def _row_slice(node: fx.Node, out: fx.Node) -> bool:
    """``node`` is ``out[i0, i1, ...]`` with constant slices along the leading dims and the last dim whole: rows of
    ``out`` and nothing else (no Ellipsis, None, int or tensor index)."""
    if node.op != "call_function" or node.target is not operator.getitem or len(node.args) != 2 \
            or node.args[0] is not out or node.kwargs:
        return False
    index, ndim = node.args[1], fu.rank(out)
    index = index if isinstance(index, tuple) else (index,)
    if ndim is None or not index or len(index) > ndim or not all(isinstance(i, slice) for i in index):
        return False
    if not all(isinstance(v, (int, type(None))) for i in index for v in (i.start, i.stop, i.step)):
        return False
    return len(index) < ndim or index[-1] == slice(None)


def _weight_k(ctx: CompileContext, node: fx.Node) -> int | None:
    """K of the projection's [N, K] weight when it is a parameter or an accel-derived tensor, else None."""
    w = ctx.weight_value(fu.schema_args(node)["weight" if node.target is LINEAR else "w1"])
    return int(w.shape[1]) if w is not None and w.dim() == 2 else None


def _fold(w: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """w · diag(g): the norm's weight moved into the projection's columns (computed in fp32, rounded once)."""
    return (w.float() * g.float()[None, :]).to(w.dtype)
