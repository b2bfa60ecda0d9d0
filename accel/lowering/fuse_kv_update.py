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

transformers' StaticCache layers compute the positions from a per-layer length counter and advance it first::

    cache_position = torch.arange(S) + length
    length.add_(S)

When nothing reads the counter after its advance and B·S ≤ ``MAX_APPEND_ROWS`` (decode), both go into the op as
``accel.rope_kv_append(q, k, v, cos, sin, keys, values, length)``, whose single program reads the counter and
advances it; otherwise Inductor spends one more small kernel per layer on them.

With one new token a sequence (S = 1, a decode step), no causal flag and nothing else touching the caches, the append
and the attention become one op, whose split-KV attention kernel rotates q as it loads it, writes the new row from
the program whose key chunk holds it, and whose reduction kernel advances the counter (``INTO_ATTENTION``)::

    out = accel.rope_attention_append(q, k, v, cos, sin, keys, values, length, mask, scale)

One launch fewer per layer; on an H100's 1B Llama decode step the RoPE / cache launch cost about 2 µs a layer
(``benchmarks/results/decode_chain_probe_*_s27run3_*``: 546 → 514 µs a step with it removed, a probe).
"""
from __future__ import annotations

import torch
import torch.fx as fx

from accel.compiler import fx_utils as fu
from accel.compiler.context import CompileContext
from accel.compiler.pass_base import AccelPass
from accel.patterns.rope import match_rope
from accel.runtime.kernels.utils import static_int
from accel.runtime.ops import ATTENTION, ROPE_ATTENTION_APPEND, ROPE_KV_APPEND, ROPE_KV_UPDATE

MAX_APPEND_ROWS = 16  # B·S of the single-program append kernel: decode steps, never a prefill
# a decode step's append goes into the attention's launches (rope_attention_append); False keeps its own launch
INTO_ATTENTION = True


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


def _length_counter(positions, q: fx.Node, order: dict[fx.Node, int]) -> tuple[fx.Node, list[fx.Node]] | None:
    """(length, nodes the op replaces) when ``positions`` is ``arange(S) + length`` for a 0-d integer graph input
    ``length`` that one ``length.add_(S)`` advances after every other read of it (``q``: [B, H, S, D])."""
    shape = getattr(fu.tensor_meta(q), "shape", None)
    if shape is None or len(shape) != 4 or static_int(shape[0]) is None or static_int(shape[2]) is None:
        return None
    S = static_int(shape[2])
    if static_int(shape[0]) * S > MAX_APPEND_ROWS or not fu.is_op(positions, "add") or len(positions.args) != 2:
        return None
    for rng, length in (positions.args, reversed(positions.args)):
        if (isinstance(rng, fx.Node) and rng.op == "call_function" and rng.target is torch.arange
                and rng.args == (S,) and isinstance(length, fx.Node) and length.op == "placeholder"):
            break
    else:
        return None
    meta = fu.tensor_meta(length)
    if meta is None or meta.shape != () or meta.dtype not in (torch.int64, torch.int32):
        return None
    adds = [u for u in length.users if u.op == "call_method" and u.target == "add_"]
    if len(adds) != 1 or adds[0].args != (length, S) or adds[0].kwargs or adds[0].users:
        return None
    advance = adds[0]
    if any(order[u] > order[advance] for u in length.users if u is not advance):
        # Every other read of the counter comes before its advance, so it reads the value the op starts from (HF's
        # mask and rotary positions read the first layer's counter; they are the op's inputs, so computed before it).
        return None
    return length, [advance, positions, rng]  # arange goes too once nothing else reads it


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
            counter = _length_counter(kw.args[2], q_embed, order)
            if counter is None:
                op, where, replaced = ROPE_KV_UPDATE, kw.args[2], []
            else:
                op, (where, replaced) = ROPE_KV_APPEND, counter
            cos, sin = _rope_table(qm.cos), _rope_table(qm.sin)
            rope_args = (qm.x, km.x, vw.args[3], cos, sin, keys, values, where)
            into_attention = counter is not None and _into_attention(node, kw, vw, q_embed)
            if into_attention:
                fused = ctx.call(ROPE_ATTENTION_APPEND, (*rope_args, node.args[3], node.args[4]), like=node)
                node.replace_all_uses_with(fused)
                gm.graph.erase_node(node)
                node = fused
            else:
                node.replace_input_with(q_embed, ctx.call(op, rope_args, like=first))
            for n in (kw, vw, qm.out, km.out, *reversed(qm.nodes), *reversed(km.nodes), *replaced):
                if not n.users:
                    gm.graph.erase_node(n)
            fu.erase_if_dead([t for t in (qm.cos, qm.sin) if t not in (cos, sin)])
            ctx.matched("attention", "rope_kv_update", node, "rotary embedding and cache write in one kernel"
                        + ("" if counter is None else ", advancing the cache's length counter")
                        + (", in the attention's own launches" if into_attention else ""))
            count += 1
        return count


def _rope_table(node):
    """cos or sin as the rotary embedding computed it, without the per-layer views HF takes of it (``unsqueeze(1)``
    of a [B, S, D] table, an expand that only broadcasts): the ops take [B, S, D] and broadcast themselves, and
    Inductor computes a view's source once where it would copy each view for its kernel (16 copies of cos and sin,
    computed in four extra kernels, on the 1B decode step; session 35's dump)."""
    node = fu.broadcast_source(node)
    if fu.is_op(node, "unsqueeze") and fu.arg(node, 1, "dim") == 1 and fu.rank(node.args[0]) == 3:
        return node.args[0]
    return node


def _into_attention(attention: fx.Node, kw: fx.Node, vw: fx.Node, q_embed: fx.Node) -> bool:
    """Whether a decode step's ``rope_kv_append`` can move into its ``attention`` (``rope_attention_append``): one
    new token a sequence, no causal flag, and nothing but the cache writes and the attention touching the caches
    (the writes move down to the attention)."""
    if not INTO_ATTENTION:
        return False
    shape = getattr(fu.tensor_meta(q_embed), "shape", None)
    if shape is None or static_int(shape[2]) != 1 or fu.arg(attention, 5, "is_causal"):
        return False
    keys, values = attention.args[1], attention.args[2]
    return set(keys.users) == {kw, attention} and set(values.users) == {vw, attention}
