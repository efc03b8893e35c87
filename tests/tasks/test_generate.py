"""Greedy decoding against transformers' generate(do_sample=False) on a tiny random GPT-2, and the cached decoder
against the whole forward pass on every family."""

import numpy as np
import pytest
import torch
import transformers

from laser_jax import load_model
from laser_jax.examples import Example
from laser_jax.generate import _greedy, generation_accuracy, greedy_generate
from laser_jax.models import FAMILIES
from tests.models.hf_tiny import TINY_FAMILY_VOCAB, save_tiny, save_tiny_family
from tests.tasks.helpers import word_tokenizer

VOCAB = 100
STEPS = 6


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    directory = tmp_path_factory.mktemp("gpt2_generate")
    config = transformers.GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=2, n_head=4)
    torch_model = save_tiny(transformers.GPT2LMHeadModel, config, directory, seed=1)
    rng = np.random.default_rng(0)
    prompts = [tuple(int(t) for t in rng.integers(3, VOCAB, size=n)) for n in (3, 9, 5)]
    return torch_model, load_model(directory), prompts


def hf_continuation(torch_model, prompt, steps=STEPS):
    with torch.no_grad():
        out = torch_model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                                   max_new_tokens=steps, do_sample=False, pad_token_id=0)
    return tuple(int(t) for t in out[0, len(prompt):])


def test_matches_transformers_generate(tiny):
    torch_model, model, prompts = tiny
    ours = greedy_generate(model, prompts, STEPS, batch_size=2)  # a full batch and a padded one
    assert ours == [hf_continuation(torch_model, p) for p in prompts]


def test_compiles_once_per_buffer_shape(tiny):
    import jax

    _, model, prompts = tiny
    jax.clear_caches()  # the other tests' buffers
    greedy_generate(model, [prompts[0]], STEPS, batch_size=2)
    before = _greedy._cache_size()
    greedy_generate(model, [prompts[2], prompts[0]], STEPS, batch_size=2)  # other lengths, the same 8-token prompt pass
    assert _greedy._cache_size() == before
    greedy_generate(model, [prompts[1]], STEPS, batch_size=2)  # 9 tokens: a 16-token prompt pass, a longer buffer
    assert _greedy._cache_size() == before + 1


def test_stops_after_eos(tiny):
    _, model, prompts = tiny
    full = greedy_generate(model, prompts[:1], STEPS, batch_size=2)[0]
    assert greedy_generate(model, prompts[:1], STEPS, batch_size=2, eos_id=full[1])[0] == full[: full.index(full[1]) + 1]


def test_generation_accuracy_matches_the_continuation_only(tiny):
    torch_model, model, prompts = tiny
    tokenizer = word_tokenizer([f"w{i}" for i in range(3, VOCAB)], bos=False)
    examples = [Example(prompt_ids=p, answer_ids=(3,)) for p in prompts]
    continuation = tokenizer.decode(list(hf_continuation(torch_model, prompts[0])))
    prompt_text = tokenizer.decode(list(prompts[1]))
    assert prompt_text not in tokenizer.decode(list(hf_continuation(torch_model, prompts[1])))
    golds = [" " + continuation.split()[1].upper(), prompt_text, "zzz"]
    result = generation_accuracy(model, examples, golds, STEPS, tokenizer=tokenizer, batch_size=2)
    assert result.correct == (True, False, False) and result.accuracy == pytest.approx(1 / 3)
    assert result.continuations[0] == continuation


def uncached_continuation(model, prompt, steps):
    """Greedy decoding the slow way: the whole forward pass over the sequence so far for every new token."""
    ids = np.zeros((1, 32), np.int32)  # one buffer shape, so one compilation
    ids[0, : len(prompt)] = prompt
    for last in range(len(prompt) - 1, len(prompt) - 1 + steps):
        logits = model.logits(ids, np.arange(32)[None, :] <= last, select=np.array([[last]]))
        ids[0, last + 1] = int(np.argmax(np.asarray(logits)[0, 0]))
    return tuple(int(t) for t in ids[0, len(prompt) : len(prompt) + steps])


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_cached_decoding_equals_the_whole_forward_pass(family, tmp_path):
    """The per-layer hidden-state cache decodes what the full forward would, for every family; Gemma 3's tiny
    config has a sliding window of 3, shorter than the 12-token continuations, so its local layers' windows move."""
    save_tiny_family(family, tmp_path, seed=3)
    model = load_model(tmp_path)
    rng = np.random.default_rng(1)
    prompts = [tuple(int(t) for t in rng.integers(3, TINY_FAMILY_VOCAB, size=n)) for n in (2, 7, 4, 8)]
    steps = 12
    assert greedy_generate(model, prompts, steps, batch_size=2) == [uncached_continuation(model, p, steps) for p in prompts]
