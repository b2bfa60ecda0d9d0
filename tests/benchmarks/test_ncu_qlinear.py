"""``benchmarks/ncu_qlinear.py``: the cases it is asked for are the ones it profiles, in order, and a malformed case
stops the run with a message that names it (a profiler run of the wrong kernels costs device time)."""
import os
import re
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "benchmarks"))
import ncu_qlinear  # noqa: E402


def test_cases_in_order_with_schemes_and_shapes():
    assert ncu_qlinear.parse_cases("int8:up:16, int4:down:1,int8:up:1") == [
        ("int8_weight_only", "up", 16), ("int4_weight_only", "down", 1), ("int8_weight_only", "up", 1)]
    assert ncu_qlinear.SHAPES == {"up": (14336, 4096), "down": (4096, 14336)}  # the 8B MLP shapes


@pytest.mark.parametrize("text", ["int3:up:1", "int8:gate:1", "int8:up:0", "int8:up", "int8:up:x", "int8:up:1:2"])
def test_malformed_case_is_named(text):
    with pytest.raises(SystemExit, match=re.escape(repr(text))):
        ncu_qlinear.parse_cases(f"int4:up:1,{text}")


def test_no_case():
    with pytest.raises(SystemExit, match="no case"):
        ncu_qlinear.parse_cases(" , ")
