"""The registry of model families: one module per family, looked up by HF ``model_type``."""

from __future__ import annotations

from laser_jax.errors import ConfigError
from laser_jax.models import base, gemma3, gpt2, gpt_neox, gptj, llama

FAMILIES: dict[str, base.Family] = {}


def register(family: base.Family) -> base.Family:
    FAMILIES[family.name] = family
    return family


def family_for_model_type(model_type: str) -> base.Family:
    """The family implementing a Hugging Face ``config.model_type``; refuses unknown ones."""
    for family in FAMILIES.values():
        if model_type in family.hf_model_types:
            return family
    known = sorted(t for f in FAMILIES.values() for t in f.hf_model_types)
    raise ConfigError(f"unknown model family {model_type!r}; supported model_type values: {', '.join(known)}")


def get_family(name: str) -> base.Family:
    if name not in FAMILIES:
        raise ConfigError(f"unknown model family {name!r}; known: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[name]


for _family in (gpt2.FAMILY, gpt_neox.FAMILY, gptj.FAMILY, llama.FAMILY, gemma3.FAMILY):
    register(_family)
