"""The first-order screen: its loss is the sweep's mean answer NLL, its predictions match finite differences."""

import numpy as np
import pytest

from laser_jax import load_model
from laser_jax.errors import DataError, InterventionError
from laser_jax.examples import Example
from laser_jax.laser import Intervention, factors_for, reconstruct_window
from laser_jax.screen import screen
from laser_jax.sweep import evaluate
from tests.models.hf_tiny import save_tiny_family
from tests.test_cli import setup  # noqa: F401 (the tiny GPT-2 + CounterFact fixture)

EXAMPLES = [
    Example((5, 17, 3, 44, 8), (9,)),
    Example((60, 2, 71), (12, 30, 4)),
    Example((7, 7, 90, 33, 21), (55, 56)),
    Example((11, 48), (70,)),
    Example((93, 4, 4, 26, 15, 77, 3, 3, 8, 19), (40,)),
    Example((5, 17, 3, 44, 8), (9,)),  # a repeat: its sequence counts twice
]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    directory = tmp_path_factory.mktemp("llama-screen")
    save_tiny_family("llama", directory)
    return load_model(directory, tokenizer=False)


def loss_of(model) -> float:
    return evaluate(model, EXAMPLES).metrics["answer_nll"]


def test_screen_loss_is_the_sweeps_mean_answer_nll(model):
    result = screen(model, EXAMPLES, [1], ["fc_in"], [0.5], batch_size=2)  # several batches
    assert result.base_loss == pytest.approx(loss_of(model), abs=1e-5)


@pytest.mark.parametrize("step", [Intervention(1, "fc_up", 0.5), Intervention(0, "fc_out", 0.25),
                                  Intervention(1, "q_proj", 0.75, "bottom")], ids=lambda s: s.key)
def test_prediction_matches_central_finite_differences_along_the_edit(model, step):
    """The prediction is ⟨∂L/∂W, ΔW⟩ with ΔW the variant's change; along W + ε·ΔW the loss changes by ε times it."""
    predicted = screen(model, EXAMPLES, variants=[step]).rows[0].predicted_change
    factors = factors_for(model, step.layer, step.tau)
    r = factors.s.shape[0]
    k = int(r * step.rho)
    window = (0, k) if step.keep == "top" else (k, r)
    weight = np.asarray(model.matrix(step.layer, step.tau), np.float64)
    delta = np.asarray(reconstruct_window(factors, np.array(window)), np.float64) - weight
    epsilon = 0.005  # third-order terms are ~6% at 0.05 for fc_out here, 0.003% at 0.005
    plus, minus = (loss_of(model.with_matrix(step.layer, step.tau, (weight + sign * epsilon * delta).astype(np.float32)))
                   for sign in (1, -1))
    finite_difference = (plus - minus) / (2 * epsilon)
    assert abs(predicted) > 1e-3  # a real signal, not two zeros
    assert predicted == pytest.approx(finite_difference, rel=5e-3)


def test_predictions_add_up_over_the_spectrum_and_groups(model):
    taus = ["fc_in", "fc_up", "fc_out"]
    grid = screen(model, EXAMPLES, [0, 1], taus, [0.0, 0.5, 1.0],
                  variants=[Intervention(1, "mlp", 0.5), Intervention(1, "fc_in", 0.5, "bottom"),
                            Intervention(1, "fc_in", 0.0, "bottom")])
    change = {row.intervention.key: row.predicted_change for row in grid}
    for layer in (0, 1):
        for tau in taus:
            assert change[f"{layer}/{tau}/1.0"] == 0.0
    # keeping the top half and keeping the bottom half each remove what the other keeps
    assert change["1/fc_in/0.5"] + change["1/fc_in/0.5/bottom"] == pytest.approx(change["1/fc_in/0.0"], rel=1e-9)
    assert change["1/fc_in/0.0/bottom"] == 0.0  # the removed part of rho=0 is the whole matrix
    assert change["1/mlp/0.5"] == pytest.approx(sum(change[f"1/{tau}/0.5"] for tau in taus), rel=1e-9)


def test_ranked_orders_by_predicted_decrease_and_csv_rows_carry_the_rank(model):
    result = screen(model, EXAMPLES, [0, 1], ["fc_in", "fc_out"], [0.9, 0.2])
    ranked = result.ranked()
    assert [r.predicted_change for r in ranked] == sorted(r.predicted_change for r in result)
    rows = result.csv_rows()
    assert sorted(row["predicted_rank"] for row in rows) == list(range(1, len(rows) + 1))
    best = next(row for row in rows if row["predicted_rank"] == 1)
    assert best["predicted_change"] == ranked[0].predicted_change
    assert best["predicted_loss"] == pytest.approx(result.base_loss + best["predicted_change"])


@pytest.mark.parametrize("kwargs, error", [
    (dict(examples=[]), DataError),
    (dict(layers=[9], taus=["fc_in"], rhos=[0.5]), InterventionError),
    (dict(layers=[], taus=[], rhos=[]), DataError),
])
def test_bad_input_is_a_one_line_error(model, kwargs, error):
    arguments = {**dict(examples=EXAMPLES, layers=[0], taus=["fc_in"], rhos=[0.5]), **kwargs}
    with pytest.raises(error):
        screen(model, **arguments)


def test_cli_screen_writes_the_library_predictions(setup, tmp_path, capsys):  # noqa: F811
    from laser_jax.cli import main
    from laser_jax.results import read_csv, split_indices
    from laser_jax.tasks import get_task

    out = tmp_path / "screen.csv"
    argv = ["screen", "--model", str(setup / "model"), "--task", "counterfact", "--data", str(setup / "counterfact.json"),
            "--limit", "8", "--layers", "0-1", "--taus", "fc_in", "--rhos", "0.5,0.1", "--out", str(out)]
    assert main(argv) == 0
    model = load_model(setup / "model")
    task = get_task("counterfact")
    examples = task.examples(task.load(str(setup / "counterfact.json"), limit=8), model.tokenizer)
    validation = [examples[i] for i in split_indices(len(examples), "val+test")["val"]]
    expected = screen(model, validation, [0, 1], ["fc_in"], [0.5, 0.1])
    rows = read_csv(out)
    assert [(r["layer"], r["tau"], r["rho"]) for r in rows] == [(0, "fc_in", 0.5), (0, "fc_in", 0.1), (1, "fc_in", 0.5),
                                                                (1, "fc_in", 0.1)]
    np.testing.assert_allclose([r["predicted_change"] for r in rows], [r.predicted_change for r in expected], rtol=1e-6)
    assert f"{expected.base_loss:.5f}" in capsys.readouterr().out
    assert main(argv[:-4] + ["--rhos", "mp", "--out", str(out)]) == 2
    assert "numeric --rhos" in capsys.readouterr().err
