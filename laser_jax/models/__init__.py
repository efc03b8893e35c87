"""The registry of model families: one module per family, looked up by HF ``model_type``."""

from __future__ import annotations

from laser_jax.errors import ConfigError
from laser_jax.models import base, gemma3, gpt2, gpt_neox, gptj, llama, phi, qwen2, qwen3

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


# Families defined outside laser_jax (not Hugging Face ports, so not in FAMILIES): a name prefix and the
# module whose ``family_named(name)`` returns them. A checkpoint names its family, so they load on first use.
EXTERNAL_FAMILIES = {"synthetic": "synthetic.model"}


def get_family(name: str) -> base.Family:
    module = EXTERNAL_FAMILIES.get(name.split("-")[0])
    if name not in FAMILIES and module is not None:
        import importlib

        family = importlib.import_module(module).family_named(name)
        if family is not None:
            return family
    if name not in FAMILIES:
        raise ConfigError(f"unknown model family {name!r}; known: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[name]


for _family in (gpt2.FAMILY, gpt_neox.FAMILY, gptj.FAMILY, llama.FAMILY, qwen2.FAMILY, qwen3.FAMILY, phi.FAMILY,
                gemma3.FAMILY):
    register(_family)
