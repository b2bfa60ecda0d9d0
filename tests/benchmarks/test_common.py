"""``benchmarks/common.py``: the accel identity every result records, and ``use_accel_from`` (an A/B of two trees in
one GPU call imports the other tree's accel, or stops)."""
import os
import shutil
import subprocess
import sys
import time

import pytest

BENCHMARKS = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks")
sys.path.insert(0, BENCHMARKS)
import common  # noqa: E402


def test_identity_names_the_imported_accel_and_its_source_hash():
    import accel
    from accel.lowering.inductor import accel_source_hash

    ident = common.accel_identity()
    assert ident == {"accel_path": os.path.dirname(os.path.realpath(accel.__file__)),
                     "accel_source_hash": accel_source_hash()}
    assert len(ident["accel_source_hash"]) == 16


_SCRIPT = """
import sys
sys.path.insert(0, {benchmarks!r})
import common
common.use_accel_from({tree!r})
print(common.accel_identity())
"""


def _run(tree: str) -> subprocess.CompletedProcess:
    code = _SCRIPT.format(benchmarks=os.path.realpath(BENCHMARKS), tree=tree)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd="/")


def test_accel_from_imports_the_other_tree(tmp_path):
    """A copy of accel with one source changed: imported from there, with its own source hash."""
    import accel

    shutil.copytree(os.path.dirname(accel.__file__), tmp_path / "accel",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "accel" / "envs.py").write_text((tmp_path / "accel" / "envs.py").read_text() + "\n# changed\n")
    done = _run(str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    ident = eval(done.stdout.strip().splitlines()[-1])  # noqa: S307 - our own dict's repr
    assert ident["accel_path"] == str((tmp_path / "accel").resolve())
    assert ident["accel_source_hash"] != common.accel_identity()["accel_source_hash"]


_SCRIPT_ARGV = """
import sys
sys.argv = ["{module}.py", "--m", "16", "--accel-from", {tree!r}]
sys.path.insert(0, {benchmarks!r})
import {module}
import common
print(common.accel_identity())
"""


@pytest.mark.parametrize("module", ["kernels", "gemv_sweep", "stream_floor"])
def test_kernel_benchmarks_take_accel_from_on_their_command_line(module, tmp_path):
    """kernels.py, gemv_sweep.py and stream_floor.py import accel at module level: ``--accel-from`` is read from the
    command line before that (the last two also import kernels: the second call sees the same tree and passes)."""
    import accel

    shutil.copytree(os.path.dirname(accel.__file__), tmp_path / "accel",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "accel" / "envs.py").write_text((tmp_path / "accel" / "envs.py").read_text() + "\n# changed\n")
    code = _SCRIPT_ARGV.format(module=module, tree=str(tmp_path), benchmarks=os.path.realpath(BENCHMARKS))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd="/")
    assert done.returncode == 0, done.stderr[-2000:]
    ident = eval(done.stdout.strip().splitlines()[-1])  # noqa: S307 - our own dict's repr
    assert ident["accel_path"] == str((tmp_path / "accel").resolve())
    assert ident["accel_source_hash"] != common.accel_identity()["accel_source_hash"]


def test_accel_from_argv_reads_only_that_option():
    assert common.accel_from_argv(["--m", "16", "--accel-from", "/x", "--shapes", "8b"]) == "/x"
    assert common.accel_from_argv(["--accel-from=/y"]) == "/y"
    assert common.accel_from_argv(["--m", "16"]) is None


def test_accel_from_a_folder_without_accel_stops(tmp_path):
    done = _run(str(tmp_path))
    assert done.returncode != 0 and "no accel package there" in done.stderr


def test_accel_from_after_accel_was_imported_stops(tmp_path):
    import accel  # noqa: F401  (imported in this process already)

    (tmp_path / "accel").mkdir()
    (tmp_path / "accel" / "__init__.py").write_text("")
    with pytest.raises(SystemExit, match="imported before"):
        common.use_accel_from(str(tmp_path))
    common.use_accel_from(None)  # (nothing asked: nothing done)


def test_gc_pauses_counts_the_collections_in_the_block_and_freezes_only_there():
    import gc

    frozen = gc.get_freeze_count()
    with common.GcPauses() as pauses:
        gc.collect()
        gc.collect(0)
    assert pauses.counts[2] == 1 and pauses.counts[0] == 1 and pauses.seconds > 0
    assert pauses._callback not in gc.callbacks
    gc.collect()  # outside the block: not counted
    assert pauses.record() == {"gc_collections": [1, 0, 1], "gc_ms": round(pauses.seconds * 1e3, 2)}
    junk = [[i] for i in range(1000)]
    if frozen == 0:
        with common.GcPauses(freeze=True) as pauses:
            assert gc.get_freeze_count() >= len(junk)
        assert gc.get_freeze_count() == 0 and pauses.counts == [0, 0, 0]  # undone on exit
        gc.freeze()  # objects frozen before the block, as some hosts' start-up leaves them (the GPU machine's: 375)
    try:
        before = gc.get_freeze_count()
        with common.GcPauses(freeze=True) as pauses:
            assert gc.get_freeze_count() >= before
        # left frozen: gc.unfreeze cannot tell the block's objects from the earlier ones
        assert gc.get_freeze_count() >= before and pauses.counts == [0, 0, 0]
    finally:
        if frozen == 0:
            gc.unfreeze()


