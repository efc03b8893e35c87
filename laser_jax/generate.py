"""Greedy decoding with a :class:`laser_jax.model.Model`, and generation accuracy.

Prompts are packed into a fixed-size right-padded buffer ``[batch, length]``
(a short last batch is filled with copies of a row): the prompt pass runs its
first ``filled`` positions, the longest prompt rounded up to a multiple of
``bucket``, and ``length`` is ``filled`` plus the new tokens, rounded up
likewise. So the decoder compiles once per buffer shape, and the prompt pass
does not run the positions the new tokens will fill.

The cache holds every layer's *input* hidden state at every filled position
(``[layers + 1, batch, length, d]``), not keys and values, so it works for every
family through :func:`laser_jax.models.base.block` without touching their
attention code. One pass over the prompts fills it; each new token then runs
each block at its own position only (``select``), the block recomputing the
earlier positions' keys and values from the cached inputs: a norm and the k/v
projections per position, against the whole block for the new one. A new token
costs about a tenth of a forward pass over the buffer on SmolLM2, instead of a
whole one. The first new token comes from the prompt pass itself, and the
later steps run in loops of :data:`STEP_SEGMENT` steps, each over only the
positions its steps can read (``filled`` plus the tokens written so far,
rounded up to a multiple of :data:`STEP_SEGMENT`), not the whole buffer.

Ties go to the lowest token id, as in ``torch.argmax`` and transformers'
``generate(do_sample=False)``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from laser_jax.batching import round_up
from laser_jax.examples import Example
from laser_jax.model import Model
from laser_jax.models import base
from laser_jax.tasks.common import generation_match

STEP_SEGMENT = 8  # decoding steps per compiled loop; each loop reads only the positions its steps can reach


@functools.partial(jax.jit, static_argnums=(0, 1, 5, 6))
def _greedy(family, config, params, ids, lengths, steps, filled):
    """``steps`` greedy tokens after each row's ``lengths`` prompt tokens; the prompt pass runs the first ``filled``
    positions (at least the longest prompt: a position from a row's length on is written by a step before any
    later position reads it)."""
    batch, length = ids.shape
    rows = jnp.arange(batch)
    columns = jnp.arange(length)
    layers = base.n_layers(params)

    prompt = base.make_context(ids[:, :filled], columns[None, :filled] < lengths[:, None])
    first = family.embed(params, config, ids[:, :filled], prompt)

    def fill(i, cache):
        h = base.block(family, config, base.layer_params(params, i), cache[i, :, :filled], prompt)
        return cache.at[i + 1, :, :filled].set(h)

    cache = jnp.zeros((layers + 1, batch, length, first.shape[-1]), first.dtype).at[0, :, :filled].set(first)
    cache = jax.lax.fori_loop(0, layers, fill, cache)

    def next_ids(ids, cache, last):
        """``ids`` with the greedy token after position ``last`` (its last layer's output in ``cache``) written."""
        logits = family.head(params, config, cache[layers, rows, last][:, None])[:, 0]
        return ids.at[rows, last + 1].set(jnp.argmax(logits, axis=-1).astype(ids.dtype))

    def step(width):
        """Step ``t`` runs the new token at ``lengths - 1 + t`` through every block, over the first ``width``
        positions (the keys it reads)."""

        def run(t, state):
            ids, cache = state
            last = lengths - 1 + t
            ctx = base.make_context(ids[:, :width], columns[None, :width] <= last[:, None])
            cache = cache.at[0, rows, last].set(family.embed(params, config, ids[:, :width], ctx)[rows, last])

            def advance(i, cache):
                out = base.block(family, config, base.layer_params(params, i), cache[i, :, :width], ctx,
                                 select=last[:, None])
                return cache.at[i + 1, rows, last].set(out[:, 0])

            cache = jax.lax.fori_loop(0, layers, advance, cache)
            return next_ids(ids, cache, last), cache

        return run

    state = (next_ids(ids, cache, lengths - 1), cache)  # the first new token comes from the prompt pass
    # Steps in segments of STEP_SEGMENT, each over only the positions its steps can read (at most
    # ``filled - 1 + t`` at step t): a step's cost is mostly those positions' keys and values.
    for start in range(1, steps, STEP_SEGMENT):
        stop = min(start + STEP_SEGMENT, steps)
        width = min(length, round_up(filled + stop - 1, STEP_SEGMENT))
        state = jax.lax.fori_loop(start, stop, step(width), state)
    return jnp.take_along_axis(state[0], lengths[:, None] + jnp.arange(steps)[None, :], axis=1)


def greedy_generate(
    model: Model,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    *,
    batch_size: int = 16,
    bucket: int = 8,
    eos_id: Optional[int] = None,
) -> list[tuple[int, ...]]:
    """The greedy continuation (token ids) of each prompt, in input order.

    Each continuation has ``max_new_tokens`` tokens; with ``eos_id`` it stops
    after the first ``eos_id`` (included), as ``generate`` does.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths share a buffer
    out: list[tuple[int, ...]] = [()] * len(prompts)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        filled = round_up(max(len(prompts[i]) for i in chunk), bucket)
        length = round_up(filled + max_new_tokens, bucket)
        rows = chunk + [chunk[0]] * (batch_size - len(chunk))
        ids = np.zeros((batch_size, length), np.int32)
        for r, i in enumerate(rows):
            ids[r, : len(prompts[i])] = prompts[i]
        lengths = np.array([len(prompts[i]) for i in rows], np.int32)
        new = np.asarray(_greedy(model.family, model.config, model.params, ids, lengths, max_new_tokens, filled))
        for r, i in enumerate(chunk):
            out[i] = _stop_at(tuple(int(t) for t in new[r]), eos_id)
    return out


def _stop_at(tokens: tuple[int, ...], eos_id: Optional[int]) -> tuple[int, ...]:
    if eos_id is not None and eos_id in tokens:
        return tokens[: tokens.index(eos_id) + 1]
    return tokens


@dataclasses.dataclass(frozen=True)
class GenerationResult:
    """Generation accuracy and, per example, its correctness and decoded continuation."""

    accuracy: float
    correct: tuple[bool, ...]
    continuations: tuple[str, ...]


def generation_accuracy(
    model: Model,
    examples: Sequence[Example],
    golds: Sequence[str],
    max_new_tokens: int,
    *,
    tokenizer=None,
    batch_size: int = 16,
) -> GenerationResult:
    """Greedy-decode each example's prompt and check that its gold answer is in the continuation.

    ``golds`` are the gold answer strings (e.g. ``[item.answer for item in
    items]``); the match is :func:`laser_jax.tasks.common.generation_match` on the
    decoded continuation only (special tokens skipped), never on the prompt.
    ``tokenizer`` defaults to ``model.tokenizer``.
    """
    if len(examples) != len(golds):
        raise ValueError(f"{len(examples)} examples for {len(golds)} gold answers")
    tokenizer = tokenizer if tokenizer is not None else model.tokenizer
    if tokenizer is None:
        raise ValueError("generation accuracy needs a tokenizer (the model has none)")
    if not examples:
        return GenerationResult(0.0, (), ())
    eos_id = getattr(tokenizer, "eos_token_id", None)
    tokens = greedy_generate(model, [e.prompt_ids for e in examples], max_new_tokens, batch_size=batch_size, eos_id=eos_id)
    texts = tuple(tokenizer.decode(list(t), skip_special_tokens=True, clean_up_tokenization_spaces=False) for t in tokens)
    correct = tuple(generation_match(text, gold) for text, gold in zip(texts, golds))
    return GenerationResult(sum(correct) / len(correct), correct, texts)
