"""The autotune cache: explicit keys, persistence across processes, versioned table, bypass switches, the runoff,
progress reports and the parallel precompile."""
import contextlib
import json

import pytest
import torch
import triton
import triton.language as tl

from accel.runtime import autotune_cache as ac


@triton.jit
def _probe_kernel(x_ptr):
    tl.store(x_ptr, 1)


def test_key_names_every_part():
    key = ac.make_key("gemv", "abc123", (1, 4096, 2048), torch.bfloat16, torch.device("cpu"))
    kernel, src, shape, dtype, cc, versions = key.split("|")
    assert (kernel, src, shape, dtype, cc) == ("gemv", "abc123", "1x4096x2048", "bfloat16", "cpu")
    assert versions.startswith("torch") and "triton" in versions


def test_source_hash_changes_with_the_source():
    def a(x):
        return x + 1

    def b(x):
        return x + 2

    assert ac.source_hash(a) != ac.source_hash(b)
    assert ac.source_hash(a) == ac.source_hash(a)


def test_store_persists_under_the_versioned_table(tmp_path):
    path = tmp_path / "at.json"
    cache = ac.AutotuneCache(path)
    cache.store("k1", {"kernel": "gemv", "BLOCK_N": 64}, {"kernel=gemv,BLOCK_N=64": 12.5})
    data = json.loads(path.read_text())
    assert data[f"v{ac.CACHE_VERSION}"]["k1"]["config"] == {"kernel": "gemv", "BLOCK_N": 64}
    assert ac.AutotuneCache(path).lookup("k1") == {"kernel": "gemv", "BLOCK_N": 64}
    # another process's entries are merged, not overwritten
    other = ac.AutotuneCache(path)
    other.store("k2", {"kernel": "cublas"}, {})
    cache.store("k3", {"kernel": "gemm"}, {})
    assert set(json.loads(path.read_text())[f"v{ac.CACHE_VERSION}"]) == {"k1", "k2", "k3"}


def test_entries_of_another_version_are_ignored(tmp_path):
    path = tmp_path / "at.json"
    path.write_text(json.dumps({"v0": {"k": {"config": {"kernel": "old"}, "us": {}}}}))
    assert ac.AutotuneCache(path).lookup("k") is None


def test_environment_switches(monkeypatch, tmp_path):
    monkeypatch.setenv("ACCEL_AUTOTUNE_CACHE", "0")
    assert ac.get_cache().path is None
    monkeypatch.setenv("ACCEL_AUTOTUNE_CACHE", str(tmp_path / "c.json"))
    assert ac.get_cache().path == tmp_path / "c.json"
    monkeypatch.setenv("ACCEL_AUTOTUNE", "0")
    calls = []
    got = ac.tune("k", [{"a": 1}, {"a": 2}], lambda cfg: calls.append(cfg) or (lambda: None), default={"a": 2})
    assert got == {"a": 2} and calls == []  # tuning off: the default, nothing measured


def test_tune_measures_once_and_then_answers_from_the_cache(monkeypatch, tmp_path):
    if not torch.cuda.is_available():
        import pytest

        pytest.skip("measurement needs a CUDA device")
    monkeypatch.setenv("ACCEL_AUTOTUNE_CACHE", str(tmp_path / "c.json"))
    x = torch.randn(1 << 20, device="cuda")
    runs = []

    def make_runner(cfg):
        runs.append(cfg["reps"])
        return lambda: [x.sum() for _ in range(cfg["reps"])]

    best = ac.tune("sum-test", [{"reps": 20}, {"reps": 1}], make_runner)
    assert best == {"reps": 1}
    runs.clear()
    assert ac.tune("sum-test", [{"reps": 20}, {"reps": 1}], make_runner) == {"reps": 1}
    assert runs == []


