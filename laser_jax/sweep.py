"""The sweep engine: score every LASER variant of a grid (layers × τs × ρs) on a set of examples, fast.

It knows nothing about datasets: it takes :class:`~laser_jax.examples.Example`
items and returns a :class:`SweepResult`, one :class:`SweepRow` per variant
plus the unmodified base, each with per-example scores
(:class:`ExampleScores`) and aggregate metrics.

How the work is shared (the design points of the spec):

1. **Prefix sharing.** For every batch the hidden state entering each swept
   layer ℓ is computed once by the base model and shared by every variant that
   edits ℓ. For MLP τs the attention stage of ℓ is shared too: one
   ``attention_stage``, then only ``mlp`` runs per variant.
2. **Vectorised variants.** The variants of one (ℓ, τ) run under ``jax.vmap``
   inside one jitted function (:func:`variant_readouts`), in memory-bounded
   chunks, from the shared state entering ℓ to their readouts. Only the
   singular values vary: the edited matrix is ``LowRank(u, s * (arange(r) <
   k), vt)`` with ``k`` traced, so ``x @ u`` is computed once per layer, the
   variant axis folds into the rows of every other matmul, and the
   parameters are broadcast, not copied. One compile per (τ set, shapes):
   neither ρ nor ℓ recompiles (ℓ is traced; the blocks after it run in
   ``base.run_blocks`` with traced bounds). With ``rank_buckets`` the edited
   block alone is unrolled over the variants, each at its own static width.
3. **No wasted head.** The last block's queries and MLP, and the head, run only
   at the scored positions (``select``), for the base (:func:`last_block`,
   :func:`head_readout`) and inside :func:`variant_readouts`. Batches are
   grouped by their number of scored positions, so a few multi-token answers
   do not widen the rest, and capped in rows × padded length, so a few long
   sequences do not pad full batches (:func:`make_batches`).
4. **Sharding.** With a :class:`jax.sharding.Mesh` (by default, over all devices
   when there are several), batches are split over the mesh axis named
   ``"examples"``, variant chunks over ``"variants"``, and the block
   parameters over ``"model"`` (tensor-parallel: the MLP hidden dimension and
   the attention heads, :func:`block_param_spec`); the SVD factors, cached
   once placed, follow their matrix's sharding (:meth:`Placement.put_factors`).
   Other parameters are replicated. Results equal one device's up to float
   rounding. The default mesh (:func:`default_mesh`) puts every device on
   ``"examples"``, and adds a ``"model"`` axis when the parameters would take
   more than half of a device's memory (as far as the backend reports it).

   Several hosts: start every process with the same arguments and call
   ``jax.distributed.initialize()`` before anything else
   (:mod:`laser_jax.devices` does it for the CLI); ``jax.devices()`` then
   lists every host's devices and the default mesh spans them all (or pass
   e.g. ``mesh=laser_jax.devices.build_mesh({"model": 4})``). Every process
   must build the same examples and grid; inputs are placed with
   ``jax.make_array_from_callback`` and outputs gathered with
   ``multihost_utils.process_allgather``, so every process gets every row;
   let only process 0 write files.

   The variant chunk (variants per call) is sized from the devices' free
   memory when the backend reports it (``device.memory_stats()``), else from
   a 1 GiB activation budget.

Sequences are padded into buckets (batch size, length, scored positions) to
limit recompiles across batches, and batches are of bounded size.
``skip`` (a set of variant keys) and ``on_row`` (called with each finished row)
let a caller write rows as they finish and resume a partial sweep.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, Iterable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from laser_jax.errors import DataError, DeviceError, InterventionError
from laser_jax.examples import Example
from laser_jax.laser import (FACTOR_CACHE, FactorCache, Intervention, check_intervention, expand_grid, factors_for,
                             keep_window, pad_rank, window_factors)
from laser_jax.models import base
from laser_jax.models.base import LowRank

BASE_KEY = "base"
VARIANT_AXIS = "variants"
EXAMPLE_AXIS = "examples"
MODEL_AXIS = "model"
MESH_AXES = (VARIANT_AXIS, EXAMPLE_AXIS, MODEL_AXIS)
DEFAULT_ACTIVATION_BUDGET = 1 << 30  # bytes, when the backend reports no free memory


# ----------------------------------------------------------------------------- scores and rows


@dataclasses.dataclass(frozen=True)
class ExampleScores:
    """Per-example scores of one model variant (arrays over the N examples, in input order).

    - ``top1`` / ``topk``: the answer's first token is the argmax / among the top k
      at the last prompt position.
    - ``answer_nll``: mean negative log-likelihood per answer token.
    - ``answer_first_logprob``: log-prob of the answer's first token.
    - ``choice_logprobs`` [N, C]: summed log-prob of each candidate (NaN padding).
    - ``choice_correct``: the gold candidate has the highest summed log-prob
      (False where there are no candidates; see ``has_choices``).
    - ``probe_logprobs`` [N, P]: log-prob of each probe token at the last prompt
      position (NaN padding).
    - ``label``: the gold candidate's index (-1 where there are no candidates).
    """

    top1: np.ndarray
    topk: np.ndarray
    answer_nll: np.ndarray
    answer_first_logprob: np.ndarray
    choice_logprobs: np.ndarray
    choice_correct: np.ndarray
    has_choices: np.ndarray
    probe_logprobs: np.ndarray
    label: np.ndarray

    def __len__(self) -> int:
        return len(self.top1)

    def subset(self, indices) -> "ExampleScores":
        indices = np.asarray(indices, dtype=np.int64)
        return ExampleScores(**{f.name: getattr(self, f.name)[indices] for f in dataclasses.fields(self)})

    def metrics(self) -> dict[str, float]:
        """Aggregates: accuracies, mean answer NLL, mean log-probs.

        ``accuracy`` is ``choice_accuracy`` when every example has candidates,
        else ``top1_accuracy``; selection ranks variants by it. ``choice_auc``
        (two-way choice tasks only, else NaN): the ROC AUC of the margin
        log p(candidate 1) − log p(candidate 0) against the gold label, a
        measure of judgement that a constant answer cannot game.
        """
        n = len(self)
        mean = lambda values: float(np.mean(values)) if len(values) else math.nan  # noqa: E731
        probes = self.probe_logprobs[~np.isnan(self.probe_logprobs)]
        choice_accuracy = mean(self.choice_correct[self.has_choices])
        top1 = mean(self.top1)
        return {
            "n_examples": float(n),
            "accuracy": choice_accuracy if n and self.has_choices.all() else top1,
            "top1_accuracy": top1,
            "topk_accuracy": mean(self.topk),
            "answer_nll": mean(self.answer_nll),
            "choice_accuracy": choice_accuracy,
            "answer_first_logprob": mean(self.answer_first_logprob),
            "probe_logprob": mean(probes),
            "choice_auc": self.choice_auc(),
        }

    def choice_auc(self) -> float:
        """ROC AUC of log p(candidate 1) − log p(candidate 0) for label 1 vs label 0 (NaN unless every example
        has exactly two candidates and both labels occur)."""
        logprobs = self.choice_logprobs
        if not len(self) or logprobs.shape[1] != 2 or np.isnan(logprobs).any() or not self.has_choices.all():
            return math.nan
        return roc_auc(logprobs[:, 1] - logprobs[:, 0], self.label == 1)


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """The area under the ROC curve: P(a positive scores above a negative), ties counting one half (NaN if a class is empty)."""
    positive = np.asarray(positive, bool)
    n_positive, n_negative = int(positive.sum()), int((~positive).sum())
    if not n_positive or not n_negative:
        return math.nan
    _, inverse, counts = np.unique(np.asarray(scores, np.float64), return_inverse=True, return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2.0  # 1-based mean rank of each distinct value
    rank_sum = average_rank[inverse][positive].sum()
    return float((rank_sum - n_positive * (n_positive + 1) / 2.0) / (n_positive * n_negative))


@dataclasses.dataclass(frozen=True)
class SweepRow:
    """One variant (``intervention``; None for the base model) and its scores."""

    key: str
    intervention: Optional[Intervention]
    scores: ExampleScores
    metrics: dict

    @classmethod
    def build(cls, key: str, intervention: Optional[Intervention], scores: ExampleScores) -> "SweepRow":
        return cls(key, intervention, scores, scores.metrics())


@dataclasses.dataclass(frozen=True)
class SweepResult:
    """The rows of a sweep: the base first (when computed), then the variants in grid order."""

    rows: tuple[SweepRow, ...]
    top_k: int

    def __iter__(self):
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def row(self, key) -> SweepRow:
        key = key.key if isinstance(key, Intervention) else key
        for row in self.rows:
            if row.key == key:
                return row
        raise KeyError(key)

    @property
    def base(self) -> SweepRow:
        return self.row(BASE_KEY)

    @property
    def variants(self) -> tuple[SweepRow, ...]:
        return tuple(row for row in self.rows if row.intervention is not None)


# ----------------------------------------------------------------------------- packing examples into sequences


@dataclasses.dataclass(frozen=True)
class ScoredSequence:
    """Tokens fed to the model; ``targets[j]`` is scored at sequence index ``start + j``.

    ``extras`` are token ids whose log-prob is read at index ``start`` (probes
    and single-token candidates).
    """

    tokens: tuple[int, ...]
    start: int
    targets: tuple[int, ...]
    extras: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class SequencePlan:
    """Sequences to run and how each example's scores are read from them.

    Example i's answer is ``sequences[main[i]]``; its probes are extras
    ``probe_slot[i]`` of that sequence; candidate c is either extra
    ``choice_slot[i, c]`` of it (single token) or the whole of sequence
    ``choice_seq[i, c]`` (multi-token; the answer's own sequence when equal).
    Slots and sequence indices are -1 where absent.
    """

    sequences: tuple[ScoredSequence, ...]
    main: np.ndarray
    answer_first: np.ndarray
    probe_slot: np.ndarray
    choice_slot: np.ndarray
    choice_seq: np.ndarray
    labels: np.ndarray

    @property
    def max_targets(self) -> int:
        return max(len(s.targets) for s in self.sequences)

    @property
    def max_extras(self) -> int:
        return max(1, max(len(s.extras) for s in self.sequences))


def plan_sequences(examples: Sequence[Example]) -> SequencePlan:
    """The sequences that score ``examples``, identical ones shared."""
    sequences: list[ScoredSequence] = []
    index: dict[ScoredSequence, int] = {}

    def add(prompt, targets, extras=()) -> int:
        sequence = ScoredSequence(tuple(prompt) + tuple(targets[:-1]), len(prompt) - 1, tuple(targets), tuple(extras))
        if sequence not in index:
            index[sequence] = len(sequences)
            sequences.append(sequence)
        return index[sequence]

    n = len(examples)
    n_probes = max((len(e.probe_ids) for e in examples), default=0)
    n_choices = max((len(e.choice_ids) for e in examples), default=0)
    main = np.zeros(n, np.int64)
    probe_slot = np.full((n, n_probes), -1, np.int64)
    choice_slot = np.full((n, n_choices), -1, np.int64)
    choice_seq = np.full((n, n_choices), -1, np.int64)
    for i, example in enumerate(examples):
        single = tuple(c[0] for c in example.choice_ids if len(c) == 1)
        main[i] = add(example.prompt_ids, example.answer_ids, tuple(example.probe_ids) + single)
        probe_slot[i, :len(example.probe_ids)] = np.arange(len(example.probe_ids))
        slot = len(example.probe_ids)
        for c, choice in enumerate(example.choice_ids):
            if len(choice) == 1:
                choice_slot[i, c], slot = slot, slot + 1
            elif tuple(choice) == tuple(example.answer_ids):
                choice_seq[i, c] = main[i]
            else:
                choice_seq[i, c] = add(example.prompt_ids, choice)
    return SequencePlan(
        sequences=tuple(sequences), main=main,
        answer_first=np.array([e.answer_ids[0] for e in examples], np.int64),
        probe_slot=probe_slot, choice_slot=choice_slot, choice_seq=choice_seq,
        labels=np.array([e.label if e.choice_ids else -1 for e in examples], np.int64),
    )


def length_bucket(n: int, minimum: int = 8) -> int:
    """The padded length for n: 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, ... (under a fifth of it padding).

    Above ``minimum``, n rounds up to a multiple of an eighth of the next power
    of two: few enough distinct lengths to compile, little enough padding to
    run (every padded position costs as much as a real one).
    """
    if n <= minimum:
        return minimum
    return round_up(n, max(1, power_of_two(n) // 8))


def rows_per_batch(length: int, batch_size: int, batch_tokens: int) -> int:
    """``batch_size`` rows, halved (to powers of two) until rows × length fits in ``batch_tokens`` (at least 1)."""
    rows = batch_size
    while rows > 1 and rows * length > batch_tokens:
        rows = power_of_two(rows) // 2
    return rows


def power_of_two(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(n, 1))))


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


@dataclasses.dataclass(frozen=True)
class Batch:
    """One padded batch (host arrays); ``rows[i]`` is the sequence index of batch row i (real rows only)."""

    ids: np.ndarray  # [B, T] int32
    mask: np.ndarray  # [B, T] bool
    select: np.ndarray  # [B, A] int32, the scored sequence indices
    targets: np.ndarray  # [B, A] int32
    extras: np.ndarray  # [B, G] int32
    rows: np.ndarray


def make_batches(plan: SequencePlan, batch_size: int, multiple: int = 1,
                 batch_tokens: Optional[int] = None) -> list[Batch]:
    """Sequences sorted by scored-position count, then length, cut into padded batches of at most ``batch_size``.

    Sorting by the (power-of-two) number of scored positions first keeps a few
    multi-token answers from widening every batch they fall in: the last
    block's queries and the head run at every padded scored slot, and the head
    is the costliest part of a late-layer variant; no batch mixes two such
    groups. Batches of long sequences hold fewer rows, so that rows × padded
    length stays within ``batch_tokens`` (default ``16 * batch_size``): the
    long tail of a dataset no longer pads a full batch to its longest
    sequence. Batch sizes are powers of two (up to ``batch_size``) rounded up
    to a multiple of ``multiple`` (the number of example shards).
    """
    batch_tokens = 16 * batch_size if batch_tokens is None else batch_tokens

    def n_targets(s: int) -> int:
        return power_of_two(len(plan.sequences[s].targets))

    order = sorted(range(len(plan.sequences)), key=lambda s: (n_targets(s), -len(plan.sequences[s].tokens), s))
    batches = []
    first = 0
    while first < len(order):
        group = n_targets(order[first])
        length = length_bucket(len(plan.sequences[order[first]].tokens))  # the longest left in its group
        cap = rows_per_batch(length, batch_size, batch_tokens)
        rows = np.array([s for s in order[first:first + cap] if n_targets(s) == group], np.int64)
        first += len(rows)
        chosen = [plan.sequences[s] for s in rows]
        size = round_up(min(power_of_two(len(rows)), cap), multiple)
        n_extras = power_of_two(max(1, max(len(s.extras) for s in chosen)))
        ids = np.zeros((size, length), np.int32)
        mask = np.zeros((size, length), bool)
        mask[:, 0] = True  # padding rows hold one dummy token
        select = np.zeros((size, group), np.int32)
        targets = np.zeros((size, group), np.int32)
        extras = np.zeros((size, n_extras), np.int32)
        for i, s in enumerate(chosen):
            ids[i, :len(s.tokens)] = s.tokens
            mask[i, :len(s.tokens)] = True
            select[i] = s.start
            select[i, :len(s.targets)] += np.arange(len(s.targets))
            targets[i, :len(s.targets)] = s.targets
            extras[i, :len(s.extras)] = s.extras
        batches.append(Batch(ids, mask, select, targets, extras, rows))
    return batches


# ----------------------------------------------------------------------------- jitted programs


class DeviceBatch(NamedTuple):
    """A :class:`Batch`'s arrays on the devices (sharded over the ``examples`` axis when there is one)."""

    ids: jax.Array
    mask: jax.Array
    select: jax.Array
    targets: jax.Array
    extras: jax.Array


class Readout(NamedTuple):
    """What each sequence yields: target log-probs [.., A], extras' log-probs [.., G] at the
    first scored index, and there the number of tokens with a higher logit than the first
    target and the argmax token."""

    target_logprob: jax.Array
    extra_logprob: jax.Array
    n_greater: jax.Array
    argmax: jax.Array


def read_logits(logits, targets, extras) -> Readout:
    """The readout of logits [B, A, V]; log-probs only where read (the full log-softmax is never
    materialised: over a 50k vocabulary that costs as much as the head's matmul on CPU)."""
    logits = logits.astype(jnp.float32)
    log_normaliser = jax.nn.logsumexp(logits, axis=-1)
    first = logits[:, 0]
    first_target = jnp.take_along_axis(first, targets[:, :1], axis=-1)
    return Readout(
        target_logprob=jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0] - log_normaliser,
        extra_logprob=jnp.take_along_axis(first, extras, axis=-1) - log_normaliser[:, :1],
        n_greater=(first > first_target).sum(-1).astype(jnp.int32),
        argmax=jnp.argmax(first, axis=-1).astype(jnp.int32),
    )


