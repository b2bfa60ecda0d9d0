"""``benchmarks/decode.py``: the host's issue pace over the first and the last steps of the timed runs."""
import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import decode  # noqa: E402


def test_issue_pace_tells_a_host_held_back_from_a_slow_one():
    # a host issuing at 0.3 ms a step until its queue fills at step 100, then at the GPU's 0.7 ms
    held = [0.3e-3 * (i + 1) if i < 100 else 0.3e-3 * 100 + 0.7e-3 * (i - 99) for i in range(256)]
    slow = [0.7e-3 * (i + 1) for i in range(256)]
    assert decode.issue_pace([held, held, slow]) == {"host_ms_first32": 0.3, "host_ms_last32": 0.7}
    assert decode.issue_pace([slow]) == {"host_ms_first32": 0.7, "host_ms_last32": 0.7}
    pace = decode.issue_pace([held[:1]])  # too few steps: no pace
    assert math.isnan(pace["host_ms_first32"]) and math.isnan(pace["host_ms_last32"])
