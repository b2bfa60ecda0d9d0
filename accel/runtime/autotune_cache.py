"""Per-shape kernel selection by measurement, with a persistent, versioned cache.

A launcher that has several ways to compute the same thing (a GEMV, a split-K kernel, a tiled GEMM, cuBLAS)
describes each as a JSON-able config dict and calls :func:`tune`. The first time a key is seen, every
candidate runs on random data of the real shape, timed as it runs in a CUDA graph with a cold L2
(:func:`measure_us`); the close contenders are timed twice more and the fastest by median is kept; after that the
cache answers. The key is explicit: kernel name, a hash of the kernel sources, the
shape, dtype, compute capability and card name, Triton and torch versions. Entries live in a table tagged with
``CACHE_VERSION``: bump it whenever the meaning of a stored config changes.

``ACCEL_AUTOTUNE=0`` skips measurement (each launcher's heuristic default is used);
``ACCEL_AUTOTUNE_CACHE=0`` keeps results in memory only; otherwise they persist in a JSON file
(default ``~/.cache/accel/autotune.json``).

Launchers run at trace time inside Inductor's fake-tensor tracing; :func:`real_mode` steps outside it so the
measurement runs on real device tensors.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch

from accel import envs
from accel.runtime.progress import Progress

log = logging.getLogger("accel.autotune")

CACHE_VERSION = 1
_TABLE = f"v{CACHE_VERSION}"


def source_hash(*fns: Any) -> str:
    """A short hash over the source of Triton kernels (``JITFunction.src``) or plain Python functions."""
    h = hashlib.sha256()
    for fn in fns:
        src = getattr(fn, "src", None)
        if src is None:
            fn = getattr(fn, "fn", fn)
            try:
                import inspect

                src = inspect.getsource(fn)
            except (OSError, TypeError):
                src = repr(fn)
        h.update(src.encode())
    return h.hexdigest()[:16]


def _versions() -> str:
    try:
        import triton

        tv = triton.__version__
    except ImportError:
        tv = "none"
    return f"torch{torch.__version__.split('+')[0]}-triton{tv}"


def make_key(kernel: str, src_hash: str, shape: Iterable[int], dtype: torch.dtype, device: torch.device) -> str:
    cc = "cpu"
    if device.type == "cuda":
        # the card, not just its architecture: an H100 and an H200 (sm90 both) differ in bandwidth
        major, minor = torch.cuda.get_device_capability(device)
        cc = f"sm{major}{minor}-{torch.cuda.get_device_name(device).replace(' ', '_')}"
    dims = "x".join(str(int(s)) for s in shape)
    return f"{kernel}|{src_hash}|{dims}|{str(dtype).replace('torch.', '')}|{cc}|{_versions()}"


class AutotuneCache:
    """A JSON file of ``{"v<CACHE_VERSION>": {key: {"config": ..., "us": {...}}}}``; ``path=None`` is memory only."""

    def __init__(self, path: Path | None):
        self.path = path
        self._lock = threading.Lock()
        self._entries: dict[str, dict] = {}
        if path is not None and path.exists():
            try:
                self._entries = json.loads(path.read_text()).get(_TABLE, {})
            except (OSError, ValueError) as e:
                log.warning("accel: ignoring unreadable autotune cache %s (%s)", path, e)

    def lookup(self, key: str) -> dict | None:
        entry = self._entries.get(key)
        return None if entry is None else entry["config"]

    def store(self, key: str, config: dict, timings_us: dict[str, float]) -> None:
        with self._lock:
            self._entries[key] = {"config": config, "us": timings_us}
            if self.path is None:
                return
            # Merge with what other processes wrote since we loaded, then replace the file atomically.
            on_disk: dict = {}
            if self.path.exists():
                try:
                    on_disk = json.loads(self.path.read_text())
                except (OSError, ValueError):
                    on_disk = {}
            on_disk.setdefault(_TABLE, {}).update(self._entries)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".autotune-")
            with os.fdopen(fd, "w") as f:
                json.dump(on_disk, f, indent=1, sort_keys=True)
            os.replace(tmp, self.path)

    def __len__(self) -> int:
        return len(self._entries)


_cache: AutotuneCache | None = None


def get_cache() -> AutotuneCache:
    global _cache
    path = envs.ACCEL_AUTOTUNE_CACHE()
    if _cache is None or _cache.path != path:
        _cache = AutotuneCache(path)
    return _cache


@contextlib.contextmanager
def real_mode():
    """Leave fake-tensor / functionalization tracing for the duration (to allocate and time real tensors)."""
    from torch._subclasses.fake_tensor import unset_fake_temporarily
    from torch.utils._python_dispatch import _disable_current_modes

    with unset_fake_temporarily(), _disable_current_modes(), torch.no_grad():
        yield


def config_name(cfg: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in cfg.items())


_L2_FLUSH_BYTES = 128 << 20  # over twice the 50-60 MB L2 of an H100/H200
_REPS = 8
# A timing is the difference of two replays; where the one with the kernels comes out no longer than the flushes
# alone (noise), it is taken again, up to this many times in all. Clamped to 0 instead, such a timing had won
# tunings of 1B decode shapes (results/autotune_cache_s14run4_*: two int4 GEMVs at "0.0 µs").
_TRIES = 3
# The runoff: candidates whose first timing is within RUNOFF_MARGIN of the best are timed RUNOFF_ROUNDS more times,
# in turn, and ranked by the median of their timings. One cold-L2 timing of a few-µs kernel is the difference of two
# replays dominated by the flush (about 50 times longer), so it carries noise as large as the gaps between the best
# tiles: two tunings of the same code on one H100 chose 1B o projections of 4.1 and 5.3 µs (session 12, notes/perf.md).
RUNOFF_MARGIN = 0.10
RUNOFF_ROUNDS = 2


def _graph_ms(fn: Callable[[], Any], replays: int = 7) -> float:
    """Median milliseconds of one replay of a CUDA graph that captured ``fn``."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()  # warm-up (allocations, lazy init) outside the capture
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    times = []
    for _ in range(replays):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def measure_us(run: Callable[[], Any]) -> float:
    """Device microseconds of one ``run()`` with a cold L2, as it runs inside a CUDA graph.

    The candidates are captured in a CUDA graph and replayed, so host launch cost (larger than a decode-sized
    kernel, and larger still through ``wrap_triton``'s tracing dispatch) is not measured; each run follows an
    L2-flushing memset, whose own time is measured separately and subtracted. A runner that launches its kernel
    several times (its ``launches`` attribute: the tuner's PDL chain, ``accel.runtime.kernels.utils.pdl_chain``) is
    timed a launch. Falls back to ``triton.testing.do_bench`` for a runner that cannot be captured.
    """
    from accel.runtime.kernels.utils import direct_launches

    launches = getattr(run, "launches", 1)

    flush = torch.empty(_L2_FLUSH_BYTES // 4, dtype=torch.int32, device="cuda")

    def flushed():
        for _ in range(_REPS):
            flush.zero_()
            run()

    def flush_only():
        for _ in range(_REPS):
            flush.zero_()

    with direct_launches():
        run()  # compile (or fail) before capture
        try:
            for _ in range(_TRIES):
                ms = _graph_ms(flushed) - _graph_ms(flush_only)
                if ms > 0:
                    return ms / _REPS / launches * 1e3
        except RuntimeError:
            import triton.testing

            torch.cuda.synchronize()
            return triton.testing.do_bench(run, warmup=5, rep=20, return_mode="median") / launches * 1e3
    # no replay with the kernels outlasted the flushes alone: this timing is noise, and a kernel must not win on it
    log.info("accel: autotune: a candidate's timing stayed within the L2 flush's noise %d times", _TRIES)
    return math.inf


def _time_into(runs: dict[str, list[float]], key: str, cfg: dict, make_runner: Callable[[dict], Callable[[], Any]]):
    """Append one :func:`measure_us` timing of ``cfg`` to ``runs[its name]``; a config that fails is logged, and a
    config that never ran is not a candidate."""
    try:
        us = measure_us(make_runner(cfg))
    except Exception as e:  # a config that does not compile or fit is simply not a candidate
        log.info("accel: autotune %s: candidate %s failed: %s", key, cfg, e)
        torch.cuda.synchronize()
        return
    runs.setdefault(config_name(cfg), []).append(us)


def _precompile(candidates: Sequence[dict], make_runner: Callable[[dict], Callable[[], Any]], bar: Progress) -> None:
    """Compile every candidate before any is timed, on ``ACCEL_COMPILE_THREADS`` threads (none when 1): a
    candidate's first launch compiles its Triton kernels (0.4-0.6 s each on a CPU core), and Triton's compiler and
    ptxas release the GIL (``benchmarks/compile_threads.py``: 1.9-2.1x on two threads). The runners are made here,
    on the tuning thread (a make_runner may make its shared inputs on its first call), and run on the workers under
    ``compile_only`` and ``direct_launches`` (as :func:`measure_us` launches them, so that the timing finds each
    kernel compiled): they compile and launch no Triton kernel. A candidate that fails here is left for the timing
    pass to report."""
    workers = min(envs.ACCEL_COMPILE_THREADS(), len(candidates))
    if workers < 2:
        return
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from accel.runtime.kernels.utils import compile_only, direct_launches

    device = torch.cuda.current_device()
    runners = []
    for cfg in candidates:
        try:
            runners.append(make_runner(cfg))
        except Exception:  # noqa: BLE001 - reported by the timing pass
            continue

    def build(run: Callable[[], Any]) -> None:
        try:
            with torch.cuda.device(device), direct_launches(), compile_only():  # as measure_us launches them
                run()
        except Exception:  # noqa: BLE001 - reported by the timing pass
            pass

    bar.total += len(runners)
    with ThreadPoolExecutor(workers, thread_name_prefix="accel-compile") as pool:
        for _ in as_completed([pool.submit(build, run) for run in runners]):
            bar.update(note="compile")


def _short(key: str) -> str:
    """A tuning key as a progress bar names it: the kernel and the shape (no source hash, device or versions)."""
    parts = key.split("|")
    return " ".join(parts[i] for i in (0, 2) if i < len(parts))


def tune(
    key: str,
    candidates: Sequence[dict],
    make_runner: Callable[[dict], Callable[[], Any]],
    *,
    default: dict | None = None,
    refine: Callable[[list[dict]], list[dict]] | None = None,
) -> dict:
    """Return the fastest of ``candidates`` for ``key``, measuring on a miss.

    ``make_runner(cfg)`` is called inside :func:`real_mode` and returns a zero-argument callable that launches
    the candidate once on real inputs of the right shapes (:func:`measure_us` times it); a candidate whose
    runner raises is skipped (and logged). ``refine(ranked)``, given the timed candidates fastest first, may
    return more configs (variants of the leaders), which are timed in turn and compete with the rest. The
    candidates within ``RUNOFF_MARGIN`` of the fastest are timed again (``RUNOFF_ROUNDS`` rounds) and ranked by
    their median. With tuning disabled, or when no device is present, ``default`` (else the first candidate) is
    returned unmeasured.
    """
    default = dict(default if default is not None else candidates[0])
    if len(candidates) == 1 or not envs.ACCEL_AUTOTUNE() or not torch.cuda.is_available():
        return default
    cache = get_cache()
    hit = cache.lookup(key)
    if hit is not None:
        return hit
    runs: dict[str, list[float]] = {}
    t0 = time.perf_counter()
    candidates = list(candidates)
    with real_mode(), Progress(len(candidates), f"accel: tuning {_short(key)}") as bar:
        _precompile(candidates, make_runner, bar)
        for cfg in candidates:
            _time_into(runs, key, cfg, make_runner)
            bar.update()
        if refine is not None:
            ranked = sorted((c for c in candidates if config_name(c) in runs), key=lambda c: runs[config_name(c)][0])
            more = [c for c in refine(ranked) if c not in candidates]
            if more:
                bar.total += len(more)
                _precompile(more, make_runner, bar)
                for cfg in more:
                    _time_into(runs, key, cfg, make_runner)
                    bar.update(note="refine")
                candidates += more
        first = {name: ts[0] for name, ts in runs.items()}
        close = [c for c in candidates if first.get(config_name(c), math.inf) <= min(first.values(), default=0.0)
                 * (1.0 + RUNOFF_MARGIN)]
        if len(close) > 1:
            bar.total += RUNOFF_ROUNDS * len(close)
            for _ in range(RUNOFF_ROUNDS):
                for cfg in close:
                    _time_into(runs, key, cfg, make_runner)
                    bar.update(note="runoff")
    timings = {name: round(sorted(ts)[len(ts) // 2], 3) for name, ts in runs.items()}
    if not timings:
        log.warning("accel: autotune %s: every candidate failed; using the default %s", key, default)
        return default
    best_name = min(timings, key=timings.get)
    best = next(c for c in candidates if config_name(c) == best_name)
    cache.store(key, dict(best), timings)
    log.info("accel: tuned %s in %.1fs -> %s (%.1f us)", key, time.perf_counter() - t0, best_name, timings[best_name])
    return dict(best)