def context_of(mask) -> base.Context:
    return base.make_context(mask, mask)


@functools.partial(jax.jit, static_argnums=(0, 1))
def base_pass(family, cfg, params, ids, mask, save_at):
    """Embedding and every block but the last: the states entering the layers ``save_at`` [n]
    (stacked; -1 saves nothing), and the state entering the last block."""
    ctx = context_of(mask)
    h = family.embed(params, cfg, ids, ctx)
    last = base.n_layers(params) - 1

    def keep(layer, h, saved):
        hit = save_at == layer
        return jax.lax.cond(hit.any(), lambda s: s.at[jnp.argmax(hit)].set(h), lambda s: s, saved)

    def body(layer, carry):
        h, saved = carry
        return base.block(family, cfg, base.layer_params(params, layer), h, ctx), keep(layer, h, saved)

    h, saved = jax.lax.fori_loop(0, last, body, (h, jnp.zeros(save_at.shape + h.shape, h.dtype)))
    return keep(last, h, saved), h


@functools.partial(jax.jit, static_argnums=(0, 1))
def run_between(family, cfg, params, h, mask, start, stop):
    return base.run_blocks(family, cfg, params, h, context_of(mask), start, stop)


@functools.partial(jax.jit, static_argnums=(0, 1))
def last_block(family, cfg, params, h, mask, select):
    """The last block at the scored indices only: [B, T, d] -> [B, A, d]."""
    last = base.n_layers(params) - 1
    return base.block(family, cfg, base.layer_params(params, last), h, context_of(mask), select)


