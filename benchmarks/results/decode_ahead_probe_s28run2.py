"""Session 28 scratch: profile_decode.py with the word GEMVs' AHEAD as tuned (on) or stripped at launch (off: the
same tiles, each next tile's words loaded after x as before).

python .autotune/ahead_probe.py on|off <profile_decode.py args>
"""
import runpy
import sys

on = sys.argv.pop(1) == "on"
sys.path.insert(0, ".")
from accel.runtime.kernels import qlinear as kq  # noqa: E402

if not on:
    _launch = kq.launch

    def launch(cfg, *args, **kwargs):
        return _launch({k: v for k, v in cfg.items() if k != "AHEAD"}, *args, **kwargs)

    kq.launch = launch
print(f"ahead_probe AHEAD={'as tuned' if on else 'stripped'}", flush=True)
sys.argv = ["benchmarks/profile_decode.py", *sys.argv[1:]]
runpy.run_path("benchmarks/profile_decode.py", run_name="__main__")
