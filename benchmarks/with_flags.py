"""Run a benchmark script with module-level switches set first: one side of an A/B of a switch (such as
``accel.lowering.fuse_kv_update.INTO_ATTENTION`` or ``accel.runtime.kernels.qlinear.HALVES``) in its own process,
without writing a driver for it.

    python benchmarks/with_flags.py accel.lowering.fuse_kv_update.INTO_ATTENTION=False -- \\
        benchmarks/profile_decode.py --config 1b --variants accel-int4-head --cudagraphs --timeline

Each ``MODULE.NAME=VALUE`` imports MODULE and sets NAME, which it must already have, to VALUE, a Python literal
(``ast.literal_eval``: True, 3, 0.5, "text", (2, 4), None). Then the script after ``--`` runs as ``__main__`` with the
arguments after it. The settings are printed first, so the log says which side it is.

Give each side its own ``TORCHINDUCTOR_CACHE_DIR`` (or set ``TORCHINDUCTOR_FORCE_DISABLE_CACHES=1``) when the switch
is read while a custom op is traced: Inductor's FX-graph cache keys the graph Dynamo hands it, so a second process
would reuse the first one's generated code and the switch would not apply (session 27, `notes/perf.md`). Switches
that change accel's passes or their options are in the key already.
"""
from __future__ import annotations

import ast
import importlib
import os
import runpy
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse(argv: list[str]) -> tuple[list[tuple[str, str, object]], list[str]]:
    """([(module, name, value)], [script, *args]) from ``MODULE.NAME=VALUE ... -- SCRIPT ARGS``."""
    if "--" not in argv:
        raise SystemExit("with_flags: usage: with_flags.py MODULE.NAME=VALUE ... -- SCRIPT [ARGS]")
    split = argv.index("--")
    settings, command = argv[:split], argv[split + 1:]
    if not command:
        raise SystemExit("with_flags: no script after --")
    parsed = []
    for item in settings:
        target, eq, text = item.partition("=")
        module, dot, name = target.rpartition(".")
        if not eq or not dot or not module or not name:
            raise SystemExit(f"with_flags: {item!r} is not MODULE.NAME=VALUE")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError) as e:
            raise SystemExit(f"with_flags: {item!r}: the value is not a Python literal ({e})") from None
        parsed.append((module, name, value))
    return parsed, command


def apply(settings: list[tuple[str, str, object]]) -> None:
    """Import each module and set each switch, refusing names the module does not have (a typo would otherwise
    measure the unchanged code)."""
    for module, name, value in settings:
        mod = importlib.import_module(module)
        if not hasattr(mod, name):
            raise SystemExit(f"with_flags: {module} has no {name}")
        setattr(mod, name, value)
        print(f"with_flags: {module}.{name} = {value!r}", flush=True)


def main(argv: list[str]) -> None:
    settings, command = parse(argv)
    sys.path[:0] = [_ROOT, os.path.dirname(os.path.abspath(command[0]))]
    apply(settings)
    sys.argv = command
    runpy.run_path(command[0], run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