@functools.partial(jax.jit, static_argnums=(0, 1))
def head_readout(family, cfg, params, h, targets, extras) -> Readout:
    """The head on the scored states [B, A, d], read out."""
    return read_logits(family.head(params, cfg, h), targets, extras)


def edited_blocks(family, cfg, taus: tuple, per_variant_factors: bool, widths: Optional[tuple], block_params, h, ctx,
                  select, factors, ranks):
    """Outputs [V, ...] of one block whose matrices ``taus`` keep the singular indices ``ranks[tau]`` [V, 2]
    (``[0, k)``: LASER's rank-k truncation; ``[k, r)``: the removed part).

    ``widths`` None: full-width factors with masked singular values, vmapped
    over the variants, so ``x @ u`` is shared (unless ``per_variant_factors``:
    one factorisation per variant). Otherwise ``widths[v]`` holds variant v's
    static factor width per τ (rank buckets): each variant runs with its
    factors cut to those widths, so its cost follows its rank, and the
    outputs are stacked. An MLP-only edit shares the attention stage either way.
    """

    def edited(variant_ranks, variant_factors, variant_widths=None):
        def cut(tau):
            f = variant_factors[tau]
            if variant_widths is not None:
                w = variant_widths[taus.index(tau)]
                f = LowRank(f.u[:, :w], f.s[:w], f.vt[:w])
            return window_factors(f, variant_ranks[tau])

        return {**block_params, **{tau: cut(tau) for tau in taus}}

    if all(tau in base.MLP_TAUS for tau in taus):
        residual, mlp_input = family.attention_stage(block_params, cfg, h, ctx, select)
        run = lambda p: residual + family.mlp(p, cfg, mlp_input)  # noqa: E731
    else:
        run = lambda p: base.block(family, cfg, p, h, ctx, select)  # noqa: E731
    if widths is None:
        in_axes = (0, 0 if per_variant_factors else None)
        return jax.vmap(lambda r, f: run(edited(r, f)), in_axes=in_axes)(ranks, factors)
    pick = lambda tree, v: jax.tree.map(lambda leaf: leaf[v], tree)  # noqa: E731
    return jnp.stack([run(edited(pick(ranks, v), pick(factors, v) if per_variant_factors else factors, w))
                      for v, w in enumerate(widths)])


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4, 5))
def variant_readouts(family, cfg, taus: tuple, per_variant_factors: bool, widths: Optional[tuple], edits_last: bool,
                     params, h, batch: "DeviceBatch", layer, factors, ranks) -> Readout:
    """Readouts [V, ...] of the variants that edit block ``layer``, from the base state ``h`` entering it.

    ``layer`` is traced; ``edits_last`` (static) says whether it is the last
    block; ``widths``: see :func:`edited_blocks`. The blocks after the edited
    one run at every index (their keys and values feed the last block), the
    last block and the head at the scored indices only, all vmapped over the
    variants: the parameters are broadcast, so the variant axis folds into the
    rows of every matmul.
    """
    ctx = context_of(batch.mask)
    last = base.n_layers(params) - 1
    if edits_last:
        scored = edited_blocks(family, cfg, taus, per_variant_factors, widths, base.layer_params(params, last), h, ctx,
                               batch.select, factors, ranks)
    else:
        out = edited_blocks(family, cfg, taus, per_variant_factors, widths, base.layer_params(params, layer), h, ctx,
                            None, factors, ranks)
        last_params = base.layer_params(params, last)

        def to_scored(x):
            x = base.run_blocks(family, cfg, params, x, ctx, layer + 1, last)
            return base.block(family, cfg, last_params, x, ctx, batch.select)

        scored = jax.vmap(to_scored)(out)
    return jax.vmap(lambda x: read_logits(family.head(params, cfg, x), batch.targets, batch.extras))(scored)


