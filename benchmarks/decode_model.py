"""The model and compiled decode step shared by decode.py, profile_decode.py and host_profile.py.

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


# accel variants: the options each adds (lossless bf16, then the quantized schemes)
ACCEL_VARIANTS = {
    "accel": {},
    "accel-int8": {"quantize": "int8_weight_only"},
    "accel-int4": {"quantize": "int4_weight_only", "group_size": 128},
    "accel-w8a8-int8": {"quantize": "w8a8_int8"},
    "accel-fp8": {"quantize": "w8a8_fp8"},
    "accel-int8-head": {"quantize": "int8_weight_only", "quantize_lm_head": True},
    "accel-int4-head": {"quantize": "int4_weight_only", "group_size": 128, "quantize_lm_head": True},
    # ablations, for same-run comparisons
    "accel-nonorm": {"fuse_norm": False},
    # the quantized steps without the norms fused into their GEMVs (session 9's fusion, A/B in one run)
    "accel-int8-head-nonorm": {"quantize": "int8_weight_only", "quantize_lm_head": True, "fuse_norm": False},
    "accel-int4-head-nonorm": {"quantize": "int4_weight_only", "group_size": 128, "quantize_lm_head": True,
                               "fuse_norm": False},
    # split-K quantized linears finished by a second launch instead of their last program (session 10's option,
    # on by default), for a same-run A/B; with every kernel launched from the host as well (no CUDA graphs)
    "accel-int8-head-noreduce": {"quantize": "int8_weight_only", "quantize_lm_head": True,
                                 "reduce_splits_in_kernel": False},
    "accel-int8-head-nocg": {"quantize": "int8_weight_only", "quantize_lm_head": True, "cudagraphs": False},
    "accel-int8-head-nocg-noreduce": {"quantize": "int8_weight_only", "quantize_lm_head": True, "cudagraphs": False,
                                      "reduce_splits_in_kernel": False},
    # the rotary embedding's outer-product matmul left to cuBLAS (outer_products off; session 12's option, on)
    "accel-int4-head-noouter": {"quantize": "int4_weight_only", "group_size": 128, "quantize_lm_head": True,
                                "outer_products": False},
    "accel-nocombo": {"inductor_config": {"combo_kernels": False}},
    "accel-nokv": {"fuse_kv_update": False},
    "accel-pdl": {"pdl": True},
    "accel-int4-head-pdl": {"quantize": "int4_weight_only", "group_size": 128, "quantize_lm_head": True, "pdl": True},
    "accel-int8-head-pdl": {"quantize": "int8_weight_only", "quantize_lm_head": True, "pdl": True},
    # the derived tensors as one graph input each (pack_derived_inputs off; session 22's option, on), for an A/B
    "accel-int8-head-nopack": {"quantize": "int8_weight_only", "quantize_lm_head": True,
                               "pack_derived_inputs": False},
    "accel-int4-head-nopack": {"quantize": "int4_weight_only", "group_size": 128, "quantize_lm_head": True,
                               "pack_derived_inputs": False},
    # without PDL (on by default since session 15), for an A/B
    "accel-nopdl": {"pdl": False},
    "accel-int8-head-nopdl": {"quantize": "int8_weight_only", "quantize_lm_head": True, "pdl": False},
    "accel-int4-head-nopdl": {"quantize": "int4_weight_only", "group_size": 128, "quantize_lm_head": True,
                              "pdl": False},
    # the GEMVs' launch_dependents on their first line instead of after their main loop (pdl_early_trigger; by
    # default "small" for int4 weight-only, off otherwise), for an A/B against the defaults
    "accel-early": {"pdl_early_trigger": True},
    "accel-int8-head-early": {"quantize": "int8_weight_only", "quantize_lm_head": True, "pdl_early_trigger": True},
    "accel-int4-head-early": {"quantize": "int4_weight_only", "group_size": 128, "quantize_lm_head": True,
                              "pdl_early_trigger": True},
    # the early trigger only in GEMV launches that fit in half of the GPU's warp slots (pdl_early_trigger="small")
    "accel-early-small": {"pdl_early_trigger": "small"},
    "accel-int8-head-early-small": {"quantize": "int8_weight_only", "quantize_lm_head": True,
                                    "pdl_early_trigger": "small"},
    "accel-int4-head-early-small": {"quantize": "int4_weight_only", "group_size": 128, "quantize_lm_head": True,
                                    "pdl_early_trigger": "small"},
    # int4 with every GEMV triggering after its main loop (the int4 default before session 16)
    "accel-int4-head-late": {"quantize": "int4_weight_only", "group_size": 128, "quantize_lm_head": True,
                             "pdl_early_trigger": False},
    # PDL for the GEMVs alone, not the attention chain (pdl_attention off: the PDL of sessions 6-14), for an A/B
    "accel-pdl-gemv": {"pdl": True, "pdl_attention": False},
    "accel-int8-head-pdl-gemv": {"quantize": "int8_weight_only", "quantize_lm_head": True, "pdl": True,
                                 "pdl_attention": False},
    "accel-int4-head-pdl-gemv": {"quantize": "int4_weight_only", "group_size": 128, "quantize_lm_head": True,
                                 "pdl": True, "pdl_attention": False},
    # Inductor's own kernels launched with PDL too (its triton.enable_pdl, off by default)
    "accel-pdl-all": {"pdl": True, "inductor_config": {"triton.enable_pdl": True}},
    "accel-int8-head-pdl-all": {"quantize": "int8_weight_only", "quantize_lm_head": True, "pdl": True,
                                "inductor_config": {"triton.enable_pdl": True}},
    "accel-int4-head-pdl-all": {"quantize": "int4_weight_only", "group_size": 128, "quantize_lm_head": True,
                                "pdl": True, "inductor_config": {"triton.enable_pdl": True}},
    # Inductor's combo kernels allowed to mix sizes (combo_kernel_allow_mixed_sizes=2: the step's small prologue
    # kernels of different lengths in one launch), alone and with Inductor's PDL
    "accel-int4-head-combo-mixed": {"quantize": "int4_weight_only", "group_size": 128, "quantize_lm_head": True,
                                    "inductor_config": {"combo_kernels": True, "combo_kernel_allow_mixed_sizes": 2}},
    "accel-int4-head-pdl-all-combo-mixed": {"quantize": "int4_weight_only", "group_size": 128,
                                            "quantize_lm_head": True, "inductor_config": {
                                                "triton.enable_pdl": True, "combo_kernels": True,
                                                "combo_kernel_allow_mixed_sizes": 2}},
}
# torchao baselines: the model quantized by torchao's quantize_, then Inductor (reduce-overhead)
TORCHAO_VARIANTS = ("torchao-int8wo", "torchao-int4wo", "torchao-fp8")


def torchao_quantize(model, variant: str) -> None:
    """Quantize ``model`` in place with torchao's counterpart of ``variant`` (int4: group 128, tinygemm)."""
    from torchao.quantization import (Float8DynamicActivationFloat8WeightConfig, Int4WeightOnlyConfig,
                                      Int8WeightOnlyConfig, PerRow, quantize_)
    from torchao.quantization.quantize_.workflows import Int4PackingFormat

    config = {"torchao-int8wo": lambda: Int8WeightOnlyConfig(),
              "torchao-int4wo": lambda: Int4WeightOnlyConfig(
                  group_size=128, int4_packing_format=Int4PackingFormat.TILE_PACKED_TO_4D),
              "torchao-fp8": lambda: Float8DynamicActivationFloat8WeightConfig(granularity=PerRow())}[variant]()
    quantize_(model, config)


