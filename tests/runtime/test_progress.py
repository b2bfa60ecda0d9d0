"""``accel.runtime.progress``: a bar on a terminal, plain lines only when asked for, nothing for short work or when
turned off; and the quantization pass reports each linear and FFN node it looks at."""
import io

import pytest
import torch

from accel.runtime import progress
from tests.lowering.test_quantize_weights import Block
from tests.testing_backend import rewrite_only


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def no_wait(monkeypatch):
    monkeypatch.setattr(progress, "QUIET_S", 0.0)
    monkeypatch.setattr(progress, "LINE_EVERY_S", 0.0)


def _run(stream, steps=3):
    with progress.Progress(steps, "work", stream=stream) as bar:
        for i in range(steps):
            bar.update(note=f"item {i}")
    return stream.getvalue()


def test_bar_on_a_terminal(no_wait):
    out = _run(_Terminal())
    frames = out.split("\r")[1:]
    assert len(frames) == 4  # three updates and the final frame
    assert "1/3" in frames[0] and "item 0" in frames[0] and "3/3" in frames[-1] and out.endswith("\n")
    assert frames[-1].count("█") == progress.WIDTH


@pytest.mark.parametrize("mode,terminal,written", [("auto", False, False), ("0", True, False), ("1", False, True)])
def test_modes(no_wait, monkeypatch, mode, terminal, written):
    monkeypatch.setenv("ACCEL_PROGRESS", mode)
    out = _run(_Terminal() if terminal else io.StringIO())
    assert bool(out) == written
    if written:  # plain lines, one per update and the summary
        assert "\r" not in out and out.count("\n") == 4 and out.splitlines()[-1].startswith("work: 3/3 in ")


def test_short_work_stays_silent(monkeypatch):
    monkeypatch.setenv("ACCEL_PROGRESS", "1")
    assert _run(_Terminal()) == "" and _run(io.StringIO()) == ""  # well under QUIET_S


def test_bad_setting_is_named(monkeypatch):
    monkeypatch.setenv("ACCEL_PROGRESS", "yes")
    with pytest.raises(ValueError, match="ACCEL_PROGRESS"):
        progress.Progress(1, "work", stream=io.StringIO())


@pytest.mark.parametrize("scheme,desc", [("int8_weight_only", "int8_weight_only"),
                                         ("int4_weight_only", "int4_weight_only, GPTQ")])
def test_quantize_pass_reports_each_node(no_wait, monkeypatch, capsys, scheme, desc):
    monkeypatch.setenv("ACCEL_PROGRESS", "1")
    torch.manual_seed(0)
    rewrite_only(Block().eval(), torch.randn(2, 5, 64), options={"quantize": scheme, "group_size": 32})
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("accel: quantizing weights")]
    # the merged q/k linear, the FFN and the LM head (looked at, left out): three nodes, then the summary
    assert [ln.split(" in ")[0] for ln in lines] == [f"accel: quantizing weights ({desc}): {i}/3" for i in (1, 2, 3, 3)]