# ----------------------------------------------------------------------------- placement on devices


class Placement:
    """Puts host arrays on the mesh (or leaves them alone without one) and fetches results."""

    def __init__(self, mesh: Optional[Mesh]):
        self.mesh = mesh
        names = mesh.axis_names if mesh is not None else ()
        unknown = [name for name in names if name not in MESH_AXES]
        if unknown:
            raise DeviceError(f"unknown mesh axis {unknown[0]!r}; the sweep's axes are {', '.join(MESH_AXES)}")
        self.example_axis = EXAMPLE_AXIS if EXAMPLE_AXIS in names else None
        self.variant_axis = VARIANT_AXIS if VARIANT_AXIS in names else None
        self.example_shards = mesh.shape[EXAMPLE_AXIS] if self.example_axis else 1
        self.variant_shards = mesh.shape[VARIANT_AXIS] if self.variant_axis else 1
        self.model_shards = mesh.shape[MODEL_AXIS] if MODEL_AXIS in names else 1

    def put(self, tree, axis: Optional[str] = None):
        """Shard the leading axis of every leaf over mesh axis ``axis`` (None: replicate)."""
        spec = PartitionSpec(axis) if axis else PartitionSpec()
        return jax.tree.map(lambda leaf: self.put_leaf(leaf, spec), tree)

    def put_leaf(self, leaf, spec: PartitionSpec):
        if self.mesh is None:
            return jnp.asarray(leaf)
        sharding = NamedSharding(self.mesh, spec)
        if jax.process_count() == 1:
            return jax.device_put(leaf, sharding)
        host = np.asarray(leaf)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    def block_spec(self, name: str, shape) -> PartitionSpec:
        return block_param_spec(name, tuple(shape), self.model_shards)

    def put_params(self, params: dict) -> dict:
        """The parameters on the mesh: block leaves split over ``model`` (:func:`block_param_spec`), the rest replicated."""
        blocks = {name: self.put_leaf(leaf, self.block_spec(name, leaf.shape)) for name, leaf in params["blocks"].items()}
        return {**self.put({k: v for k, v in params.items() if k != "blocks"}), "blocks": blocks}

    def put_factors(self, tau: str, matrix_shape, factors: LowRank, per_variant: bool = False) -> LowRank:
        """SVD factors of block matrix ``tau`` split as the matrix is (and over ``variants`` when ``per_variant``)."""
        specs = factor_specs(self.block_spec(tau, matrix_shape), per_variant)
        return LowRank(**{name: self.put_leaf(getattr(factors, name), getattr(specs, name)) for name in ("u", "s", "vt")})

    def activation_budget(self) -> int:
        """Bytes for one call's activations: half the smallest free device memory times the devices that split
        them, or :data:`DEFAULT_ACTIVATION_BUDGET` when the backend reports none."""
        devices = jax.local_devices() if self.mesh is None else list(self.mesh.devices.flat)
        return activation_budget(device_memory(devices, "free"), self.example_shards * self.variant_shards)

    @staticmethod
    def fetch(tree):
        def get(leaf):
            if not isinstance(leaf, jax.Array) or leaf.is_fully_addressable:
                return np.asarray(leaf)
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))

        return jax.tree.map(get, tree)