def make_step(variant: str, cudagraphs: bool = True, options: dict | None = None):
    """The decode step for ``variant``: eager, inductor (reduce-overhead when cudagraphs), a torchao variant
    (Inductor on the model torchao_quantize made) or an accel variant (``ACCEL_VARIANTS``)."""
    if variant == "eager":
        return step_fn
    if variant == "inductor" or variant in TORCHAO_VARIANTS:
        mode = "reduce-overhead" if cudagraphs else None
        return torch.compile(step_fn, mode=mode, fullgraph=True, dynamic=False)
    if variant in ACCEL_VARIANTS:
        import accel  # noqa: F401  (registers the backend even when not installed as a distribution)

        opts = {**ACCEL_VARIANTS[variant], **(options or {})}
        opts.setdefault("cudagraphs", cudagraphs)
        return torch.compile(step_fn, backend="accel", options=opts, fullgraph=True, dynamic=False)
    raise ValueError(f"unknown variant {variant!r}")


def prefilled_cache(model, cfg, context: int, max_cache_len: int, device: str = "cuda", batch: int = 1):
    """A StaticCache of ``max_cache_len`` that an eager forward of ``context`` random tokens (for each of ``batch``
    sequences) filled (eagerly: the cache's tensors are created, and marked static, on first use)."""
    from transformers import StaticCache

    cache = StaticCache(config=cfg, max_cache_len=max_cache_len)
    with torch.no_grad():
        prompt = torch.randint(0, cfg.vocab_size, (batch, context), device=device)
        model(input_ids=prompt, past_key_values=cache, cache_position=torch.arange(context, device=device))
    return cache
