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
   parameters are broadcast, not copied. Neither ρ nor ℓ nor τ recompiles:
   ℓ is traced, the last layer included (the blocks after it run in
   ``base.run_blocks`` with traced bounds), and a ``lax.switch`` over the
   run's τ sets picks the edited matrices at run time, their factors padded
   to shared slots (:class:`SweepPlan`). With ``rank_buckets`` (or
   randomized factors) the edited block alone is unrolled over the variants,
   each at its own static width, one program per τ set.
3. **No wasted head.** The last block's queries and MLP, and the head, run only
   at the scored positions (``select``), in :func:`variant_readouts`, which
   also reads the base out (its unedited branch, from the state entering the
   last block); only a variant of the last layer runs that block at every
   index, so that one program serves every layer. Batches are grouped by their
   number of scored positions, so a few multi-token answers do not widen the
   rest, and capped in rows × padded length, so a few long sequences do not
   pad full batches (:mod:`laser_jax.batching`).
4. **A fixed handful of programs.** A run fixes its shapes once
   (:class:`SweepPlan`, from its whole data set and grid): a few batch shapes
   (:class:`laser_jax.batching.ShapePlan`, as many as their padding savings
   pay for), variant calls of a full chunk or of one variant
   (:func:`group_variants`), the τ sets, and a fixed number of saved states.
   Per batch shape it compiles the base pass and the variant program at its
   two call sizes. Pass the plan to every sweep of the run (the protocol
   does), and validation, test and every racing look run the same programs;
   their number does not grow with ρ, τ, layers, looks or items.
5. **Sharding.** With a :class:`jax.sharding.Mesh` (by default, over all devices
   when there are several), batches are split over the mesh axis named
   ``"examples"``, variant chunks over ``"variants"``, and the block
   parameters over ``"model"`` (tensor-parallel: the MLP hidden dimension and
   the attention heads, :func:`laser_jax.devices.block_param_spec`); the SVD
   factors, cached once placed, follow their matrix's sharding
   (:meth:`laser_jax.devices.Placement.put_factors`). Other parameters are
   replicated. Results equal one device's up to float rounding. The default
   mesh (:func:`laser_jax.devices.default_mesh`) puts every device on
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

Options live in one frozen :class:`SweepOptions`. ``skip`` (a set of variant keys) and ``on_row`` (called with each finished row)
let a caller write rows as they finish and resume a partial sweep.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from typing import Callable, Iterable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from tqdm.auto import tqdm

from laser_jax.batching import (DEFAULT_MAX_SHAPES, SHAPE_COST, Batch, SequencePlan, ShapePlan, plan_sequences,
                                power_of_two, round_up)
from laser_jax.devices import DEFAULT_ACTIVATION_BUDGET, Placement, default_mesh, program
from laser_jax.errors import DataError, InterventionError
from laser_jax.examples import Example
from laser_jax.laser import (FACTOR_CACHE, FactorCache, Intervention, check_intervention, factors_for, keep_window,
                             pad_rank, window_factors)
from laser_jax.models import base
from laser_jax.models.base import LowRank

BASE_KEY = "base"


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


@program(static_argnums=(0, 1))
def base_pass(family, cfg, params, ids, mask, save_at):
    """Embedding and every block but the last: the states entering the layers ``save_at`` [S]
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


@program()
def state_at(saved, slot):
    """One state of :func:`base_pass`'s stack (``slot`` traced: one program per shape, not per slot)."""
    return jax.lax.dynamic_index_in_dim(saved, slot, 0, keepdims=False)


@program(static_argnums=(0, 1))
def run_between(family, cfg, params, h, mask, start, stop):
    return base.run_blocks(family, cfg, params, h, context_of(mask), start, stop)