def default_mesh(model=None) -> Optional[Mesh]:
    """All devices on the ``examples`` axis when there are several (else None), with a ``model`` axis added
    when ``model``'s parameters would take more than half of a device's memory (when the backend reports it).

    The ``model`` axis is the smallest power of two (dividing the devices of
    one host) that brings a device's share under half its memory, so that
    tensor parallelism stays within a host.
    """
    devices = jax.devices()
    if len(devices) == 1:
        return None
    limit = device_memory(jax.local_devices(), "limit")
    shards = 1
    if model is not None and limit is not None:
        param_bytes = sum(leaf.nbytes for leaf in jax.tree.leaves(model.params))
        shards = model_shards_for(param_bytes, limit, jax.local_device_count())
    if shards == 1:
        return Mesh(np.array(devices), (EXAMPLE_AXIS,))
    return Mesh(np.array(devices).reshape(-1, shards), (EXAMPLE_AXIS, MODEL_AXIS))


def model_shards_for(param_bytes: int, device_bytes: int, local_devices: int) -> int:
    """The smallest power of two dividing ``local_devices`` that puts at most half of ``device_bytes`` of
    parameters on each device (or the largest such power when none does)."""
    shards = 1
    while param_bytes / shards > device_bytes / 2 and local_devices % (2 * shards) == 0:
        shards *= 2
    return shards


def block_param_spec(name: str, shape: tuple, shards: int) -> PartitionSpec:
    """How block leaf ``name`` [n_layers, ...] is split over ``shards`` devices of the ``model`` axis.

    Tensor-parallel: q/k/v, ``fc_in`` and ``fc_up`` by their output (heads,
    MLP hidden units), ``out_proj`` and ``fc_out`` by their input, so each
    device holds whole heads and a slice of the hidden units; another leaf by
    its last axis (biases of the hidden units). An axis that ``shards`` does
    not divide is not split (the other matrix axis is tried first).
    """
    if shards == 1 or len(shape) < 2:
        return PartitionSpec()
    if name in base.TAUS:
        axes = (1, 2) if name in ("out_proj", "fc_out") else (2, 1)
    else:
        axes = (len(shape) - 1,)
    for axis in axes:
        if shape[axis] % shards == 0 and shape[axis] >= shards:
            return PartitionSpec(*([None] * axis), MODEL_AXIS)
    return PartitionSpec()


def factor_specs(matrix_spec: PartitionSpec, per_variant: bool) -> LowRank:
    """The specs of a matrix's SVD factors (u [in, r], s [r], vt [r, out]) from the matrix's own
    [n_layers, in, out] spec, with a leading variant axis when ``per_variant``."""
    parts = tuple(matrix_spec) + (None,) * (3 - len(tuple(matrix_spec)))
    lead = (VARIANT_AXIS,) if per_variant else ()
    return LowRank(u=PartitionSpec(*lead, parts[1], None), s=PartitionSpec(*lead, None),
                   vt=PartitionSpec(*lead, None, parts[2]))


# ----------------------------------------------------------------------------- assembling per-example scores


