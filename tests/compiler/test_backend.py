"""The backend entry: registration, fallback to plain Inductor, strict mode, inference-only, dumps, reports."""
import json
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

import accel
from accel.compiler.pass_base import AccelPass
from accel.compiler.pipeline import build_pipeline
from accel.compiler.options import AccelOptions
from tests.testing_backend import eager_inner_compile, rel_l2


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.gate, self.up, self.down = torch.nn.Linear(16, 32), torch.nn.Linear(16, 32), torch.nn.Linear(32, 16)

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Boom(AccelPass):
    name = "boom"

    def __call__(self, gm, ctx):
        raise ValueError("planted failure")


@pytest.mark.parametrize("import_first", [True, False])
def test_backend_resolves_by_name(import_first):
    """Through the torch_dynamo_backends entry point without importing accel, and after `import accel`
    without a duplicate-name error."""
    from importlib.metadata import entry_points

    if not import_first and "accel" not in {e.name for e in entry_points(group="torch_dynamo_backends")}:
        pytest.skip("accel is imported from a path, not installed: its entry point is not registered")
    code = textwrap.dedent(f"""
        import torch
        {'import accel' if import_first else ''}
        f = torch.compile(lambda x: torch.nn.functional.linear(x, torch.ones(3, 3)), backend="accel")
        from torch._dynamo.backends.registry import lookup_backend
        fn = lookup_backend("accel")
        print(fn.__module__, fn.__name__)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["accel.compiler.backend", "accel_backend"]


def test_failing_pass_falls_back_to_inductor_with_a_warning(caplog):
    model, x = MLP().eval(), torch.randn(4, 16)
    backend = accel.AccelBackend({}, passes=[*build_pipeline(AccelOptions()), Boom()], inner_compile=eager_inner_compile)
    with torch.no_grad(), caplog.at_level("WARNING", logger="accel"):
        torch._dynamo.reset()
        out = torch.compile(model, backend=backend)(x)
    assert rel_l2(out, model(x)) <= 1e-6
    graph = backend.report.graphs[0]
    assert graph.compiled_with == "inductor"
    assert "pass 'boom' failed: ValueError: planted failure" in graph.error
    assert any("boom" in r.getMessage() and "plain Inductor" in r.getMessage() for r in caplog.records)
    assert backend.report.counts == {"attention": 0, "ffn": 0, "linear": 0, "quantize": 0, "norm": 0}
    assert [p.name for p in graph.passes][-1] == "boom" and graph.passes[-1].error


def test_failing_pass_raises_in_strict_mode():
    backend = accel.AccelBackend({"strict": True}, passes=[Boom()], inner_compile=eager_inner_compile)
    torch._dynamo.reset()
    with pytest.raises(Exception, match="planted failure"), torch.no_grad():
        torch.compile(MLP(), backend=backend)(torch.randn(2, 16))


def test_training_graphs_are_left_to_inductor():
    model = MLP()
    backend = accel.AccelBackend({}, inner_compile=eager_inner_compile)
    torch._dynamo.reset()
    out = torch.compile(model, backend=backend)(torch.randn(2, 16))
    assert out.requires_grad
    assert backend.report.graphs[0].compiled_with == "inductor"
    assert "inference graphs only" in backend.report.graphs[0].error


def test_bad_option_surfaces_at_compile_time():
    torch._dynamo.reset()
    with pytest.raises(Exception, match="unknown accel option 'fuse_atention'"):
        torch.compile(MLP(), backend="accel", options={"fuse_atention": True})(torch.randn(2, 16))
    with pytest.raises(accel.AccelOptionsError):
        accel.compile(MLP(), fuse_atention=True)


def test_dumps_and_report(tmp_path):
    """Numbered before/after graphs per pass, report.json/md and Inductor's generated code (full Inductor path)."""
    model, x = MLP().eval(), torch.randn(4, 16)
    torch._dynamo.reset()
    report = accel.explain(model, x, options={"dump_dir": str(tmp_path)})
    graph_dir = tmp_path / "graph_000"
    names = sorted(p.name for p in graph_dir.iterdir())
    passes = [p.name for p in build_pipeline(AccelOptions())]
    for i, name in enumerate(passes, 1):
        for stage in ("before", "after"):
            path = graph_dir / f"{i:02d}-{name}.{stage}.py"
            assert path.name in names
            assert path.read_text().startswith(f"# produced by {name} ({stage})")
    assert "accel.ffn" in (graph_dir / f"{passes.index('fuse_ffn') + 1:02d}-fuse_ffn.after.py").read_text()
    code = [p for p in names if p.startswith("inductor_output_")]
    assert code and "def call(" in (graph_dir / code[0]).read_text()
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["counts"] == {"attention": 0, "ffn": 1, "linear": 0, "quantize": 0, "norm": 0} == report.counts
    assert "| ffn | 1 |" in (tmp_path / "report.md").read_text()


def test_report_says_why_there_is_no_output_code_when_inductor_caches_are_off():
    """Under TORCHINDUCTOR_FORCE_DISABLE_CACHES Inductor keeps no record of its generated modules: the report says
    so instead of listing nothing (a GPU run with that setting once read as a missing kernel)."""
    from torch._inductor import config as inductor_config

    for disabled in (False, True):
        torch._dynamo.reset()
        with inductor_config.patch(force_disable_caches=disabled):
            report = accel.explain(MLP().eval(), torch.randn(4, 16))
        graph = report.graphs[0]
        assert bool(graph.output_code) != disabled
        assert ("caches are disabled" in graph.output_code_note) == disabled
        assert ("caches are disabled" in report.to_markdown()) == disabled


def test_explain_report_points_at_modules_and_source_lines():
    torch._dynamo.reset()
    report = accel.explain(MLP().eval(), torch.randn(2, 16))
    (m,) = report.matches
    assert (m.family, m.pattern, m.module) == ("ffn", "gated(silu)", "down")
    assert m.source.endswith(f"test_backend.py:{MLP.forward.__code__.co_firstlineno + 1}")
    text = str(report)
    assert "ffn=1" in text and "gated(silu)" in text
    assert json.loads(report.to_json())["counts"]["ffn"] == 1
    assert set(report.pass_ms) == {p.name for p in build_pipeline(AccelOptions())}


def test_the_tuning_switches_are_in_inductors_cache_key(monkeypatch):
    """A compile with tuning turned off, or another tuner chain, must not reuse code compiled with other configs."""
    from accel.compiler.options import AccelOptions
    from accel.lowering.inductor import RecordAccelKernels

    def key():
        return RecordAccelKernels(AccelOptions(), None).uuid()

    base = key()
    monkeypatch.setenv("ACCEL_TUNE_CHAIN", "1")
    chain1 = key()
    monkeypatch.setenv("ACCEL_AUTOTUNE", "0")
    assert len({base, chain1, key()}) == 3
    monkeypatch.setenv("ACCEL_TUNE_CHAIN", "3")
    monkeypatch.delenv("ACCEL_AUTOTUNE")
    assert key() == base
