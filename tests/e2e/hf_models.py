"""Tiny Hugging Face models built from configs (random weights, no downloads) for the end-to-end tests."""
from __future__ import annotations

import torch

LAYERS = 2


def build(name: str, attn_implementation: str, *, seed: int = 0):
    """(model, example kwargs) for ``name`` in MODELS."""
    import transformers as T

    torch.manual_seed(seed)
    ids = torch.randint(0, 100, (2, 8))
    if name == "llama":
        cfg = T.LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=LAYERS, num_attention_heads=4,
                            num_key_value_heads=2, vocab_size=100)
        model, kwargs = T.LlamaForCausalLM._from_config(cfg, attn_implementation=attn_implementation), {"input_ids": ids, "use_cache": False}
    elif name == "qwen2":
        cfg = T.Qwen2Config(hidden_size=64, intermediate_size=128, num_hidden_layers=LAYERS, num_attention_heads=4,
                            num_key_value_heads=2, vocab_size=100)
        model, kwargs = T.Qwen2ForCausalLM._from_config(cfg, attn_implementation=attn_implementation), {"input_ids": ids, "use_cache": False}
    elif name == "gpt2":
        cfg = T.GPT2Config(n_embd=64, n_layer=LAYERS, n_head=4, vocab_size=100, n_positions=64, bos_token_id=0,
                           eos_token_id=0)
        model, kwargs = T.GPT2LMHeadModel._from_config(cfg, attn_implementation=attn_implementation), {"input_ids": ids, "use_cache": False}
    elif name == "bert":
        cfg = T.BertConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=LAYERS, num_attention_heads=4,
                           vocab_size=100, max_position_embeddings=64)
        mask = torch.ones(2, 8, dtype=torch.long)
        mask[1, 5:] = 0  # a padded sequence: the attention mask matters
        model, kwargs = T.BertModel._from_config(cfg, attn_implementation=attn_implementation), {"input_ids": ids, "attention_mask": mask}
    elif name == "vit":
        cfg = T.ViTConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=LAYERS, num_attention_heads=4,
                          image_size=32, patch_size=8)
        model, kwargs = T.ViTModel._from_config(cfg, attn_implementation=attn_implementation), {"pixel_values": torch.randn(2, 3, 32, 32)}
    else:
        raise ValueError(name)
    return model.eval(), kwargs


MODELS = ("llama", "qwen2", "gpt2", "bert", "vit")
