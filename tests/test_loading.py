"""``load_model``: every bad input is a one-line ``LaserJaxError`` naming the problem; every source layout loads."""

from __future__ import annotations

import json
import shutil

import huggingface_hub
import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import load_file, save_file

from laser_jax import load_model
from laser_jax.errors import ConfigError, ConversionError, LaserJaxError, SourceError
from laser_jax.loading import HUB_PATTERNS
from laser_jax.models import get_family, gpt2, gpt_neox, gptj, llama
from tests.models.hf_tiny import random_batch, save_tiny

VOCAB = 97
DELETE = object()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny GPT-2 checkpoint directory and its torch model."""
    directory = tmp_path_factory.mktemp("gpt2")
    config = transformers.GPT2Config(vocab_size=VOCAB, n_positions=32, n_embd=32, n_layer=2, n_head=4)
    return directory, save_tiny(transformers.GPT2LMHeadModel, config, directory)


@pytest.fixture(scope="module")
def reference_logits(tiny):
    ids, mask = random_batch(VOCAB)
    return ids, mask, np.asarray(load_model(tiny[0]).logits(ids, mask))


def raises_one_line(error_type, pattern, call, *args, **kwargs) -> LaserJaxError:
    with pytest.raises(error_type, match=pattern) as caught:
        call(*args, **kwargs)
    assert "\n" not in str(caught.value), str(caught.value)
    return caught.value


# ----------------------------------------------------------------------------- broken checkpoints


def edit_config(**changes):
    def edit(directory):
        path = directory / "config.json"
        config = json.loads(path.read_text())
        for key, value in changes.items():
            if value is DELETE:
                config.pop(key)
            else:
                config[key] = value
        path.write_text(json.dumps(config))
    return edit


def edit_weights(change):
    def edit(directory):
        path = directory / "model.safetensors"
        state = load_file(str(path))
        change(state)
        save_file(state, str(path))
    return edit


def write(name, text):
    return lambda directory: (directory / name).write_text(text)


def remove(name):
    return lambda directory: (directory / name).unlink()


BROKEN = {
    "unknown family": (edit_config(model_type="bert"), ConfigError, r"unknown model family 'bert'"),
    "unsupported config field": (edit_config(scale_attn_by_inverse_layer_idx=True), ConfigError,
                                 r"unsupported config scale_attn_by_inverse_layer_idx=True"),
    "config field missing": (edit_config(n_embd=DELETE), ConfigError, r"lacks the field 'n_embd'"),
    "no model_type": (edit_config(model_type=DELETE), ConfigError, r"has no model_type"),
    "config not JSON": (write("config.json", "{not json"), SourceError, r"config\.json is not valid JSON"),
    "no config.json": (remove("config.json"), SourceError, r"has no config\.json"),
    "no weights": (remove("model.safetensors"), SourceError, r"has no \*\.safetensors or pytorch_model\*\.bin"),
    "weights corrupt": (write("model.safetensors", "garbage"), SourceError, r"model\.safetensors is not a readable safetensors file"),
    "missing key": (edit_weights(lambda s: s.pop("transformer.ln_f.bias")), ConversionError,
                    r"missing key 'transformer\.ln_f\.bias'"),
    "unexpected key": (edit_weights(lambda s: s.update({"transformer.h.0.attn.extra": np.zeros(3, np.float32)})),
                       ConversionError, r"unexpected checkpoint key 'transformer\.h\.0\.attn\.extra'"),
    "wrong shape": (edit_weights(lambda s: s.update({"transformer.h.1.mlp.c_fc.bias": np.zeros(31, np.float32)})),
                    ConversionError, r"transformer\.h\.1\.mlp\.c_fc\.bias has shape \(31,\), expected \(128,\)"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_checkpoint_is_a_one_line_error(case, tiny, tmp_path):
    edit, error_type, pattern = BROKEN[case]
    directory = tmp_path / "checkpoint"
    shutil.copytree(tiny[0], directory)
    edit(directory)
    raises_one_line(error_type, pattern, load_model, directory)


@pytest.mark.parametrize("source", ["/no/such/checkpoint", "./no-such-checkpoint", "~/no-such-dir/x", "model.gguf", "a/b/c"])
def test_missing_source_path_is_a_one_line_error(source):
    raises_one_line(SourceError, r"does not exist", load_model, source)


def test_a_file_that_is_not_gguf_is_refused(tiny):
    raises_one_line(SourceError, r"is a file but not a \.gguf file", load_model, tiny[0] / "config.json")


def test_a_corrupt_gguf_file_is_refused(tmp_path):
    pytest.importorskip("gguf")
    path = tmp_path / "broken.gguf"
    path.write_bytes(b"GGUF but not really")
    raises_one_line(SourceError, r"broken\.gguf is not a readable GGUF file", load_model, path)


def test_a_gguf_file_of_an_unported_architecture_is_refused(tmp_path):
    gguf = pytest.importorskip("gguf")
    path = tmp_path / "falcon.gguf"
    writer = gguf.GGUFWriter(str(path), "falcon")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    raises_one_line(SourceError, r"GGUF architecture 'falcon' of falcon\.gguf is not supported \(laser-jax reads: .*gemma3.*\)",
                    load_model, path)


# ----------------------------------------------------------------------------- unsupported configs, every family

REFUSED = [
    (gpt2.PRESETS["gpt2"], {"activation_function": "relu"}, "activation_function"),
    (gpt2.PRESETS["gpt2"], {"reorder_and_upcast_attn": True}, "reorder_and_upcast_attn"),
    (gpt_neox.PRESETS["pythia-70m"], {"rope_scaling": {"type": "linear", "factor": 2.0}}, "rope_type='linear'"),
    (gpt_neox.PRESETS["pythia-70m"], {"rope_parameters": {"rope_type": "dynamic", "rope_theta": 1e4}}, "rope_type='dynamic'"),
    (gpt_neox.PRESETS["pythia-70m"], {"attention_bias": False}, "attention_bias"),
    (gpt_neox.PRESETS["pythia-70m"], {"hidden_act": "swiglu"}, "hidden_act"),
    (gpt_neox.PRESETS["pythia-70m"], {"rope_parameters": {"rope_theta": 1e4, "partial_rotary_factor": 0.3}}, "rotary"),
    (gptj.PRESETS["gpt-j-6b"], {"rotary_dim": None}, "rotary_dim"),
    (gptj.PRESETS["gpt-j-6b"], {"rotary_dim": 63}, "rotary_dim"),
    (gptj.PRESETS["gpt-j-6b"], {"tie_word_embeddings": True}, "tie_word_embeddings"),
    (llama.PRESETS["llama-2-7b"], {"attention_bias": True}, "attention_bias"),
    (llama.PRESETS["llama-2-7b"], {"mlp_bias": True}, "mlp_bias"),
    (llama.PRESETS["llama-2-7b"], {"hidden_act": "xielu"}, "hidden_act"),
    (llama.PRESETS["llama-2-7b"], {"rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0}}, "rope_type='llama3'"),
    (llama.PRESETS["llama-2-7b"], {"rope_scaling": {"type": "linear", "factor": 2.0}}, "rope_type='linear'"),
    (llama.PRESETS["llama-2-7b"], {"sliding_window": 4096}, "sliding_window=4096"),  # LLaMA has no window
    (llama.PRESETS["llama-2-7b"], {"model_type": "mistral", "sliding_window": 0}, "sliding_window=0"),
    (llama.PRESETS["llama-2-7b"], {"num_key_value_heads": 5}, "num_key_value_heads"),
    (llama.PRESETS["smollm2-135m"], {"model_type": "qwen2"}, "model_type"),
]


@pytest.mark.parametrize("preset, changes, named", REFUSED, ids=[f"{type(p).__name__}-{next(iter(c))}-{i}" for i, (p, c, _) in enumerate(REFUSED)])
def test_unimplemented_config_fields_are_refused(preset, changes, named):
    family = get_family({gpt2.GPT2Config: "gpt2", gpt_neox.GPTNeoXConfig: "gpt_neox", gptj.GPTJConfig: "gptj",
                         llama.LlamaConfig: "llama"}[type(preset)])
    hf = {**family.to_hf_config(preset), **changes}
    error = raises_one_line(ConfigError, family.name, family.from_hf_config, hf)
    assert named in str(error)


# ----------------------------------------------------------------------------- source layouts


def test_sharded_safetensors_directory(tiny, reference_logits, tmp_path):
    _, torch_model = tiny
    torch_model.save_pretrained(str(tmp_path), max_shard_size="20KB")
    assert len(list(tmp_path.glob("*.safetensors"))) > 1 and (tmp_path / "model.safetensors.index.json").exists()
    ids, mask, expected = reference_logits
    np.testing.assert_array_equal(np.asarray(load_model(tmp_path).logits(ids, mask)), expected)


def test_pytorch_model_bin_directory(tiny, reference_logits, tmp_path):
    directory, torch_model = tiny
    shutil.copy(directory / "config.json", tmp_path / "config.json")
    torch.save(torch_model.state_dict(), str(tmp_path / "pytorch_model.bin"))  # transformers 5 writes safetensors only
    ids, mask, expected = reference_logits
    np.testing.assert_array_equal(np.asarray(load_model(tmp_path).logits(ids, mask)), expected)


def test_hub_id_is_fetched_at_the_revision(tiny, reference_logits, monkeypatch):
    calls = []

    def snapshot_download(repo_id, revision=None, allow_patterns=None, **kwargs):
        calls.append((repo_id, revision, allow_patterns))
        return str(tiny[0])

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    model = load_model("org/model", revision="step3000")
    assert calls == [("org/model", "step3000", HUB_PATTERNS)]
    assert model.source == "org/model"
    ids, mask, expected = reference_logits
    np.testing.assert_array_equal(np.asarray(model.logits(ids, mask)), expected)


def test_hub_repo_with_only_torch_weights_fetches_them_at_the_revision(tiny, tmp_path, monkeypatch):
    directory, torch_model = tiny
    shutil.copy(directory / "config.json", tmp_path / "config.json")
    calls = []

    def snapshot_download(repo_id, revision=None, allow_patterns=None, **kwargs):
        calls.append((repo_id, revision, allow_patterns))
        if allow_patterns != HUB_PATTERNS:
            torch.save(torch_model.state_dict(), str(tmp_path / "pytorch_model.bin"))
        return str(tmp_path)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    load_model("org/model", revision="v1", tokenizer=False)
    assert [(repo, revision) for repo, revision, _ in calls] == [("org/model", "v1")] * 2
    assert calls[1][2] == ["pytorch_model*.bin"]


def test_hub_failure_is_a_one_line_source_error(monkeypatch):
    def snapshot_download(repo_id, revision=None, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files.\nCheck your connection.")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    error = raises_one_line(SourceError, r"'org/model' is not a local path and could not be fetched from the hub", load_model, "org/model")
    assert "OSError: We couldn't connect" in str(error)
