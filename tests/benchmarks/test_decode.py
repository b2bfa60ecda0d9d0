"""``benchmarks/decode.py``: the host's issue pace over the first and the last steps of the timed runs."""
import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import decode  # noqa: E402


def test_issue_pace_tells_a_host_held_back_from_a_slow_one():
    # a host issuing at 0.3 ms a step until its queue fills at step 100, then at the GPU's 0.7 ms
    held = [0.3e-3 * (i + 1) if i < 100 else 0.3e-3 * 100 + 0.7e-3 * (i - 99) for i in range(256)]
    slow = [0.7e-3 * (i + 1) for i in range(256)]
    assert decode.issue_pace([held, held, slow]) == {"host_ms_first32": 0.3, "host_ms_last32": 0.7}
    assert decode.issue_pace([slow]) == {"host_ms_first32": 0.7, "host_ms_last32": 0.7}
    pace = decode.issue_pace([held[:1]])  # too few steps: no pace
    assert math.isnan(pace["host_ms_first32"]) and math.isnan(pace["host_ms_last32"])


def test_a_reused_cache_decodes_as_a_fresh_one_and_keeps_its_addresses():
    """run_decode with ``cache``: the cache is reset in place, so a second decode gives the tokens a fresh cache
    gives, and the cache's tensors (the CUDA-graph tree's static inputs) stay where they were."""
    import torch
    from transformers import StaticCache

    from decode_model import build_model, make_step

    model, cfg = build_model("tiny", torch.float32, "cpu")
    step = make_step("eager")
    prompt = torch.randint(0, cfg.vocab_size, (1, 8), generator=torch.Generator().manual_seed(3))
    _, fresh = decode.run_decode(model, cfg, step, prompt, 6, "cpu", 32)
    cache = StaticCache(config=cfg, max_cache_len=32)
    _, first = decode.run_decode(model, cfg, step, prompt, 6, "cpu", 32, cache=cache)
    ptrs = [(layer.keys.data_ptr(), layer.values.data_ptr(), layer.cumulative_length.data_ptr())
            for layer in cache.layers]
    lengths = [int(layer.cumulative_length) for layer in cache.layers]
    _, again = decode.run_decode(model, cfg, step, prompt, 6, "cpu", 32, cache=cache)
    assert torch.equal(first, fresh) and torch.equal(again, fresh)
    assert [int(layer.cumulative_length) for layer in cache.layers] == lengths  # reset: counted from 0 again
    assert [(layer.keys.data_ptr(), layer.values.data_ptr(), layer.cumulative_length.data_ptr())
            for layer in cache.layers] == ptrs


def test_a_batch_decodes_each_sequence_as_alone_and_agreement_counts_every_sequence():
    """``--batch``: the rows of a batched greedy decode are the sequences decoded one at a time, and the
    teacher-forced agreement counts a flipped reference token in any row of the batch."""
    import torch

    from decode_model import build_model, make_step

    model, cfg = build_model("tiny", torch.float32, "cpu")
    step = make_step("eager")
    prompt = torch.randint(0, cfg.vocab_size, (3, 8), generator=torch.Generator().manual_seed(5))
    _, batch = decode.run_decode(model, cfg, step, prompt, 6, "cpu", 32)
    assert batch.shape == (3, 7)
    for row in range(3):
        _, alone = decode.run_decode(model, cfg, step, prompt[row:row + 1], 6, "cpu", 32)
        assert torch.equal(batch[row:row + 1], alone)
    assert decode.teacher_forced_agreement(model, cfg, step, prompt, batch, "cpu", 32) == 1.0
    flipped = batch.clone()
    flipped[2, 4] = (flipped[2, 4] + 1) % cfg.vocab_size
    assert decode.teacher_forced_agreement(model, cfg, step, prompt, flipped, "cpu", 32) < 1.0