def edited_blocks(family, cfg, taus: tuple, per_variant_factors: bool, widths: Optional[tuple], block_params, h, ctx,
                  factors: tuple, ranks: tuple, attention_stage: Optional[tuple] = None):
    """Outputs [V, B, T, d] of one block whose matrices ``taus`` keep the singular indices ``ranks[j]`` [V, 2]
    of ``taus[j]`` (``[0, k)``: LASER's rank-k truncation; ``[k, r)``: the removed part).

    ``factors[j]``: the SVD of ``taus[j]``, possibly zero-padded to a larger
    matrix (one buffer serves several τs, :func:`variant_readouts`); it is cut
    to the matrix's shape here. ``widths`` None: full-width factors with
    masked singular values, vmapped over the variants, so ``x @ u`` is shared
    (unless ``per_variant_factors``: one factorisation per variant).
    Otherwise ``widths[v]`` holds variant v's static factor width per τ (rank
    buckets): each variant runs with its factors cut to those widths, so its
    cost follows its rank, and the outputs are stacked. An MLP-only edit
    shares the block's unedited ``attention_stage`` (residual, MLP input).
    """

    def edited(variant_ranks, variant_factors, variant_widths=None):
        def cut(j, tau):
            m, n = block_params[tau].shape[-2:]
            r = min(m, n) if variant_widths is None else variant_widths[j]
            f = variant_factors[j]
            return window_factors(LowRank(f.u[..., :m, :r], f.s[..., :r], f.vt[..., :r, :n]), variant_ranks[j])

        return {**block_params, **{tau: cut(j, tau) for j, tau in enumerate(taus)}}

    if all(tau in base.MLP_TAUS for tau in taus):
        residual, mlp_input = attention_stage or family.attention_stage(block_params, cfg, h, ctx, None)
        run = lambda p: residual + family.mlp(p, cfg, mlp_input)  # noqa: E731
    else:
        run = lambda p: base.block(family, cfg, p, h, ctx)  # noqa: E731
    if not taus:  # the unedited block, once per variant of the call (as many as the ranks have)
        out = run(block_params)
        return jnp.broadcast_to(out, (len(ranks[0]) if ranks else 1,) + out.shape)
    if widths is None:
        in_axes = (0, 0 if per_variant_factors else None)
        return jax.vmap(lambda r, f: run(edited(r, f)), in_axes=in_axes)(ranks, factors)
    pick = lambda tree, v: jax.tree.map(lambda leaf: leaf[v], tree)  # noqa: E731
    return jnp.stack([run(edited(pick(ranks, v), pick(factors, v) if per_variant_factors else factors, w))
                      for v, w in enumerate(widths)])


@program(static_argnums=(0, 1, 2, 3, 4))
def variant_readouts(family, cfg, branches: tuple, per_variant_factors: bool, widths: Optional[tuple],
                     params, h, batch: "DeviceBatch", layer, branch, factors: tuple, ranks: tuple) -> Readout:
    """Readouts [V, ...] of the variants that edit block ``layer``, from the base state ``h`` entering it.

    ``branches``: the τ sets this program can edit (a run's whole grid, see
    :class:`SweepPlan`); ``branch`` (traced) picks the one these variants
    edit, at run time (``lax.switch``), so that one program serves every τ:
    ``factors[j]`` then holds the j-th τ's SVD zero-padded to the largest
    j-th matrix of the branches. The block's attention stage, unedited, runs
    once outside the switch for its MLP-only branches. ``layer`` is traced
    too, the last block included: the edited block runs at every index, then
    a ``lax.cond`` either reads it at the scored indices (the last block) or
    runs the blocks up to the last at every index (their keys and values feed
    the last block), and the last one at the scored indices only. ``widths``:
    see :func:`edited_blocks`. All is vmapped over the variants: the
    parameters are broadcast, so the variant axis folds into the rows of
    every matmul.
    """
    ctx = context_of(batch.mask)
    last = base.n_layers(params) - 1
    last_params, block_params = base.layer_params(params, last), base.layer_params(params, layer)
    stage = None
    if any(all(tau in base.MLP_TAUS for tau in taus) for taus in branches):
        stage = family.attention_stage(block_params, cfg, h, ctx, None)

    def edit_taus(taus):
        return lambda h: edited_blocks(family, cfg, taus, per_variant_factors, widths, block_params, h, ctx,
                                       factors, ranks, stage)

    out = jax.lax.switch(branch, [edit_taus(taus) for taus in branches], h)

    def to_scored(x):
        x = base.run_blocks(family, cfg, params, x, ctx, layer + 1, last)
        return base.block(family, cfg, last_params, x, ctx, batch.select)

    scored = jax.lax.cond(layer == last, lambda out: jax.vmap(lambda x: base.gather_positions(x, batch.select))(out),
                          lambda out: jax.vmap(to_scored)(out), out)
    return jax.vmap(lambda x: read_logits(family.head(params, cfg, x), batch.targets, batch.extras))(scored)


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
    ranks: tuple  # per τ of ``taus``, np.ndarray [V, 2]: the kept singular indices [lo, hi) (padded by repeating the last variant)
    widths: Optional[tuple]  # per variant, its static factor width per τ (rank buckets); None: full width, masked


