"""ReplaceLinearPass: every remaining linear with a parameter weight → ``accel::linear``.

Before (GPT-2 Conv1D)::

    view = x.view(-1, 768);  addmm = torch.addmm(b, view, w);  out = addmm.view((2, 8, 768))

After::

    t = torch.t(w);  out = torch.ops.accel.linear(x, t, b)

On the GPU ``accel::linear`` picks a GEMV, split-K, tiled Triton GEMM or cuBLAS per shape (by measurement
when tuning is on); on CPU it is ``F.linear``. Runs after the FFN and merge passes, which take their own linears.
"""
from __future__ import annotations

import torch.fx as fx

from accel.compiler import fx_utils as fu
from accel.compiler.context import CompileContext
from accel.compiler.pass_base import AccelPass
from accel.lowering.weights import weight_nk
from accel.patterns.linear import find_linears
from accel.runtime.ops import LINEAR


class ReplaceLinearPass(AccelPass):
    name = "replace_linear"

    def __call__(self, gm: fx.GraphModule, ctx: CompileContext) -> int:
        count = 0
        for m in find_linears(gm, ctx):
            w = weight_nk(ctx, m.weight, m.layout, m.out)
            out = ctx.call(LINEAR, (m.x, w, m.bias), like=m.out)
            m.out.replace_all_uses_with(out)
            fu.erase_if_dead(m.nodes)
            ctx.matched("linear", m.pattern, out)
            count += 1
        return count
