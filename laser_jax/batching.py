"""Packing examples into padded batches of a few fixed shapes, so that a run compiles a fixed handful of programs.

:func:`plan_sequences` turns examples into the sequences that score them
(identical ones shared; single-token candidates and probes read at the end
of the prompt). A :class:`ShapePlan` fixes, once per run and from the run's
whole data set, the few batch shapes every batch of the run takes: each a
number of scored positions, a padded length and a number of rows. Any subset
of the run's sequences (validation, test, a racing look, a screen) is then
packed into batches of those shapes only, so the compiled programs of one
phase serve every other.

How the shapes are chosen (:meth:`ShapePlan.build`): each sequence needs a
padded length (:func:`length_bucket`: a multiple of an eighth of the next
power of two) and a power of two of scored positions. Starting from the one
shape that covers everything, the shape that saves most of the run's padded
work is added, up to ``max_shapes``, while it saves at least
:data:`MIN_SAVING` of it and at least ``shape_cost``: what compiling one more
shape's programs is worth in padded positions of one whole-model pass. The
run's padded work (:func:`padded_work`) counts whole batches and each partly
filled last batch at its full rows, as :meth:`ShapePlan.layout` packs them,
times the passes the run makes over its data. A pass is one forward of the
whole model: the base is one, a variant of layer ℓ of L runs only the blocks
from ℓ on, (L - ℓ) / L. A run whose parts see different work (selection: the
whole grid on validation, a few variants on test) weighs each part's
sequences by its own passes. The padded work of a sequence in a shape is its
length plus :data:`HEAD_WEIGHT` times its scored positions (the head runs at
every scored position, and on a late-layer variant it costs about as much as
four positions of a block). So a small run compiles few shapes and pads more,
and a large one pads little.

A shape's rows are fixed: ``batch_size``, fewer for long shapes so that rows
× length stays within ``batch_tokens``. A sequence goes to the least padded
shape that holds it (:func:`own_shape`); a phase's last, partly filled batch
of a shape moves into a larger shape's free rows when they hold it
(:func:`remainder_hosts`: a racing look of 64 items would otherwise pay for a
nearly empty batch of every shape), else it is padded up to its rows. A
sequence's scores may then differ between phases by float rounding only (its
padded length changes, not its tokens).

This module knows nothing of JAX: it builds host arrays.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from typing import Iterable, Sequence

import numpy as np

from laser_jax.errors import DataError
from laser_jax.examples import Example

DEFAULT_MAX_SHAPES = 8
HEAD_WEIGHT = 4  # padded work of one scored position, in padded positions of a block
MIN_SAVING = 0.02  # a shape is added only if it saves at least this share of the padded work
# What one more batch shape costs, in padded positions of one whole-model pass: on a 2-core CPU with SmolLM2-135M its
# programs took 2.8-3.4 s to compile, in which time a warm base pass runs 2,400-3,100 padded positions through all 30
# blocks (two runs of benchmarks/compile_costs.py, benchmarks/results/compile_costs_smollm2.txt). Set above that:
# each program also holds memory maps, and a smaller run's compile share is what users wait for first.
SHAPE_COST = 4_000


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
    of two: the lengths a :class:`ShapePlan` chooses its shapes from.
    """
    if n <= minimum:
        return minimum
    return round_up(n, max(1, power_of_two(n) // 8))


def rows_per_batch(length: int, batch_size: int, batch_tokens: int) -> int:
    """``batch_size`` rows, or fewer (at least one) so that rows × ``length`` stays within ``batch_tokens``."""
    return max(1, min(batch_size, batch_tokens // length))


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


@dataclasses.dataclass(frozen=True, order=True)
class BatchShape:
    """One batch shape: ``targets`` scored positions per row, ``length`` tokens per row, ``rows`` rows."""

    targets: int
    length: int
    rows: int

    @property
    def work(self) -> int:
        """Padded work of one row (see the module docstring)."""
        return self.length + HEAD_WEIGHT * self.targets

    def covers(self, need: tuple[int, int]) -> bool:
        return self.targets >= need[0] and self.length >= need[1]


def sequence_need(sequence: ScoredSequence) -> tuple[int, int]:
    """The (scored positions, padded length) a sequence needs at least."""
    return power_of_two(len(sequence.targets)), length_bucket(len(sequence.tokens))


@dataclasses.dataclass(frozen=True)
class ShapePlan:
    """The batch shapes of one run, fixed once from its whole data set (see the module docstring).

    ``shapes`` in increasing order; ``extras``: the width of every batch's
    extras (a power of two, at least 1). Build it with :meth:`build`; pack
    any subset of the run's sequences with :meth:`batches`.
    """

    shapes: tuple[BatchShape, ...]
    extras: int

    @classmethod
    def build(cls, sequences: Iterable[ScoredSequence], batch_size: int, batch_tokens: int | None = None,
              multiple: int = 1, max_shapes: int = DEFAULT_MAX_SHAPES, passes: float | Sequence[tuple] = 1.0,
              shape_cost: float = 0.0) -> "ShapePlan":
        """The shapes for ``sequences``: at most ``max_shapes``, rows a multiple of ``multiple`` (example shards).

        ``passes``: the run's passes over ``sequences`` (see the module
        docstring), or its parts as (sequences, passes) pairs when they see
        different work (selection: the whole grid on validation, a few
        variants on test); ``shape_cost``: padded positions (0: free).
        """
        sequences = list(sequences)
        if not sequences:
            raise DataError("cannot plan batch shapes for no sequences")
        if batch_size < 1 or max_shapes < 1:
            raise DataError(f"batch_size and max_shapes must be at least 1, got {batch_size} and {max_shapes}")
        batch_tokens = 16 * batch_size if batch_tokens is None else batch_tokens
        needs = collections.Counter(sequence_need(s) for s in sequences)
        parts = [(sequences, passes)] if isinstance(passes, (int, float)) else passes
        part_needs = [(collections.Counter(sequence_need(s) for s in part), float(weight)) for part, weight in parts]
        targets = sorted({a for a, _ in needs})
        lengths = sorted({t for _, t in needs})

        def shape(a: int, t: int) -> BatchShape:
            return BatchShape(a, t, round_up(rows_per_batch(t, batch_size, batch_tokens), multiple))

        def run_work(chosen: list[BatchShape]) -> float:
            return sum(weight * padded_work(chosen, counts) for counts, weight in part_needs)

        chosen = [shape(targets[-1], lengths[-1])]  # the one shape that holds every sequence
        candidates = [shape(a, t) for a in targets for t in lengths]
        while len(chosen) < max_shapes:
            remaining = [c for c in candidates if c not in chosen]
            if not remaining:
                break
            current = run_work(chosen)
            work, best = min((run_work(chosen + [c]), c) for c in remaining)
            if current - work < max(MIN_SAVING * current, shape_cost):
                break
            chosen.append(best)
        return cls(tuple(sorted(chosen)), power_of_two(max(1, max(len(s.extras) for s in sequences))))

    def shape_for(self, sequence: ScoredSequence) -> BatchShape:
        """A sequence's own shape: the least padded work among the shapes that hold it."""
        own = own_shape(self.shapes, sequence_need(sequence))
        if own is None or len(sequence.extras) > self.extras:
            raise DataError(f"a sequence of {len(sequence.tokens)} tokens, {len(sequence.targets)} scored and "
                            f"{len(sequence.extras)} extras does not fit the run's batch shapes {self.describe()}")
        return own

    def describe(self) -> str:
        return ", ".join(f"{s.rows}x{s.length} ({s.targets} scored)" for s in self.shapes) + f", {self.extras} extras"

    def batches(self, plan: SequencePlan) -> list[Batch]:
        """``plan``'s sequences packed into batches of the planned shapes (:meth:`layout`)."""
        return [self.pack(shape, plan, np.array(members, np.int64)) for shape, members in self.layout(plan)]

    def layout(self, plan: SequencePlan) -> list[tuple[BatchShape, list[int]]]:
        """The batches of :meth:`batches` as (shape, sequence indices), in shape order, then sequence order.

        Each sequence goes to its own shape (:meth:`shape_for`); a shape's last,
        partly filled batch then moves whole into the free rows of a larger
        shape's last batch where they hold it. Free rows cost as much as
        filled ones, so a subset of a run's items (a racing look of 64) does
        not pay for a nearly empty batch of every shape.
        """
        by_shape: dict[BatchShape, list[int]] = {s: [] for s in self.shapes}
        for index, sequence in enumerate(plan.sequences):
            by_shape[self.shape_for(sequence)].append(index)
        full = {shape: [members[i:i + shape.rows] for i in range(0, len(members) // shape.rows * shape.rows, shape.rows)]
                for shape, members in by_shape.items()}
        last: dict[BatchShape, list[int]] = {}  # the partly filled batches, each under the shape it takes
        for shape, host in remainder_hosts({s: len(members) for s, members in by_shape.items()}).items():
            last.setdefault(host, []).extend(by_shape[shape][len(by_shape[shape]) // shape.rows * shape.rows:])
        return [(shape, members) for shape in self.shapes for members in full[shape] + ([last[shape]] if shape in last else [])]

    def spare_rows(self, required: Sequence[Example], candidates: Sequence[Example]) -> list[int]:
        """The candidates (indices, taken in order) that ride in the free rows of ``required``'s batches: packed
        with ``required``, they add no padded work. A racing look scores the next looks' items in them."""
        work = layout_work(self.layout(plan_sequences(required)))
        taken: list[Example] = []
        chosen = []
        for j, candidate in enumerate(candidates):
            batches = self.layout(plan_sequences([*required, *taken, candidate]))
            if layout_work(batches) > work:
                continue
            taken.append(candidate)
            chosen.append(j)
            if all(len(members) == shape.rows for shape, members in batches):
                break
        return chosen

    def pack(self, shape: BatchShape, plan: SequencePlan, rows: np.ndarray) -> Batch:
        ids = np.zeros((shape.rows, shape.length), np.int32)
        mask = np.zeros((shape.rows, shape.length), bool)
        mask[:, 0] = True  # padding rows hold one dummy token
        select = np.zeros((shape.rows, shape.targets), np.int32)
        targets = np.zeros((shape.rows, shape.targets), np.int32)
        extras = np.zeros((shape.rows, self.extras), np.int32)
        for i, s in enumerate(plan.sequences[r] for r in rows):
            ids[i, :len(s.tokens)] = s.tokens
            mask[i, :len(s.tokens)] = True
            select[i] = s.start
            select[i, :len(s.targets)] += np.arange(len(s.targets))
            targets[i, :len(s.targets)] = s.targets
            extras[i, :len(s.extras)] = s.extras
        return Batch(ids, mask, select, targets, extras, rows)


def own_shape(shapes: Iterable[BatchShape], need: tuple[int, int]) -> BatchShape | None:
    """The least padded of ``shapes`` that holds ``need`` (None when none does)."""
    return min((s for s in shapes if s.covers(need)), key=lambda s: (s.work, s), default=None)


def remainder_hosts(counts: dict[BatchShape, int]) -> dict[BatchShape, BatchShape]:
    """Where each shape's partly filled last batch goes, given how many sequences each shape holds: into the
    free rows of a larger shape's last batch that holds it, else a batch of its own (the shape itself).
    Larger batches (rows × work) are placed first, so they host; a host's own sequences come first."""
    hosts: dict[BatchShape, BatchShape] = {}
    free: dict[BatchShape, int] = {}  # the free rows of each last batch so far
    for shape in sorted(counts, key=lambda s: (s.rows * s.work, s), reverse=True):
        rest = counts[shape] % shape.rows
        if not rest:
            continue
        host = next((s for s in free if s.covers((shape.targets, shape.length)) and free[s] >= rest), None)
        if host is None:
            host, free[shape] = shape, shape.rows
        hosts[shape] = host
        free[host] -= rest
    return hosts


def padded_work(shapes: Sequence[BatchShape], needs: collections.Counter) -> int:
    """The padded work of packing sequences of ``needs`` ((scored positions, length) counts) into ``shapes``
    as :meth:`ShapePlan.layout` does: whole batches, and each partly filled one at its full rows."""
    counts: collections.Counter = collections.Counter()
    for need, count in needs.items():
        counts[own_shape(shapes, need)] += count
    whole = sum(n // s.rows * s.rows * s.work for s, n in counts.items())
    return whole + sum(s.rows * s.work for s, host in remainder_hosts(counts).items() if host == s)


def layout_work(layout: Sequence[tuple[BatchShape, list[int]]]) -> int:
    """The padded work of a :meth:`ShapePlan.layout`: every row, filled or not, at its shape's
    :attr:`BatchShape.work`."""
    return sum(shape.rows * shape.work for shape, _ in layout)


def make_batches(plan: SequencePlan, batch_size: int, multiple: int = 1, batch_tokens: int | None = None,
                 max_shapes: int = DEFAULT_MAX_SHAPES) -> list[Batch]:
    """``plan``'s sequences in batches of a :class:`ShapePlan` built from them alone (for a one-off pass)."""
    return ShapePlan.build(plan.sequences, batch_size, batch_tokens, multiple, max_shapes).batches(plan)


__all__ = ["ScoredSequence", "SequencePlan", "plan_sequences", "length_bucket", "rows_per_batch", "power_of_two",
           "round_up", "Batch", "BatchShape", "ShapePlan", "sequence_need", "own_shape", "remainder_hosts", "padded_work",
           "layout_work", "make_batches", "DEFAULT_MAX_SHAPES",
           "HEAD_WEIGHT", "MIN_SAVING", "SHAPE_COST"]
