"""``benchmarks/bf16x2_modes.py``: which configs of a tuning it times (the GPU timing itself runs on CUDA only)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import bf16x2_modes as B  # noqa: E402

from accel.runtime import autotune_cache  # noqa: E402

WORD = {"kernel": "gemv", "BLOCK_M": 1, "BLOCK_N": 4, "BLOCK_K": 2048, "SPLIT_K": 1, "CHUNKS_FIRST": True,
        "num_warps": 2, "num_stages": 1, "SUB": 4}


def test_config_names_parse_back():
    for cfg in (WORD, {**WORD, "TILES": 2, "BF16X2": 3}, {"kernel": "cublas"}):
        assert B.parse_config(autotune_cache.config_name(cfg)) == cfg


def test_cases_take_the_fastest_word_gemvs_once_per_shape_preferring_the_counted_key():
    name = autotune_cache.config_name
    us = {name(WORD): 15.0, name({**WORD, "BF16X2": 2}): 14.0, name({**WORD, "BLOCK_N": 8}): 16.0,
          name({"kernel": "cublas"}): 30.0, name({**WORD, "SUB": 2, "num_warps": 4}): 17.0}
    tail = "bfloat16|sm90-NVIDIA_H200|torch2.11.0-triton3.6.0"
    cache = {f"qlinear.int4_weight_only.act0.plain|aaaa|1x4096x14336x128x0x1|{tail}": {"us": {name(WORD): 1.0}},
             f"qlinear.int4_weight_only.act0.plain.rl|bbbb|1x4096x14336x128x0x1|{tail}": {"us": us},
             f"qlinear.int4_weight_only.act0.plain.rl|bbbb|16x4096x14336x128x0x1|{tail}": {"us": us},
             f"qlinear.int8_weight_only.act0.plain.rl|bbbb|1x4096x14336x0x0x0|{tail}": {"us": us},
             f"qlinear.int4_weight_only.act4.gated.norm|bbbb|1x8192x2048x128x0x1|{tail}": {"us": us}}
    got = B.cases(cache, 2)
    assert [(c["name"], c["N"], c["K"]) for c in got] == [
        ("qlinear.int4_weight_only.act0.plain.rl", 4096, 14336),
        ("qlinear.int4_weight_only.act4.gated.norm", 8192, 2048)]
    # the BF16X2 twin and its base are one config (the faster time ranks it); cuBLAS is not a word GEMV
    assert got[0]["configs"] == [WORD, {**WORD, "BLOCK_N": 8}]
    assert got[0]["counters"] and got[1]["gated"] and got[1]["norm"] and got[1]["act"] == 4 and got[1]["zero"]
