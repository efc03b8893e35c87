"""The paper's protocol at the speed of the question: the grid on validation only, the test part only for what is selected.

An exhaustive sweep scores every variant on every item. The LASER protocol
needs much less: every variant on the validation part (the first 20% of the
items, :func:`laser_jax.selection.validation_split`), then the test part for
the base and the selected variants only: the best overall, the best of each τ,
and on request the top N. :func:`run_selection` does exactly that on top of
:func:`laser_jax.sweep.sweep`, through a :class:`Recorder` that says what is
already done (so a killed run resumes) and keeps what finishes.

**Racing** (:class:`Racing`) scores validation in growing looks over a seeded
random order of the validation items and stops scoring a variant once it is,
with confidence, strictly less accurate on the *whole* validation part than
the current leader of its τ (the best partial accuracy, ties to the lower
partial loss). The bound is a paired sign test on the discordant items (those
one of the two gets right and the other wrong), with the Chernoff–Hoeffding
(Kullback–Leibler) tail for sampling without replacement (Hoeffding 1963,
§6): if the variant's full-validation count were at least the leader's, at
least half of all discordant items would favour it, and the seen discordant
items are a uniform sample of them, so seeing a fraction a/m < 1/2 of m has
probability at most ``exp(-m · KL(a/m ‖ 1/2))``. A variant is stopped when
that is at most ``delta / (looks · (n_τ − 1))``: a union over the looks and
over every other variant of the τ that could be the leader, so the best
variant of each τ (hence the overall winner) is stopped with probability at
most ``delta`` (default 0.05). Only a *strictly* lower count is ever claimed,
so the tie-break on validation loss still holds. Stopped variants keep their
partial counts in the results (``n`` below the validation size, column
``raced`` = 1) and are never selected.

A look's batches have free rows (a small look does not fill a batch of
every shape of the run's plan): the next looks' items ride in them, in the
racing order, where they add no padded work
(:meth:`laser_jax.batching.ShapePlan.spare_rows`), scored for every variant
still running, a superset of those running when their own look comes. So a
later look scores only what is left, and racing's looks cost little more
than one pass over the validation items. Their decisions still use exactly
the look's items. Each look's sweep (the items it scored and their scores)
is saved through the recorder before the next one starts, so a killed race
resumes at the look it was in; eliminations are a deterministic function of
the saved scores.

**Screening** (:func:`validation_screen`, :func:`top_predicted`) prunes the grid before any of it runs: the
first-order screen (:mod:`laser_jax.screen`, one forward and backward pass
over the validation items) predicts every variant's change in validation loss,
and only the ``top`` predicted best are swept. It is a heuristic, not a bound:
on SmolLM2 / CounterFact the true top 5 of the 630 variants were at predicted
ranks 2-14 (``experiments/results/screen_smollm2``).

**Generation tasks** (HotpotQA, qa_wikidata) are swept and selected by the
top-1 of the answer's first token, one teacher-forced pass per variant; the
paper scores them by greedy decoding. :func:`generation_on_test` gives that
score on the test part for the base and the selected variant only, where
decoding is affordable.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Collection, Mapping, Optional, Protocol, Sequence

import numpy as np

from laser_jax.batching import ShapePlan
from laser_jax.errors import DataError
from laser_jax.examples import Example
from laser_jax.laser import Intervention
from laser_jax import generate, laser, results
from laser_jax.ground import Clock
from laser_jax.results import resume_skip, variant_key
from laser_jax.screen import screen
from laser_jax.selection import TEST, VALIDATION, VALIDATION_FRACTION, rank_on_validation, validation_split
from laser_jax.sweep import BASE_KEY, ExampleScores, SweepOptions, SweepPlan, SweepRow, model_passes, sweep



# ----------------------------------------------------------------------------- what a run records


class Recorder(Protocol):
    """Where a protocol run's rows live (a run directory, or memory).

    ``done(split)`` maps the key of each variant already scored on ``split``
    (``"base"`` or :attr:`Intervention.key`) to its metrics (``accuracy``,
    ``answer_nll``, ``n``, ``raced``); ``record`` stores one finished row, whose
    ``row.scores`` cover the examples ``index`` (positions in the whole data
    set); ``save_look``/``load_look`` keep what each racing look scored: the
    validation items (positions in the validation part) and, per key, their scores.
    """

    def done(self, split: str) -> Mapping[str, Mapping]: ...

    def record(self, split: str, row: SweepRow, index: np.ndarray, raced: bool) -> None: ...

    def load_look(self, look: int) -> Optional[tuple[np.ndarray, dict[str, ExampleScores]]]: ...

    def save_look(self, look: int, items: np.ndarray, scores: Mapping[str, ExampleScores]) -> None: ...


class MemoryRecorder:
    """A :class:`Recorder` in memory: the rows of one library call."""

    def __init__(self):
        self.rows: dict[str, dict[str, tuple[SweepRow, np.ndarray, bool]]] = {VALIDATION: {}, TEST: {}}
        self.looks: dict[int, tuple[np.ndarray, dict[str, ExampleScores]]] = {}

    def done(self, split):
        return {key: {**row.metrics, "n": len(index), "raced": raced} for key, (row, index, raced) in self.rows[split].items()}

    def record(self, split, row, index, raced):
        self.rows[split][row.key] = (row, np.asarray(index), raced)

    def load_look(self, look):
        return self.looks.get(look)

    def save_look(self, look, items, scores):
        self.looks[look] = (np.asarray(items), dict(scores))


# ----------------------------------------------------------------------------- racing


@dataclasses.dataclass(frozen=True)
class Racing:
    """Racing on validation (see the module docstring): looks at ``first``, ``first·growth``, … items, then all.

    ``delta``: the probability allowed of stopping the best variant of a τ.
    ``seed`` fixes the random order of the validation items. Each look pays
    for a batch of every batch shape its items need, so small looks cost
    more per item than one pass: on the protocol benchmark's grid, racing
    with first looks of 64 items ran 4% slower than plain selection, with
    256 3% faster (``benchmarks/racing_first.py``). A validation part of at
    most ``first`` items is one look: no racing.
    """

    delta: float = 0.05
    first: int = 256
    growth: float = 2.0
    seed: int = 0

    def __post_init__(self):
        if not 0.0 < self.delta < 1.0:
            raise DataError(f"racing delta must be in (0, 1), got {self.delta}")
        if self.first < 1 or self.growth <= 1.0:
            raise DataError(f"racing needs first >= 1 and growth > 1, got first={self.first}, growth={self.growth}")

    def looks(self, n: int) -> list[int]:
        """Cumulative item counts of the looks, the last one ``n``."""
        bounds, size = [], float(self.first)
        while size < n:
            bounds.append(int(size))
            size *= self.growth
        return bounds + [n]

    def order(self, n: int) -> np.ndarray:
        return np.random.default_rng(self.seed).permutation(n)

    def as_args(self) -> dict:
        return dataclasses.asdict(self)


def correct_of(scores: ExampleScores) -> np.ndarray:
    """Per example, whether it counts as right for ``accuracy`` (choice accuracy where every example has candidates)."""
    return scores.choice_correct if len(scores) and scores.has_choices.all() else scores.top1


def sign_test_bound(favouring: int, discordant: int) -> float:
    """An upper bound on P(at most ``favouring`` of ``discordant`` seen items favour a variant) when at least half of
    all discordant items do: ``exp(-m · KL(a/m ‖ 1/2))`` for a/m < 1/2, else 1."""
    if discordant == 0 or 2 * favouring >= discordant:
        return 1.0
    p = favouring / discordant
    kl = (p * math.log(2 * p) if p > 0 else 0.0) + (1 - p) * math.log(2 * (1 - p))
    return math.exp(-discordant * kl)


def survivors(alive: Sequence[Intervention], seen: Mapping[str, ExampleScores], level: Mapping[str, float]) -> list[Intervention]:
    """The variants of ``alive`` not stopped by their τ's leader on the items ``seen`` so far.

    ``level[tau]`` is the per-test level (``delta / (looks · (n_τ − 1))``).
    """
    kept = []
    for tau in dict.fromkeys(iv.tau for iv in alive):
        members = [iv for iv in alive if iv.tau == tau]
        correct = {iv: correct_of(seen[iv.key]) for iv in members}
        loss = {iv: float(np.nansum(seen[iv.key].answer_nll)) for iv in members}
        leader = min(members, key=lambda iv: (-int(correct[iv].sum()), loss[iv], members.index(iv)))
        for iv in members:
            favouring = int((correct[iv] & ~correct[leader]).sum())
            against = int((correct[leader] & ~correct[iv]).sum())
            if iv is leader or sign_test_bound(favouring, favouring + against) > level[tau]:
                kept.append(iv)
    return [iv for iv in alive if iv in set(kept)]


def concat_scores(parts: Sequence[ExampleScores]) -> ExampleScores:
    """Scores of several example sets, one after the other (probe/choice columns padded with NaN to the widest)."""
    def join(name):
        arrays = [getattr(p, name) for p in parts]
        if arrays[0].ndim == 2:
            width = max(a.shape[1] for a in arrays)
            arrays = [np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=np.nan) for a in arrays]
        return np.concatenate(arrays)

    return ExampleScores(**{f.name: join(f.name) for f in dataclasses.fields(ExampleScores)})


def race_looks(variants: Sequence[Intervention], n: int, racing: Racing,
               score_look: Callable[[int, np.ndarray, list[Intervention]], Mapping[str, ExampleScores]]):
    """The racing loop, whatever scores the looks: ``score_look(look, items, alive)`` returns the scores of the base
    and of every variant of ``alive`` on ``items`` (indices into the ``n`` validation items).

    Returns, per key, its scores and the sorted item indices they cover, and the set of stopped keys.
    """
    order, bounds = racing.order(n), racing.looks(n)
    per_tau = {tau: sum(iv.tau == tau for iv in variants) for tau in dict.fromkeys(iv.tau for iv in variants)}
    level = {tau: racing.delta / (len(bounds) * max(1, count - 1)) for tau, count in per_tau.items()}
    alive = list(variants)
    seen_parts: dict[str, list[ExampleScores]] = {}
    covered: dict[str, int] = {}
    for look, stop in enumerate(bounds):
        start = bounds[look - 1] if look else 0
        scores = score_look(look, order[start:stop], alive)
        for key in [BASE_KEY] + [iv.key for iv in alive]:
            seen_parts.setdefault(key, []).append(scores[key])
            covered[key] = stop
        if look < len(bounds) - 1:
            seen = {iv.key: concat_scores(seen_parts[iv.key]) for iv in alive}
            alive = survivors(alive, seen, level)
    out = {}
    for key, parts in seen_parts.items():
        indices = order[:covered[key]]
        rank = np.argsort(indices)
        out[key] = (concat_scores(parts).subset(rank), indices[rank])
    return out, {iv.key for iv in variants} - {iv.key for iv in alive}


def race(model, examples: Sequence[Example], variants: Sequence[Intervention], racing: Racing, recorder: Recorder, *,
         options: SweepOptions = SweepOptions(), plan: Optional[SweepPlan] = None, progress: bool = False):
    """:func:`race_looks` with the engine: each look is one :func:`~laser_jax.sweep.sweep` of the variants still
    running on the look's items not scored yet, and on the next looks' items that ride in its free rows (see
    the module docstring), saved through ``recorder`` (and read back from it when a killed race resumes). Every
    look runs on ``plan`` (by default one built from all of ``examples`` and ``variants``), so no look compiles
    anew."""
    plan = SweepPlan.build(model, examples, variants, options) if plan is None else plan
    order, bounds = racing.order(len(examples)), racing.looks(len(examples))
    scored: list[tuple[np.ndarray, Mapping[str, ExampleScores]]] = []  # each look's sweep: its items, their scores

    def score_look(look, items, alive):
        saved = recorder.load_look(look)
        if saved is None:
            done = {int(i) for part, _ in scored for i in part}
            run = np.array(look_sweep(plan.shapes, examples, items, order[bounds[look]:], done), np.int64)
            result = sweep(model, [examples[i] for i in run], alive, options=options, plan=plan,
                           progress=progress) if len(run) else ()
            saved = run, {row.key: row.scores for row in result}
            recorder.save_look(look, *saved)
        elif saved[0] is None:  # saved by a version that scored each look's own items only
            saved = np.asarray(items), saved[1]
        scored.append(saved)
        return scores_of(items, [BASE_KEY] + [iv.key for iv in alive], scored)

    return race_looks(variants, len(examples), racing, score_look)


def look_sweep(shapes: ShapePlan, examples: Sequence[Example], items: Sequence[int], later: Sequence[int],
               done: Collection[int]) -> list[int]:
    """What a look sweeps: its ``items`` not ``done`` yet, then the ``later`` ones (the next looks' items, in
    racing order) not done that ride in the free rows of its batches (:meth:`ShapePlan.spare_rows`)."""
    pending = [int(i) for i in items if int(i) not in done]
    if not pending:
        return []
    later = [int(i) for i in later if int(i) not in done]
    riders = shapes.spare_rows([examples[i] for i in pending], [examples[i] for i in later])
    return pending + [later[j] for j in riders]


def scores_of(items: np.ndarray, keys: Sequence[str], scored: Sequence[tuple[np.ndarray, Mapping[str, ExampleScores]]]):
    """Per key, its scores on ``items`` (in that order), gathered from the sweeps ``scored`` (items, scores) that
    hold them (each item in exactly one)."""
    source = {int(i): (s, p) for s, (part, _) in enumerate(scored) for p, i in enumerate(part)}
    picks = [source[int(i)] for i in items]
    used = sorted({s for s, _ in picks})
    start = dict(zip(used, np.cumsum([0] + [len(scored[s][0]) for s in used[:-1]])))
    take = [start[s] + p for s, p in picks]
    return {key: concat_scores([scored[s][1][key] for s in used]).subset(take) for key in keys}


def replay_race(scores: Mapping[str, ExampleScores], variants: Sequence[Intervention], racing: Racing):
    """Racing replayed on stored full-validation scores (``scores[key]`` over all items, the base included).

    Returns the stopped keys and the number of variant-items racing would have scored (the base excluded).
    """
    n = len(scores[BASE_KEY])
    scored = race_looks(variants, n, racing,
                        lambda look, items, alive: {key: scores[key].subset(items) for key in [BASE_KEY] + [iv.key for iv in alive]})
    out, stopped = scored
    return stopped, sum(len(index) for key, (_, index) in out.items() if key != BASE_KEY)


# ----------------------------------------------------------------------------- screening


def validation_screen(model, examples: Sequence[Example], variants: Sequence[Intervention],
                      fraction: float = VALIDATION_FRACTION, batch_size: int = 32, split_seed: Optional[int] = None):
    """The first-order screen (:func:`laser_jax.screen.screen`) of ``variants`` on the validation part of ``examples``
    (``split_seed``: :func:`laser_jax.selection.validation_split`'s seed)."""

    validation, _ = validation_split(len(examples), fraction, split_seed)
    return screen(model, [examples[i] for i in validation], variants=variants, batch_size=batch_size)


def top_predicted(variants: Sequence[Intervention], predicted: Mapping[Intervention, float], top: int) -> list[Intervention]:
    """The ``top`` variants with the lowest ``predicted`` change in loss (ties in grid order), in grid order: what a
    ``--screen-top`` run sweeps. The screen is deterministic, and a run keeps it in ``screen.csv``, so a resumed run
    keeps the same variants."""
    if top < 1:
        raise DataError(f"the screen must keep at least one variant, got {top}")
    order = sorted(range(len(variants)), key=lambda i: (predicted[variants[i]], i))
    kept = set(order[:top])
    return [iv for i, iv in enumerate(variants) if i in kept]


# ----------------------------------------------------------------------------- selection


def selected(done_validation: Mapping[str, Mapping], variants: Sequence[Intervention], n_validation: int,
             top_n: int = 0) -> list[Intervention]:
    """The variants to test: the best overall, the best of each τ, then the next best up to ``top_n`` in all.

    Best: :func:`laser_jax.selection.rank_on_validation` (highest validation
    accuracy, ties to the lower validation answer NLL, then ``results.csv``
    order); only variants scored on the whole validation part compete
    (raced-out ones do not).
    """

    ranked = rank_on_validation([(iv, done_validation[iv.key]) for iv in variants if iv.key in done_validation],
                                n_validation)
    chosen = ranked[:1]
    for tau in dict.fromkeys(iv.tau for iv in variants):
        chosen += [iv for iv in ranked if iv.tau == tau][:1]
    chosen += ranked[:top_n]
    return list(dict.fromkeys(chosen))


def passes_on_test(model, variants: Sequence[Intervention], top_n: int = 0) -> float:
    """The test part's work in whole-model passes, at most: the base, and as many variants as :func:`selected`
    can choose (the best of each τ, which includes the best overall, and ``top_n``), each at the grid's mean."""
    if not variants:
        return 1.0
    tested = min(len(variants), len({iv.tau for iv in variants}) + top_n)
    return 1.0 + tested * (model_passes(model, variants) - 1.0) / len(variants)


@dataclasses.dataclass(frozen=True)
class ProtocolRun:
    """What :func:`run_selection` did: the variants tested, those stopped by racing, and wall/CPU seconds per phase."""

    tested: tuple[Intervention, ...]
    stopped: frozenset
    seconds: dict


def run_selection(model, examples: Sequence[Example], variants: Sequence[Intervention], recorder: Recorder, *,
                  top_n: int = 0, racing: Optional[Racing] = None, fraction: float = VALIDATION_FRACTION,
                  split_seed: Optional[int] = None, progress: bool = False,
                  options: SweepOptions = SweepOptions()) -> ProtocolRun:
    """The selection protocol: ``variants`` and the base on validation, then the selected ones and the base on test.

    Rows go to ``recorder`` as they finish (validation rows cover the first
    ``fraction`` of ``examples``, test rows the rest); what it already holds is
    not computed again; with ``split_seed``, a seeded random ``fraction`` is validation instead
    (:func:`laser_jax.selection.validation_split`). ``options`` go to :func:`laser_jax.sweep.sweep`.

    One :class:`~laser_jax.sweep.SweepPlan`, built from all of ``examples`` and ``variants``, serves every sweep
    of the run: validation, each racing look and test run the same compiled programs.
    ``seconds``: per phase, wall and CPU seconds, and the programs compiled and the seconds spent compiling them.
    """

    examples = list(examples)
    validation, test = validation_split(len(examples), fraction, split_seed)
    validation_examples = [examples[i] for i in validation]
    variants = list(dict.fromkeys(variants))
    seconds = {}
    plan = SweepPlan.build(model, examples, variants, options, parts=[
        (validation, model_passes(model, variants)), (test, passes_on_test(model, variants, top_n))])

    clock = Clock()
    done = recorder.done(VALIDATION)
    stopped: set[str] = {key for key, metrics in done.items() if metrics.get("raced")}
    missing = [iv for iv in variants if iv.key not in done] + ([] if BASE_KEY in done else [None])
    if missing and racing is not None:
        scored, stopped = race(model, validation_examples, variants, racing, recorder, options=options, plan=plan,
                               progress=progress)
        for key, (scores, index) in scored.items():
            if key not in done:
                step = None if key == BASE_KEY else Intervention.from_key(key)
                recorder.record(VALIDATION, SweepRow.build(key, step, scores), validation[index], key in stopped)
    elif missing:
        done_keys = {variant_key({"tau": iv.tau, "layer": iv.layer, "rho": iv.rho}) for iv in variants if iv.key in done}
        skip = resume_skip(done_keys | ({("none", None, None)} if BASE_KEY in done else set()), variants)
        kept = set(done)

        def on_validation_row(row: SweepRow) -> None:
            if row.key not in kept:  # recomputed with its (layer, tau) group; keep the stored row
                recorder.record(VALIDATION, row, validation, False)

        sweep(model, validation_examples, variants, options=options, plan=plan, skip=skip, on_row=on_validation_row,
              progress=progress)
    seconds[VALIDATION] = clock.lap()

    tested = selected(recorder.done(VALIDATION), variants, len(validation), top_n)
    done_test = recorder.done(TEST)
    pending = [iv for iv in tested if iv.key not in done_test]
    if pending or BASE_KEY not in done_test:
        test_examples = [examples[i] for i in test]
        skip = {BASE_KEY} if BASE_KEY in done_test else set()
        sweep(model, test_examples, pending, options=options, plan=plan, skip=skip, progress=progress,
              on_row=lambda row: recorder.record(TEST, row, test, False))
    seconds[TEST] = clock.lap()
    return ProtocolRun(tuple(tested), frozenset(stopped), seconds)


def generation_on_test(model, examples: Sequence[Example], golds: Sequence[str], step: Intervention, max_new_tokens: int,
                       *, fraction: float = VALIDATION_FRACTION, batch_size: int = 16,
                       split_seed: Optional[int] = None) -> dict:
    """The paper's generation accuracy (greedy ``max_new_tokens`` tokens, the gold answer a substring of the
    continuation: :func:`laser_jax.generate.generation_accuracy`) on the test part, of the base and of ``step``."""

    _, test = validation_split(len(examples), fraction, split_seed)
    test_examples, test_golds = [examples[i] for i in test], [golds[i] for i in test]
    base = generate.generation_accuracy(model, test_examples, test_golds, max_new_tokens, batch_size=batch_size)
    reduced = generate.generation_accuracy(laser.apply(model, step), test_examples, test_golds, max_new_tokens,
                                           batch_size=batch_size)
    return {"max_new_tokens": max_new_tokens, "n": len(test),
            "variant": results.variant_record((step.tau, step.layer, step.rho)),
            "base": {"accuracy": base.accuracy, "correct": sum(base.correct)},
            "laser": {"accuracy": reduced.accuracy, "correct": sum(reduced.correct)}}


__all__ = ["Recorder", "MemoryRecorder", "Racing", "correct_of", "sign_test_bound", "survivors",
           "concat_scores", "race_looks", "race", "look_sweep", "scores_of", "replay_race", "validation_screen", "top_predicted", "selected", "passes_on_test", "ProtocolRun", "run_selection",
           "generation_on_test"]
