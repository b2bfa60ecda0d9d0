"""Shared benchmark plumbing: environment record, timing, bandwidth probe, table printing, JSON results.

Every script checks correctness before timing, prints a table last and writes the same rows as JSON under
benchmarks/results/ (or $OUT when set, as on the lent GPU machine), tagged with card, versions, commit, date.
"""
from __future__ import annotations

import datetime
import gc
import json
import time
import os
import platform
import resource
import subprocess
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def environment() -> dict:
    """Card, versions, commit and date, recorded with every result."""
    import triton

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent).stdout.strip() or "unknown"
    except OSError:
        commit = "unknown"
    try:
        import transformers

        tf = transformers.__version__
    except ImportError:
        tf = None
    return {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu",
        "torch": torch.__version__,
        "triton": triton.__version__,
        "transformers": tf,
        "cuda": torch.version.cuda,
        "commit": commit,
        **accel_identity(),
        "cpus_allowed": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def pin_to_cpu(cpu: int | None) -> None:
    """Run this process (its threads to come included) on CPU ``cpu`` only; None leaves it as it is. On the lent
    GPU machines an unpinned process ran its Python about 2× slower at times, whatever it launched (session 21,
    ``results/host_profile_1b_int4_pin*_s21run13_*``), which made batch-1 decode host-bound: pinned, the host's time
    a step was steady. Results record how many CPUs the process may use (``environment``'s ``cpus_allowed``)."""
    if cpu is None:
        return
    allowed = os.sched_getaffinity(0)
    if cpu not in allowed:
        raise SystemExit(f"--pin {cpu}: this process may run on CPUs {sorted(allowed)} only")
    os.sched_setaffinity(0, {cpu})


def accel_identity() -> dict:
    """Which accel ran: where it was imported from and the hash of its sources (the hash Inductor's cache keys
    carry). The commit alone does not say: on the lent GPU machine the working tree travels as files over an older
    checkout, and a baseline tree may be imported beside it (``use_accel_from``)."""
    import accel
    from accel.lowering.inductor import accel_source_hash

    return {"accel_path": str(Path(accel.__file__).resolve().parent), "accel_source_hash": accel_source_hash()}


def use_accel_from(tree: str | None) -> None:
    """Import accel from ``tree`` (a folder holding an ``accel`` package, e.g. ``git archive <commit> accel``
    unpacked) rather than this checkout, for an A/B of two trees in one GPU call; fails loudly if another accel is
    already imported or would be. None: leave the import as it is."""
    if tree is None:
        return
    import sys

    root = Path(tree).resolve()
    if not (root / "accel" / "__init__.py").is_file():
        raise SystemExit(f"--accel-from {tree}: no accel package there")
    if "accel" in sys.modules:
        if Path(sys.modules["accel"].__file__).resolve().parent == root / "accel":
            return  # applied already (a script that imports another script's module-level call)
        raise SystemExit("--accel-from: accel was imported before the option could take effect")
    sys.path.insert(0, str(root))
    import accel

    if Path(accel.__file__).resolve().parent != root / "accel":
        raise SystemExit(f"--accel-from {tree}: imported {accel.__file__} instead")


def add_accel_from(ap) -> None:
    """The ``--accel-from DIR`` option of a benchmark's argument parser (``use_accel_from`` applies it)."""
    ap.add_argument("--accel-from", default=None, metavar="DIR",
                    help="import accel from DIR (a folder holding an accel package, e.g. `git archive <commit> accel` "
                    "unpacked) instead of this checkout: an A/B of two trees, one process each; the result's env "
                    "records which accel ran")


def accel_from_argv(argv: list[str] | None = None) -> str | None:
    """The ``--accel-from`` of a script's command line (``sys.argv`` by default), read before the script imports
    accel at module level; the script's own parser lists the option too."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(add_help=False)
    add_accel_from(ap)
    return ap.parse_known_args(sys.argv[1:] if argv is None else argv)[0].accel_from


class GcPauses:
    """Python's garbage collections while the block runs: how many of each generation, and the seconds they took.

    Decode rates at device position are bounded by the host when issuing a step takes as long as running it; the
    host's time a step has moved 0.35 -> 0.77 ms between variants of one process (session 15). A collection of
    the old generations walks every object the compiles left behind, so this records them for each timed block.
    ``freeze``: collect, then move every object to the permanent generation (``gc.freeze``) for the block, so
    that collections during it walk only what the block allocates; undone on exit (unless objects were frozen
    before the block: ``gc.unfreeze`` cannot tell them apart)."""

    def __init__(self, freeze: bool = False):
        self.freeze = freeze
        self.counts = [0, 0, 0]
        self.seconds = 0.0
        self._start = None

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        elif self._start is not None:
            self.counts[info["generation"]] += 1
            self.seconds += time.perf_counter() - self._start
            self._start = None

    def __enter__(self) -> "GcPauses":
        self._unfreeze = self.freeze and gc.get_freeze_count() == 0
        if self.freeze:
            gc.collect()
            gc.freeze()
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc) -> None:
        gc.callbacks.remove(self._callback)
        if self._unfreeze:
            gc.unfreeze()

    def record(self) -> dict:
        """The row fields: collections by generation and their total milliseconds."""
        return {"gc_collections": list(self.counts), "gc_ms": round(self.seconds * 1e3, 2)}


def _cpu_jiffies(path: str = "/proc/stat") -> tuple[int, int, int] | None:
    """(busy, stolen, total) clock ticks of all CPUs since boot from /proc/stat's first line; None where there is
    none (not Linux). Stolen: time a virtual machine's CPUs were ready but the hypervisor ran something else; a
    thread then looks busy to the guest while it makes no progress."""
    try:
        with open(path) as f:
            fields = [int(v) for v in f.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
    except (OSError, ValueError):
        return None
    fields += [0] * (8 - len(fields))
    total = sum(fields)
    return total - fields[3] - fields[4] - fields[7], fields[7], total


class HostUsage:
    """Where the host's wall time went while the block ran: the CPU time of this thread and of the whole process,
    the context switches of this process and how busy the machine's CPUs were.

    Session 16 saw the host's pace a decode step anywhere from 0.34 to 1.15 ms between variants and processes,
    mostly the same over the first and the last steps of a run, and with no garbage collection. These fields tell the causes apart:
    ``host_thread_cpu_share`` is the part of the wall this thread spent on a CPU (low: it waited, for the GIL, a
    lock or a CPU); ``host_other_threads_cpu_ms`` is the CPU time of this process's other threads (high: one of
    them competes for the GIL); ``host_ctx_switches`` are this process's (voluntary, involuntary) switches (many
    involuntary: the scheduler preempted it); ``host_busy_cpus`` is the machine's busy CPUs on average (other
    processes); ``host_steal_cpus`` the CPUs' time taken by the hypervisor, on average (a virtual machine's CPU
    shared with another guest runs the same instructions slower while it looks busy)."""

    def __enter__(self) -> "HostUsage":
        self._t = (time.perf_counter(), time.thread_time(), time.process_time(),
                   resource.getrusage(resource.RUSAGE_SELF), _cpu_jiffies())
        return self

    def __exit__(self, *exc) -> None:
        wall0, thread0, proc0, ru0, jif0 = self._t
        ru1, jif1 = resource.getrusage(resource.RUSAGE_SELF), _cpu_jiffies()
        self.wall = time.perf_counter() - wall0
        self.thread = time.thread_time() - thread0
        self.process = time.process_time() - proc0
        self.switches = (ru1.ru_nvcsw - ru0.ru_nvcsw, ru1.ru_nivcsw - ru0.ru_nivcsw)
        self.busy_cpus = self.steal_cpus = None
        if jif0 and jif1 and jif1[2] > jif0[2]:
            cpus = (os.cpu_count() or 1) / (jif1[2] - jif0[2])
            self.busy_cpus, self.steal_cpus = (jif1[0] - jif0[0]) * cpus, (jif1[1] - jif0[1]) * cpus

    def record(self) -> dict:
        """The row fields (CPU shares and milliseconds over the whole block)."""
        return {"host_thread_cpu_share": round(self.thread / self.wall, 3) if self.wall > 0 else None,
                "host_other_threads_cpu_ms": round(max(0.0, self.process - self.thread) * 1e3, 1),
                "host_ctx_switches": list(self.switches),
                "host_busy_cpus": None if self.busy_cpus is None else round(self.busy_cpus, 2),
                "host_steal_cpus": None if self.steal_cpus is None else round(self.steal_cpus, 3)}


class GraphTreeCalls:
    """What Inductor's CUDA-graph tree did with the calls made while the block ran, and how long the host spent in
    it: replays of a recorded graph, warm-up runs (the compiled code launched kernel by kernel, before a recording),
    recordings, and calls it ran without a graph at all (``cg_other``: a function past its re-recording limit, or
    one that mutates inputs the tree does not manage). A row whose host is slow because the tree fell back to
    launching every kernel shows it here (session 17: int4 + head issued 0.31-0.35 ms a step in some processes and
    0.55-0.86 ms in others, with no other cause found). ``manager`` is the class to count (tests pass a stand-in)."""

    METHODS = {"execute_node": "replays", "run_eager": "warmups", "record_function": "recordings"}

    def __init__(self, manager: type | None = None):
        if manager is None:
            from torch._inductor.cudagraph_trees import CUDAGraphTreeManager as manager
        self.manager = manager
        self.counts = dict.fromkeys(["calls", *self.METHODS.values(), "other"], 0)
        self.seconds = 0.0
        self._saved: dict = {}
        self._depth = 0  # the tree's run calls itself again in some paths: count the outer call only

    def _counting(self, name: str, key: str):
        original = self._saved[name]

        def wrapper(manager_self, *args, **kwargs):
            self.counts[key] += 1
            return original(manager_self, *args, **kwargs)
        return wrapper

    def _timing(self):
        original = self._saved["run"]

        def run(manager_self, *args, **kwargs):
            if self._depth:
                return original(manager_self, *args, **kwargs)
            self.counts["calls"] += 1
            self._depth += 1
            handled = self._handled()
            t0 = time.perf_counter()
            try:
                return original(manager_self, *args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0
                self._depth -= 1
                if self._handled() == handled:  # no replay, warm-up or recording: run without a graph
                    self.counts["other"] += 1
        return run

    def _handled(self) -> int:
        return sum(self.counts[key] for key in self.METHODS.values())

    def __enter__(self) -> "GraphTreeCalls":
        for name in ("run", *self.METHODS):
            self._saved[name] = self.manager.__dict__[name]
        self.manager.run = self._timing()
        for name, key in self.METHODS.items():
            setattr(self.manager, name, self._counting(name, key))
        return self

    def __exit__(self, *exc) -> None:
        for name, original in self._saved.items():
            setattr(self.manager, name, original)

    def record(self, steps: int) -> dict:
        """The row fields: counts over the block and the host's milliseconds in the tree's ``run`` a step (``steps``
        of them). A recording can also start outside ``run`` (the first call of a graph goes through the tree's
        own setup: on the GPU, Inductor's 3 recordings in 768 steps came with 765 calls)."""
        c = self.counts
        return {"cg_calls": c["calls"], "cg_replays": c["replays"], "cg_warmups": c["warmups"],
                "cg_recordings": c["recordings"], "cg_other": c["other"],
                "cg_host_ms_per_step": round(self.seconds / steps * 1e3, 3) if steps else None}


def cuda_time_ms(fn, *, warmup: int = 10, iters: int = 50) -> float:
    """Median milliseconds of ``fn()`` timed with CUDA events (one event pair per call)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]


def copy_bandwidth_gbs(nbytes: int = 1 << 30) -> float:
    """Device-to-device copy bandwidth, counting bytes read plus bytes written."""
    a = torch.empty(nbytes // 2, dtype=torch.bfloat16, device="cuda").normal_()
    b = torch.empty_like(a)
    ms = cuda_time_ms(lambda: b.copy_(a), warmup=3, iters=20)
    return 2 * nbytes / (ms * 1e-3) / 1e9


def print_table(rows: list[dict], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for r in rows:
        print("  ".join(_fmt(r.get(c)).ljust(widths[c]) for c in columns))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.1f}"
    return "" if v is None else str(v)


def profile_once(run, label: str) -> None:
    """Launch ``run()`` once inside an NVTX range named ``profile`` (``ncu --nvtx --nvtx-include "profile/"``
    profiles only what runs there), after the launches before it have finished; ``label`` is printed first, so that
    the profiler's report, which lists the kernels in launch order, can be matched to the cases."""
    torch.cuda.synchronize()
    print(f"profile: {label}", flush=True)
    torch.cuda.nvtx.range_push("profile")
    run()
    torch.cuda.synchronize()
    torch.cuda.nvtx.range_pop()


def write_result(name: str, payload: dict) -> Path:
    """Write ``payload`` (plus the environment) as JSON; under $OUT on the GPU machine, else benchmarks/results."""
    out_dir = Path(os.environ["OUT"]) if os.environ.get("OUT") else RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    env = environment()
    card = env["device"].replace("NVIDIA ", "").replace(" ", "-").split("-")[0].lower()
    stamp = env["date"][:10]
    path = out_dir / f"{name}_{card}_{stamp}.json"
    path.write_text(json.dumps({"env": env, **payload}, indent=1))
    return path
