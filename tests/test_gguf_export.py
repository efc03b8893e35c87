"""GGUF export (laser_jax.gguf.export_gguf): transformers' GGUF loader reads our files with our logits, our own loader
reads them back exactly, metadata (tokenizer, edits) is carried, and bad requests are one-line errors."""

import numpy as np
import pytest

pytest.importorskip("gguf")
pytest.importorskip("torch")
pytest.importorskip("accelerate")

from laser_jax import load_model  # noqa: E402
from laser_jax.errors import ConfigError, SourceError  # noqa: E402
from laser_jax.gguf import EDITS_KEY, export_gguf, open_gguf  # noqa: E402
from laser_jax.laser import Intervention, apply  # noqa: E402
from tests.models.gguf_reference import transformers_gguf_model  # noqa: E402
from tests.models.hf_tiny import random_batch, torch_logits  # noqa: E402
from tests.models.hf_tiny_text import save_tiny_text_model  # noqa: E402
from tests.test_loading import raises_one_line  # noqa: E402

# Gemma 3 as GGUF can carry it: every sixth layer global, local RoPE base 10000, query scale head_dim ** -0.5.
GEMMA3_GGUF = dict(num_hidden_layers=6, num_attention_heads=2, num_key_value_heads=1, head_dim=256, query_pre_attn_scalar=256,
                   intermediate_size=64, sliding_window=3, layer_types=["sliding_attention"] * 5 + ["full_attention"],
                   rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 1000.0},
                                    "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}})
# Weights at the scale real checkpoints declare (initializer_range 0.02): Q8_0's error grows with the weights' spread.
SETUPS = {"llama": dict(intermediate_size=64, initializer_range=0.02), "gemma3": dict(GEMMA3_GGUF, initializer_range=0.02)}
Q8_0_TOLERANCE = 2e-2  # measured: 4.9e-3 (LLaMA), 1.2e-2 (Gemma 3) on these random weights
EDITS = [Intervention(1, "fc_in", 0.25), Intervention(0, "q_proj", 0.5)]


@pytest.fixture(scope="module", params=sorted(SETUPS))
def base(request, tmp_path_factory):
    directory = tmp_path_factory.mktemp(request.param)
    save_tiny_text_model(request.param, directory, **SETUPS[request.param])
    return load_model(directory)


def fields(path) -> dict:
    reader, _ = open_gguf(path)
    return {name: field.contents() for name, field in reader.fields.items() if not name.startswith("GGUF.")}


def logits_gap(model, path) -> float:
    ids, mask = random_batch(model.config.vocab_size, batch=3, length=9)
    ours = np.asarray(model.logits(ids, mask))
    theirs = torch_logits(transformers_gguf_model(path), ids, mask)
    return float(np.abs(np.where(mask[..., None], ours - theirs, 0)).max())


def test_transformers_reads_the_reduced_model_with_our_logits(base, tmp_path):
    reduced = apply(base, EDITS)
    path = export_gguf(reduced, tmp_path / "reduced.gguf", "f32", edits=EDITS)
    assert logits_gap(reduced, path) < 1e-4
    assert logits_gap(base, path) > 1e-2  # the edits are in the file


def test_a_q8_0_file_is_the_quantized_reduced_model(base, tmp_path):
    reduced = apply(base, EDITS)
    path = export_gguf(reduced, tmp_path / "reduced-q8_0.gguf", "q8_0", edits=EDITS)
    reader, _ = open_gguf(path)
    assert {t.tensor_type.name for t in reader.tensors} == {"Q8_0", "F32"}  # matrices Q8_0, norms F32
    assert logits_gap(load_model(path, tokenizer=False), path) < 1e-4  # transformers reads what we wrote, exactly
    assert logits_gap(reduced, path) < Q8_0_TOLERANCE  # and that is the reduced model up to Q8_0's rounding


def test_the_base_read_back_is_the_original_model(base, tmp_path):
    first = load_model(export_gguf(base, tmp_path / "base.gguf"))
    if base.family.name == "gemma3":  # HF norm w -> 1 + w in float32 rounds once; from a GGUF source it is exact
        np.testing.assert_allclose(np.asarray(first.params["blocks"]["ln_1_scale"]), np.asarray(base.params["blocks"]["ln_1_scale"]),
                                   atol=1e-7)
        base, first = first, load_model(export_gguf(first, tmp_path / "again.gguf"))
    for (where, ours), theirs in zip(_leaves(base.params), [leaf for _, leaf in _leaves(first.params)]):
        np.testing.assert_array_equal(np.asarray(theirs), np.asarray(ours), err_msg=where)
    text = "The capital of Italy is Rome."
    assert first.tokenizer(text)["input_ids"] == base.tokenizer(text)["input_ids"]


def _leaves(tree, prefix=""):
    if isinstance(tree, dict):
        return [item for key in sorted(tree) for item in _leaves(tree[key], f"{prefix}/{key}")]
    return [(prefix, tree)]


def test_a_gguf_source_keeps_its_metadata_and_the_edits_accumulate(base, tmp_path):
    first = export_gguf(apply(base, EDITS[:1]), tmp_path / "one.gguf", edits=EDITS[:1])
    assert fields(first)[EDITS_KEY] == "fc_in:1:0.25"
    reloaded = load_model(first)
    second = export_gguf(apply(reloaded, EDITS[1:]), tmp_path / "two.gguf", "q8_0", edits=EDITS[1:])
    before, after = fields(first), fields(second)
    assert after[EDITS_KEY] == "fc_in:1:0.25 q_proj:0:0.5"
    assert after["general.file_type"] == 7 and before["general.file_type"] == 0
    for name in before:
        if name not in ("general.file_type", EDITS_KEY):
            assert after[name] == before[name], name
    assert len(before["tokenizer.ggml.tokens"]) == base.config.vocab_size and before["tokenizer.ggml.merges"]


def test_an_existing_output_needs_force(base, tmp_path):
    path = tmp_path / "out.gguf"
    path.write_bytes(b"keep me")
    raises_one_line(SourceError, r"out\.gguf exists; give --force", export_gguf, base, path)
    assert path.read_bytes() == b"keep me"
    export_gguf(base, path, force=True)
    assert fields(path)["general.architecture"] in ("llama", "gemma3")


def test_unknown_type_is_refused(base, tmp_path):
    raises_one_line(ConfigError, r"GGUF type 'q4_k' is not one of f32, f16, q8_0", export_gguf, base, tmp_path / "x.gguf", "q4_k")


def test_an_architecture_we_cannot_write_is_a_one_line_error(tiny_gpt2, tmp_path):
    raises_one_line(ConfigError, r"GGUF export of the gpt2 family is not supported \(laser-jax writes: gemma3 \(as gemma3\), "
                    r"llama \(as llama\)\)", export_gguf, tiny_gpt2, tmp_path / "gpt2.gguf")
    assert not (tmp_path / "gpt2.gguf").exists()


def test_a_gemma3_config_gguf_cannot_express_is_refused(tmp_path):
    from tests.models.hf_tiny import save_tiny_family

    save_tiny_family("gemma3", tmp_path / "hf")  # query_pre_attn_scalar 12, layer types and local RoPE base of its own
    model = load_model(tmp_path / "hf", tokenizer=False)
    raises_one_line(ConfigError, r"GGUF cannot express this Gemma 3 model: layer_types=", export_gguf, model, tmp_path / "g.gguf")
    assert not list(tmp_path.glob("*.gguf")) and not list(tmp_path.glob(".g.gguf*"))
