"""SplitArgmaxPass: argmax over a large last dim as a grouped max, then an argmax over the group maxima.

The rewrite must return exactly eager's index, ties (the first maximal element wins) and NaN (counted as the
maximum) included; it must leave small or indivisible vocabularies and other dims to Inductor, and run under the full
Inductor compile.
"""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from accel.lowering.split_argmax import MAX_CHUNK, MIN_CHUNK, chunk_length
from tests.testing_backend import rewrite_only


def greedy(logits):
    return logits[:, -1:].argmax(-1)


def patterns(report):
    return [m.pattern for m in report.matches]


@pytest.mark.parametrize("vocab", [128256, 32000, 151936, 50257])
def test_chunk_divides_the_vocabulary(vocab):
    c = chunk_length(vocab)
    assert c is not None and vocab % c == 0 and MIN_CHUNK <= c <= MAX_CHUNK
    assert all(vocab % d for d in range(MIN_CHUNK, c))  # the smallest such divisor: the most programs


@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("spelling", ["method", "function"])
def test_ties_resolve_to_the_first_maximum_like_eager(keepdim, spelling):
    torch.manual_seed(0)
    x = torch.randint(0, 4, (3, 2, 32000)).float()  # every row has its maximum thousands of times
    x[0, 1, 31999] = 9.0                             # a lone maximum in the last group
    x[1, 0, 5] = x[1, 0, 20000] = 7.0                # a tie across groups: the first one wins
    fn = (lambda t: t.argmax(-1, keepdim=keepdim)) if spelling == "method" else (
        lambda t: torch.argmax(t, dim=-1, keepdim=keepdim))
    out, report = rewrite_only(fn, x)
    assert patterns(report) == ["split_argmax"]
    assert torch.equal(out, fn(x))
    assert out[1, 0].item() == 5


def test_nan_counts_as_the_maximum():
    x = torch.randn(2, 1, 16384)
    x[0, 0, 9000] = float("nan")
    x[0, 0, 12000] = float("nan")
    out, _ = rewrite_only(greedy, x)
    assert torch.equal(out, greedy(x)) and out[0, 0].item() == 9000


@settings(max_examples=25, deadline=None)
@given(groups=st.integers(16, 40), rows=st.integers(1, 3), seed=st.integers(0, 2**16),
       dtype=st.sampled_from([torch.float32, torch.float16, torch.bfloat16]))
def test_property_matches_eager(groups, rows, seed, dtype):
    vocab = groups * MIN_CHUNK
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(rows, 1, vocab, generator=g) * 4).round().to(dtype)  # rounded: many ties
    out, report = rewrite_only(greedy, x)
    assert patterns(report) == ["split_argmax"]
    assert torch.equal(out, greedy(x))


@pytest.mark.parametrize("shape, dim", [((2, 4096), -1), ((2, 50021), -1), ((32000, 2), 0)])
def test_left_to_inductor(shape, dim):
    # a small vocabulary, a prime one (no divisor in range: reported), a reduction over another dim
    x = torch.randn(shape)
    out, report = rewrite_only(lambda t: t.argmax(dim), x)
    assert "split_argmax" not in patterns(report)
    assert torch.equal(out, x.argmax(dim))
    reported = [f.family for f in report.fallbacks]
    assert reported == (["argmax"] if shape[-1] == 50021 else [])


def test_option_off_and_full_inductor_compile():
    x = torch.randn(2, 1, 32000)
    _, report = rewrite_only(greedy, x, options={"split_argmax": False})
    assert "split_argmax" not in patterns(report)
    torch._dynamo.reset()
    compiled = torch.compile(greedy, backend="accel", options={"strict": True})
    assert torch.equal(compiled(x), greedy(x))
