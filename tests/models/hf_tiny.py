"""Tiny random Hugging Face models, saved to a directory, for parity tests."""

from __future__ import annotations

import numpy as np
import torch


def save_tiny(model_cls, config, directory, seed: int = 0):
    """Build ``model_cls(config)`` with seeded random weights, save it, and return the torch model."""
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    with torch.no_grad():  # non-trivial norms and biases, so parity tests exercise them
        for name, param in model.named_parameters():
            if param.ndim == 1:
                param.add_(0.1 * torch.randn_like(param))
    model.save_pretrained(str(directory))
    return model


def torch_logits(model, ids: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    with torch.no_grad():
        kwargs = {"attention_mask": torch.tensor(mask)} if mask is not None else {}
        return model(input_ids=torch.tensor(ids), **kwargs).logits.float().numpy()


def random_batch(vocab: int, batch: int = 3, length: int = 11, seed: int = 0):
    """Token ids and a right-padded mask with rows of different lengths."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab, size=(batch, length)).astype(np.int64)
    lengths = [length] + [max(2, length - 3 * i) for i in range(1, batch)]
    mask = (np.arange(length)[None, :] < np.array(lengths)[:, None]).astype(np.int64)
    return ids, mask


# Gemma 3 with both layer types, a window shorter than the test sequences, distinct RoPE bases for local
# and global layers and a query_pre_attn_scalar that is not head_dim.
GEMMA3_LOCAL_GLOBAL = dict(
    intermediate_size=48, num_key_value_heads=1, head_dim=8, sliding_window=3, query_pre_attn_scalar=12,
    layer_types=["sliding_attention", "full_attention", "sliding_attention"],
    rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 1000.0},
                     "sliding_attention": {"rope_type": "default", "rope_theta": 10.0}},
)

# Tiny random checkpoints for every family, by family name (3 layers so that layer 1 is neither first
# nor last; initializer_range 0.2 so that truncations move the scores visibly).
TINY_FAMILY_VOCAB = 97


def tiny_family_config(family: str):
    """``(model class, config)`` of a tiny random Hugging Face model of a registered family."""
    import transformers

    common = dict(vocab_size=TINY_FAMILY_VOCAB, initializer_range=0.2, bos_token_id=1, eos_token_id=2)
    rotary = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, max_position_embeddings=64)
    cases = {
        "gpt2": lambda: (transformers.GPT2LMHeadModel, transformers.GPT2Config(
            **common, n_positions=64, n_embd=32, n_layer=3, n_head=4)),
        "gpt_neox": lambda: (transformers.GPTNeoXForCausalLM, transformers.GPTNeoXConfig(
            **common, **rotary, intermediate_size=64, rotary_pct=0.5, use_parallel_residual=True)),
        "gptj": lambda: (transformers.GPTJForCausalLM, transformers.GPTJConfig(
            **common, n_positions=64, n_embd=32, n_layer=3, n_head=4, rotary_dim=4)),
        "llama": lambda: (transformers.LlamaForCausalLM, transformers.LlamaConfig(
            **common, **rotary, intermediate_size=48, num_key_value_heads=2)),
        "qwen2": lambda: (transformers.Qwen2ForCausalLM, transformers.Qwen2Config(
            **common, **rotary, intermediate_size=48, num_key_value_heads=2)),
        "qwen3": lambda: (transformers.Qwen3ForCausalLM, transformers.Qwen3Config(
            **common, **rotary, intermediate_size=48, num_key_value_heads=2, head_dim=16)),
        "phi": lambda: (transformers.PhiForCausalLM, transformers.PhiConfig(
            **common, **rotary, intermediate_size=64, partial_rotary_factor=0.5)),
        "gemma3": lambda: (transformers.Gemma3ForCausalLM, transformers.Gemma3TextConfig(
            **common, **rotary, **GEMMA3_LOCAL_GLOBAL)),
    }
    if family not in cases:
        raise KeyError(f"no tiny checkpoint for family {family!r}: add one to tests/models/hf_tiny.py")
    return cases[family]()


def save_tiny_family(family: str, directory, seed: int = 0):
    """Save a tiny random checkpoint of ``family`` to ``directory``; return the torch model."""
    model_cls, config = tiny_family_config(family)
    return save_tiny(model_cls, config, directory, seed)
