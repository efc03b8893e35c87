"""The selection protocol and racing: the same winner and test numbers as an exhaustive sweep, resumable looks,
planted score matrices with known answers, and no recompiles across rho and layer in either mode."""

import dataclasses
import math
import os

import chex
import numpy as np
import pytest

from laser_jax.errors import DataError
from laser_jax.examples import Example
from laser_jax.laser import Intervention, expand_grid
from laser_jax.protocol import (MemoryRecorder, Racing, concat_scores, race, replay_race, run_selection, scores_of,
                                sign_test_bound, survivors, passes_on_test)
from laser_jax.selection import select_best, validation_split
from laser_jax.sweep import BASE_KEY, ExampleScores, SweepOptions, model_passes, roc_auc, sweep, variant_readouts

GRID = expand_grid([0, 1], ["fc_in", "fc_out"], [0.5, 0.2, 0.05])


def choice_examples(n: int, seed: int = 0) -> list[Example]:
    """Two-way choice items with random prompts: accuracies vary between variants of a random model."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        prompt = tuple(int(t) for t in rng.integers(3, 90, rng.integers(3, 9)))
        a, b = (int(t) for t in rng.choice(np.arange(3, 90), 2, replace=False))
        label = int(rng.integers(2))
        out.append(Example(prompt, (a, b)[label:label + 1], choice_ids=((a,), (b,)), label=label))
    return out


@pytest.fixture(scope="module")
def tiny(tiny_gpt2):
    return tiny_gpt2


def test_selection_mode_picks_the_exhaustive_winner_with_its_test_numbers(tiny):
    examples = choice_examples(60)
    exhaustive = sweep(tiny, examples, GRID)
    selection = select_best(exhaustive)
    recorder = MemoryRecorder()
    run = run_selection(tiny, examples, GRID, recorder)
    validation, test = validation_split(len(examples))

    assert run.tested[0] == selection.best.intervention
    assert set(recorder.rows["val"]) == {BASE_KEY} | {iv.key for iv in GRID}
    assert set(recorder.rows["test"]) == {BASE_KEY} | {iv.key for iv in run.tested}
    assert {iv.tau for iv in run.tested} == {"fc_in", "fc_out"}  # the best of each tau is tested too
    row, index, raced = recorder.rows["test"][selection.best.key]
    assert index.tolist() == test.tolist() and not raced
    np.testing.assert_array_equal(row.scores.choice_correct, selection.best.scores.subset(test).choice_correct)
    np.testing.assert_allclose(row.metrics["answer_nll"], selection.best_test["answer_nll"], rtol=1e-5)
    assert row.metrics["accuracy"] == selection.best_test["accuracy"]
    for iv in GRID:  # validation rows equal the exhaustive rows' validation part
        mine = recorder.rows["val"][iv.key][0].scores
        chex.assert_trees_all_close(dataclasses.asdict(mine), dataclasses.asdict(exhaustive.row(iv).scores.subset(validation)),
                                    rtol=1e-5)

    again = run_selection(tiny, examples, GRID, recorder, top_n=4)  # resumed: only the extra top-N are computed
    assert len(again.tested) >= 4 and set(recorder.rows["test"]) == {BASE_KEY} | {iv.key for iv in again.tested}


def test_no_recompile_across_rho_or_layer_in_either_mode(tiny):
    """Once shapes are compiled, other rhos and other (non-last) layers reuse the same programs."""
    examples = choice_examples(30, seed=1)
    first = expand_grid([0], ["fc_in"], [0.5, 0.2])
    other = expand_grid([1], ["fc_in"], [0.3, 0.1])  # another layer and other rhos, the same shapes
    sweep(tiny, examples, first)
    run_selection(tiny, examples, first, MemoryRecorder())
    compiled = variant_readouts._cache_size()
    sweep(tiny, examples, other)
    run_selection(tiny, examples, other, MemoryRecorder())
    assert variant_readouts._cache_size() == compiled


# ----------------------------------------------------------------------------- racing


def planted(accuracies, n: int, seed: int = 0, nll=None) -> dict[str, ExampleScores]:
    """Score matrices with exactly round(accuracy * n) right answers per variant, at random items."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, accuracy in accuracies.items():
        correct = np.zeros(n, bool)
        correct[rng.choice(n, int(round(accuracy * n)), replace=False)] = True
        losses = np.full(n, 1.0 if nll is None else nll.get(key, 1.0))
        empty = np.full((n, 0), np.nan)
        out[key] = ExampleScores(top1=correct, topk=correct, answer_nll=losses, answer_first_logprob=-losses,
                                 choice_logprobs=empty, choice_correct=np.zeros(n, bool), has_choices=np.zeros(n, bool),
                                 probe_logprobs=empty, label=np.full(n, -1))
    return out


