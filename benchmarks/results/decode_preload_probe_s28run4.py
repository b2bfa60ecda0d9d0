"""Session 28 scratch: profile_decode.py with rope_attention_append's first key block loaded before the PDL wait
(attention.APPEND_PRELOAD on) or after the append as before (off).

python .autotune/preload_probe.py on|off <profile_decode.py args>
"""
import runpy
import sys

on = sys.argv.pop(1) == "on"
sys.path.insert(0, ".")
from accel.runtime.kernels import attention as ka  # noqa: E402

ka.APPEND_PRELOAD = on
print(f"preload_probe APPEND_PRELOAD={on}", flush=True)
sys.argv = ["benchmarks/profile_decode.py", *sys.argv[1:]]
runpy.run_path("benchmarks/profile_decode.py", run_name="__main__")
