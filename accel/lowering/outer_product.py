"""OuterProductPass: a matmul whose inner dimension is 1 as a broadcast multiply.

Transformers' rotary embeddings compute their angles as ``inv_freq[None, :, None] @ position_ids[:, None, :]``, a
[B, D/2, 1] @ [B, 1, S] matmul: an outer product. Inductor hands every matmul to cuBLAS, so a decode step pays a
cuBLAS launch for it (3.2–3.6 µs on an H100, the longest of the kernels at the start of a 1B step), and a kernel
boundary between it and the cos / sin that follow. Rewritten as::

    freqs = a * b                      # [..., M, 1] * [..., 1, N] broadcasts to [..., M, N]

it is a pointwise op that Inductor fuses into its neighbours: one launch fewer, and the kernels before the first
rotary embedding took about 3 µs less (``benchmarks/results/profile_decode_1b_quant_s12run4_*``, the int4 step with
and without; the whole step's 714 µs moved within noise). The result is exactly eager's: each output is the one
product a[m]·b[n], rounded once either way (cuBLAS adds it to a zero accumulator). Matched on a matmul of two
floating tensors of one dtype, both of rank 2 or more, with a static inner dimension of 1 and an output of that same
dtype (under autocast a matmul may compute in another dtype: left alone).
"""
from __future__ import annotations

import operator

import torch.fx as fx

from accel.compiler import fx_utils as fu
from accel.compiler.context import CompileContext
from accel.compiler.pass_base import AccelPass
from accel.runtime.kernels.utils import static_int


def _outer_operands(node: fx.Node) -> tuple[fx.Node, fx.Node] | None:
    """(a, b) of a matmul that is an outer product as described above, else None."""
    if not fu.is_op(node, "matmul"):
        return None
    a, b = fu.arg(node, 0, "input"), fu.arg(node, 1, "other")
    ta, tb, out = fu.tensor_meta(a), fu.tensor_meta(b), fu.tensor_meta(node)
    if ta is None or tb is None or out is None or ta.dim() < 2 or tb.dim() < 2:
        return None
    if not ta.dtype.is_floating_point or not (ta.dtype == tb.dtype == out.dtype):
        return None
    if static_int(ta.shape[-1]) != 1 or static_int(tb.shape[-2]) != 1:
        return None
    return a, b


class OuterProductPass(AccelPass):
    name = "outer_product"

    def __call__(self, gm: fx.GraphModule, ctx: CompileContext) -> int:
        count = 0
        for node in list(gm.graph.nodes):
            found = _outer_operands(node)
            if found is None:
                continue
            a, b = found
            out = ctx.call(operator.mul, (a, b), like=node)
            node.replace_all_uses_with(out)
            gm.graph.erase_node(node)
            shape = "x".join(str(s) for s in fu.tensor_meta(out).shape)
            ctx.matched("matmul", "outer_product", out, f"inner dimension 1, out {shape}")
            count += 1
        return count
