"""The removed part of a LASER step (keep="bottom"): exact complement, sweep rows, keys, errors, the fixed-items report."""

import jax
import numpy as np
import pytest

from laser_jax import load_model
from laser_jax.errors import InterventionError
from laser_jax.examples import Example
from laser_jax.laser import Intervention, apply, planned_ranks
from laser_jax.removed import MODELS, FixedItem, Prediction, counts, fixed_items, format_report, summary, top_predictions
from laser_jax.sweep import SweepOptions, evaluate, sweep
from tests.models.hf_tiny import TINY_FAMILY_VOCAB, save_tiny_family

EXAMPLES = [
    Example((5, 17, 3, 44, 8), (9,), probe_ids=(1, 2)),
    Example((60, 2, 71), (12, 30, 4)),
    Example((7, 7, 90, 33, 21), (55, 56), choice_ids=((55, 56), (70,)), label=0),
    Example((11, 48), (70,)),
]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    directory = tmp_path_factory.mktemp("gpt2-complement")
    save_tiny_family("gpt2", directory)
    return load_model(directory, tokenizer=False)


@pytest.mark.parametrize("rho", [0.0, 0.3, 0.5, 0.97])
def test_removed_part_plus_truncation_is_the_original_matrix(model, rho):
    step = Intervention(1, "fc_in", rho)
    kept = np.asarray(apply(model, step).matrix(1, "fc_in"), np.float64)
    removed = np.asarray(apply(model, step.complement()).matrix(1, "fc_in"), np.float64)
    original = np.asarray(model.matrix(1, "fc_in"), np.float64)
    np.testing.assert_allclose(kept + removed, original, rtol=0, atol=2e-6 * np.abs(original).max())
    if rho > 0:
        assert np.linalg.matrix_rank(removed, tol=1e-4) == min(original.shape) - int(rho * min(original.shape))
    else:  # the removed part of rho=0 is the whole matrix, unchanged bit for bit
        np.testing.assert_array_equal(removed, original)


def test_keys_stay_backwards_compatible_and_round_trip():
    step = Intervention(8, "fc_in", 0.01)
    assert step.key == "8/fc_in/0.01" and Intervention.from_key("8/fc_in/0.01") == step
    removed = step.complement()
    assert removed == Intervention(8, "fc_in", 0.01, "bottom") and removed.key == "8/fc_in/0.01/bottom"
    assert Intervention.from_key(removed.key) == removed and removed.complement() == step


@pytest.mark.parametrize("make, words", [
    (lambda m: Intervention(1, "fc_in", 1.0, "bottom"), "empty"),
    (lambda m: Intervention(1, "fc_in", 0.5, "middle"), "keep must be"),
    (lambda m: Intervention.from_key("1/fc_in/0.5/bottom/x"), "not an intervention key"),
    (lambda m: apply(m, [Intervention(1, "fc_in", 0.5, "bottom"), Intervention(1, "fc_in", 0.2)]), "cannot be combined"),
    (lambda m: apply(m, Intervention(1, "fc_in", 0.5, "bottom"), method="randomized", key=jax.random.key(0)), "exact"),
    (lambda m: planned_ranks(m, [Intervention(1, "fc_in", 0.5, "bottom")]), "not a rank-k truncation"),
    (lambda m: sweep(m, EXAMPLES, [Intervention(1, "fc_in", 0.5, "bottom")], options=SweepOptions(method="randomized",
                     key=jax.random.key(0))), "exact"),
])
def test_bad_complements_are_one_line_errors(model, make, words):
    with pytest.raises(InterventionError, match=words) as error:
        make(model)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("rank_buckets", [False, True])
def test_sweep_rows_of_removed_parts_equal_apply_then_forward(model, rank_buckets):
    last = model.n_layers - 1
    steps = [Intervention(1, "fc_in", 0.5, "bottom"), Intervention(1, "fc_in", 0.5), Intervention(1, "fc_in", 0.1, "bottom"),
             Intervention(0, "attn", 0.25, "bottom"), Intervention(last, "fc_out", 0.75, "bottom"),
             Intervention(1, "fc_out", 0.0, "bottom")]
    result = sweep(model, EXAMPLES, steps, options=SweepOptions(rank_buckets=rank_buckets))
    assert [row.key for row in result] == ["base"] + [step.key for step in steps]
    for step in steps:
        expected = evaluate(apply(model, step), EXAMPLES).scores
        got = result.row(step).scores
        np.testing.assert_allclose(got.answer_nll, expected.answer_nll, rtol=0, atol=1e-5)
        np.testing.assert_allclose(got.probe_logprobs, expected.probe_logprobs, rtol=0, atol=1e-5)
        np.testing.assert_array_equal(got.top1, expected.top1)
    assert result.row(steps[0]).metrics["answer_nll"] != result.row(steps[1]).metrics["answer_nll"]
    np.testing.assert_array_equal(result.row(steps[-1]).scores.answer_nll, result.base.scores.answer_nll)


