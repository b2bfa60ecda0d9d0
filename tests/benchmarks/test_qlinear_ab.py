"""``benchmarks/qlinear_ab.py``: which configs one A/B times for a switch (``_variants``)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import qlinear_ab  # noqa: E402

from accel.runtime.kernels import qlinear as kq  # noqa: E402

WORDS = {"kernel": "gemv", "BLOCK_M": 1, "BLOCK_N": 8, "BLOCK_K": 4096, "SPLIT_K": 1, "SUB": 4, "num_warps": 4,
         "num_stages": 1}


def test_bf16x2_times_each_mode_against_off_with_the_tiles_twins():
    K = 4096  # one step a program: the tuner would also try 2 and 4 tiles of rows
    got = qlinear_ab._variants(WORDS, "BF16X2", K)
    assert kq._one_step(WORDS, K)
    assert [(on, c["TILES"], c["BF16X2"]) for on, c in got] == [
        (on, t, v) for t in (0, 2, 4) for on, v in ((False, 0), (True, 1), (True, 2), (True, 3))]
    split = {**WORDS, "SPLIT_K": 2}  # more than one step: no tiles twins
    assert [(on, c["BF16X2"]) for on, c in qlinear_ab._variants(split, "BF16X2", K)] == [
        (False, 0), (True, 1), (True, 2), (True, 3)]


def test_halves_times_off_then_on():
    got = qlinear_ab._variants({**WORDS, "SPLIT_K": 2}, "HALVES", 4096)
    assert [(on, c["HALVES"], c["TILES"]) for on, c in got] == [(False, False, 0), (True, True, 0)]