# What a call of one variant (shard) costs, in variants of a full chunk's call: its own attention stage and smaller
# matmuls. Measured (``python benchmarks/call_sizes.py``): SmolLM2-135M on the 2-core CPU, 42 variants (layers 28-29
# x 3 MLP tau x 7 rho) on 120 CounterFact items, compiled: 9.8 s in calls of 7, 14.0 s in calls of one (1.43).
ONE_CALL_COST = 1.4


def rank_width(k: int, full: int) -> int:
    """The rank bucket of rank k: the next power of two, at most the full rank."""
    return min(full, power_of_two(max(k, 1)))


def group_variants(model, interventions: Sequence[Intervention], chunk: int, multiple: int, bucketed: bool) -> list[VariantGroup]:
    """Split the variants of one (layer, τ) into calls of exactly ``chunk`` variants or of ``multiple`` (one
    per variant shard), so that a run's variant programs come in two sizes only.

    Whole chunks first, then the remainder (racing's survivors, a resumed group): as calls of ``multiple``
    where they cost less than one more chunk, at :data:`ONE_CALL_COST` each, else as one chunk; a call's
    last slots repeat its last variant.
    """
    first = interventions[0]
    taus = check_intervention(model, first)
    shapes = {tau: model.params["blocks"][tau].shape for tau in taus}
    interventions = list(interventions)
    whole = len(interventions) // chunk * chunk
    rest = len(interventions) - whole
    small_calls = -(-rest // multiple)
    if small_calls * multiple * ONE_CALL_COST < chunk:
        sizes = [chunk] * (whole // chunk) + [multiple] * small_calls
    else:
        sizes = [chunk] * -(-len(interventions) // chunk)
    groups, start = [], 0
    for size in sizes:
        part = interventions[start:start + size]
        start += len(part)
        padded = part + [part[-1]] * (size - len(part))
        ranks = tuple(np.array([keep_window(iv, shapes[tau]) for iv in padded], np.int32) for tau in taus)
        widths = (tuple(tuple(rank_width(int(ranks[j][v, 1]), min(shapes[tau][-2:])) for j, tau in enumerate(taus))
                        for v in range(len(padded))) if bucketed else None)
        groups.append(VariantGroup(first.layer, taus, tuple(part), ranks, widths))
    return groups


def vocab_size(model) -> int:
    """The head's output width."""
    hidden = jax.ShapeDtypeStruct((1, 1, hidden_size(model)), model.dtype)
    return jax.eval_shape(lambda p, h: model.family.head(p, model.config, h), model.params, hidden).shape[-1]


def hidden_size(model) -> int:
    return int(model.params["blocks"]["out_proj"].shape[-1])  # the residual width (a family may have no q_proj)


def default_variant_chunk(model, shapes: ShapePlan, budget_bytes: int = DEFAULT_ACTIVATION_BUDGET) -> int:
    """Variants per call such that their hidden and MLP activations and their logits fit in ``budget_bytes``,
    for the largest batch shape of the plan."""
    widest = max(max(model.params["blocks"][tau].shape[-2:]) for tau in model.taus)
    activations = (widest + 2 * hidden_size(model)) * 4 * 2
    logits = vocab_size(model) * 4 * 3  # logits, log-probs and a temporary
    per_variant = max(s.rows * s.length * activations + s.rows * s.targets * logits for s in shapes.shapes)
    return int(np.clip(budget_bytes // per_variant, 1, 64))


def check_token_ids(examples: Sequence[Example], vocab: int) -> None:
    for i, e in enumerate(examples):
        ids = e.prompt_ids + e.answer_ids + e.probe_ids + sum(e.choice_ids, ())
        if min(ids) < 0 or max(ids) >= vocab:
            raise DataError(f"example {i} has a token id outside the model's vocabulary of {vocab}")


# ----------------------------------------------------------------------------- options and the run's plan


@dataclasses.dataclass(frozen=True)
class SweepOptions:
    """How the engine scores: every knob of :func:`sweep` but the data, the variants and the callbacks.

    - ``top_k``: the k of ``topk`` accuracy.
    - ``batch_size`` / ``batch_tokens``: a batch's rows, and its rows × padded
      length (default ``16 * batch_size``); ``max_shapes``: the batch shapes a
      run may use (:class:`laser_jax.batching.ShapePlan`).
    - ``variant_chunk``: the most variants per call (default: from the
      devices' free memory, else a 1 GiB activation budget).
    - ``rank_buckets``: instead of full-width factors with masked singular
      values (no ρ ever recompiles), give a variant of rank k factors of static
      width ``min(r, 2^ceil(log2 k))``, so small ρ costs fewer FLOPs (about 12%
      faster on the GPT-2 benchmark) at the price of one compile per width.
    - ``method="randomized"``: Halko factors per variant (needs ``key``), as
      the official code; ``svd_dtype``: see :func:`laser_jax.laser.exact_svd`;
      ``cache``: where SVD factors are kept (None: nowhere).
    - ``mesh``: see the module docstring (default :func:`laser_jax.devices.default_mesh`).
    - ``prefix_budget_bytes``: the hidden states entering all swept layers are
      kept when they fit, else only the current one (the blocks between the
      first and last swept layer then run twice).
    """

    top_k: int = 5
    batch_size: int = 64
    batch_tokens: Optional[int] = None
    max_shapes: int = DEFAULT_MAX_SHAPES
    variant_chunk: Optional[int] = None
    rank_buckets: bool = False
    method: str = "exact"
    key: Optional[jax.Array] = None
    svd_dtype: str = "float32"
    mesh: Optional[Mesh] = None
    cache: Optional[FactorCache] = FACTOR_CACHE
    prefix_budget_bytes: int = 1 << 30

    def __post_init__(self):
        if self.batch_size < 1 or (self.batch_tokens is not None and self.batch_tokens < 1):
            raise DataError(f"batch_size and batch_tokens must be at least 1, got {self.batch_size} and {self.batch_tokens}")
        if self.variant_chunk is not None and self.variant_chunk < 1:
            raise DataError(f"variant_chunk must be at least 1, got {self.variant_chunk}")
        if self.method not in ("exact", "randomized"):
            raise InterventionError(f"method must be 'exact' or 'randomized', got {self.method!r}")
        if self.method == "randomized" and self.key is None:
            raise InterventionError("method='randomized' needs an explicit key (jax.random.key(seed))")

    def replace(self, **changes) -> "SweepOptions":
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class SweepPlan:
    """What a run compiles for, fixed once from its whole data set and grid (:meth:`build`), so that every
    sweep of the run (validation, test, each racing look) runs the same few programs.

    ``shapes``: the batch shapes; ``variant_chunk``: the variants of a full
    call (other calls hold one per variant shard, :func:`group_variants`);
    ``state_slots``: how many hidden states the base pass keeps (a power of
    two; 1 when the run's states would not fit ``prefix_budget_bytes``);
    ``branches``: the τ sets of the grid, and ``()`` (the base's readout),
    which one variant program edits (:func:`variant_readouts`), and
    ``factor_slots`` the (rows, rank, cols) their factors are padded to;
    ``branches`` is empty (a program per τ set) where factors differ per
    variant (``rank_buckets``, randomized) or are split over model shards.
    ``compiled``: the run's programs compiled so far
    (:meth:`laser_jax.devices.Placement.dispatch`), so that a later sweep of
    the run (a look, the test part) does not lower them again.
    """

    shapes: ShapePlan
    placement: Placement
    variant_chunk: int
    state_slots: int
    branches: tuple = ()
    factor_slots: tuple = ()
    compiled: set = dataclasses.field(default_factory=set, compare=False, repr=False)  # Placement.dispatch's keys

    @classmethod
    def build(cls, model, examples: Sequence[Example], variants: Iterable[Intervention] = (),
              options: SweepOptions = SweepOptions(), parts: Optional[Sequence[tuple[Sequence[int], float]]] = None
              ) -> "SweepPlan":
        """The plan of a run over ``examples`` and ``variants``. ``parts``: (example indices, whole-model passes)
        pairs when the run's parts see different work (:func:`laser_jax.protocol.run_selection`); by default
        every variant runs on every example (:func:`model_passes`)."""
        examples = list(examples)
        if not examples:
            raise DataError("sweep needs at least one example")
        variants = list(variants)
        placement = Placement(default_mesh(model) if options.mesh is None else options.mesh)
        sequences = plan_sequences(examples).sequences
        passes = model_passes(model, variants) if parts is None else [
            (plan_sequences([examples[i] for i in index]).sequences, weight) for index, weight in parts if len(index)]
        shapes = ShapePlan.build(sequences, options.batch_size, options.batch_tokens, placement.example_shards,
                                 options.max_shapes, passes=passes, shape_cost=SHAPE_COST)
        largest = max(collections.Counter((iv.layer, iv.tau) for iv in variants).values(), default=1)
        budget = options.variant_chunk or default_variant_chunk(model, shapes, placement.activation_budget())
        chunk = round_up(min(budget, largest), placement.variant_shards)
        layers = len({iv.layer for iv in variants})
        tokens = sum(shapes.shape_for(s).length for s in sequences)
        state_bytes = tokens * hidden_size(model) * jnp.dtype(model.dtype).itemsize
        slots = power_of_two(layers) if layers and state_bytes * power_of_two(layers) <= options.prefix_budget_bytes else 1
        if options.method != "exact" or options.rank_buckets or placement.model_shards > 1:
            return cls(shapes, placement, chunk, slots)
        order = {tau: i for i, tau in enumerate(model.taus)}
        edited = {check_intervention(model, iv) for iv in variants}
        branches = ((),) + tuple(sorted(edited, key=lambda taus: [order[tau] for tau in taus]))
        return cls(shapes, placement, chunk, slots, branches, factor_slots(model, branches))


# ----------------------------------------------------------------------------- the sweep


def model_passes(model, variants: Sequence[Intervention]) -> float:
    """The run's work over its data in whole-model passes: the base pass, and (L - ℓ) / L per variant of layer ℓ."""
    layers = base.n_layers(model.params)
    return 1.0 + sum((layers - iv.layer) / layers for iv in variants)


def factor_slots(model, branches: Sequence[tuple[str, ...]]) -> tuple[tuple[int, int, int], ...]:
    """Per position j of a τ set, the (rows, rank, cols) that hold the j-th matrix's full SVD of every set."""
    blocks = model.params["blocks"]
    slots = []
    for j in range(max((len(taus) for taus in branches), default=0)):
        shapes = [blocks[taus[j]].shape[-2:] for taus in branches if len(taus) > j]
        slots.append((max(m for m, _ in shapes), max(min(m, n) for m, n in shapes), max(n for _, n in shapes)))
    return tuple(slots)


def sweep(model, examples: Sequence[Example], variants: Iterable[Intervention] = (), *,
          options: SweepOptions = SweepOptions(), plan: Optional[SweepPlan] = None, skip: Iterable[str] = (),
          on_row: Optional[Callable[[SweepRow], None]] = None, progress: bool = False) -> SweepResult:
    """Score the base model and every variant of ``variants`` on ``examples``.

    Returns the base row and one row per variant, in the order given (a grid:
    :func:`laser_jax.laser.expand_grid`). ``options``: :class:`SweepOptions`.
    ``plan``: the run's :class:`SweepPlan` when this sweep is one of several
    over parts of one data set (built from ``examples`` and ``variants``
    otherwise); every sequence must fit its shapes. ``skip``: keys
    (:attr:`Intervention.key`, or ``"base"``) not to compute. ``on_row(row)`` is
    called as each row finishes (the base first), e.g. to append it to a file.

    A variant whose ranks are all full (ρ = 1) is the base model: its row copies
    the base scores. Identical inputs give bit-identical rows; a sequence's
    scores depend on the other examples of the sweep by float rounding only
    (they may pad it to another length, :meth:`ShapePlan.batches`).
    """
    examples = list(examples)
    if not examples:
        raise DataError("sweep needs at least one example")
    variants = list(dict.fromkeys(variants))
    changed = {iv: check_intervention(model, iv) for iv in variants}
    if options.method == "randomized" and any(iv.keep != "top" for iv in variants):
        raise InterventionError("keep='bottom' (the removed part) needs method='exact': randomized factors hold the top k only")
    check_token_ids(examples, vocab_size(model))
    plan = SweepPlan.build(model, examples, variants, options) if plan is None else plan
    skip = set(skip)
    shapes = {tau: model.params["blocks"][tau].shape for tau in model.taus}
    pending = [iv for iv in variants if iv.key not in skip]
    unchanged = {iv for iv in pending if all(keep_window(iv, shapes[t]) == (0, min(shapes[t][-2:])) for t in changed[iv])}
    edited = [iv for iv in pending if iv not in unchanged]
    need_base = BASE_KEY not in skip or bool(unchanged)

    bar = tqdm(total=len(pending) + need_base, desc="LASER sweep", unit="variant", disable=not progress)
    run = _SweepRun(model, examples, plan, options.top_k, on_row, bar)
    swept_layers = sorted({iv.layer for iv in edited})
    keep_all = len(swept_layers) <= plan.state_slots
    base_scores = run.base_pass(swept_layers, keep_all, need_base)
    if base_scores is not None:
        if BASE_KEY not in skip:
            run.emit(SweepRow.build(BASE_KEY, None, base_scores))
        for iv in pending:
            if iv in unchanged:
                run.emit(SweepRow.build(iv.key, iv, base_scores))
    bucketed = options.rank_buckets or options.method == "randomized"
    for layer in swept_layers:
        run.advance_states(layer)
        for tau in dict.fromkeys(iv.tau for iv in edited if iv.layer == layer):
            members = [iv for iv in edited if iv.layer == layer and iv.tau == tau]
            for group in group_variants(model, members, plan.variant_chunk, plan.placement.variant_shards, bucketed):
                factors, per_variant = _group_factors(model, group, options, plan.placement)
                run.score_group(group, factors, per_variant)
        if keep_all:
            run.drop_states(layer)
    run.bar.close()
    order = [BASE_KEY] + [iv.key for iv in variants]
    return SweepResult(tuple(run.finished[k] for k in order if k in run.finished), options.top_k)


class _SweepRun:
    """The state of one sweep: packed batches on the devices, base hidden states, finished rows."""

    def __init__(self, model, examples, plan: SweepPlan, top_k, on_row, bar):
        self.model, self.family, self.cfg = model, model.family, model.config
        self.top_k, self.on_row, self.bar = top_k, on_row, bar
        self.placement, self.slots = plan.placement, plan.state_slots
        self.branches, self.factor_slots, self.zero_slots = plan.branches, plan.factor_slots, None
        self.plan = plan_sequences(examples)
        self.host_batches = plan.shapes.batches(self.plan)
        self.batches = [DeviceBatch(*self.placement.put((b.ids, b.mask, b.select, b.targets, b.extras),
                                                        self.placement.example_axis)) for b in self.host_batches]
        self.params = self.placement.put_params(model.params)
        self.states: list[dict[int, jax.Array]] = [{} for _ in self.batches]
        self.compiled = plan.compiled  # the run's programs compiled so far: a later sweep of the run lowers none again
        self.finished: dict[str, SweepRow] = {}

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
        save_at = self.placement.put(np.array(kept + [-1] * (self.slots - len(kept)), np.int32))
        passes = self.placement.dispatch(base_pass, [(self.family, self.cfg, self.params, batch.ids, batch.mask, save_at)
                                                     for batch in self.batches], self.compiled)
        for saved, (states, _) in zip(self.states, passes):
            saved.update({layer: state_at(states, np.int32(i)) for i, layer in enumerate(kept)})
        if not need_base:
            return None
        unedited = self.program_args((), (), (), self.placement.variant_shards, False, None)
        last = base.n_layers(self.params) - 1  # the variant program's unedited branch, at the last layer
        readouts = self.placement.dispatch(variant_readouts, [self.variant_args(unedited, h, batch, last)
                                                              for batch, (_, h) in zip(self.batches, passes)], self.compiled)
        return self.scores([jax.tree.map(lambda leaf: leaf[0], Placement.fetch(readout)) for readout in readouts])

    def advance_states(self, layer: int) -> None:
        """Make every batch's kept state the one entering ``layer``."""
        for batch, saved in zip(self.batches, self.states):
            if layer not in saved:
                (at, h), = saved.items()
                saved.clear()
                saved[layer] = run_between(self.family, self.cfg, self.params, h, batch.mask, np.int32(at),
                                           np.int32(layer))

    def drop_states(self, layer: int) -> None:
        for saved in self.states:
            saved.pop(layer, None)

    def program_args(self, taus: tuple, factors: tuple, ranks: tuple, n_variants: int, per_variant: bool, widths):
        """The branches, branch, factors and ranks of :func:`variant_readouts` for one call that edits ``taus``:
        the run's one program (factors padded to its slots, absent slots zero) where it can, else one for ``taus``."""
        branches = (taus,)
        if widths is None and not per_variant and taus in self.branches:
            branches, slots = self.branches, self.factor_slots
            if self.zero_slots is None:
                self.zero_slots = self.placement.put(tuple(LowRank(np.zeros((m, r), np.float32), np.zeros(r, np.float32),
                                                                   np.zeros((r, n), np.float32)) for m, r, n in slots))
            factors = tuple(f if f.u.shape == (m, r) and f.vt.shape == (r, n) else pad_rank(f, r, m, n)
                            for f, (m, r, n) in zip(factors, slots)) + self.zero_slots[len(factors):]
            ranks = tuple(ranks) + tuple(np.zeros((n_variants, 2), np.int32) for _ in slots[len(ranks):])
        return branches, per_variant, widths, np.int32(branches.index(taus)), factors, \
            self.placement.put(ranks, self.placement.variant_axis)

    def variant_args(self, args: tuple, h, batch: "DeviceBatch", layer: int) -> tuple:
        """The arguments of :func:`variant_readouts` for one call on one batch (``args``: :meth:`program_args`)."""
        branches, per_variant, widths, branch, factors, ranks = args
        return (self.family, self.cfg, branches, per_variant, widths, self.params, h, batch, np.int32(layer), branch,
                factors, ranks)

    def score_group(self, group: VariantGroup, factors, per_variant: bool) -> None:
        """Run one call's variants on every batch (vmapped, one call per batch) and emit their rows."""
        args = self.program_args(group.taus, factors, group.ranks, len(group.ranks[0]), per_variant, group.widths)
        per_batch = self.placement.dispatch(variant_readouts, [self.variant_args(args, saved[group.layer], batch, group.layer)
                                                               for batch, saved in zip(self.batches, self.states)],
                                            self.compiled)  # all dispatched before any fetch
        per_batch = [Placement.fetch(readout) for readout in per_batch]
        for v, iv in enumerate(group.interventions):
            readouts = [jax.tree.map(lambda leaf: leaf[v], readout) for readout in per_batch]
            self.emit(SweepRow.build(iv.key, iv, self.scores(readouts)))


def _group_factors(model, group: VariantGroup, options: SweepOptions, placement: Placement):
    """The factors a call needs, on the mesh as their matrix is: one full SVD per τ (cached once placed), or
    (randomized) one rank-k factorisation per variant, zero-padded to the call's widest."""
    factors = {}  # in the order of group.taus
    method, cache, svd_dtype = options.method, options.cache, options.svd_dtype
    for tau in group.taus:
        shape = model.params["blocks"][tau].shape
        if method == "randomized":
            width = max(w[group.taus.index(tau)] for w in group.widths)
            per = [pad_rank(factors_for(model, group.layer, tau, method=method, k=int(k), key=options.key, cache=cache),
                            width) for _, k in group.ranks[group.taus.index(tau)]]
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
    return tuple(factors.values()), method == "randomized"


def evaluate(model, examples: Sequence[Example], *, options: SweepOptions = SweepOptions(),
             plan: Optional[SweepPlan] = None, progress: bool = False) -> SweepRow:
    """The base row of ``model`` alone (no variants)."""
    return sweep(model, examples, options=options, plan=plan, progress=progress).base


__all__ = [
    "BASE_KEY", "ExampleScores", "roc_auc", "SweepRow", "SweepResult", "Readout", "read_logits", "base_pass",
    "state_at", "variant_readouts", "group_variants", "SweepOptions", "SweepPlan", "model_passes", "sweep", "evaluate",
]
