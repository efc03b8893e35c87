"""The noisy in-context recall task: Markov (bigram) sequences with triggers.

Role: everything about data. Bigram statistics (estimated from text, read
from a JSON of counts, or built in), and a jittable, PRNG-key-driven sampler.

One sequence (Chen, Bruna & Bietti; official ``ihead_data.py``):

- the first token comes from the unigram distribution, later ones from the
  bigram conditionals of the previous token;
- the *triggers* are the ``n_triggers`` most frequent tokens (paper: k = 1,
  the space); each sequence draws one *output* token per trigger, uniformly;
- right after a trigger the next token is the *noise* token with probability
  ``alpha`` and the sequence's output token otherwise;
- each position carries its trigger-occurrence count (1 at the first
  occurrence of its trigger, 2 at the second, ...; 0 at non-triggers). The
  loss and the metrics use positions with count >= 2 ("repeat" triggers),
  where in-context recall is possible.

The default statistics are the paper's: the character unigram and bigram
counts of Tiny Shakespeare (65 characters; the trigger is the space and the
noise token ``'!'`` has id 2), shipped with the package as
``synthetic/shakespeare_char_stats.json`` (the same numbers as the official
code's). ``docstrings`` instead counts the docstrings of a fixed list of
standard-library modules, reduced to the same vocabulary: no data either, but
its numbers change with the Python version.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import json
import re
from pathlib import Path
from typing import Optional, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from laser_jax.errors import DataError
from laser_jax.examples import Example

# The 65 characters of Tiny Shakespeare, in the order of the paper's vocabulary.
SHAKESPEARE_VOCAB = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
SHAKESPEARE_STATS = Path(__file__).resolve().parent / "shakespeare_char_stats.json"
DOCSTRING_MODULES = (
    "argparse", "bisect", "calendar", "collections", "contextlib", "copy", "csv", "dataclasses", "decimal",
    "difflib", "enum", "fractions", "functools", "heapq", "inspect", "json", "logging", "pathlib", "pickle",
    "pydoc", "random", "shutil", "statistics", "string", "subprocess", "tarfile", "textwrap", "threading",
    "unittest", "zipfile",
)


@dataclasses.dataclass(frozen=True, eq=False)
class BigramStats:
    """Character statistics: ``unigram`` [V] and row-stochastic ``bigram`` [V, V] (float64 numpy)."""

    vocab: tuple[str, ...]
    unigram: np.ndarray
    bigram: np.ndarray
    source: str

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def triggers(self, k: int) -> np.ndarray:
        """The ``k`` most frequent tokens, most frequent first."""
        return np.argsort(-self.unigram, kind="stable")[:k].astype(np.int32)


@dataclasses.dataclass(frozen=True)
class TaskConfig:
    """The static description of the sequences; ``noise_token`` is an id (paper: 2, ``'!'``)."""

    seq_len: int = 256
    n_triggers: int = 1
    alpha: float = 0.5
    noise_token: int = 2


@flax.struct.dataclass
class Sampler:
    """The arrays the jitted sampler needs (a pytree, so it is an argument, not a constant)."""

    unigram_cdf: jax.Array  # [V]
    bigram_cdf: jax.Array  # [V, V]
    triggers: jax.Array  # [k] int32


@flax.struct.dataclass
class Batch:
    """``inputs``/``targets`` [B, T] (targets are inputs shifted by one); ``counts`` [B, T]."""

    inputs: jax.Array
    targets: jax.Array
    counts: jax.Array

    @property
    def repeat(self) -> jax.Array:
        """Where in-context recall is possible: second and later trigger occurrences."""
        return self.counts >= 2


# ----------------------------------------------------------------------------- statistics


def stats_from_counts(vocab: Sequence[str], unigram_counts, bigram_counts, source: str) -> BigramStats:
    """Normalise counts; a token never seen as a predecessor gets the unigram as its row."""
    unigram = np.asarray(unigram_counts, np.float64)
    bigram = np.asarray(bigram_counts, np.float64)
    size = len(vocab)
    if unigram.shape != (size,) or bigram.shape != (size, size):
        raise DataError(f"{source}: expected {size} unigram and {size}x{size} bigram counts, "
                        f"got {unigram.shape} and {bigram.shape}")
    if unigram.sum() <= 0 or (unigram < 0).any() or (bigram < 0).any():
        raise DataError(f"{source}: counts must be non-negative with a positive total")
    unigram = unigram / unigram.sum()
    rows = bigram.sum(axis=1, keepdims=True)
    bigram = np.where(rows > 0, bigram / np.maximum(rows, 1e-300), unigram[None, :])
    return BigramStats(tuple(vocab), unigram, bigram, source)


def stats_from_text(text: str, vocab: Optional[Sequence[str]] = None, source: str = "text") -> BigramStats:
    """Character statistics of ``text``; characters outside ``vocab`` are dropped first."""
    vocab = tuple(sorted(set(text))) if vocab is None else tuple(vocab)
    index = {ch: i for i, ch in enumerate(vocab)}
    ids = np.array([index[ch] for ch in text if ch in index], np.int64)
    if ids.size < 2:
        raise DataError(f"{source}: fewer than two characters of the vocabulary")
    unigram = np.bincount(ids, minlength=len(vocab))
    bigram = np.bincount(ids[:-1] * len(vocab) + ids[1:], minlength=len(vocab) ** 2).reshape(len(vocab), len(vocab))
    return stats_from_counts(vocab, unigram, bigram, source)


def load_stats_json(path) -> BigramStats:
    """A JSON ``{"vocab", "unigram_counts", "bigram_counts"}`` (e.g. the paper's Shakespeare stats)."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
        return stats_from_counts(raw["vocab"], raw["unigram_counts"], raw["bigram_counts"], str(path))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(f"cannot read bigram counts from {path}: {error}") from error


def docstring_text() -> str:
    """Docstrings of :data:`DOCSTRING_MODULES` and their public classes and functions, dedented."""
    parts = []
    for name in DOCSTRING_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:  # a trimmed Python: use what is there
            continue
        parts.append(module.__doc__ or "")
        for attr in sorted(vars(module)):
            obj = vars(module)[attr]
            if not attr.startswith("_") and (inspect.isclass(obj) or inspect.isfunction(obj)):
                if getattr(obj, "__module__", None) == name:
                    parts.append(obj.__doc__ or "")
    text = "\n".join(inspect.cleandoc(p) for p in parts if p)
    return re.sub(r"[ \t]+", " ", text)


@functools.lru_cache(maxsize=None)
def shakespeare_stats() -> BigramStats:
    """The paper's Tiny-Shakespeare character statistics, shipped with the package (the default)."""
    return load_stats_json(SHAKESPEARE_STATS)


@functools.lru_cache(maxsize=None)
def docstring_stats() -> BigramStats:
    """Statistics of standard-library docstrings (see the module docstring; they vary with Python)."""
    return stats_from_text(docstring_text(), SHAKESPEARE_VOCAB, "docstrings:stdlib")


def dirichlet_stats(vocab_size: int = 65, seed: int = 0, concentration: float = 0.1) -> BigramStats:
    """A seeded random bigram model (rows ~ Dirichlet) with a Zipf-like unigram."""
    rng = np.random.default_rng(seed)
    unigram = 1.0 / np.arange(1, vocab_size + 1)
    bigram = rng.dirichlet(np.full(vocab_size, concentration), size=vocab_size)
    vocab = tuple(f"<{i}>" for i in range(vocab_size))
    return stats_from_counts(vocab, unigram * 1e6, bigram * 1e6, f"dirichlet:{vocab_size}:{seed}:{concentration}")


def get_stats(spec: str = "shakespeare") -> BigramStats:
    """``shakespeare`` (the paper's, shipped), ``docstrings``, ``dirichlet[:SEED]``,
    a ``.json`` file of counts, or any text file."""
    if spec == "shakespeare":
        return shakespeare_stats()
    if spec == "docstrings":
        return docstring_stats()
    if spec.startswith("dirichlet"):
        seed = int(spec.split(":", 1)[1]) if ":" in spec else 0
        return dirichlet_stats(seed=seed)
    path = Path(spec).expanduser()
    if not path.is_file():
        raise DataError(f"unknown statistics {spec!r}: not shakespeare/docstrings/dirichlet nor a file")
    if path.suffix == ".json":
        return load_stats_json(path)
    return stats_from_text(path.read_text(errors="ignore"), source=str(path))


# ----------------------------------------------------------------------------- sampling


def make_sampler(stats: BigramStats, task: TaskConfig) -> Sampler:
    triggers = stats.triggers(task.n_triggers)
    if not 0 <= task.noise_token < stats.vocab_size:
        raise DataError(f"noise token {task.noise_token} outside the vocabulary of {stats.vocab_size}")
    if task.noise_token in triggers:
        raise DataError(f"noise token {task.noise_token} is one of the triggers {triggers.tolist()}")
    return Sampler(
        unigram_cdf=jnp.asarray(np.cumsum(stats.unigram), jnp.float32),
        bigram_cdf=jnp.asarray(np.cumsum(stats.bigram, axis=1), jnp.float32),
        triggers=jnp.asarray(triggers),
    )


def _draw(cdf: jax.Array, u: jax.Array) -> jax.Array:
    """Inverse-CDF sampling: cdf [..., V], u [...] uniform -> index."""
    return jnp.minimum(jnp.sum(u[..., None] >= cdf, axis=-1), cdf.shape[-1] - 1).astype(jnp.int32)


def sample_batch(key: jax.Array, sampler: Sampler, task: TaskConfig, batch_size: int, alpha=None) -> Batch:
    """``batch_size`` sequences of ``task.seq_len`` inputs; jittable (``alpha`` may be traced)."""
    alpha = task.alpha if alpha is None else alpha
    steps, vocab, k = task.seq_len, sampler.bigram_cdf.shape[0], sampler.triggers.shape[0]
    # one uniform draw, cut into: output tokens, first token, Markov steps, noise coins
    u = jax.random.uniform(key, (k + 1 + 2 * steps, batch_size))
    outputs = jnp.minimum((u[:k].T * vocab).astype(jnp.int32), vocab - 1)  # [B, k], uniform over the vocabulary
    first = _draw(sampler.unigram_cdf, u[k])
    uniforms = u[k + 1:k + 1 + steps]
    noisy = u[k + 1 + steps:] < alpha

    def count_of(token, counts):
        hit = token[:, None] == sampler.triggers[None, :]  # [B, k]
        counts = counts + hit
        return counts, hit, jnp.sum(jnp.where(hit, counts, 0), axis=-1)

    def step(carry, xs):
        token, counts = carry
        u, noise = xs
        counts, hit, count = count_of(token, counts)
        forced = jnp.where(noise, task.noise_token, jnp.sum(jnp.where(hit, outputs, 0), axis=-1))
        nxt = jnp.where(hit.any(-1), forced, _draw(sampler.bigram_cdf[token], u)).astype(jnp.int32)
        return (nxt, counts), (nxt, count)

    init = (first, jnp.zeros(outputs.shape, jnp.int32))
    (_, _), (tokens, counts) = jax.lax.scan(step, init, (uniforms, noisy))
    tokens = jnp.concatenate([first[None], tokens], axis=0).T  # [B, T + 1]
    return Batch(inputs=tokens[:, :-1], targets=tokens[:, 1:], counts=counts.T.astype(jnp.int32))


sample_batch_jit = jax.jit(sample_batch, static_argnums=(2, 3))


@flax.struct.dataclass
class EvalSet:
    """A fixed batch and the sequence indices of its repeat-trigger positions (padded)."""

    batch: Batch
    select: jax.Array  # [B, A] int32 sequence indices
    valid: jax.Array  # [B, A] bool, False at padding

    @property
    def targets(self) -> jax.Array:
        return jnp.take_along_axis(self.batch.targets, self.select, axis=1)


def make_eval_set(seed: int, sampler: Sampler, task: TaskConfig, size: int, alpha: float = 0.0) -> EvalSet:
    """A fixed set (clean by default, ``alpha`` = 0) with repeat positions gathered, padded with index 0."""
    batch = sample_batch_jit(jax.random.PRNGKey(seed), sampler, task, size, alpha)
    repeat = np.asarray(batch.repeat)
    width = max(int(repeat.sum(axis=1).max()), 1)
    select = np.zeros((size, width), np.int32)
    valid = np.zeros((size, width), bool)
    for row, positions in enumerate(repeat):
        where = np.flatnonzero(positions)
        select[row, : where.size] = where
        valid[row, : where.size] = True
    return EvalSet(batch=batch, select=jnp.asarray(select), valid=jnp.asarray(valid))


def eval_examples(evalset: EvalSet, noise_token: int) -> list[Example]:
    """The set as :class:`laser_jax.examples.Example` items, one per repeat-trigger position.

    Each prompt is the sequence up to and including the trigger, the answer the
    next token (the sequence's output token on a clean set), the probe the
    noise token. The sweep engine's top-1 accuracy, mean P(answer) and mean
    P(probe) over these examples are :func:`synthetic.probes.repeat_metrics`'s
    accuracy, p_correct and p_noise on the whole set.
    """
    inputs, targets = np.asarray(evalset.batch.inputs), np.asarray(evalset.batch.targets)
    select, valid = np.asarray(evalset.select), np.asarray(evalset.valid)
    out = []
    for row in range(inputs.shape[0]):
        for position in select[row][valid[row]]:
            out.append(Example(prompt_ids=tuple(int(t) for t in inputs[row, : position + 1]),
                               answer_ids=(int(targets[row, position]),), probe_ids=(int(noise_token),)))
    return out
