"""``benchmarks/autotune_wins.py`` on a made-up cache: configs that differ only in shape-derived sizes share a family,
the stored config (its keys sorted, as the cache writes them) is matched to the timed names, and the 3% count is
taken against the chosen family's time."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import autotune_wins  # noqa: E402


def test_family_drops_shape_sizes_and_sorts_keys():
    a = autotune_wins.family("kernel=gemv,BLOCK_M=1,BLOCK_N=4,BLOCK_K=2048,SPLIT_K=3,num_warps=2")
    b = autotune_wins.family("BLOCK_K=1024,BLOCK_N=4,SPLIT_K=2,kernel=gemv,num_warps=2")
    assert a == b == "BLOCK_N=4,SPLIT_K=>1,kernel=gemv,num_warps=2"
    assert autotune_wins.family("kernel=gemv,SPLIT_K=1") != autotune_wins.family("kernel=gemv,SPLIT_K=2")


def test_counts_timed_chosen_and_near():
    table = {
        "qlinear.int8|h|1x8x8|x": {"config": {"BLOCK_N": 4, "kernel": "gemv"},
                                   "us": {"kernel=gemv,BLOCK_N=4": 10.0, "kernel=gemv,BLOCK_N=8": 10.2,
                                          "kernel=cublas": 30.0}},
        "qlinear.int4|h|1x8x8|x": {"config": {"BLOCK_N": 8, "kernel": "gemv"},
                                   "us": {"kernel=gemv,BLOCK_N=4": 9.0, "kernel=gemv,BLOCK_N=8": 8.0,
                                          "kernel=cublas": 0.0}},  # 0: a candidate that failed to run
        "attention|h|1x8|x": {"config": {"BLOCK_N": 32}, "us": {"BLOCK_N=32": 5.0}},
    }
    rows = {r["family"]: r for r in autotune_wins.count(table, "qlinear")}
    assert rows["BLOCK_N=4,kernel=gemv"] == {"kernel": "qlinear", "family": "BLOCK_N=4,kernel=gemv", "timed": 2,
                                              "chosen": 1, "within_3pct": 1}
    assert rows["BLOCK_N=8,kernel=gemv"]["chosen"] == 1 and rows["BLOCK_N=8,kernel=gemv"]["within_3pct"] == 2
    assert rows["kernel=cublas"]["timed"] == 1 and rows["kernel=cublas"]["chosen"] == 0
    assert len(autotune_wins.count(table, None)) == 4  # the attention entry too
