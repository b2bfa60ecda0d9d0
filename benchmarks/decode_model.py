"""The model and compiled decode step shared by decode.py and profile_decode.py.

A Llama-architecture model built from a config (random weights, no download) and a gpt-fast-style step:
one token in, next token out, transformers' StaticCache updated in place. Variants differ only in how the
step is compiled.
"""
from __future__ import annotations

import torch

CONFIGS = {
    "tiny": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=32, vocab_size=1000, tie_word_embeddings=True),
    "1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
               num_key_value_heads=8, head_dim=64, vocab_size=128256, tie_word_embeddings=True),
    "8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=8, head_dim=128, vocab_size=128256, tie_word_embeddings=False),
}


def build_model(name: str, dtype: torch.dtype, device: str, attn_implementation: str = "sdpa"):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(**CONFIGS[name], max_position_embeddings=4096, rope_theta=500000.0,
                      attn_implementation=attn_implementation)
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(cfg).to(dtype).eval()
    return model, cfg


def step_fn(model, cache, tok, pos):
    out = model(input_ids=tok, past_key_values=cache, cache_position=pos, use_cache=True)
    return out.logits[:, -1:].argmax(-1)


def make_step(variant: str, cudagraphs: bool = True, options: dict | None = None):
    """The decode step for ``variant``: eager, inductor (reduce-overhead when cudagraphs) or accel."""
    if variant == "eager":
        return step_fn
    if variant == "inductor":
        mode = "reduce-overhead" if cudagraphs else None
        return torch.compile(step_fn, mode=mode, fullgraph=True, dynamic=False)
    if variant.startswith("accel"):
        import accel  # noqa: F401  (registers the backend even when not installed as a distribution)

        opts = dict(options or {})
        opts.setdefault("cudagraphs", cudagraphs)
        return torch.compile(step_fn, backend="accel", options=opts, fullgraph=True, dynamic=False)
    raise ValueError(f"unknown variant {variant!r}")
