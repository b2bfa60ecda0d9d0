"""Scratch (session 27): decode.py with rope_attention_append on or off (fuse_kv_update.INTO_ATTENTION).

python .autotune/decode_into.py on|off <decode.py args>
"""
import runpy
import sys

on = sys.argv.pop(1) == "on"
sys.path.insert(0, ".")
import accel.lowering.fuse_kv_update as fkv  # noqa: E402

fkv.INTO_ATTENTION = on
print(f"decode_into INTO_ATTENTION={on}", flush=True)
sys.argv = ["benchmarks/decode.py", *sys.argv[1:]]
runpy.run_path("benchmarks/decode.py", run_name="__main__")
