"""Scratch probe (session 27): the batch-1 decode step with the RoPE/cache launch removed (wrong outputs by design) or
attention forced to one split a KV head (no reduce launch; real outputs).

python .autotune/chain_probe.py MODE <profile_decode.py args>; MODE: base | norope | direct | both | nointo
"""
import runpy
import sys

mode = sys.argv.pop(1)
sys.path.insert(0, ".")
import accel.lowering.fuse_kv_update as fkv  # noqa: E402
import accel.runtime.kernels.attention as ka  # noqa: E402
from accel.runtime.ops import ROPE_KV_APPEND  # noqa: E402

if mode in ("norope", "both"):
    real_call = fkv.FuseKVUpdatePass.__call__

    def _call(self, gm, ctx):
        n = real_call(self, gm, ctx)
        for node in list(gm.graph.nodes):
            if node.target is ROPE_KV_APPEND:
                node.replace_all_uses_with(node.args[0])  # attention reads the unrotated q; no cache write
                gm.graph.erase_node(node)
        return n
    fkv.FuseKVUpdatePass.__call__ = _call

if mode in ("direct", "both"):
    real_run = ka._run

    def _run(cfg, *args):
        if cfg["kernel"] == "decode":
            cfg = {**cfg, "splits": 1}
        return real_run(cfg, *args)
    ka._run = _run

if mode == "nointo":  # session 27's rope_attention_append off: the append keeps its own launch
    fkv.INTO_ATTENTION = False

print(f"chain_probe mode={mode}", flush=True)
sys.argv = ["benchmarks/profile_decode.py", *sys.argv[1:]]
runpy.run_path("benchmarks/profile_decode.py", run_name="__main__")
