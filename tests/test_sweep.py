"""The sweep engine against apply-then-forward, for every registered family; packing, skip/on_row,
reproducibility; selection and greedy composition.

The key check: a sweep row (prefix sharing, vmapped variants, ``select``) equals
the base row of ``apply(model, step)`` (one plain forward per batch), per
example, at float32 rounding tolerance; and base rows equal scores computed
independently from the transformers model's logits with numpy.
"""

import copy
from typing import NamedTuple

import numpy as np
import pytest
import torch

from laser_jax import load_model
from laser_jax.errors import DataError, InterventionError
from laser_jax.examples import Example
from laser_jax.laser import Intervention, apply
from laser_jax.model import Model
from laser_jax.models import FAMILIES
from laser_jax.models.convert import to_hf_state
from laser_jax.selection import compose, greedy_search, select_best, validation_split
from laser_jax.laser import expand_grid
from laser_jax.sweep import ExampleScores, SweepOptions, SweepResult, SweepRow, evaluate, group_variants, sweep
from tests.models.hf_tiny import TINY_FAMILY_VOCAB, save_tiny_family, torch_logits

SAME = 1e-5  # two JAX paths that differ only in float32 rounding (LowRank product vs dense matrix)
TORCH = 1e-4  # against transformers, the parity tolerance of the family ports
TOP_K = 3
OPTIONS = SweepOptions(top_k=TOP_K)
EXAMPLES = [  # every sequence (prompt + continuation minus its last token) fits one length bucket of 8
    Example((5, 17, 3, 44, 8), (9,), probe_ids=(1, 2, 3)),
    Example((60, 2, 71), (12, 30, 4), probe_ids=(1, 2, 3)),
    Example((7, 7, 90, 33, 21), (55, 56), choice_ids=((55, 56), (70,), (81, 82, 83)), label=0),
    Example((11, 48), (70,), choice_ids=((55, 56), (70,), (70, 1)), label=1, probe_ids=(1,)),
    Example((93, 4, 4, 26, 15, 77), (40,), choice_ids=((41,), (40,)), label=1),
    Example((5, 17, 3, 44, 8), (9,), probe_ids=(1, 2, 3)),  # a repeat shares its sequence
]


class Tiny(NamedTuple):
    family: str
    model: Model
    torch_model: object


def build(family: str, directory) -> Tiny:
    torch_model = save_tiny_family(family, directory)
    return Tiny(family, load_model(directory, tokenizer=False), torch_model)


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def tiny(request, tmp_path_factory) -> Tiny:
    return build(request.param, tmp_path_factory.mktemp(request.param))


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory) -> Tiny:
    return build("gpt2", tmp_path_factory.mktemp("gpt2-sweep"))


def log_softmax(logits):
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def torch_scores(torch_model, examples) -> dict:
    """Per-example scores from one transformers forward of every (prompt + continuation), with numpy."""
    texts = []
    for e in examples:
        texts.append(e.prompt_ids + e.answer_ids[:-1])
        texts.extend(e.prompt_ids + c[:-1] for c in e.choice_ids)
    width = max(map(len, texts))
    ids = np.array([t + (0,) * (width - len(t)) for t in texts])
    mask = (np.arange(width)[None] < np.array([len(t) for t in texts])[:, None]).astype(np.int64)
    logprobs = log_softmax(torch_logits(torch_model, ids, mask).astype(np.float64))

    def continuation(row, start, targets):
        return np.array([logprobs[row, start + j, t] for j, t in enumerate(targets)])

    out = {name: [] for name in ("answer_nll", "answer_first_logprob", "top1", "topk", "probes", "choices", "choice_correct")}
    row = 0
    for e in examples:
        start = len(e.prompt_ids) - 1
        answer = continuation(row, start, e.answer_ids)
        first = logprobs[row, start]
        choices = [continuation(row + 1 + c, start, choice).sum() for c, choice in enumerate(e.choice_ids)]
        out["answer_nll"].append(-answer.mean())
        out["answer_first_logprob"].append(answer[0])
        out["top1"].append(first.argmax() == e.answer_ids[0])
        out["topk"].append((first > first[e.answer_ids[0]]).sum() < TOP_K)
        out["probes"].append([first[p] for p in e.probe_ids])
        out["choices"].append(choices)
        out["choice_correct"].append(bool(choices) and int(np.argmax(choices)) == e.label)
        row += 1 + len(e.choice_ids)
    return out


