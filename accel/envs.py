"""Every environment variable accel reads, in one place. Each flag is named after its variable.

``python -m accel env`` prints them all with their current values.
"""
from __future__ import annotations

import os
from pathlib import Path


def _str(name: str, default: str | None = None) -> str | None:
    v = os.environ.get(name)
    return v if v not in (None, "") else default


def _int(name: str, default: int) -> int:
    v = os.environ.get(name)
    try:
        return int(v) if v not in (None, "") else default
    except ValueError:
        raise ValueError(f"environment variable {name}={v!r} must be an integer") from None


def ACCEL_DEBUG() -> int:
    """Log level: 0 warnings only, 1 per-graph summary, 2 per-pass matches and fallbacks, 3 graph code too."""
    return _int("ACCEL_DEBUG", 0)


def ACCEL_DUMP_DIR() -> str | None:
    """Directory for numbered before/after graphs, the report and Inductor's generated code (as `dump_dir`)."""
    return _str("ACCEL_DUMP_DIR")


def ACCEL_DUMP_PASSES() -> set[str] | None:
    """Comma-separated pass names whose before/after graphs are dumped; unset dumps every pass."""
    v = _str("ACCEL_DUMP_PASSES")
    return {p.strip() for p in v.split(",") if p.strip()} if v else None


def ACCEL_AUTOTUNE_CACHE() -> Path | None:
    """Autotune cache file; "0" keeps tuning results in memory only. Default: ~/.cache/accel/autotune.json."""
    v = _str("ACCEL_AUTOTUNE_CACHE")
    if v == "0":
        return None
    if v:
        return Path(v).expanduser()
    base = Path(_str("XDG_CACHE_HOME", str(Path.home() / ".cache")))
    return base / "accel" / "autotune.json"


def ACCEL_AUTOTUNE() -> bool:
    """"0" skips on-device measurement and takes each kernel's heuristic default (deterministic, no tuning time)."""
    return _str("ACCEL_AUTOTUNE", "1") != "0"


def ACCEL_PROGRESS() -> str:
    """Progress of long compile-time work (quantizing, tuning) on stderr: "auto" a bar when stderr is a terminal,
    "1" also plain lines elsewhere, "0" nothing."""
    v = _str("ACCEL_PROGRESS", "auto")
    if v not in ("auto", "0", "1"):
        raise ValueError(f"environment variable ACCEL_PROGRESS={v!r} must be auto, 0 or 1")
    return v


def ACCEL_COMPILE_THREADS() -> int:
    """Threads that compile a shape's tuning candidates before any is timed (Triton's compiler and ptxas run outside
    the GIL); 1, the default, compiles each as it is first timed."""
    n = _int("ACCEL_COMPILE_THREADS", 1)
    if n < 1:
        raise ValueError(f"environment variable ACCEL_COMPILE_THREADS={n} must be at least 1")
    return n


def ACCEL_TUNE_CHAIN() -> int:
    """Launches of each decode GEMV candidate that the tuner times back to back, each on its own copy of the
    weights and launched with programmatic dependent launch, when the compile uses PDL (default 3); 1 times each
    candidate alone."""
    n = _int("ACCEL_TUNE_CHAIN", 3)
    if n < 1:
        raise ValueError(f"environment variable ACCEL_TUNE_CHAIN={n} must be at least 1")
    return n


ALL = {
    "ACCEL_DEBUG": ACCEL_DEBUG,
    "ACCEL_DUMP_DIR": ACCEL_DUMP_DIR,
    "ACCEL_DUMP_PASSES": ACCEL_DUMP_PASSES,
    "ACCEL_AUTOTUNE_CACHE": ACCEL_AUTOTUNE_CACHE,
    "ACCEL_AUTOTUNE": ACCEL_AUTOTUNE,
    "ACCEL_PROGRESS": ACCEL_PROGRESS,
    "ACCEL_COMPILE_THREADS": ACCEL_COMPILE_THREADS,
    "ACCEL_TUNE_CHAIN": ACCEL_TUNE_CHAIN,
}