def test_fixed_items_lists_the_three_models_top_predictions(model):
    step = Intervention(1, "fc_in", 0.1)
    laser = apply(model, step)
    rng = np.random.default_rng(0)
    prompts = [tuple(int(t) for t in rng.integers(0, TINY_FAMILY_VOCAB, size=rng.integers(2, 7))) for _ in range(40)]
    base_top = [p.tokens[0] for p in top_predictions(model, prompts, 1)]
    laser_top = [p.tokens[0] for p in top_predictions(laser, prompts, 1)]
    # answers: LASER's top token where the two disagree (a fix), the base's where they agree (not a fix)
    examples = [Example(p, (lt,)) for p, lt in zip(prompts, laser_top)]
    expected = [i for i, (b, lt) in enumerate(zip(base_top, laser_top)) if b != lt]
    assert expected and len(expected) < len(prompts)
    items = fixed_items(model, examples, step, top_n=4, batch_size=8)
    assert [item.index for item in items] == expected
    removed = apply(model, step.complement())
    for item in items:
        assert item.answer == laser_top[item.index] == item.predictions["laser"].tokens[0]
        assert item.predictions["base"].tokens[0] == base_top[item.index]
        for name, m in zip(MODELS, (model, laser, removed)):
            logits = np.asarray(m.logits(np.array([prompts[item.index]]))[0, -1], np.float64)
            probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
            order = np.argsort(-probs)[:4]
            assert item.predictions[name].tokens == tuple(order)
            np.testing.assert_allclose(item.predictions[name].probs, probs[order], rtol=1e-4)
    report = format_report(items, step)
    assert report.splitlines()[0].endswith(f": {len(expected)}") and len(report.splitlines()) == 4 + len(expected)


def test_report_keeps_each_item_on_one_table_row():
    """A prompt with line breaks and a pipe (CounterFact has both) stays one markdown row, its text intact."""

    class Decoder:
        def decode(self, ids):
            return {(1, 2): "7pm - 10pm\n\nSaturday | Kat. Hsieh holds a citizenship from"}.get(tuple(ids), f"<{ids[0]}>")

    examples = [Example((1, 2), (3,))]
    prediction = Prediction((3, 4), (0.5, 0.25))
    items = [FixedItem(0, 3, {name: prediction for name in MODELS})]
    rows = format_report(items, Intervention(0, "fc_in", 0.5), Decoder(), examples).splitlines()
    assert len(rows) == 5
    assert rows[4] == ("| 0 | 7pm - 10pm Saturday \\| Kat. Hsieh holds a citizenship from | '<3>' | "
                       + " | ".join(["'<3>' 0.50, '<4>' 0.25"] * 3) + " |")


def test_counts_of_generic_base_and_answer_top_tokens():
    def item(answer, base, laser, removed):
        return FixedItem(0, answer, {"base": Prediction((base, 99), (0.6, 0.1)), "laser": Prediction((laser,), (0.5,)),
                                     "removed": Prediction((removed,), (0.4,))})

    the, a = 1, 2  # generic ids
    items = [item(7, the, 7, the), item(8, a, 8, 8), item(9, 5, 9, the), item(3, the, 3, 5)]
    assert counts(items, [the, a]) == {"base": {"generic": 3, "base_top": 4, "answer": 0},
                                       "laser": {"generic": 0, "base_top": 0, "answer": 4},
                                       "removed": {"generic": 2, "base_top": 1, "answer": 1}}
    text = summary(items, Intervention(2, "fc_up", 0.2), 10, [the, a], generic_words=(" the", " a"))
    assert text.startswith("4 of 10 items are fixed") and "(' the', ' a'): base 3, laser 0, removed 2;" in text
    assert "base's own top token: base 4, laser 0, removed 1; the right answer: base 0, laser 4, removed 1." in text


def test_cli_removed_reports_the_library_items(tmp_path, capsys):
    """``laser-jax removed`` on a tiny model with a tokenizer: its summary is the library's, on the chosen split."""
    import json

    from laser_jax.cli import main
    from laser_jax.results import split_indices
    from laser_jax.tasks import GENERIC_PROBES, get_task
    from laser_jax.tasks.common import encode_probes
    from tests.test_checkpoint import save_tiny_gpt2
    from tests.test_cli import FACTS

    save_tiny_gpt2(tmp_path / "model")
    records = [{"case_id": i, "prompt": p, "ground_truth": a, "rephrase_prompt": r} for i, (p, a, r) in enumerate(FACTS)]
    (tmp_path / "cf.json").write_text(json.dumps(records))
    argv = ["removed", "--model", str(tmp_path / "model"), "--task", "counterfact", "--data", str(tmp_path / "cf.json"),
            "--edit", "fc_in:1:0.05", "--out", str(tmp_path / "out")]
    model = load_model(tmp_path / "model")
    task = get_task("counterfact")
    examples = task.examples(task.load(str(tmp_path / "cf.json")), model.tokenizer)
    step = Intervention(1, "fc_in", 0.05)
    generic = encode_probes(model.tokenizer, GENERIC_PROBES)
    for split, chosen in (("val", [examples[i] for i in split_indices(len(examples), "val+test")["val"]]),
                          ("all", examples)):
        assert main(argv + ["--split", split]) == 0
        text = (tmp_path / "out" / "summary.md").read_text()
        expected = summary(fixed_items(model, chosen, step), step, len(chosen), generic, model.tokenizer, chosen,
                           GENERIC_PROBES)
        assert expected in text and "removed --model" in text
        assert (tmp_path / "out" / "removed.png").read_bytes()[:4] == b"\x89PNG"
        assert expected.startswith(f"{len(fixed_items(model, chosen, step))} of {len(chosen)} items")
    capsys.readouterr()
    for edit, words in (("fc_in:1:1", "empty"), ("fc_in:1:0.5:bottom", "the LASER step itself"),
                        ("fc_in:9:0.5", "layer")):
        assert main(argv[:-4] + ["--edit", edit, "--out", str(tmp_path / "bad")]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and words in err, err
    assert not (tmp_path / "bad").exists()
