"""``load_model``: a Hugging Face hub id, a local checkpoint directory, or a ``.gguf`` file.

Every source ends in the same place: an HF config dict and an HF-named state
dict, converted through the family's table in :mod:`laser_jax.models.convert`.
Safetensors are read with numpy (no torch); ``pytorch_model.bin`` needs torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import jax.numpy as jnp
import numpy as np

from laser_jax.errors import ConfigError, SourceError
# Real models shipped in PyPI packages, by a short name (what a run directory records, so no machine's path is written
# into a committed result); the table lives with the GGUF reader, which finds their files.
from laser_jax.gguf import PACKAGED_MODELS, packaged_path  # noqa: F401
from laser_jax.model import Model
from laser_jax.models import base, family_for_model_type
from laser_jax.models.convert import from_hf_state

HUB_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken"]


def load_model(source, *, revision: Optional[str] = None, dtype=jnp.float32, tokenizer: bool = True) -> Model:
    """Load a model from a hub id, a local directory, a ``.gguf`` file or a packaged model's name (``smollm2``, ``gemma3-270m``).

    ``revision`` selects a hub branch, tag or commit (e.g. Pythia's ``step3000``).
    ``dtype`` is the parameter dtype (float32, bfloat16 or float16).
    A directory written by :func:`laser_jax.checkpoint.save` (Orbax) is restored
    exactly, dense or factored.
    """
    source = str(source)
    path = packaged_path(source) or Path(source).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        from laser_jax.gguf import read_gguf

        hf_config, state, tok = read_gguf(path, with_tokenizer=tokenizer)
        return _build(hf_config, state, dtype, tok, source)
    if path.is_dir():
        if (path / "laser_jax.json").exists():
            from laser_jax.checkpoint import restore

            return restore(path, tokenizer=tokenizer)  # exactly as saved: dtype is the checkpoint's
        return _load_directory(path, dtype, tokenizer, source)
    if path.exists():
        raise SourceError(f"model source {source!r} is a file but not a .gguf file")
    if source.startswith((".", "/", "~")) or source.count("/") > 1 or path.suffix in (".gguf", ".json", ".safetensors"):
        raise SourceError(f"model source {source!r} does not exist")
    return _load_directory(_download(source, revision), dtype, tokenizer, source)


def _download(repo_id: str, revision: Optional[str]) -> Path:
    """Fetch the config, tokenizer and weights of a hub repository (cached)."""
    try:
        from huggingface_hub import snapshot_download

        local = snapshot_download(repo_id, revision=revision, allow_patterns=HUB_PATTERNS)
    except Exception as error:  # the hub raises many types; the user needs one line
        raise SourceError(f"model source {repo_id!r} is not a local path and could not be fetched from the hub: {_first_line(error)}") from error
    local = Path(local)
    if not list(local.glob("*.safetensors")):
        from huggingface_hub import snapshot_download

        local = Path(snapshot_download(repo_id, revision=revision, allow_patterns=["pytorch_model*.bin"]))
    return local


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


def read_state_dict(directory: Path) -> dict:
    """All tensors of a checkpoint directory: sharded or single safetensors, else ``pytorch_model*.bin``."""
    files = sorted(directory.glob("*.safetensors"))
    state: dict = {}
    if files:
        from safetensors import safe_open

        for file in files:
            try:
                with safe_open(str(file), framework="numpy") as handle:
                    for name in handle.keys():
                        state[name] = handle.get_tensor(name)
            except Exception as error:  # safetensors raises its own error types
                raise SourceError(f"{file} is not a readable safetensors file: {_first_line(error)}") from error
        return state
    bins = sorted(directory.glob("pytorch_model*.bin"))
    if not bins:
        raise SourceError(f"{directory} has no *.safetensors or pytorch_model*.bin weights")
    try:
        import torch
    except ImportError as error:
        raise SourceError(f"{bins[0]} is a torch checkpoint; install the 'torch' extra to read it") from error
    for file in bins:
        for name, tensor in torch.load(str(file), map_location="cpu", weights_only=True).items():
            state[name] = tensor.float().numpy() if tensor.dtype == torch.bfloat16 else tensor.numpy()
    return state


def _load_directory(directory: Path, dtype, tokenizer: bool, source: str) -> Model:
    config_file = directory / "config.json"
    if not config_file.exists():
        raise SourceError(f"{directory} has no config.json")
    try:
        hf_config = json.loads(config_file.read_text())
    except json.JSONDecodeError as error:
        raise SourceError(f"{config_file} is not valid JSON: {error}") from error
    tok = _tokenizer(directory) if tokenizer else None
    return _build(hf_config, read_state_dict(directory), dtype, tok, source)


def _tokenizer(directory: Path):
    names = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")
    if not any((directory / n).exists() for n in names):
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(directory))


def _build(hf_config: dict, state: dict, dtype, tok, source: str) -> Model:
    if "model_type" not in hf_config:
        raise ConfigError(f"config of {source!r} has no model_type")
    family = family_for_model_type(hf_config["model_type"])
    try:
        cfg = family.from_hf_config(hf_config)
    except KeyError as error:
        raise ConfigError(f"{family.name}: config of {source!r} lacks the field {error.args[0]!r}") from None
    rules = family.hf_rules(cfg)
    constants = family.layer_constants(cfg) if family.layer_constants is not None else None
    tree = from_hf_state(family.name, rules, cfg.n_layers, cfg, state, family.ignored_hf_keys, constants)
    params = base.cast_params(_to_jax(tree), dtype)
    return Model(family=family, config=cfg, params=params, tokenizer=tok, source=source)


def _to_jax(tree):
    if isinstance(tree, dict):
        return {k: _to_jax(v) for k, v in tree.items()}
    array = np.asarray(tree)
    if array.dtype == np.float64:
        array = array.astype(np.float32)
    return jnp.asarray(array)
