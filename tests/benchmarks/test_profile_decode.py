"""``benchmarks/profile_decode.py --timeline`` and ``--sequence`` on a made-up profile: busy time counts overlapping
kernels once, gaps of the host (between CUDA-graph replays) stay out of the step's idle time, and the steps split at
them line up kernel by kernel."""
import os
import sys
import types

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import profile_decode  # noqa: E402


class _Profile:
    def __init__(self, spans):
        cuda = torch.autograd.DeviceType.CUDA
        self._events = [types.SimpleNamespace(time_range=types.SimpleNamespace(start=a, end=b), name=n,
                                              device_type=cuda) for a, b, n in spans]

    def events(self):
        return list(self._events)


def test_timeline_separates_the_steps_gaps_from_the_hosts(capsys):
    spans, t = [], 0.0
    for _ in range(5):
        spans.append((t, t + 1.0, "Memcpy HtoD"))  # the token's copy, then the host's wait before the replay
        t += 300.0
        spans += [(t, t + 10.0, "gemv"), (t + 5.0, t + 12.0, "gemv overlapping"), (t + 12.5, t + 20.0, "attention")]
        t += 120.0
    profile_decode.timeline(_Profile(spans), steps=5)
    line = capsys.readouterr().out.splitlines()[0]
    # per step: 12 + 7.5 us busy kernels + the copy's 1 us, one 0.5 us gap of its own, two host gaps
    assert "20 us busy + 0 us idle in 1 gaps" in line and "median 0.50 us" in line and "= 21 us" in line
    assert "9 gaps >= 20 us" in line


def test_sequence_averages_each_position_over_the_steps(capsys):
    spans, t = [], 0.0
    for step in range(4):
        t += 100.0  # the host's gap before each replay
        spans += [(t, t + 5.0 + step, "qkv"), (t + 5.5 + step, t + 7.5 + step, "rope"),
                  (t + 7.0 + step, t + 60.0, "lm_head")]  # the head starts 0.5 us before rope ends (as with PDL)
        t += 60.0
    profile_decode.sequence(_Profile(spans), first=1, last=1)
    lines = capsys.readouterr().out.splitlines()
    assert "4 steps of 3 kernels" in lines[0] and len(lines) == 3  # position 0, then the last one
    # 5 + 0..3 us, mean 6.5, all of it added to the step
    assert lines[1].split() == ["0", "6.50", "us", "0.00", "us", "6.50", "us", "qkv"]
    # the head adds its end past rope's: 60 - (7.5 + step) us
    assert lines[2].split()[:7] == ["2", "51.50", "us", "-0.50", "us", "51.00", "us"] and lines[2].endswith("lm_head")


def test_launch_gaps_skip_overlaps_and_the_hosts_gaps():
    spans = [(0.0, 10.0, "gemv"), (5.0, 12.0, "gemv overlapping"), (12.5, 20.0, "attention"),
             (60.0, 61.0, "next replay"), (61.25, 62.0, "rope")]
    gaps = profile_decode.launch_gaps(_Profile(spans))
    # the overlap leaves no gap, and 40 us before the next replay is the host's
    assert gaps == [(0.5, "gemv overlapping", "attention"), (0.25, "next replay", "rope")]


def test_decode_loop_times_decode_pys_loop_on_the_profiled_cache():
    """``--decode-loop``: decode.py's own loop (``run_decode`` at device position) on the profiled step's cache,
    reset and prefilled again: a time a token, and the cache's counter where the loop left it; a loop longer than
    the cache is refused."""
    import pytest

    from decode_model import build_model, make_step, prefilled_cache

    model, cfg = build_model("tiny", torch.float32, "cpu")
    cache = prefilled_cache(model, cfg, 8, 48, device="cpu")
    us = profile_decode.decode_loop_us(model, cfg, make_step("eager"), cache, 4, 1, runs=1, device="cpu")
    assert us > 0
    assert int(cache.layers[0].cumulative_length) == 32 + 4
    with pytest.raises(SystemExit, match="holds 48 rows"):
        profile_decode.decode_loop_us(model, cfg, make_step("eager"), cache, 20, 1, runs=1, device="cpu")