def test_close_candidates_are_timed_again_and_ranked_by_their_median(monkeypatch, tmp_path):
    """One cold-L2 timing of a small kernel is noisy: candidates within RUNOFF_MARGIN of the best get RUNOFF_ROUNDS
    more timings and the median decides; the others are timed once. A candidate that fails is no candidate."""
    monkeypatch.setenv("ACCEL_AUTOTUNE_CACHE", str(tmp_path / "c.json"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    scripted = {"a": [5.0, 5.6, 5.5], "b": [5.2, 5.1, 5.0], "c": [9.0], "d": []}  # d fails to build
    timed = []

    def make_runner(cfg):
        if cfg["n"] == "d":
            raise RuntimeError("does not fit")
        return cfg["n"]

    def measure(name):
        timed.append(name)
        return scripted[name][timed.count(name) - 1]

    monkeypatch.setattr(ac, "measure_us", measure)
    assert ac.RUNOFF_MARGIN == 0.10 and ac.RUNOFF_ROUNDS == 2
    cands = [{"n": "a"}, {"n": "b"}, {"n": "c"}, {"n": "d"}]
    assert ac.tune("runoff-test", cands, make_runner) == {"n": "b"}  # a was fastest once, b by its median
    assert timed == ["a", "b", "c", "a", "b", "a", "b"]
    stored = json.loads((tmp_path / "c.json").read_text())[f"v{ac.CACHE_VERSION}"]["runoff-test"]
    assert stored["us"] == {"n=a": 5.5, "n=b": 5.1, "n=c": 9.0}


def test_tuning_reports_progress(monkeypatch, tmp_path, capsys):
    """A tuning miss reports each candidate's timing and the runoff's as one progress report named by the kernel and
    the shape (``ACCEL_PROGRESS=1``: plain lines); a cache hit reports nothing."""
    from accel.runtime import progress

    monkeypatch.setenv("ACCEL_AUTOTUNE_CACHE", str(tmp_path / "c.json"))
    monkeypatch.setenv("ACCEL_PROGRESS", "1")
    monkeypatch.setattr(progress, "QUIET_S", 0.0)
    monkeypatch.setattr(progress, "LINE_EVERY_S", 0.0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    monkeypatch.setattr(ac, "measure_us", lambda name: {"a": 5.0, "b": 5.2, "c": 9.0}[name])
    key = "qlinear.int8|0123abcd|1x2048x2048|bfloat16|sm90"
    cands = [{"n": "a"}, {"n": "b"}, {"n": "c"}]
    ac.tune(key, cands, lambda cfg: cfg["n"])
    lines = capsys.readouterr().err.splitlines()
    # three candidates, then a and b twice more in the runoff: 7 steps, then the summary
    assert [ln.split(" in ")[0] for ln in lines] == [f"accel: tuning qlinear.int8 1x2048x2048: {i}/{3 if i <= 3 else 7}"
                                                     for i in range(1, 8)] + ["accel: tuning qlinear.int8 1x2048x2048: 7/7"]
    ac.tune(key, cands, lambda cfg: cfg["n"])
    assert capsys.readouterr().err == ""


def test_a_timing_within_the_flush_noise_is_retaken_and_never_wins(monkeypatch):
    """measure_us is the replay with the kernels less the replay of the flushes alone: a difference of zero or less
    is noise, timed again up to _TRIES times in all, and if it stays so the candidate gets +inf (clamped to 0 it
    had won tunings)."""
    import math

    monkeypatch.setattr(torch, "empty", lambda *a, **k: torch.zeros(1))  # (the flush buffer: never used here)
    replays = []
    monkeypatch.setattr(ac, "_graph_ms", lambda fn, replays_=7: replays.pop(0))
    replays[:] = [1.0, 1.2, 1.0, 1.0, 1.4, 1.0]  # -0.2, 0, then 0.4 ms for _REPS launches
    assert ac.measure_us(lambda: None) == pytest.approx(0.4 / ac._REPS * 1e3) and not replays
    replays[:] = [1.0, 1.1] * ac._TRIES
    assert ac.measure_us(lambda: None) == math.inf and not replays
    replays[:] = [1.3, 1.0]
    assert ac.measure_us(lambda: None) == pytest.approx(0.3 / ac._REPS * 1e3)


def test_a_runner_of_several_launches_is_timed_a_launch(monkeypatch):
    """The tuner's PDL chain launches a candidate ``launches`` times a run: measure_us reports one launch."""
    monkeypatch.setattr(torch, "empty", lambda *a, **k: torch.zeros(1))
    replays = [1.6, 1.0]
    monkeypatch.setattr(ac, "_graph_ms", lambda fn, replays_=7: replays.pop(0))

    def chain():
        pass

    chain.launches = 3
    assert ac.measure_us(chain) == pytest.approx(0.6 / ac._REPS / 3 * 1e3) and not replays


def test_refine_times_variants_of_the_leaders_which_can_win(monkeypatch, tmp_path):
    """``refine`` gets the timed candidates fastest first; what it returns (less what was already timed) is
    timed after them, enters the runoff and can win; the stored timings include it."""
    monkeypatch.setenv("ACCEL_AUTOTUNE_CACHE", str(tmp_path / "c.json"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    us = {"a": 3.0, "b": 2.0, "c": 5.0, "b2": 1.5, "a2": 9.0}
    monkeypatch.setattr(ac, "measure_us", lambda run: us[run()])
    given = []

    def refine(ranked):
        given.append([c["n"] for c in ranked])
        return [{"n": c["n"] + "2"} for c in ranked[:2]] + [ranked[0]]  # (the leader itself: not timed again)

    best = ac.tune("refine", [{"n": "a"}, {"n": "b"}, {"n": "c"}], lambda cfg: lambda: cfg["n"], refine=refine)
    assert given == [["b", "a", "c"]] and best == {"n": "b2"}
    stored = ac.get_cache().lookup("refine")
    assert stored == {"n": "b2"}
    assert ac.tune("refine", [{"n": "a"}, {"n": "c"}], lambda cfg: lambda: 1 / 0, refine=refine) == {"n": "b2"}  # hit
    timings = json.loads((tmp_path / "c.json").read_text())[ac._TABLE]["refine"]["us"]
    assert set(timings) == {"n=a", "n=b", "n=c", "n=b2", "n=a2"}


def test_precompile_builds_every_candidate_on_worker_threads_without_launching(monkeypatch, tmp_path):
    """ACCEL_COMPILE_THREADS=4: the runners are made on the tuning thread, run once each on the workers under
    ``compile_only`` (a candidate that fails there is still timed, and reported, by the timing pass), then timed as
    before; with the default of 1 nothing runs before the timing."""
    import threading

    from accel.runtime.kernels import utils

    monkeypatch.setenv("ACCEL_AUTOTUNE_CACHE", str(tmp_path / "c.json"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "device", lambda d: contextlib.nullcontext())
    events, made_on = [], []

    def make_runner(cfg):
        made_on.append(threading.current_thread().name)

        def run():
            if getattr(utils._COMPILE_ONLY, "on", False):
                events.append(("compile", cfg["n"], threading.current_thread().name))
                if cfg["n"] == "b":
                    raise RuntimeError("does not compile")
            return cfg["n"]
        return run

    monkeypatch.setattr(ac, "measure_us", lambda run: events.append(("time", run(), "")) or {"a": 2.0, "b": 1.0,
                                                                                               "c": 3.0}[run()])
    cands = [{"n": "a"}, {"n": "b"}, {"n": "c"}]
    assert ac.tune("serial", cands, make_runner) == {"n": "b"}
    assert all(kind == "time" for kind, _, _ in events)  # ACCEL_COMPILE_THREADS defaults to 1: no precompile
    events.clear()
    made_on.clear()
    monkeypatch.setenv("ACCEL_COMPILE_THREADS", "4")
    assert ac.tune("threads", cands, make_runner) == {"n": "b"}
    compiled = [e for e in events if e[0] == "compile"]
    assert sorted(n for _, n, _ in compiled) == ["a", "b", "c"]
    assert all(name.startswith("accel-compile") for _, _, name in compiled)
    assert events.index(compiled[-1]) < events.index(next(e for e in events if e[0] == "time"))  # all built first
    assert set(made_on) == {threading.current_thread().name}  # runners (and their inputs) made on this thread
    assert not getattr(utils._COMPILE_ONLY, "on", False)


def test_compile_only_launches_through_warmup_in_this_thread_only():
    """Under ``compile_only`` the launchers' ``wrap_triton(kernel)[grid](...)`` becomes a warmup with the grid;
    other threads, and this one afterwards, get torch's wrapper."""
    import threading

    from accel.runtime.kernels import utils

    class Kernel:
        def __init__(self):
            self.calls = []

        def warmup(self, *args, grid, **kwargs):
            self.calls.append((args, grid, kwargs))

    k = Kernel()
    with utils.compile_only():
        utils.wrap_triton(k)[(3, 1)](1, "x", BLOCK=16)
        seen = []
        t = threading.Thread(target=lambda: seen.append(getattr(utils._COMPILE_ONLY, "on", False)))
        t.start()
        t.join()
    assert k.calls == [((1, "x"), (3, 1), {"BLOCK": 16})]
    assert seen == [False]
    assert not isinstance(utils.wrap_triton(_probe_kernel), utils._CompileOnly)


@triton.jit
def _options_probe_kernel(x_ptr, n, BLOCK: tl.constexpr):
    tl.store(x_ptr + tl.arange(0, BLOCK), n)


def test_compile_only_hands_triton_the_options_a_launch_does(monkeypatch):
    """Triton's cache key includes the launch options as the call spells them (``str(options)``): the compile-only
    warmup must reach ``JITFunction.run`` with the same options, in the same order, as torch's wrap_triton launch
    of the same call, or the launch compiles the kernel again (seen on an H100: num_ctas, which torch's one-config
    autotuner adds)."""
    from accel.runtime.kernels import utils

    runs = []
    names = _options_probe_kernel.arg_names

    def record(self, *args, grid, warmup, **kwargs):  # the options: keyword arguments that are not parameters
        runs.append(([k for k in kwargs if k not in names], [v for k, v in kwargs.items() if k not in names], warmup))

    # (a JITFunction, or the interpreter's stand-in under TRITON_INTERPRET=1)
    monkeypatch.setattr(type(_options_probe_kernel), "run", record)
    x = torch.zeros(16)
    with utils.compile_only():
        utils.wrap_triton(_options_probe_kernel)[(1,)](x, 3, BLOCK=16, num_warps=2, num_stages=1)
    utils.wrap_triton(_options_probe_kernel)[(1,)](x, 3, BLOCK=16, num_warps=2, num_stages=1)
    assert len(runs) == 2 and [w for *_, w in runs] == [True, False]
    (warm_opts, warm_vals, _), (run_opts, run_vals, _) = runs
    assert warm_opts == run_opts and "num_warps" in run_opts and warm_vals == run_vals


_OPTIONS_SCRIPT = """
import contextlib
import torch, triton, triton.language as tl
import triton.runtime.jit as jit
from accel.runtime.kernels import utils

@triton.jit
def kernel(x_ptr, n, BLOCK: tl.constexpr):
    tl.store(x_ptr + tl.arange(0, BLOCK), n)

runs = []
jit.JITFunction.run = lambda self, *a, grid, warmup, **kw: runs.append([k for k in kw if k not in self.arg_names])
x = torch.zeros(16)
seen = {}
for mode, ctx in (("dispatched", contextlib.nullcontext), ("direct", utils.direct_launches)):
    runs.clear()
    with ctx():
        with utils.compile_only():
            utils.wrap_triton(kernel)[(1,)](x, 3, BLOCK=16, num_warps=2, num_stages=1)
        utils.wrap_triton(kernel)[(1,)](x, 3, BLOCK=16, num_warps=2, num_stages=1)
    seen[mode] = list(runs)
print(seen)
"""


def test_compile_only_options_match_torchs_dispatch_of_a_compiled_kernel(tmp_path):
    """The same check for a compiled (not interpreted) kernel, in a process without TRITON_INTERPRET: by default
    torch's wrap_triton dispatches through its one-config autotuner, which spells num_ctas out, and so must the
    warmup; under ``direct_launches`` (the tuner's timing and precompile) both call the kernel directly.
    ``JITFunction.run`` is replaced by a recorder, so nothing compiles or needs a GPU."""
    import ast
    import os
    import subprocess
    import sys

    script = tmp_path / "options.py"
    script.write_text(_OPTIONS_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = ast.literal_eval(done.stdout.strip().splitlines()[-1])
    assert seen == {"dispatched": [["num_warps", "num_ctas", "num_stages"]] * 2,
                    "direct": [["num_warps", "num_stages"]] * 2}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="Triton compiles for a GPU")
def test_compile_only_compiles_and_does_not_launch_on_cuda():
    """A real qlinear launch under ``compile_only`` leaves its output unwritten, and the kernel it compiled is the
    one the launch then finds in Triton's cache."""
    from accel.runtime import quant
    from accel.runtime.kernels import qlinear as kq
    from accel.runtime.kernels import qlinear_kernels as qk
    from accel.runtime.kernels import utils

    x = torch.randn(1, 256, device="cuda", dtype=torch.bfloat16)
    q, s, z = quant.quantize_weight(torch.randn(64, 256, device="cuda", dtype=torch.bfloat16), "int8_weight_only")
    cfg = {**kq.candidate_configs(1, 64, 256, "int8_weight_only", 128, False, 2, 132)[0], "BLOCK_N": 2}
    def compiled():
        return sum(len(c[0]) for c in qk._qgemv_words_kernel.device_caches.values())

    # as the tuner launches (direct_launches: its timing and its precompile), then through torch's dispatch
    for i, (mode, warps) in enumerate(((utils.direct_launches, 4), (contextlib.nullcontext, 2))):
        c = {**cfg, "num_warps": warps}  # (a kernel not compiled yet)
        cached = compiled()
        with mode():
            with utils.compile_only():
                out = kq.launch(c, x, q, s, z, None, "int8_weight_only", 128, 0, False)
            torch.cuda.synchronize()
            assert compiled() == cached + 1, mode
            ref = kq.launch(c, x, q, s, z, None, "int8_weight_only", 128, 0, False)
        assert compiled() == cached + 1, mode  # no recompile
        assert not torch.equal(out, ref)  # the compile-only output was never written (an empty allocation)
