"""Progress reports for long compile-time work: quantizing weights (GPTQ takes tens of seconds on a CPU) and tuning
kernels on the GPU (a fresh cache times every candidate of every shape).

``ACCEL_PROGRESS`` chooses: ``auto`` (default) draws a bar on stderr when stderr is a terminal; ``1`` also writes
plain lines where it is not (a log file, a notebook's captured stream): one every ``LINE_EVERY_S`` seconds and one at
the end; ``0`` writes nothing. Work that ends within ``QUIET_S`` seconds writes nothing either, so a warm compile
stays silent.

    with Progress(len(nodes), "accel: quantizing weights") as bar:
        for node in nodes:
            ...
            bar.update()
"""
from __future__ import annotations

import sys
import time
from typing import TextIO

from accel import envs

QUIET_S = 1.0  # nothing is written before the work has run this long
LINE_EVERY_S = 5.0  # plain-line mode: at most one line per this many seconds
WIDTH = 24  # the bar's cells


class Progress:
    """``total`` steps of work named ``desc``; ``update(note=...)`` after each. A context manager: leaving it ends the
    line (and, in plain-line mode, writes the summary)."""

    def __init__(self, total: int, desc: str, stream: TextIO | None = None):
        self.total, self.desc, self.done, self.note = max(total, 0), desc, 0, ""
        self.stream = stream if stream is not None else sys.stderr
        mode = envs.ACCEL_PROGRESS()
        tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.mode = "off" if mode == "0" or self.total == 0 else "bar" if tty else "lines" if mode == "1" else "off"
        self.t0 = time.perf_counter()
        self._last_line = self.t0
        self._drawn = False

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1, note: str = "") -> None:
        self.done = min(self.total, self.done + n)
        self.note = note
        if self.mode == "off":
            return
        now = time.perf_counter()
        if now - self.t0 < QUIET_S:
            return
        if self.mode == "bar":
            self._write("\r" + self._bar(now) + "\x1b[K")  # clear what a longer note left behind
            self._drawn = True
        elif now - self._last_line >= LINE_EVERY_S:
            self._write(self._line(now) + "\n")
            self._last_line = now

    def close(self) -> None:
        if self.mode == "off":
            return
        now = time.perf_counter()
        if now - self.t0 < QUIET_S and not self._drawn:
            return
        if self.mode == "bar":
            self._write("\r" + self._bar(now) + "\x1b[K\n")
        else:
            self._write(self._line(now) + "\n")
        self.mode = "off"  # closed: later updates and closes write nothing

    def _bar(self, now: float) -> str:
        filled = WIDTH * self.done // self.total
        bar = "█" * filled + "·" * (WIDTH - filled)
        note = f"  {self.note}" if self.note else ""
        return f"{self.desc} {bar} {self.done}/{self.total} {now - self.t0:.0f}s{note}"

    def _line(self, now: float) -> str:
        note = f" ({self.note})" if self.note else ""
        return f"{self.desc}: {self.done}/{self.total} in {now - self.t0:.0f}s{note}"

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()