class SequenceReadouts:
    """Per-sequence readouts of one variant, filled batch by batch."""

    def __init__(self, plan: SequencePlan):
        n = len(plan.sequences)
        self.target_logprob = np.zeros((n, plan.max_targets), np.float32)
        self.extra_logprob = np.zeros((n, plan.max_extras), np.float32)
        self.n_greater = np.zeros(n, np.int64)
        self.argmax = np.zeros(n, np.int64)

    def fill(self, batch: Batch, readout: Readout) -> None:
        real = len(batch.rows)
        a = min(self.target_logprob.shape[1], readout.target_logprob.shape[1])
        g = min(self.extra_logprob.shape[1], readout.extra_logprob.shape[1])
        self.target_logprob[batch.rows, :a] = readout.target_logprob[:real, :a]
        self.extra_logprob[batch.rows, :g] = readout.extra_logprob[:real, :g]
        self.n_greater[batch.rows] = readout.n_greater[:real]
        self.argmax[batch.rows] = readout.argmax[:real]

    def scores(self, plan: SequencePlan, top_k: int) -> ExampleScores:
        lengths = np.array([len(s.targets) for s in plan.sequences])
        valid = np.arange(self.target_logprob.shape[1])[None, :] < lengths[:, None]
        sequence_logprob = np.where(valid, self.target_logprob, 0.0).sum(1, dtype=np.float64)
        main = plan.main
        extras = self.extra_logprob[main]

        def pick(slots):
            return np.where(slots >= 0, np.take_along_axis(extras, np.maximum(slots, 0), axis=1), np.nan)

        choices = np.where(plan.choice_seq >= 0, sequence_logprob[np.maximum(plan.choice_seq, 0)], pick(plan.choice_slot))
        has_choices = plan.labels >= 0
        best = (np.argmax(np.where(np.isnan(choices), -np.inf, choices), axis=1) if choices.shape[1]
                else np.zeros(len(main), np.int64))
        return ExampleScores(
            top1=self.argmax[main] == plan.answer_first,
            topk=self.n_greater[main] < top_k,
            answer_nll=-sequence_logprob[main] / lengths[main],
            answer_first_logprob=self.target_logprob[main, 0].astype(np.float64),
            choice_logprobs=choices.astype(np.float64),
            choice_correct=has_choices & (best == plan.labels),
            has_choices=has_choices,
            probe_logprobs=pick(plan.probe_slot).astype(np.float64),
            label=plan.labels.copy(),
        )


# ----------------------------------------------------------------------------- variants and their chunks


@dataclasses.dataclass(frozen=True)
class VariantGroup:
    """Variants of one (layer, τ name) that run in one call (at most one chunk)."""

    layer: int
    taus: tuple[str, ...]
    interventions: tuple[Intervention, ...]
    ranks: dict  # tau -> np.ndarray [V, 2], the kept singular indices [lo, hi) (padded by repeating the last variant)
    widths: Optional[tuple]  # per variant, its static factor width per τ (rank buckets); None: full width, masked


def rank_width(k: int, full: int) -> int:
    """The rank bucket of rank k: the next power of two, at most the full rank."""
    return min(full, power_of_two(max(k, 1)))