def test_the_test_part_is_weighed_as_the_base_and_the_variants_selection_can_test(tiny):
    # three layers: a layer-0 variant is one whole-model pass, a layer-1 variant two thirds; GRID's mean is 5/6
    assert model_passes(tiny, GRID) == pytest.approx(1 + 6 * 1 + 6 * 2 / 3)
    assert passes_on_test(tiny, GRID) == pytest.approx(1 + 2 * 5 / 6)  # the best of each of the two taus
    assert passes_on_test(tiny, GRID, top_n=1) == pytest.approx(1 + 3 * 5 / 6)
    assert passes_on_test(tiny, GRID, top_n=20) == pytest.approx(model_passes(tiny, GRID))  # at most the whole grid
    assert passes_on_test(tiny, []) == 1.0


def test_racing_stops_the_clear_losers_and_keeps_the_winner_and_ties():
    variants = expand_grid(range(10), ["fc_in"], [0.5, 0.1])
    accuracies = {BASE_KEY: 0.3}
    accuracies.update({iv.key: 0.05 for iv in variants})  # broken variants
    winner, tie = variants[3], variants[7]
    accuracies[winner.key] = 0.6
    accuracies[tie.key] = 0.6  # the same count: only the loss may separate them, so it must never be stopped
    scores = planted(accuracies, 800, nll={winner.key: 0.9})
    stopped, variant_items = replay_race(scores, variants, Racing(first=64))
    assert winner.key not in stopped and tie.key not in stopped
    assert stopped == {iv.key for iv in variants} - {winner.key, tie.key}
    assert variant_items < 0.2 * 800 * len(variants)  # the losers stop at the first looks


def test_racing_keeps_the_winner_at_a_small_margin_over_many_orders():
    variants = expand_grid(range(4), ["fc_up"], [0.8, 0.2])
    accuracies = {BASE_KEY: 0.05, **{iv.key: 0.06 for iv in variants}}
    accuracies[variants[5].key] = 0.075  # +12 items of 800: never separable with confidence
    scores = planted(accuracies, 800)
    kept = [variants[5].key not in replay_race(scores, variants, Racing(seed=seed))[0] for seed in range(20)]
    assert all(kept)


def test_racing_variant_items_count_the_looks():
    variants = expand_grid([0], ["fc_in"], [0.5])
    scores = planted({BASE_KEY: 0.5, variants[0].key: 0.5}, 300)
    racing = Racing(first=64)
    assert racing.looks(300) == [64, 128, 256, 300]
    assert replay_race(scores, variants, racing) == (set(), 300)


def test_sign_test_bound_is_the_kl_chernoff_tail():
    assert sign_test_bound(5, 10) == 1.0 and sign_test_bound(0, 0) == 1.0
    assert sign_test_bound(0, 10) == pytest.approx(2.0 ** -10)  # KL(0 || 1/2) = log 2
    p = 2 / 15
    assert sign_test_bound(2, 15) == pytest.approx(np.exp(-15 * (p * np.log(2 * p) + (1 - p) * np.log(2 * (1 - p)))))
    exact = sum(math.comb(15, i) for i in range(3)) / 2 ** 15  # the bound is above the exact binomial tail
    assert exact <= sign_test_bound(2, 15)


def test_survivors_compare_each_variant_with_its_taus_leader():
    variants = [Intervention(0, "fc_in", 0.5), Intervention(0, "fc_in", 0.1), Intervention(0, "fc_out", 0.1)]
    scores = planted({variants[0].key: 0.5, variants[1].key: 0.0, variants[2].key: 0.0}, 200)
    # fc_out's only variant leads its own tau: it is never compared with fc_in's leader
    assert survivors(variants, scores, {"fc_in": 0.01, "fc_out": 0.01}) == [variants[0], variants[2]]