def assert_matches_torch(scores: ExampleScores, reference: dict) -> None:
    for name in ("answer_nll", "answer_first_logprob"):
        np.testing.assert_allclose(getattr(scores, name), reference[name], atol=TORCH, rtol=0)
    for name in ("top1", "topk", "choice_correct"):
        np.testing.assert_array_equal(getattr(scores, name), reference[name])
    for i, (probes, choices) in enumerate(zip(reference["probes"], reference["choices"])):
        np.testing.assert_allclose(scores.probe_logprobs[i, :len(probes)], probes, atol=TORCH, rtol=0)
        assert np.isnan(scores.probe_logprobs[i, len(probes):]).all()
        np.testing.assert_allclose(scores.choice_logprobs[i, :len(choices)], choices, atol=TORCH, rtol=0)
        assert np.isnan(scores.choice_logprobs[i, len(choices):]).all()


def assert_same_scores(a: ExampleScores, b: ExampleScores, atol: float = SAME) -> None:
    for name in ("answer_nll", "answer_first_logprob", "choice_logprobs", "probe_logprobs"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), atol=atol, rtol=0)
    for name in ("top1", "topk", "choice_correct", "has_choices"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def assert_row_is_apply_then_forward(model: Model, row: SweepRow) -> None:
    assert_same_scores(row.scores, evaluate(apply(model, row.intervention), EXAMPLES, options=OPTIONS).scores)


def torch_with_params(tiny: Tiny, model: Model):
    """The transformers model carrying ``model``'s (edited) parameters."""
    state = to_hf_state(model.family.hf_rules(model.config), model.n_layers, model.config, model.params)
    edited = copy.deepcopy(tiny.torch_model)
    edited.load_state_dict({name: torch.tensor(array) for name, array in state.items()}, strict=False)
    return edited


def test_sweep_rows_equal_apply_then_forward(tiny):
    """Every family: an attention τ and an MLP τ (the MLP one shares the attention stage) in a middle layer."""
    mlp_tau = "fc_up" if "fc_up" in tiny.model.taus else "fc_in"
    steps = [Intervention(1, "q_proj", 0.5), Intervention(1, "q_proj", 0.4),  # ranks 16 and 12 share width 16
             Intervention(1, mlp_tau, 0.25), Intervention(1, mlp_tau, 0.2)]  # ranks 8 and 6 share width 8
    result = sweep(tiny.model, EXAMPLES, steps, options=OPTIONS)
    assert [row.key for row in result] == ["base"] + [step.key for step in steps]
    assert_matches_torch(result.base.scores, torch_scores(tiny.torch_model, EXAMPLES))
    for row in result.variants:
        assert_row_is_apply_then_forward(tiny.model, row)
        assert row.metrics["answer_nll"] != result.base.metrics["answer_nll"]


def test_sweep_last_layer_groups_and_unchanged_ranks_on_gpt2(gpt2):
    """The last block (run at the scored positions only) for an MLP and an attention τ, a group, ρ = 0 and 1."""
    last = gpt2.model.n_layers - 1
    steps = [Intervention(last, "out_proj", 0.1), Intervention(0, "mlp", 0.3)]
    result = sweep(gpt2.model, EXAMPLES, expand_grid([last], ["fc_out"], [0.0, 1.0]) + steps, options=OPTIONS)
    assert [row.key for row in result] == ["base", f"{last}/fc_out/0.0", f"{last}/fc_out/1.0"] + [s.key for s in steps]
    for key in (f"{last}/fc_out/0.0", *(s.key for s in steps)):
        assert_row_is_apply_then_forward(gpt2.model, result.row(key))
    np.testing.assert_array_equal(result.row(f"{last}/fc_out/1.0").scores.answer_nll, result.base.scores.answer_nll)
    edited = torch_with_params(gpt2, apply(gpt2.model, steps[0]))  # one variant against transformers too
    assert_matches_torch(result.row(steps[0]).scores, torch_scores(edited, EXAMPLES))


def test_one_variant_program_serves_every_tau_and_the_base(gpt2):
    """A grid of one τ and one of three τs (attention, MLP in, MLP out; a group of two; the last block among them)
    compile the same variant programs: one per call size (a chunk and one variant), their unedited branch
    reading the base out. The rows of the merged program are those of one program per τ set (rank buckets
    force the latter)."""
    import jax

    from laser_jax.sweep import variant_readouts

    last = gpt2.model.n_layers - 1
    one_tau = expand_grid([0, 1], ["fc_in"], [0.5, 0.3, 0.2])
    many_taus = one_tau + expand_grid([1, last], ["q_proj", "fc_out", "mlp"], [0.5, 0.3, 0.2]) + [Intervention(0, "fc_out", 0.4)]
    counts = []
    for grid in (one_tau, many_taus):
        jax.clear_caches()
        merged = sweep(gpt2.model, EXAMPLES, grid, options=OPTIONS.replace(variant_chunk=3))
        counts.append(variant_readouts._cache_size())
    assert counts == [2, 2]
    separate = sweep(gpt2.model, EXAMPLES, many_taus, options=OPTIONS.replace(variant_chunk=3, rank_buckets=True))
    for row in merged:
        assert_same_scores(row.scores, separate.row(row.key).scores)


def test_skip_and_on_row_support_resuming_and_rows_are_reproducible(gpt2):
    steps = [Intervention(1, "q_proj", 0.5), Intervention(1, "q_proj", 0.4),
             Intervention(1, "fc_in", 0.25), Intervention(1, "fc_in", 0.2)]
    full = sweep(gpt2.model, EXAMPLES, steps, options=OPTIONS)
    seen = []
    resumed = sweep(gpt2.model, EXAMPLES, steps, options=OPTIONS, skip={"base", steps[0].key, steps[1].key},
                    on_row=seen.append)
    assert [row.key for row in seen] == [row.key for row in resumed] == [steps[2].key, steps[3].key]
    again = sweep(gpt2.model, EXAMPLES, steps, options=OPTIONS)
    for a, b in zip(full, again):  # the same inputs give bit-identical rows
        assert_same_scores(a.scores, b.scores, atol=0)
    for row in seen:
        assert_same_scores(row.scores, full.row(row.key).scores, atol=0)


def test_a_group_runs_as_whole_chunks_then_calls_of_one_variant_shard_where_cheaper(gpt2):
    """Variants of one (layer, τ) in chunks of 4 (a call of one costs 1.4 variants of a chunk's call): nine run
    as two calls of 4 and one of 1; six (racing's survivors) as 4, 1, 1 (2.8 < 4); seven as two of 4 (three
    calls of one would cost 4.2); three with 2 variant shards in chunks of 8, two calls of 2 (5.6 < 8), in
    chunks of 4 one call of 4 (5.6 > 4). A call's last slots repeat its last variant."""
    steps = [Intervention(1, "fc_in", rho) for rho in np.linspace(0.9, 0.1, 9)]
    sizes = lambda members, multiple=1, chunk=4: [  # noqa: E731
        len(g.ranks[0]) for g in group_variants(gpt2.model, members, chunk, multiple, False)]
    assert sizes(steps) == [4, 4, 1]
    assert sizes(steps[:6]) == [4, 1, 1]
    assert sizes(steps[:7]) == [4, 4]
    assert sizes(steps[:3], multiple=2, chunk=8) == [2, 2]
    assert sizes(steps[:3], multiple=2) == [4]
    last = group_variants(gpt2.model, steps[:3], 8, 2, False)[-1]
    assert last.interventions == (steps[2],) and last.ranks[0][0].tolist() == last.ranks[0][1].tolist()
    padded = group_variants(gpt2.model, steps[:7], 4, 1, False)[-1]
    assert padded.interventions == tuple(steps[4:7]) and padded.ranks[0][3].tolist() == padded.ranks[0][2].tolist()


def test_rank_buckets_give_the_rows_of_full_width_masking(gpt2):
    """Per-variant static widths (unrolled in one call) against masked full-width factors: an MLP τ with
    ρ of four different widths, an attention τ, a group of two τs, and the last block."""
    last = gpt2.model.n_layers - 1
    steps = [Intervention(1, "fc_in", rho) for rho in (1 / 64, 0.1, 0.25, 0.5, 0.9)]
    steps += [Intervention(1, "q_proj", 0.3), Intervention(0, "mlp", 0.2), Intervention(last, "fc_out", 0.4)]
    masked = sweep(gpt2.model, EXAMPLES, steps, options=OPTIONS)
    bucketed = sweep(gpt2.model, EXAMPLES, steps, options=OPTIONS.replace(rank_buckets=True))
    for step in steps:
        assert_same_scores(bucketed.row(step).scores, masked.row(step).scores)


def test_batches_and_padding_do_not_change_scores(gpt2):
    assert_same_scores(evaluate(gpt2.model, EXAMPLES, options=OPTIONS.replace(batch_size=4)).scores,
                       evaluate(gpt2.model, EXAMPLES, options=OPTIONS).scores)


def test_randomized_rows_equal_randomized_apply(gpt2):
    import jax

    step = Intervention(1, "fc_in", 0.25)
    key = jax.random.key(3)
    row = sweep(gpt2.model, EXAMPLES, [step], options=OPTIONS.replace(method="randomized", key=key)).row(step)
    expected = evaluate(apply(gpt2.model, step, method="randomized", key=key), EXAMPLES, options=OPTIONS)
    assert_same_scores(row.scores, expected.scores)
    with pytest.raises(InterventionError, match="explicit key"):
        sweep(gpt2.model, EXAMPLES, [step], options=SweepOptions(method="randomized"))


@pytest.mark.parametrize("kwargs, error", [
    (dict(variants=[Intervention(1, "fc_up", 0.5)]), InterventionError),
    (dict(variants=[Intervention(3, "fc_in", 0.5)]), InterventionError),
    (dict(examples=[Example((1, TINY_FAMILY_VOCAB), (2,))]), DataError),
    (dict(examples=[]), DataError),
])
def test_sweep_refuses_bad_input_before_any_work(gpt2, kwargs, error):
    kwargs = {"examples": EXAMPLES, **kwargs}
    with pytest.raises(error):
        sweep(gpt2.model, **kwargs)


# ----------------------------------------------------------------------------- selection and composition


def fake_scores(correct, nll) -> ExampleScores:
    n = len(correct)
    empty = np.full((n, 0), np.nan)
    return ExampleScores(top1=np.array(correct, bool), topk=np.array(correct, bool), answer_nll=np.array(nll, float),
                         answer_first_logprob=-np.array(nll, float), choice_logprobs=empty,
                         choice_correct=np.zeros(n, bool), has_choices=np.zeros(n, bool), probe_logprobs=empty,
                         label=np.full(n, -1))


def test_validation_is_the_first_fifth_in_order():
    validation, test = validation_split(11)
    assert validation.tolist() == [0, 1] and test.tolist() == list(range(2, 11))
    with pytest.raises(DataError):
        validation_split(4)


def test_selection_ranks_by_validation_accuracy_then_loss_and_reports_test():
    # 10 examples: validation = the first 2.
    base = SweepRow.build("base", None, fake_scores([0] * 10, [5.0] * 10))
    rows = [
        SweepRow.build("1/fc_in/0.5", Intervention(1, "fc_in", 0.5), fake_scores([1, 0] + [1] * 8, [4.0] * 10)),
        SweepRow.build("2/fc_in/0.5", Intervention(2, "fc_in", 0.5), fake_scores([1, 1] + [0] * 8, [4.5] * 10)),
        SweepRow.build("3/fc_in/0.5", Intervention(3, "fc_in", 0.5), fake_scores([1, 1] + [1] * 8, [4.2] * 10)),
    ]
    selection = select_best(SweepResult((base, *rows), top_k=1))
    assert selection.best.key == "3/fc_in/0.5"  # ties on validation accuracy go to the lower loss
    assert selection.best_validation["accuracy"] == 1.0 and selection.best_test["accuracy"] == 1.0
    assert selection.base_test["accuracy"] == 0.0 and selection.base_test["n_examples"] == 8


def test_greedy_search_keeps_the_smallest_harmless_rho_and_reverts_harmful_steps():
    gains = {(3, 0.01): -0.2, (3, 0.1): 0.1, (3, 0.5): 0.3,  # layer 3: 0.01 hurts, 0.1 is the first that helps
             (2, 0.01): -0.1, (2, 0.1): -0.1, (2, 0.5): -0.05,  # layer 2: every step hurts: none kept
             (1, 0.01): 0.0, (1, 0.1): 0.2}  # layer 1: a tie is kept (accuracy does not fall)
    calls = []

    def score_stage(kept, candidates):
        calls.append((kept, tuple(candidates)))
        base = 0.5 + sum(gains[(s.layer, s.rho)] for s in kept)
        return [base + gains[(c.layer, c.rho)] for c in candidates]

    stages = [[Intervention(layer, "fc_in", rho) for rho in (0.01, 0.1, 0.5) if (layer, rho) in gains] for layer in (3, 2, 1)]
    steps, accuracy, trials = greedy_search(stages, 0.5, score_stage)
    assert steps == (Intervention(3, "fc_in", 0.1), Intervention(1, "fc_in", 0.01))
    assert accuracy == pytest.approx(0.6)
    assert calls[1][0] == calls[2][0] == (Intervention(3, "fc_in", 0.1),)  # the harmful layer-2 steps were not kept
    assert [t.kept for t in trials].count(True) == 2


def test_compose_on_a_tiny_model_finds_a_planted_step(gpt2):
    """Answers are the predictions of the model with layer 1's fc_in zeroed: greedy must take that step."""
    planted = copy.deepcopy(gpt2.torch_model)
    with torch.no_grad():
        planted.transformer.h[1].mlp.c_fc.weight.zero_()
    rng = np.random.default_rng(5)
    prompts = rng.integers(0, TINY_FAMILY_VOCAB, (10, 6))
    examples = [Example(tuple(map(int, p)), (int(a),)) for p, a in zip(prompts, torch_logits(planted, prompts)[:, -1].argmax(-1))]
    result = compose(gpt2.model, examples, layers=[1, 0], rhos=[0.0, 0.5], taus=["fc_in"],
                     options=SweepOptions(top_k=1, batch_size=2))
    assert result.steps[0] == Intervention(1, "fc_in", 0.0)
    assert result.final_validation["accuracy"] == 1.0 >= result.base_validation["accuracy"]
    check = evaluate(apply(gpt2.model, result.steps), examples[:2], options=SweepOptions(top_k=1, batch_size=2))
    assert check.metrics["accuracy"] == result.final_validation["accuracy"]
    assert result.final_test["n_examples"] == 8
