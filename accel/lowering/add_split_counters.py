"""AddSplitCountersPass: the tile counters that let split-K quantized linears finish in their last program.

A qlinear kernel split along K writes fp32 partial sums, and a second launch (``linear._epilogue_kernel``) used to
add them up. With a counter per output tile, each program of a tile counts itself in after writing its partial,
and the last to arrive adds them up in the same order, applies the epilogue (bias, activation, residual) and sets
the counter back to zero (``linear._reduce_if_last``): one launch instead of two, the same bits.

Before (a decode step)::

    out = torch.ops.accel.qlinear(x, q, s, None, None, "int8_weight_only", 128, "identity", False)

After::

    out = torch.ops.accel.qlinear(x, q, s, None, None, "int8_weight_only", 128, "identity", False,
                                  counters=accel_splitk_counters_7)

The counters are one derived graph input of int32 zeros shared by every qlinear node, as long as the largest weight
has rows: kernels run one after another on the stream, and a launch with more tiles than counters takes the second
launch instead. Every launch leaves them zero, so the graph only reads them (``accel.lowering.kernel_access_cache``);
the one thing they forbid is running one compiled graph on two streams at once. Only where the Triton kernels run
(CUDA): the torch reference ignores them. Option ``reduce_splits_in_kernel`` (on by default).

Split-KV decode attention was given the same treatment (the last split of each KV head merging the partial states)
and measured slower than its second launch on an H100 (7.4 against 5.5 µs a launch in the tuner, 1B decode −2%), so
attention keeps its reduce kernel.
"""
from __future__ import annotations

import torch
import torch.fx as fx

from accel.compiler import fx_utils as fu
from accel.compiler.context import CompileContext
from accel.compiler.pass_base import AccelPass
from accel.runtime.ops import QLINEAR, runs_kernels


def _runs_kernels(device: torch.device) -> bool:
    """The ops' own rule (``ops.runs_kernels``), named here so that a test can let CPU graphs take counters while
    the ops still run their reference."""
    return runs_kernels(device)


def _tiles(node: fx.Node, ctx: CompileContext) -> int | None:
    """How many counters ``node`` can use: its weight's rows (a GEMV or skinny tile has at least one row)."""
    weight = ctx.weight_value(fu.schema_args(node)["qweight"])
    return None if weight is None else int(weight.shape[0])


class AddSplitCountersPass(AccelPass):
    name = "add_split_counters"

    def __call__(self, gm: fx.GraphModule, ctx: CompileContext) -> int:
        nodes, device = [], None
        for node in gm.graph.nodes:
            if node.target is not QLINEAR:
                continue
            val = fu.tensor_meta(node)
            tiles = _tiles(node, ctx)
            if val is None or tiles is None or not _runs_kernels(val.device):
                continue
            nodes.append((node, tiles))
            device = val.device
        if not nodes:
            return 0
        size = max(tiles for _, tiles in nodes)
        counters = ctx.add_derived("splitk_counters", lambda: torch.zeros(size, dtype=torch.int32, device=device),
                                   packable=False)  # the kernels write it
        for node, _ in nodes:
            node.kwargs = {**node.kwargs, "counters": counters}
        return len(nodes)
