"""``benchmarks/with_flags.py``: the switches are set before the script runs, the script sees its own arguments, and
a typo in a module, a name or a value stops the run with a message instead of measuring the unchanged code."""
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import with_flags  # noqa: E402

from accel.lowering import fuse_kv_update  # noqa: E402
from accel.runtime.kernels import qlinear  # noqa: E402

# a script that prints what it sees: the switches, as the benchmark would read them, and its arguments
SCRIPT = """import sys
from accel.lowering import fuse_kv_update
from accel.runtime.kernels import qlinear
print("seen", fuse_kv_update.INTO_ATTENTION, qlinear.GEMV_TILE_COUNTS, sys.argv[1:], __name__)
"""


def run(tmp_path, *settings, args=("--x", "1")):
    script = tmp_path / "show.py"
    script.write_text(SCRIPT)
    cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "with_flags.py"), *settings, "--", str(script), *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)


def test_the_script_runs_with_the_switches_set(tmp_path):
    into, counts = not fuse_kv_update.INTO_ATTENTION, (7,)  # values other than the defaults
    assert counts != qlinear.GEMV_TILE_COUNTS
    done = run(tmp_path, f"accel.lowering.fuse_kv_update.INTO_ATTENTION={into}",
               f"accel.runtime.kernels.qlinear.GEMV_TILE_COUNTS={counts}")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == [f"with_flags: accel.lowering.fuse_kv_update.INTO_ATTENTION = {into}",
                         f"with_flags: accel.runtime.kernels.qlinear.GEMV_TILE_COUNTS = {counts}"]
    assert lines[-1] == f"seen {into} {counts} ['--x', '1'] __main__"


def test_without_switches_the_defaults_stand(tmp_path):
    done = run(tmp_path)
    assert done.returncode == 0, done.stderr
    want = f"seen {fuse_kv_update.INTO_ATTENTION} {qlinear.GEMV_TILE_COUNTS} ['--x', '1'] __main__"
    assert done.stdout.splitlines()[-1] == want


@pytest.mark.parametrize("argv,message", [
    (["accel.lowering.fuse_kv_update.INTO_ATTENTON=False", "--", "x.py"], "has no INTO_ATTENTON"),
    (["accel.lowering.fuse_kv_update.INTO_ATTENTION=Flase", "--", "x.py"], "not a Python literal"),
    (["INTO_ATTENTION=False", "--", "x.py"], "is not MODULE.NAME=VALUE"),
    (["accel.lowering.fuse_kv_update.INTO_ATTENTION", "--", "x.py"], "is not MODULE.NAME=VALUE"),
    (["accel.lowering.fuse_kv_update.INTO_ATTENTION=False", "x.py"], "usage"),
    (["accel.lowering.fuse_kv_update.INTO_ATTENTION=False", "--"], "no script"),
])
def test_mistakes_stop_the_run_with_a_message(argv, message):
    with pytest.raises(SystemExit, match=message):
        with_flags.apply(with_flags.parse(argv)[0])