def group_variants(model, interventions: Sequence[Intervention], chunk: int, multiple: int, bucketed: bool) -> list[VariantGroup]:
    """Split the variants of one (layer, τ) into calls of at most ``chunk`` variants (a multiple of ``multiple``)."""
    first = interventions[0]
    taus = check_intervention(model, first)
    shapes = {tau: model.params["blocks"][tau].shape for tau in taus}
    n_calls = -(-len(interventions) // chunk)
    per_call = round_up(-(-len(interventions) // n_calls), multiple)
    groups = []
    for start in range(0, len(interventions), per_call):
        part = list(interventions[start:start + per_call])
        padded = part + [part[-1]] * (per_call - len(part))
        ranks = {tau: np.array([keep_window(iv, shapes[tau]) for iv in padded], np.int32) for tau in taus}
        widths = (tuple(tuple(rank_width(int(ranks[tau][v, 1]), min(shapes[tau][-2:])) for tau in taus)
                        for v in range(len(padded))) if bucketed else None)
        groups.append(VariantGroup(first.layer, taus, tuple(part), ranks, widths))
    return groups


def vocab_size(model) -> int:
    """The head's output width."""
    hidden = jax.ShapeDtypeStruct((1, 1, hidden_size(model)), model.dtype)
    return jax.eval_shape(lambda p, h: model.family.head(p, model.config, h), model.params, hidden).shape[-1]


def hidden_size(model) -> int:
    return int(model.params["blocks"]["out_proj"].shape[-1])  # the residual width (a family may have no q_proj)


def default_variant_chunk(model, batches: Sequence[Batch], budget_bytes: int = DEFAULT_ACTIVATION_BUDGET) -> int:
    """Variants per call such that their hidden and MLP activations and their logits fit in ``budget_bytes``."""
    widest = max(max(model.params["blocks"][tau].shape[-2:]) for tau in model.taus)
    activations = (widest + 2 * hidden_size(model)) * 4 * 2
    logits = vocab_size(model) * 4 * 3  # logits, log-probs and a temporary
    per_variant = max(b.ids.size * activations + b.select.size * logits for b in batches)
    return int(np.clip(budget_bytes // per_variant, 1, 64))


def activation_budget(free_bytes: Optional[int], splits: int) -> int:
    """Bytes for one call's activations: half a device's ``free_bytes`` times the ``splits`` devices that share
    them (variants × examples shards); :data:`DEFAULT_ACTIVATION_BUDGET` when the free memory is unknown."""
    return DEFAULT_ACTIVATION_BUDGET if free_bytes is None else max(1, free_bytes // 2) * splits


def device_memory(devices, field: str) -> Optional[int]:
    """The smallest ``"limit"`` or ``"free"`` (limit minus in use) memory of this process's ``devices`` in bytes,
    from ``device.memory_stats()``; None when the backend reports none (CPU)."""
    stats = [device.memory_stats() for device in devices if device.process_index == jax.process_index()]
    if not stats or any(s is None or "bytes_limit" not in s for s in stats):
        return None
    return min(s["bytes_limit"] - (s.get("bytes_in_use", 0) if field == "free" else 0) for s in stats)


def check_token_ids(examples: Sequence[Example], vocab: int) -> None:
    for i, e in enumerate(examples):
        ids = e.prompt_ids + e.answer_ids + e.probe_ids + sum(e.choice_ids, ())
        if min(ids) < 0 or max(ids) >= vocab:
            raise DataError(f"example {i} has a token id outside the model's vocabulary of {vocab}")


# ----------------------------------------------------------------------------- the sweep


def sweep(model, examples: Sequence[Example], layers: Iterable[int] = (), taus: Iterable[str] = (),
          rhos: Iterable[float] = (), *, variants: Iterable[Intervention] = (), top_k: int = 5, batch_size: int = 64,
          batch_tokens: Optional[int] = None, variant_chunk: Optional[int] = None, rank_buckets: bool = False,
          method: str = "exact", key: Optional[jax.Array] = None, svd_dtype: str = "float32",
          mesh: Optional[Mesh] = None, skip: Iterable[str] = (), on_row: Optional[Callable[[SweepRow], None]] = None,
          progress: bool = False, cache: Optional[FactorCache] = FACTOR_CACHE,
          prefix_budget_bytes: int = 1 << 30) -> SweepResult:
    """Score the base model and every variant of the grid ``layers × taus × rhos`` on ``examples``.

    Returns the base row and one row per variant: the grid's (in its order),
    then those of ``variants`` (explicit interventions). ``skip``: keys
    (:attr:`Intervention.key`, or ``"base"``) not to compute. ``on_row(row)`` is
    called as each row finishes (the base first), e.g. to append it to a file.

    By default every variant uses full-width factors with masked singular
    values, so no ρ ever recompiles. ``rank_buckets=True`` instead gives a
    variant of rank k factors of static width ``min(r, 2^ceil(log2 k))``, so
    small ρ costs fewer FLOPs (about 12% faster on the GPT-2 benchmark) at the
    price of one compile per width; variants of one width share a call.
    ``method="randomized"`` uses Halko factors per variant (needs ``key``), as
    the official code. ``svd_dtype``: see :func:`laser_jax.laser.exact_svd`.
    ``batch_size`` and ``batch_tokens`` bound a batch's rows and its rows ×
    padded length (default ``16 * batch_size``; see :func:`make_batches`).
    ``variant_chunk`` bounds the variants per call (default: from a 1 GiB
    activation budget). ``mesh``: see the module docstring. Hidden states
    entering all swept layers are kept when they fit in
    ``prefix_budget_bytes``, else only the current one (the blocks between the
    first and last swept layer then run twice).

    A variant whose ranks are all full (ρ = 1) is the base model: its row copies
    the base scores. Identical inputs give bit-identical rows.
    """
    examples = list(examples)
    if not examples:
        raise DataError("sweep needs at least one example")
    variants = list(dict.fromkeys([*expand_grid(layers, taus, rhos), *variants]))
    changed = {iv: check_intervention(model, iv) for iv in variants}
    if method == "randomized" and key is None:
        raise InterventionError("method='randomized' needs an explicit key (jax.random.key(seed))")
    if method == "randomized" and any(iv.keep != "top" for iv in variants):
        raise InterventionError("keep='bottom' (the removed part) needs method='exact': randomized factors hold the top k only")
    check_token_ids(examples, vocab_size(model))
    skip = set(skip)
    shapes = {tau: model.params["blocks"][tau].shape for tau in model.taus}
    pending = [iv for iv in variants if iv.key not in skip]
    unchanged = {iv for iv in pending if all(keep_window(iv, shapes[t]) == (0, min(shapes[t][-2:])) for t in changed[iv])}
    edited = [iv for iv in pending if iv not in unchanged]
    need_base = BASE_KEY not in skip or bool(unchanged)

    bar = tqdm(total=len(pending) + need_base, desc="LASER sweep", unit="variant", disable=not progress)
    run = _SweepRun(model, examples, batch_size, batch_tokens, mesh, top_k, on_row, bar)
    swept_layers = sorted({iv.layer for iv in edited})
    keep_all = run.state_bytes * len(swept_layers) <= prefix_budget_bytes
    base_scores = run.base_pass(swept_layers, keep_all, need_base)
    if base_scores is not None:
        if BASE_KEY not in skip:
            run.emit(SweepRow.build(BASE_KEY, None, base_scores))
        for iv in pending:
            if iv in unchanged:
                run.emit(SweepRow.build(iv.key, iv, base_scores))
    chunk = variant_chunk or default_variant_chunk(model, run.host_batches, run.placement.activation_budget())
    bucketed = rank_buckets or method == "randomized"
    for layer in swept_layers:
        run.advance_states(layer)
        for tau in dict.fromkeys(iv.tau for iv in edited if iv.layer == layer):
            members = [iv for iv in edited if iv.layer == layer and iv.tau == tau]
            for group in group_variants(model, members, chunk, run.placement.variant_shards, bucketed):
                factors, per_variant = _group_factors(model, group, method, key, svd_dtype, cache, run.placement)
                run.score_group(group, factors, per_variant)
        if keep_all:
            run.drop_states(layer)
    run.bar.close()
    order = [BASE_KEY] + [iv.key for iv in variants]
    return SweepResult(tuple(run.finished[k] for k in order if k in run.finished), top_k)


class _SweepRun:
    """The state of one sweep: packed batches on the devices, base hidden states, finished rows."""

    def __init__(self, model, examples, batch_size, batch_tokens, mesh, top_k, on_row, bar):
        self.model, self.family, self.cfg = model, model.family, model.config
        self.top_k, self.on_row, self.bar = top_k, on_row, bar
        self.placement = Placement(default_mesh(model) if mesh is None else mesh)
        self.plan = plan_sequences(examples)
        self.host_batches = make_batches(self.plan, batch_size, self.placement.example_shards, batch_tokens)
        self.batches = [DeviceBatch(*self.placement.put((b.ids, b.mask, b.select, b.targets, b.extras),
                                                        self.placement.example_axis)) for b in self.host_batches]
        self.params = self.placement.put_params(model.params)
        self.states: list[dict[int, jax.Array]] = [{} for _ in self.batches]
        self.finished: dict[str, SweepRow] = {}

    @property
    def state_bytes(self) -> int:
        """Bytes of one hidden state for every batch."""
        return sum(b.ids.size for b in self.host_batches) * hidden_size(self.model) * jnp.dtype(self.model.dtype).itemsize

    def emit(self, row: SweepRow) -> None:
        self.finished[row.key] = row
        self.bar.update(1)
        if self.on_row is not None:
            self.on_row(row)

    def scores(self, readouts: list) -> ExampleScores:
        """Per-example scores from one device readout per batch (fetched here, after all are dispatched)."""
        out = SequenceReadouts(self.plan)
        for host_batch, readout in zip(self.host_batches, readouts):
            out.fill(host_batch, Placement.fetch(readout))
        return out.scores(self.plan, self.top_k)

    def base_pass(self, swept_layers: list[int], keep_all: bool, need_base: bool) -> Optional[ExampleScores]:
        """One base forward per batch: keeps the states entering the swept layers (or the first), scores the base."""
        if not swept_layers and not need_base:
            return None
        kept = swept_layers if keep_all else swept_layers[:1]
        slots = power_of_two(max(1, len(kept)))  # padded with -1 (never a layer) to limit recompiles
        save_at = self.placement.put(np.array(kept + [-1] * (slots - len(kept)), np.int32))
        readouts = []
        for batch, saved in zip(self.batches, self.states):
            states, entering_last = base_pass(self.family, self.cfg, self.params, batch.ids, batch.mask, save_at)
            saved.update({layer: states[i] for i, layer in enumerate(kept)})
            if need_base:
                readouts.append(self.readout(batch, entering_last))
        return self.scores(readouts) if need_base else None

    def readout(self, batch: DeviceBatch, entering_last=None, scored=None) -> Readout:
        """Readout (on the devices) from the state entering the last block, or from the scored states it outputs."""
        if scored is None:
            scored = last_block(self.family, self.cfg, self.params, entering_last, batch.mask, batch.select)
        return head_readout(self.family, self.cfg, self.params, scored, batch.targets, batch.extras)

    def advance_states(self, layer: int) -> None:
        """Make every batch's kept state the one entering ``layer``."""
        for batch, saved in zip(self.batches, self.states):
            if layer not in saved:
                (at, h), = saved.items()
                saved.clear()
                saved[layer] = run_between(self.family, self.cfg, self.params, h, batch.mask, at, layer)

    def drop_states(self, layer: int) -> None:
        for saved in self.states:
            saved.pop(layer, None)

    def score_group(self, group: VariantGroup, factors, per_variant: bool) -> None:
        """Run one call's variants on every batch (vmapped, one call per batch) and emit their rows."""
        ranks = self.placement.put(dict(group.ranks), self.placement.variant_axis)
        edits_last = group.layer == self.model.n_layers - 1
        per_batch = [variant_readouts(self.family, self.cfg, group.taus, per_variant, group.widths, edits_last,
                                      self.params, saved[group.layer], batch, group.layer, factors, ranks)
                     for batch, saved in zip(self.batches, self.states)]  # all dispatched before any fetch
        per_batch = [Placement.fetch(readout) for readout in per_batch]
        for v, iv in enumerate(group.interventions):
            readouts = [jax.tree.map(lambda leaf: leaf[v], readout) for readout in per_batch]
            self.emit(SweepRow.build(iv.key, iv, self.scores(readouts)))


def _group_factors(model, group: VariantGroup, method, key, svd_dtype, cache, placement: Placement):
    """The factors a call needs, on the mesh as their matrix is: one full SVD per τ (cached once placed), or
    (randomized) one rank-k factorisation per variant, zero-padded to the call's widest."""
    factors = {}
    for tau in group.taus:
        shape = model.params["blocks"][tau].shape
        if method == "randomized":
            width = max(w[group.taus.index(tau)] for w in group.widths)
            per = [pad_rank(factors_for(model, group.layer, tau, method=method, k=int(k), key=key, cache=cache), width)
                   for _, k in group.ranks[tau]]
            stacked = LowRank(*(jnp.stack([getattr(f, n) for f in per]) for n in ("u", "s", "vt")))
            factors[tau] = placement.put_factors(tau, shape, stacked, per_variant=True)
        elif placement.mesh is None:
            factors[tau] = factors_for(model, group.layer, tau, svd_dtype=svd_dtype, cache=cache)
        else:
            def compute(tau=tau):
                exact = factors_for(model, group.layer, tau, svd_dtype=svd_dtype, cache=None)
                return placement.put_factors(tau, shape, exact)

            path = (group.layer, tau, "exact", svd_dtype, "placed", placement.mesh)
            factors[tau] = compute() if cache is None else cache.get(model, path, compute)
    return factors, method == "randomized"


def evaluate(model, examples: Sequence[Example], **kwargs) -> SweepRow:
    """The base row of ``model`` alone (no variants); keyword arguments as :func:`sweep`."""
    return sweep(model, examples, **kwargs).base


__all__ = [
    "BASE_KEY", "ExampleScores", "roc_auc", "SweepRow", "SweepResult", "ScoredSequence", "SequencePlan", "plan_sequences",
    "Batch", "make_batches", "length_bucket", "rows_per_batch", "Readout", "read_logits", "base_pass", "last_block",
    "head_readout", "variant_readouts", "Placement",
    "default_mesh", "block_param_spec", "model_shards_for", "device_memory", "activation_budget", "MESH_AXES", "group_variants", "sweep", "evaluate",
]