def test_host_usage_tells_a_waiting_thread_from_a_busy_neighbour():
    import threading

    def spin(seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass

    with common.HostUsage() as idle:  # this thread sleeps: little of the wall on a CPU, no other thread busy
        time.sleep(0.2)
    rec = idle.record()
    assert rec["host_thread_cpu_share"] < 0.2 and rec["host_other_threads_cpu_ms"] < 50
    assert len(rec["host_ctx_switches"]) == 2 and rec["host_ctx_switches"][0] >= 1  # the sleep gave the CPU up
    with common.HostUsage() as busy:  # another thread spins while this one waits for it
        t = threading.Thread(target=spin, args=(0.3,))
        t.start()
        t.join()
    rec = busy.record()
    assert rec["host_other_threads_cpu_ms"] >= 150 and rec["host_thread_cpu_share"] < 0.3
    assert rec["host_busy_cpus"] is None or rec["host_busy_cpus"] >= 0.5  # the spinning thread kept a CPU busy
    assert rec["host_steal_cpus"] is None or 0.0 <= rec["host_steal_cpus"] <= os.cpu_count()
    with common.HostUsage() as own:  # this thread spins: nearly all of the wall on a CPU
        spin(0.2)
    assert own.record()["host_thread_cpu_share"] > 0.5


def test_cpu_jiffies_split_busy_stolen_and_idle_time(tmp_path):
    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal guest guest_nice (guest time is already in user)
    stat.write_text("cpu  100 0 50 800 10 0 5 35 7 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n")
    assert common._cpu_jiffies(str(stat)) == (155, 35, 1000)
    stat.write_text("cpu  100 0 50 800\n")  # an old kernel's four fields: nothing stolen
    assert common._cpu_jiffies(str(stat)) == (150, 0, 950)
    assert common._cpu_jiffies(str(tmp_path / "missing")) is None


class _FakeTree:
    """A stand-in for Inductor's CUDAGraphTreeManager with the methods GraphTreeCalls counts: ``run`` dispatches on
    the call's kind the way the tree does (a recording may run again through ``run``, as the tree's does)."""

    def run(self, kind):
        return self._run(kind)

    def _run(self, kind):
        if kind == "replay":
            return self.execute_node(kind)
        if kind == "warmup":
            return self.run_eager(kind)
        if kind == "record":
            return self.record_function(kind)
        if kind == "again":
            return self.run("replay")  # the tree's own re-entry: one call, one replay
        return "eager"  # no graph at all

    def execute_node(self, kind):
        return "replayed"

    def run_eager(self, kind):
        return "warmed up"

    def record_function(self, kind):
        return "recorded"


def test_graph_tree_calls_count_what_the_tree_did_and_restore_it():
    tree = _FakeTree()
    originals = {name: _FakeTree.__dict__[name] for name in ("run", "execute_node", "run_eager", "record_function")}
    with common.GraphTreeCalls(_FakeTree) as calls:
        results = [tree.run(k) for k in ["warmup", "record", "replay", "replay", "again", "eager", "replay"]]
        tree.record_function("record")  # a recording outside run (the tree's setup path)
    assert results == ["warmed up", "recorded", "replayed", "replayed", "replayed", "eager", "replayed"]
    rec = calls.record(steps=7)
    assert (rec["cg_calls"], rec["cg_replays"], rec["cg_warmups"], rec["cg_recordings"], rec["cg_other"]) == \
        (7, 4, 1, 2, 1)
    assert rec["cg_host_ms_per_step"] is not None and rec["cg_host_ms_per_step"] >= 0
    assert {name: _FakeTree.__dict__[name] for name in originals} == originals  # patched back
    tree.run("replay")  # and nothing counts after the block
    assert calls.record(steps=7)["cg_calls"] == 7


def test_graph_tree_calls_find_inductors_tree_manager():
    """The default target is Inductor's own class, and the methods it wraps exist in this torch."""
    from torch._inductor.cudagraph_trees import CUDAGraphTreeManager

    calls = common.GraphTreeCalls()
    assert calls.manager is CUDAGraphTreeManager
    for name in ("run", *common.GraphTreeCalls.METHODS):
        assert name in CUDAGraphTreeManager.__dict__


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux-only")
def test_pin_to_cpu_pins_the_process_and_refuses_a_cpu_it_may_not_use():
    before = os.sched_getaffinity(0)
    try:
        cpu = min(before)
        common.pin_to_cpu(cpu)
        assert os.sched_getaffinity(0) == {cpu}
        assert common.environment()["cpus_allowed"] == 1
        with pytest.raises(SystemExit, match="may run on CPUs"):
            common.pin_to_cpu(max(before) + 1000)
        common.pin_to_cpu(None)  # leaves the affinity as it is
        assert os.sched_getaffinity(0) == {cpu}
    finally:
        os.sched_setaffinity(0, before)


def test_profile_once_runs_once_inside_the_range_after_a_sync(monkeypatch, capsys):
    """The profiler sees exactly one launch of the case, in a range named ``profile`` opened after the work before
    it has finished and closed after the case has (else ncu would profile the wrong kernels or none)."""
    events = []
    monkeypatch.setattr(common.torch.cuda, "synchronize", lambda: events.append("sync"))
    monkeypatch.setattr(common.torch.cuda.nvtx, "range_push", lambda name: events.append(f"push {name}"))
    monkeypatch.setattr(common.torch.cuda.nvtx, "range_pop", lambda: events.append("pop"))
    common.profile_once(lambda: events.append("run"), "int8 up M=16: cfg")
    assert events == ["sync", "push profile", "run", "sync", "pop"]
    assert capsys.readouterr().out == "profile: int8 up M=16: cfg\n"