@pytest.mark.parametrize("batch_size", [2, 64])
def test_a_killed_race_resumes_from_its_saved_looks(tiny, monkeypatch, batch_size):
    """Killed during the third look, a race scores again only the validation items its saved looks do not hold
    (with 64 rows, the first look's free rows held every later item: nothing), with the same rows."""
    import laser_jax.protocol

    examples = choice_examples(40, seed=2)
    recorder = MemoryRecorder()
    racing = Racing(first=2)
    options = SweepOptions(batch_size=batch_size)
    run_selection(tiny, examples, GRID, recorder, racing=racing, options=options)
    looks = dict(recorder.looks)
    assert len(looks) == len(racing.looks(8))  # 8 validation items: looks at 2, 4, 8

    resumed = MemoryRecorder()
    resumed.looks = {look: scores for look, scores in looks.items() if look < 2}  # killed during the third look
    left = 8 - sum(len(items) for items, _ in resumed.looks.values())
    assert left == (4 if batch_size == 2 else 0)
    calls = []
    real = laser_jax.protocol.sweep
    monkeypatch.setattr(laser_jax.protocol, "sweep", lambda *a, **k: calls.append(len(a[1])) or real(*a, **k))
    run_selection(tiny, examples, GRID, resumed, racing=racing, options=options)
    assert calls == [left, 32][not left:]  # what is left of validation, then the test part
    for key, (row, index, raced) in recorder.rows["val"].items():
        again = resumed.rows["val"][key]
        assert again[1].tolist() == index.tolist() and again[2] == raced
        np.testing.assert_array_equal(again[0].scores.choice_correct, row.scores.choice_correct)


def test_a_race_resumes_from_a_look_saved_without_its_items(tiny):
    """A look saved by the version before riders holds its own items' scores only (items None): the resumed race
    takes them as that look's items and gives the uninterrupted race's rows."""
    examples = choice_examples(40, seed=2)
    racing = Racing(first=2)
    recorder = MemoryRecorder()
    run_selection(tiny, examples, GRID, recorder, racing=racing)
    first = racing.order(8)[:2]
    keys = list(recorder.looks[0][1])
    resumed = MemoryRecorder()
    resumed.looks = {0: (None, scores_of(first, keys, list(recorder.looks.values())))}
    run_selection(tiny, examples, GRID, resumed, racing=racing)
    assert len(resumed.looks[1][0]) == 6  # look 1 scores the 6 items left, not look 0's again
    for key, (row, index, raced) in recorder.rows["val"].items():
        again = resumed.rows["val"][key]
        assert again[1].tolist() == index.tolist() and again[2] == raced
        np.testing.assert_array_equal(again[0].scores.choice_correct, row.scores.choice_correct)


def test_the_next_looks_items_ride_in_a_looks_free_rows_with_the_same_scores(tiny):
    """One batch shape of 64 rows: the first look (8 of 40 validation items) scores all 40, the later looks none.
    Each look's scores, gathered from there, equal those of sweeping the look's items alone."""
    examples = choice_examples(200, seed=3)
    racing = Racing(first=8)
    recorder = MemoryRecorder()
    validation, _ = validation_split(len(examples))
    variants = expand_grid([1], ["fc_in"], [0.5, 0.05])
    race(tiny, [examples[i] for i in validation], variants, racing, recorder)
    assert [len(items) for items, _ in recorder.looks.values()] == [40, 0, 0, 0]
    order, bounds = racing.order(40), racing.looks(40)
    for look, stop in enumerate(bounds):
        items = order[bounds[look - 1] if look else 0:stop]
        alone = sweep(tiny, [examples[validation[i]] for i in items], variants)
        gathered = scores_of(items, [row.key for row in alone], [recorder.looks[0]])
        for row in alone:
            np.testing.assert_array_equal(gathered[row.key].top1, row.scores.top1)
            np.testing.assert_allclose(gathered[row.key].answer_nll, row.scores.answer_nll, rtol=1e-5)


def test_scores_of_gathers_each_item_from_the_sweep_that_scored_it():
    everything = planted({"k": 0.5}, 4, nll={"k": 2.0})["k"]
    everything = dataclasses.replace(everything, answer_nll=np.arange(4.0))
    scored = [(np.array([5, 7]), {"k": everything.subset([0, 2])}), (np.array([6, 8]), {"k": everything.subset([1, 3])})]
    got = scores_of(np.array([8, 5, 6]), ["k"], scored)["k"]
    chex.assert_trees_all_equal(dataclasses.asdict(got), dataclasses.asdict(everything.subset([3, 0, 1])))


