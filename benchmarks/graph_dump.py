"""What do the CUDA graphs of two decode steps hold? For the int4 step's wider launch gaps (0.42 µs between every two
kernels against int8's 0.26, ``notes/perf.md`` session 13): captures one compiled decode step per variant in a plain
``torch.cuda.CUDAGraph`` with debug mode on, writes it as DOT (``cudaGraphDebugDotPrint``) and prints, per variant,
the nodes by type, the edges, the nodes with more than one dependency, and the replay's median gap between kernels
(profiler), to check that a manual capture shows the same gaps as ``profile_decode.py --cudagraphs --timeline``.

    python benchmarks/graph_dump.py --variants accel-int8-head,accel-int4-head     # CUDA only; DOT files to $OUT
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import print_table, write_result  # noqa: E402
from decode_model import build_model, make_step, prefilled_cache  # noqa: E402
from profile_decode import launch_gaps  # noqa: E402

_EDGE = re.compile(r'"([^"]+)"\s*->\s*"([^"]+)"')
_NODE = re.compile(r'^\s*"([^"]+)"\s*\[.*?label="\{?\s*([A-Z_]+)', re.M)


def summarize_dot(text: str) -> dict:
    """Nodes by type, edges, and nodes with more than one incoming edge, from a CUDA graph's DOT print."""
    types = Counter(kind for _, kind in _NODE.findall(text))
    edges = _EDGE.findall(text)
    indegree = Counter(dst for _, dst in edges)
    return {"nodes": dict(types), "edges": len(edges), "multi_dependency_nodes": sum(n > 1 for n in indegree.values())}


def capture(variant: str, model, cfg, out_dir: Path) -> dict:
    step = make_step(variant, cudagraphs=False)
    cache = prefilled_cache(model, cfg, 128, 392)
    tok = torch.randint(0, cfg.vocab_size, (1, 1), device="cuda")
    pos = torch.tensor([128], device="cuda")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.no_grad(), torch.cuda.stream(side):
        for _ in range(3):  # compile and warm up off the capture
            step(model, cache, tok, pos)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    graph.enable_debug_mode()
    with torch.no_grad(), torch.cuda.graph(graph):
        step(model, cache, tok, pos)
    path = out_dir / f"graph_{variant}.dot"
    graph.debug_dump(str(path))
    graph.replay()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(20):
            graph.replay()
        torch.cuda.synchronize()
    gaps = [g for g, _, _ in launch_gaps(prof)]
    return {"variant": variant, "dot": path.name, **summarize_dot(path.read_text()),
            "median_gap_us": round(statistics.median(gaps), 3) if gaps else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default="accel-int8-head,accel-int4-head")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("graph_dump.py captures CUDA graphs: it needs a GPU")
    out_dir = Path(os.environ.get("OUT") or Path(__file__).parent / "results")
    model, cfg = build_model("1b", torch.bfloat16, "cuda")
    rows = []
    for variant in args.variants.split(","):
        torch._dynamo.reset()
        rows.append(capture(variant, model, cfg, out_dir))
        print(rows[-1], flush=True)
    print_table(rows, ["variant", "nodes", "edges", "multi_dependency_nodes", "median_gap_us", "dot"])
    print("wrote", write_result("graph_dump", {"rows": rows}))


if __name__ == "__main__":
    main()
