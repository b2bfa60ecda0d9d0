"""``benchmarks/stream_floor.py``: the read kernels behind the M = 1 floor read every word once (their sums are
torch's), and the grid holds only tiles with a 16-byte vector for every lane, each with and without the L2 prefetch."""
import os
import sys

import pytest
import torch
import triton

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import stream_floor  # noqa: E402


def test_grid_gives_every_lane_a_vector_and_tries_both_loads():
    grid = stream_floor.configs()
    assert grid and all(c["BLOCK"] // 4 >= 32 * c["num_warps"] for c in grid)
    assert {c["L2PF"] for c in grid} == {False, True} and {c["DEPTH"] for c in grid} == {1, 2, 4, 8}
    assert len({tuple(sorted(c.items())) for c in grid}) == len(grid)


@pytest.mark.parametrize("depth,block", [(1, 512), (8, 512), (2, 2048)])
def test_read_sums_every_word_once(depth, block):
    """A buffer that ends inside a program's span (masked tail), summed as wrapping int32 like torch's int64 sum."""
    if os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available():
        pytest.skip("needs the interpreter or CUDA")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    src = torch.randint(-2 ** 31, 2 ** 31 - 1, (4 * 1500,), dtype=torch.int32,
                        generator=torch.Generator().manual_seed(0)).to(device)
    cfg = dict(BLOCK=block, DEPTH=depth, num_warps=2, L2PF=device == "cuda")
    out = torch.zeros(triton.cdiv(src.numel(), block * depth), dtype=torch.int32, device=device)
    stream_floor.read(src, out, cfg)
    assert out.sum(dtype=torch.int64) % 2 ** 32 == src.sum(dtype=torch.int64) % 2 ** 32
