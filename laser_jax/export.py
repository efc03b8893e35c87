"""Export a (reduced) model as a Hugging Face directory that ``transformers`` loads.

The directory holds ``config.json`` (``family.to_hf_config``), ``model.safetensors``
(``convert.to_hf_state``: the exact inverse of loading, fused projections
fused again) and the tokenizer's files. Low-rank matrices are multiplied out,
so any ``AutoModelForCausalLM.from_pretrained(DIR)`` reproduces our logits.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from laser_jax.checkpoint import dense_params, staged_directory
from laser_jax.errors import ConfigError
from laser_jax.model import Model
from laser_jax.models.convert import to_hf_state

WEIGHTS = "model.safetensors"


def hf_state(model: Model) -> dict[str, np.ndarray]:
    """Our parameters under Hugging Face names and layouts, as numpy arrays."""
    family, cfg = model.family, model.config
    if family.hf_rules is None:
        raise ConfigError(f"family {family.name!r} has no conversion table; it cannot be exported")
    state = to_hf_state(family.hf_rules(cfg), cfg.n_layers, cfg, dense_params(model.params))
    return {name: np.ascontiguousarray(np.asarray(array)) for name, array in state.items()}


def hf_config(model: Model) -> dict:
    """``config.json`` contents: the family's inverse config, the weights' dtype, the tokenizer's special ids."""
    if model.family.to_hf_config is None:
        raise ConfigError(f"family {model.family.name!r} has no to_hf_config; it cannot be exported")
    config = dict(model.family.to_hf_config(model.config))
    config.setdefault("dtype", str(np.dtype(model.dtype)))
    for field in ("bos_token_id", "eos_token_id"):  # generation needs them; the tokenizer knows them
        if field not in config and getattr(model.tokenizer, field, None) is not None:
            config[field] = int(getattr(model.tokenizer, field))
    return config


def export_hf(model: Model, directory) -> Path:
    """Write ``directory`` as a Hugging Face checkpoint of ``model``; return its path.

    Written under a temporary sibling and renamed into place; an existing
    directory is replaced only if it is empty or already holds a ``config.json``.
    """
    from safetensors.numpy import save_file

    config = hf_config(model)
    state = hf_state(model)
    with staged_directory(directory, marker="config.json") as staging:
        save_file(state, str(staging / WEIGHTS), metadata={"format": "pt"})
        if model.tokenizer is not None:
            model.tokenizer.save_pretrained(str(staging))
        (staging / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return Path(directory).expanduser().resolve()


__all__ = ["export_hf", "hf_state", "hf_config"]
