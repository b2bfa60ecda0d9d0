"""Graph dumps and logging.

With ``dump_dir`` set (option or ``ACCEL_DUMP_DIR``), each compiled graph gets a folder
``graph_<NNN>/`` holding ``NN-<pass>.before.py`` / ``NN-<pass>.after.py`` (each starting with
``# produced by <pass>``), ``inductor_output_<k>.py`` (Inductor's generated code), and the whole compile
gets ``report.json`` / ``report.md``. ``ACCEL_DUMP_PASSES=fuse_attention,fuse_ffn`` limits which passes are
dumped.

``ACCEL_DEBUG`` levels:

| level | logs |
|---|---|
| 0 | warnings (fallbacks to plain Inductor) |
| 1 | one summary line per compiled graph |
| 2 | every match and every "not rewritten" reason |
| 3 | the graph code before and after each pass |
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import torch.fx as fx

from accel import envs

log = logging.getLogger("accel")


def debug_level() -> int:
    return envs.ACCEL_DEBUG()


def log_at(level: int, msg: str, *args) -> None:
    if debug_level() >= level:
        log.warning(msg, *args) if level == 0 else log.info(msg, *args)
        if level > 0 and not log.isEnabledFor(logging.INFO):
            print("[accel] " + (msg % args if args else msg))


def graph_code(gm: fx.GraphModule) -> str:
    return gm.print_readable(print_output=False, include_stride=False, include_device=False)


class GraphDumper:
    """Writes the numbered before/after files of one graph (no-op without a dump directory)."""

    def __init__(self, dump_dir: str | None, graph_index: int):
        self.root = Path(dump_dir) if dump_dir else None
        self.dir = self.root / f"graph_{graph_index:03d}" if self.root else None
        self.selected = envs.ACCEL_DUMP_PASSES()
        self.step = 0
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)

    def dump(self, pass_name: str, stage: str, gm: fx.GraphModule) -> None:
        if stage == "before":
            self.step += 1
        if debug_level() >= 3:
            print(f"[accel] ---- {stage} {pass_name} ----\n{graph_code(gm)}")
        if self.dir is None or (self.selected is not None and pass_name not in self.selected):
            return
        path = self.dir / f"{self.step:02d}-{pass_name}.{stage}.py"
        path.write_text(f"# produced by {pass_name} ({stage})\n{graph_code(gm)}")

    def copy_output_code(self, paths: list[str]) -> list[str]:
        """Copy Inductor's generated modules next to the graph dumps; returns the copies' paths."""
        if self.dir is None:
            return list(paths)
        copies = []
        for k, src in enumerate(paths):
            dst = self.dir / f"inductor_output_{k}.py"
            shutil.copyfile(src, dst)
            copies.append(str(dst))
        return copies