def test_concat_scores_pads_probe_columns():
    a = planted({"a": 0.5}, 4)["a"]
    b = dataclasses.replace(planted({"b": 0.5}, 2)["b"], probe_logprobs=np.zeros((2, 3)))
    both = concat_scores([a, b])
    assert len(both) == 6 and both.probe_logprobs.shape == (6, 3) and np.isnan(both.probe_logprobs[:4]).all()


def test_racing_parameters_are_checked():
    with pytest.raises(DataError):
        Racing(delta=0.0)
    with pytest.raises(DataError):
        Racing(growth=1.0)


# ----------------------------------------------------------------------------- AUC


def test_roc_auc_known_answers():
    assert roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1], bool)) == 0.75
    assert roc_auc(np.array([1.0, 1.0, 1.0]), np.array([1, 0, 0], bool)) == 0.5  # a constant answer
    assert np.isnan(roc_auc(np.array([1.0, 2.0]), np.array([1, 1], bool)))


def test_choice_auc_is_reported_for_two_way_choice_tasks(tiny):
    examples = choice_examples(20, seed=3)
    scores = sweep(tiny, examples).base.scores
    margin = scores.choice_logprobs[:, 1] - scores.choice_logprobs[:, 0]
    assert scores.metrics()["choice_auc"] == pytest.approx(roc_auc(margin, scores.label == 1))
    assert scores.label.tolist() == [e.label for e in examples]


# ----------------------------------------------------------------------------- a fixed set of programs


def programs_compiled(run) -> int:
    """The programs ``run()`` compiles from cold caches (every jitted function's cache and the SVD cache emptied)."""
    import jax

    from laser_jax.ground import compile_totals
    from laser_jax.laser import FACTOR_CACHE

    jax.clear_caches()
    FACTOR_CACHE.clear()
    before, _ = compile_totals()
    run()
    return compile_totals()[0] - before


def test_a_racing_selection_run_compiles_the_same_programs_whatever_its_rhos_layers_and_looks(tiny):
    """The run's plan fixes its shapes: one batch shape here (every sequence fits 8 tokens) and variant calls
    of a chunk or of one. So 3 rho x 1 layer x 2 looks and 5 rho x 2 layers (the last included) x 5 looks
    compile the same 17 programs: the SVD, the base pass, a saved state's slice, the variant program at its two
    sizes (its unedited branch reads the base out), a matrix's slice and squeeze, and 10 that place host arrays
    (the batch's 4 kinds, the saved layers, the ranks at both sizes, an absent factor slot's 3 zero arrays)."""
    examples = choice_examples(80, seed=4)  # 16 validation items
    small = programs_compiled(lambda: run_selection(tiny, examples, expand_grid([0], ["fc_in"], [0.5, 0.3, 0.2]),
                                                    MemoryRecorder(), racing=Racing(first=8)))
    large = programs_compiled(lambda: run_selection(tiny, examples, expand_grid([0, 1], ["fc_in"], [0.5, 0.3, 0.2, 0.1, 0.05]),
                                                    MemoryRecorder(), racing=Racing(first=1)))
    assert small == large == 17


def memory_maps() -> int:
    with open("/proc/self/maps") as maps:
        return sum(1 for _ in maps)


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs Linux's /proc")
def test_memory_maps_stop_growing_over_many_racing_runs_in_one_process(tiny):
    """Each compiled CPU program holds memory maps. Twenty-four selection runs with racing, of 20 to 89 items and
    1 to 4 rho on one or both layers, in one process: after the first runs have compiled what the plans need,
    the process's map count stops growing (the engine of before compiled new batch sizes for each item count)."""
    counts = []
    for i in range(24):
        examples = choice_examples(20 + 3 * i, seed=10 + i)
        grid = expand_grid([0, 1][: 1 + i % 2], ["fc_in"], [0.5, 0.3, 0.2, 0.1][: 1 + i % 4])
        run_selection(tiny, examples, grid, MemoryRecorder(), racing=Racing(first=4))
        counts.append(memory_maps())
    assert max(counts[12:]) <= max(counts[:12]) + 16, counts
