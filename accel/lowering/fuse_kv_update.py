"""FuseKVUpdatePass: a layer's rotary embedding and static KV-cache write → one ``accel::rope_kv_update``.

Before (Llama with transformers' StaticCache, after fuse_attention)::

    q_embed = q * cos + cat((-q[..., 32:], q[..., :32]), -1) * sin
    k_embed = k * cos + cat((-k[..., 32:], k[..., :32]), -1) * sin
    keys.index_copy_(2, cache_position, k_embed)
    values.index_copy_(2, cache_position, v)
    out = accel.attention(q_embed, keys, values, mask, scale, False)

After::

    q_embed = accel.rope_kv_update(q, k, v, cos, sin, keys, values, cache_position)   # mutates keys, values
    out = accel.attention(q_embed, keys, values, mask, scale, False)

On the GPU the op is one Triton kernel (``runtime/kernels/rope.py``) instead of Inductor's rotation, cache-write and
copy-back kernels. Matched only in exactly this form: both cache writes along dim 2 at the same positions, k and q
rotated by the same cos / sin, nothing else reading the rotated tensors.
"""
from __future__ import annotations

import torch.fx as fx

from accel.compiler import fx_utils as fu
from accel.compiler.context import CompileContext
from accel.compiler.pass_base import AccelPass
from accel.patterns.rope import match_rope
from accel.runtime.ops import ATTENTION, ROPE_KV_UPDATE


def _cache_write(cache: fx.Node, attention: fx.Node, order: dict[fx.Node, int]) -> fx.Node | None:
    """The ``cache.index_copy_(2, positions, src)`` before ``attention`` whose result nobody reads, if unique
    (``order``: the graph's nodes by position)."""
    writes = [u for u in cache.users if u.op == "call_method" and u.target == "index_copy_" and u.args[0] is cache]
    if len(writes) != 1 or writes[0].users:
        return None
    w = writes[0]
    dim = fu.arg(w, 1, "dim")
    if dim not in (2, -2) or len(w.args) != 4 or order[w] > order[attention]:
        return None
    return w


class FuseKVUpdatePass(AccelPass):
    name = "fuse_kv_update"

    def __call__(self, gm: fx.GraphModule, ctx: CompileContext) -> int:
        count = 0
        # positions of the nodes as Dynamo made them: rewrites only erase nodes and insert ones never looked up here
        order = {n: i for i, n in enumerate(gm.graph.nodes)}
        for node in list(gm.graph.nodes):
            if node.target is not ATTENTION:
                continue
            q_embed, keys, values = node.args[:3]
            if not all(isinstance(t, fx.Node) and t.op == "placeholder" for t in (keys, values)):
                continue  # not a static cache read in full
            kw, vw = _cache_write(keys, node, order), _cache_write(values, node, order)
            if kw is None or vw is None or kw.args[2] is not vw.args[2]:
                continue
            qm = match_rope(q_embed) if len(q_embed.users) == 1 else None
            km = match_rope(kw.args[3]) if len(kw.args[3].users) == 1 else None
            if qm is None or km is None or (qm.cos, qm.sin) != (km.cos, km.sin):
                ctx.fallback("attention", node, "KV-cache update: q / k not rotated by one rotate_half RoPE; "
                                                "left to Inductor")
                continue
            first = min(kw, vw, key=order.__getitem__)
            inputs = (qm.x, km.x, vw.args[3], qm.cos, qm.sin, kw.args[2])
            if any(isinstance(t, fx.Node) and order[t] > order[first] for t in inputs):
                continue  # q is rotated after the cache write: the op could not go where the write was
            new = ctx.call(ROPE_KV_UPDATE, (qm.x, km.x, vw.args[3], qm.cos, qm.sin, keys, values, kw.args[2]),
                           like=first)
            node.replace_input_with(q_embed, new)
            for n in (kw, vw, qm.out, km.out, *reversed(qm.nodes), *reversed(km.nodes)):
                if not n.users:
                    gm.graph.erase_node(n)
            ctx.matched("attention", "rope_kv_update", node, "rotary embedding and cache write in one kernel")
            count += 1
        return count
