"""``benchmarks/gemv_sweep.py``'s tensor-core GEMV grid (``--grid mma``): configs the launcher accepts, each unsplit and
split to a wave, only the knobs the kernel has (UNROLL is int8's)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import gemv_sweep  # noqa: E402

from accel.runtime.kernels import qlinear as kq  # noqa: E402

INT8, INT4 = "int8_weight_only", "int4_weight_only"


def test_mma_grid_int8_covers_warps_tiles_unrolls_and_splits():
    grid = gemv_sweep.mma_grid(16, 4096, 14336, INT8, False, 132)
    assert grid and all(c["kernel"] == "mma" and c["BLOCK_K"] == 64 and c["TOKEN_TILES"] == 2 for c in grid)
    assert all(c["num_warps"] == c["ROW_WARPS"] * c["K_WARPS"] in (2, 4, 8) for c in grid)
    assert all(c["BLOCK_N"] == 16 * c["ROW_WARPS"] * c["ROW_TILES"] for c in grid)
    assert {c.get("UNROLL", 1) for c in grid} == {1, 2} and {c["ROW_TILES"] for c in grid} == {1, 2}
    assert {c["SPLIT_K"] for c in grid} > {1}  # 256 rows of programs at most: split to a wave too
    assert all(14336 >= 64 * c["K_WARPS"] * c.get("UNROLL", 1) * c["SPLIT_K"] for c in grid)
    assert len({kq.autotune_cache.config_name(c) for c in grid}) == len(grid)  # no config twice
    assert all(kq.keep_config(c, INT8, False, 2) for c in grid)


def test_mma_grid_int4_has_groups_of_128_no_unroll_and_no_row_tiles_when_gated():
    grid = gemv_sweep.mma_grid(8, 8192, 2048, INT4, True, 132)
    assert grid and all(c["BLOCK_K"] == 128 and c["TOKEN_TILES"] == 1 and "UNROLL" not in c for c in grid)
    assert {c["ROW_TILES"] for c in grid} == {1}
    assert not gemv_sweep.mma_grid(8, 4096, 4128, INT8, False, 132)  # K not a multiple of 64


def test_mma_grid_keeps_only_the_named_tiles_and_splits_to_each_wave():
    tile = (2, 2, 1)
    one = gemv_sweep.mma_grid(16, 4096, 14336, INT8, False, 132, tiles={tile})
    two = gemv_sweep.mma_grid(16, 4096, 14336, INT8, False, 132, tiles={tile}, waves=(1, 2))
    assert one and all((c["ROW_WARPS"], c["K_WARPS"], c["ROW_TILES"]) == tile for c in one + two)
    # 128 programs: a wave of 4 a SM splits K by 4, two waves by 8
    assert {c["SPLIT_K"] for c in one} == {1, 4} and {c["SPLIT_K"] for c in two} == {1, 4, 8}
    assert all(c in two for c in one)
    half = gemv_sweep.mma_grid(16, 4096, 14336, INT8, False, 132, tiles={tile}, waves=(0.5,))
    assert {c["SPLIT_K"] for c in half} == {1, 2}  # half a wave: 2 programs a SM
