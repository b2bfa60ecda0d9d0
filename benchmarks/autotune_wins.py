"""Which tuning candidates ever win? Reads an autotune cache file and counts, per kernel and per config family (a
config without its shape-derived sizes), how often the family was timed, chosen, and timed within 3% of the chosen
config: a family that is timed on every first compile and never chosen costs compile time for nothing.

    python benchmarks/autotune_wins.py benchmarks/results/autotune_cache_s13run4_h100_2026-11-27.json --op qlinear

CPU only: it reads the JSON that ``accel.runtime.autotune_cache`` writes (``ACCEL_AUTOTUNE_CACHE``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import print_table  # noqa: E402

# sizes that follow from the shape (BLOCK_K from K and the warps, BLOCK_M from M); SPLIT_K counts only as split or not
_SHAPE_KEYS = ("BLOCK_K", "BLOCK_M")
NEAR = 1.03


def family(name: str) -> str:
    """``autotune_cache.config_name`` of a config → its family: shape-derived sizes dropped, SPLIT_K as 1 or >1."""
    fields = dict(part.split("=", 1) for part in name.split(",") if "=" in part)
    if "SPLIT_K" in fields:
        fields["SPLIT_K"] = "1" if fields["SPLIT_K"] == "1" else ">1"
    return ",".join(f"{k}={fields[k]}" for k in sorted(fields) if k not in _SHAPE_KEYS)  # the cache sorts keys


def count(table: dict, op: str | None) -> list[dict]:
    """Rows {kernel, family, timed, chosen, near} over the entries whose key starts with ``op`` (all when None)."""
    timed, chosen, near = Counter(), Counter(), Counter()
    for key, entry in table.items():
        kernel = key.split("|", 1)[0].split(".", 1)[0]
        if op and kernel != op:
            continue
        times = {name: us for name, us in entry.get("us", {}).items() if us and us > 0}
        if not times:
            continue
        winner = family(",".join(f"{k}={v}" for k, v in entry["config"].items()))
        mine = [us for name, us in times.items() if family(name) == winner]
        best = min(mine) if mine else min(times.values())
        for name, us in times.items():
            fam = (kernel, family(name))
            timed[fam] += 1
            near[fam] += us <= best * NEAR
        chosen[(kernel, winner)] += 1
    return [{"kernel": k, "family": f, "timed": n, "chosen": chosen[(k, f)], "within_3pct": near[(k, f)]}
            for (k, f), n in sorted(timed.items(), key=lambda kv: (-kv[1], kv[0]))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cache", help="an autotune cache JSON file")
    ap.add_argument("--op", default=None, help="kernel name prefix of the keys, e.g. qlinear, linear, attention")
    args = ap.parse_args()
    with open(args.cache) as f:
        data = json.load(f)
    rows = []
    for table in data.values():
        rows += count(table, args.op)
    print_table(rows, ["kernel", "family", "timed", "chosen", "within_3pct"])


if __name__ == "__main__":
    main()
