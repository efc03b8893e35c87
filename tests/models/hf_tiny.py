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
