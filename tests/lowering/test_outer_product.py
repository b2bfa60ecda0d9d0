"""OuterProductPass: a matmul with an inner dimension of 1 becomes a broadcast multiply with exactly eager's result
(in every spelling, with batch broadcasting); other matmuls and autocast regions are left alone; the rotary
embedding of a transformers Llama is matched; the full Inductor compile agrees."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.testing_backend import rewrite_only


def patterns(report):
    return [m.pattern for m in report.matches]


SPELLINGS = {
    "operator": lambda a, b: a @ b,
    "torch.matmul": lambda a, b: torch.matmul(a, b),
    "method": lambda a, b: a.matmul(b),
    "bmm": lambda a, b: torch.bmm(a, b),
}


@pytest.mark.parametrize("spelling", sorted(SPELLINGS))
def test_every_spelling_gives_eagers_bits(spelling):
    fn = SPELLINGS[spelling]
    a, b = torch.randn(2, 32, 1), torch.randn(2, 1, 7)
    out, report = rewrite_only(fn, a, b)
    assert patterns(report) == ["outer_product"]
    assert torch.equal(out, fn(a, b))


@settings(max_examples=25, deadline=None)
@given(m=st.integers(1, 40), n=st.integers(1, 40), batch=st.sampled_from([(), (1,), (3,), (2, 3)]),
       broadcast_a=st.booleans(), seed=st.integers(0, 2**16),
       dtype=st.sampled_from([torch.float32, torch.float16, torch.bfloat16]))
def test_property_matches_eager_bitwise(m, n, batch, broadcast_a, seed, dtype):
    g = torch.Generator().manual_seed(seed)
    a_batch = (1,) * len(batch) if broadcast_a and batch else batch  # matmul broadcasts batch dims as mul does
    a = (torch.randn(*a_batch, m, 1, generator=g) * 8).to(dtype)
    b = (torch.randn(*batch, 1, n, generator=g) * 8).to(dtype)
    out, report = rewrite_only(lambda x, y: x @ y, a, b)
    assert patterns(report) == ["outer_product"]
    assert out.dtype == dtype and torch.equal(out, a @ b)


@pytest.mark.parametrize("shapes", [((4, 2), (2, 5)), ((1,), (1, 5)), ((3, 1), (1,))])
def test_other_matmuls_are_left_to_inductor(shapes):
    # an inner dimension of 2, and vector operands (matmul's 1-D rules are not an outer product)
    a, b = (torch.randn(s) for s in shapes)
    out, report = rewrite_only(lambda x, y: x @ y, a, b)
    assert "outer_product" not in patterns(report)
    assert torch.equal(out, a @ b)


def test_autocast_is_left_alone():
    a, b = torch.randn(8, 1), torch.randn(1, 6)
    out, report = rewrite_only(lambda x, y: x.double() @ y.double(), a, b)
    assert patterns(report) == ["outer_product"] and out.dtype == torch.float64  # fp64 too, outside autocast

    def autocast(x, y):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return x @ y  # computed in bf16 under autocast: not a multiply in fp32

    out, report = rewrite_only(autocast, a, b)
    assert "outer_product" not in patterns(report)
    assert out.dtype == torch.bfloat16 and torch.equal(out, autocast(a, b))


def test_llama_rotary_angles_are_matched_and_the_logits_unchanged():
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=100)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).eval()
    ids = torch.randint(0, 100, (1, 6))
    out, report = rewrite_only(lambda t: model(t).logits, ids)
    assert patterns(report).count("outer_product") == 1
    off, report = rewrite_only(lambda t: model(t).logits, ids, options={"outer_products": False})
    assert "outer_product" not in patterns(report)
    torch.testing.assert_close(out, off, rtol=0, atol=0)


def test_full_inductor_compile():
    a, b = torch.randn(1, 32, 1), torch.randn(1, 1, 5)
    torch._dynamo.reset()
    # (an add, not the rotary's cos: Inductor's vectorized cos on CPU differs from eager's in the last bits)
    compiled = torch.compile(lambda x, y: (x @ y) + 1.0, backend="accel", options={"strict": True})
    assert torch.equal(compiled(a, b), (a @ b) + 1.0)
