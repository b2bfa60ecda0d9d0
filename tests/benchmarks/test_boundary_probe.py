"""``benchmarks/boundary_probe.py``'s chained GEMV, compiled for sm_90 (on the CPU: Triton's NVIDIA backend needs no
GPU) in each of its modes: the PTX holds what the mode claims to time. plain: no griddepcontrol; pdl: the trigger
before the wait; flag: the trigger, no wait, the counter polled with acquire loads and bumped by a release atomic;
none: the trigger and nothing to wait on."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton.backends.nvidia")

SCRIPT = """
import sys
sys.path.insert(0, sys.argv[1])
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from boundary_probe import MODES, _chain_gemv

sig = {"x_ptr": "*bf16", "w_ptr": "*bf16", "y_ptr": "*bf16", "cnt_ptr": "*i32", "k": "i32", "L": "i32",
       "N": "constexpr", "BLOCK_N": "constexpr", "MODE": "constexpr"}
for name, mode in MODES.items():
    src = ASTSource(_chain_gemv, sig, {"N": 1024, "BLOCK_N": 8, "MODE": mode}, {})
    ptx = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4}).asm["ptx"]
    ops = []
    for line in ptx.splitlines():
        line = line.strip()
        for op in ("griddepcontrol.launch_dependents", "griddepcontrol.wait", "ld.global.gpu.acquire",
                   "global.gpu.release.add"):
            if op in line:
                ops.append(op)
    print(name, ",".join(ops))
"""


def test_each_mode_compiles_to_the_chaining_it_times():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    bench = Path(__file__).resolve().parents[2] / "benchmarks"
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(bench)], env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    got = dict(line.split(" ", 1) if " " in line else (line, "") for line in out.stdout.strip().splitlines())
    trigger, wait = "griddepcontrol.launch_dependents", "griddepcontrol.wait"
    assert got["plain"] == ""
    assert got["pdl"] == f"{trigger},{wait}"
    assert got["none"] == trigger
    flag = got["flag"].split(",")
    assert flag[0] == trigger and wait not in flag
    # the poll (the loop's first read and its back edge's) before the arrival (an atom or, unused, a red)
    assert flag.count("ld.global.gpu.acquire") == 2 and flag[-1] == "global.gpu.release.add"
