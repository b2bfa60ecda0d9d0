"""AddSplitCountersPass: the tile counters that let split kernels finish in their last program.

A kernel split along its reduction (split-K quantized linears, split-KV decode attention) writes partial results,
and a second launch used to combine them. With a counter per output tile, each program of a tile counts itself in
after writing its partial, and the last to arrive combines them, applies the epilogue and sets the counter back to
zero (``linear._reduce_if_last``, ``attention._merge_splits``): one launch instead of two, the same result.

Before (a decode step)::

    out = torch.ops.accel.qlinear(x, q, s, None, None, "int8_weight_only", 128, "identity", False)
    o = torch.ops.accel.attention(q, k, v, mask, 0.125, False)

After::

    out = torch.ops.accel.qlinear(x, q, s, None, None, "int8_weight_only", 128, "identity", False,
                                  counters=accel_splitk_counters_7)
    o = torch.ops.accel.attention(q, k, v, mask, 0.125, False, counters=accel_splitk_counters_7)

The counters are one derived graph input of int32 zeros shared by every such node, as long as the largest weight
has rows or the largest attention has (batch row, KV head) pairs: kernels run one after another on the stream, and
a launch with more tiles than counters takes the second launch instead. Every launch leaves them zero, so the
graph only reads them (``accel.lowering.kernel_access_cache``); the one thing they forbid is running one compiled
graph on two streams at once (option ``reduce_splits_in_kernel``). Only where the Triton kernels run (CUDA): the
torch reference ignores them.
"""
from __future__ import annotations

import torch
import torch.fx as fx

from accel.compiler import fx_utils as fu
from accel.compiler.context import CompileContext
from accel.compiler.pass_base import AccelPass
from accel.runtime.kernels.utils import static_int
from accel.runtime.ops import ATTENTION, QLINEAR


def _runs_kernels(device: torch.device) -> bool:
    """Whether accel's ops run their Triton kernels on ``device`` (elsewhere they are the torch reference)."""
    return device.type == "cuda"


def _tiles(node: fx.Node, ctx: CompileContext) -> int | None:
    """How many counters ``node`` can use: a qlinear's weight rows, an attention's batch rows × KV heads."""
    a = fu.schema_args(node)
    if node.target is QLINEAR:
        weight = ctx.weight_value(a["qweight"])
        return None if weight is None else int(weight.shape[0])
    k = fu.tensor_meta(a["k"])
    if k is None or k.dim() != 4:
        return None
    b, hkv = static_int(k.shape[0]), static_int(k.shape[1])
    return None if b is None or hkv is None else b * hkv


class AddSplitCountersPass(AccelPass):
    name = "add_split_counters"

    def __call__(self, gm: fx.GraphModule, ctx: CompileContext) -> int:
        nodes, device = [], None
        for node in gm.graph.nodes:
            if node.target not in (QLINEAR, ATTENTION):
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
        counters = ctx.add_derived("splitk_counters", lambda: torch.zeros(size, dtype=torch.int32, device=device))
        for node, _ in nodes:
            node.kwargs = {**node.kwargs, "counters": counters}
        return len(nodes)
