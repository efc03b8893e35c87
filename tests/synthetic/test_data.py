"""The task generator: trigger placement, noise rate, uniform outputs, fixed clean test set, statistics."""

import json

import jax
import numpy as np
import pytest

from laser_jax.errors import DataError
from synthetic import data

TASK = data.TaskConfig(seq_len=48, n_triggers=1, alpha=0.3, noise_token=2)
SIZE = 1024  # one batch size everywhere: one compilation


@pytest.fixture(scope="module")
def stats():
    return data.get_stats()  # the default: the shipped Tiny-Shakespeare statistics


@pytest.fixture(scope="module")
def sampler(stats):
    return data.make_sampler(stats, TASK)


@pytest.fixture(scope="module")
def batch(sampler):
    return jax.device_get(data.sample_batch_jit(jax.random.PRNGKey(0), sampler, TASK, SIZE, TASK.alpha))


def test_default_stats_are_the_shipped_tiny_shakespeare_counts(stats):
    assert stats is data.shakespeare_stats() and stats.vocab == tuple(data.SHAKESPEARE_VOCAB)
    raw = json.loads(data.SHAKESPEARE_STATS.read_text())
    assert sum(raw["unigram_counts"]) == 1_115_394  # Tiny Shakespeare's length in characters
    np.testing.assert_array_equal(stats.unigram, np.asarray(raw["unigram_counts"]) / 1_115_394)
    np.testing.assert_allclose(stats.bigram.sum(1), 1.0, atol=1e-12)
    assert stats.triggers(1).tolist() == [1]  # the space
    assert stats.unigram[1] == 169892 / 1_115_394 and stats.vocab[2] == "!"


def test_shipped_stats_equal_the_papers_file():
    from tests.conftest import shared_file

    paper = json.loads(shared_file("synthetic", "shakespeare_char_stats.json").read_text())
    assert json.loads(data.SHAKESPEARE_STATS.read_text()) == paper


def test_docstring_stats_need_no_file_and_use_the_same_vocabulary():
    stats = data.get_stats("docstrings")
    assert stats.vocab == tuple(data.SHAKESPEARE_VOCAB) and stats.source == "docstrings:stdlib"
    np.testing.assert_allclose(stats.bigram.sum(1), 1.0, atol=1e-12)
    assert stats.triggers(1).tolist() == [1] and 0.1 < stats.unigram[1] < 0.25  # the space is the trigger here too
    with pytest.raises(DataError, match="not shakespeare/docstrings/dirichlet"):
        data.get_stats("builtin")


def test_triggers_and_counts(batch):
    inputs, targets, counts = batch.inputs, batch.targets, batch.counts
    np.testing.assert_array_equal(inputs[:, 1:], targets[:, :-1])
    is_trigger = inputs == 1
    np.testing.assert_array_equal(counts > 0, is_trigger)
    np.testing.assert_array_equal(counts[is_trigger], np.cumsum(is_trigger, axis=1)[is_trigger])
    # after a trigger: the noise token or the sequence's single output token
    for row in range(64):
        followers = set(targets[row][is_trigger[row]].tolist()) - {TASK.noise_token}
        assert len(followers) <= 1


def test_noise_rate_is_alpha(batch):
    followers = batch.targets[batch.inputs == 1]
    expected = TASK.alpha + (1 - TASK.alpha) / 65  # the output token itself is the noise token 1 time in 65
    assert abs((followers == TASK.noise_token).mean() - expected) < 0.02


def test_outputs_are_uniform(sampler):
    clean = jax.device_get(data.sample_batch_jit(jax.random.PRNGKey(1), sampler, TASK, SIZE, 0.0))
    first = np.argmax(clean.inputs == 1, axis=1)
    has = (clean.inputs == 1).any(axis=1)
    outputs = clean.targets[np.arange(SIZE), first][has]
    counts = np.bincount(outputs, minlength=65)
    expected = outputs.size / 65
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 120  # 64 degrees of freedom: the 99.99% quantile is about 116


def test_clean_test_set_is_fixed_and_noise_free(sampler):
    a = data.make_eval_set(0, sampler, TASK, SIZE)
    b = data.make_eval_set(0, sampler, TASK, SIZE)
    np.testing.assert_array_equal(a.batch.inputs, b.batch.inputs)
    repeat = np.asarray(a.batch.repeat)
    assert np.asarray(a.valid).sum() == repeat.sum()
    targets = np.asarray(a.targets)[np.asarray(a.valid)]
    first_output = np.asarray(a.batch.targets)[np.asarray(a.batch.counts) == 1]
    assert (targets == TASK.noise_token).mean() < 0.05 and first_output.size > 0


def test_stats_from_json_and_text(tmp_path):
    vocab = ["a", "b", " "]
    path = tmp_path / "counts.json"
    path.write_text(json.dumps({"vocab": vocab, "unigram_counts": [1, 1, 2],
                                "bigram_counts": [[0, 1, 1], [1, 0, 1], [0, 0, 0]]}))
    stats = data.get_stats(str(path))
    np.testing.assert_allclose(stats.unigram, [0.25, 0.25, 0.5])
    np.testing.assert_allclose(stats.bigram[2], stats.unigram)  # unseen predecessor: unigram row
    text = tmp_path / "t.txt"
    text.write_text("ab ab ba")
    assert data.get_stats(str(text)).vocab == (" ", "a", "b")
    assert data.get_stats("dirichlet:3").vocab_size == 65


def test_noise_token_may_not_be_a_trigger(stats):
    with pytest.raises(DataError):
        data.make_sampler(stats, data.TaskConfig(noise_token=1))
