"""Every kernel config the launchers produce compiles for sm_90 with the argument types Inductor uses (Python
floats as fp64 scalars). Runs on CPU: Triton's NVIDIA backend and ptxas need no GPU. This is the check that
a kernel passing the interpreter also compiles inside Inductor's generated code (a Python-float scale once
broke the attention kernel there: an fp64 scalar turned its fp32 accumulators into fp64)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton.backends.nvidia")


def test_launches_compile_for_sm90_as_inductor_types_them():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    root = Path(__file__).resolve().parents[2]
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, str(Path(__file__).with_name("sm90_compile.py"))], env=env,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    launches, failed = (int(w) for w in out.stdout.split("\n")[-2].replace(",", "").split()[::2][:2])
    assert failed == 0 and launches >= 10, out.stdout  # attention prefill/decode/reduce, GEMV, GEMM, epilogues
