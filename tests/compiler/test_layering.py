"""Imports only point down the layer order: compiler → patterns → lowering → runtime (runtime imports none of
the others; patterns never import lowering)."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "accel"
FORBIDDEN = {
    "runtime": ("accel.compiler", "accel.patterns", "accel.lowering"),
    "patterns": ("accel.lowering",),
}


def imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names)


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_does_not_import_upwards(layer):
    files = list((ROOT / layer).rglob("*.py"))
    assert files
    bad = [(f.name, m) for f in files for m in imports(f) if m.startswith(FORBIDDEN[layer])]
    assert not bad, bad
