"""LASER across checkpoints: tiny synthetic checkpoints saved by the trainer, scored again by laser-jax dynamics."""

import json
import shutil

import jax
import numpy as np
import pytest

from laser_jax import dynamics, load_model
from laser_jax.cli import main
from laser_jax.errors import ConfigError, DataError
from laser_jax.examples import load_examples, save_examples
from laser_jax.laser import Intervention
from synthetic import run, train
from synthetic.model import SyntheticConfig, as_model, init_params

GRID = dict(layers=[1], taus=["fc_in", "mlp"], rhos=[0.0, 0.5])
FF2_REMOVED = Intervention(1, "mlp", 0.0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The tiny preset trained with models saved at steps 0, 10 and 20, and its metrics."""
    out = tmp_path_factory.mktemp("synthetic")
    result = run.run_experiment("tiny", out, checkpoint_steps=(0, 10, 20), assoc=False, make_plots=False,
                                progress=False, verbose=False)
    return out, result


@pytest.fixture(scope="module")
def scored(trained, tmp_path_factory):
    out, _ = trained
    series = dynamics.local_series(sorted((out / "models" / "seed1").iterdir()))
    dest = tmp_path_factory.mktemp("dynamics") / "run"
    records = dynamics.run_dynamics(series, load_examples(out / "examples.json"), dest, **GRID, track=[FF2_REMOVED],
                                    log=lambda _: None)
    return series, dest, records


def test_saved_synthetic_models_load_exactly(trained):
    """Each seed's laser-jax checkpoint holds that seed's parameters of the saved training state, bit for bit."""
    out, result = trained
    preset = result["preset"]
    cfg, *_ = run.setup(preset)
    states = train.restore_checkpoint(out / "checkpoints" / "step_000020",
                                      train.init_states(cfg, preset.optim, list(range(preset.seeds))))
    for seed in range(preset.seeds):
        model = load_model(out / "models" / f"seed{seed}" / "step_000020")
        assert model.family.name == "synthetic" and model.config == cfg
        want = jax.tree.map(lambda leaf: np.asarray(leaf[seed]), states.params)
        jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, model.params), want)


def test_dynamics_reproduces_the_trainers_probes(trained, scored):
    """Base and FF2-removed metrics over all examples equal the trainer's in-training numbers for that seed."""
    out, result = trained
    series, _, records = scored
    assert [c.step for c in series] == [0, 10, 20] and [r["label"] for r in records] == ["step_000000", "step_000010", "step_000020"]
    history = result["history"]
    for step_index, record in enumerate(records):
        for key, variant in (("base", "full"), (FF2_REMOVED.key, "layer2_ff_rho0")):
            mine = next(r for r in record["variants"][key] if r["split"] == "all")
            want = {m: float(history.series(variant, m)[step_index, 1]) for m in ("accuracy", "p_noise", "p_correct")}
            assert mine["accuracy"] == pytest.approx(want["accuracy"], abs=1e-6)
            assert mine["p_generic"] == pytest.approx(want["p_noise"], abs=2e-5)
            assert mine["p_answer"] == pytest.approx(want["p_correct"], abs=2e-5)
            assert mine["loss"] == pytest.approx(float(history.series(variant, "loss")[step_index, 1]), abs=2e-5)


def test_record_is_the_selection_protocol(scored):
    _, dest, records = scored
    record = records[-1]
    assert record["n_examples"] == record["base"]["validation"]["n_examples"] + record["base"]["test"]["n_examples"]
    grid_keys = [Intervention(layer, tau, rho).key for layer in GRID["layers"] for tau in GRID["taus"] for rho in GRID["rhos"]]
    validation = {key: next(r for r in record["variants"][key] if r["split"] == "val") for key in grid_keys}
    best = record["best"]["variant"]
    top = max(v["accuracy"] for v in validation.values())
    assert validation[best]["accuracy"] == top
    assert min(v["loss"] for v in validation.values() if v["accuracy"] == top) == validation[best]["loss"]
    test_best = next(r for r in record["variants"][best] if r["split"] == "test")
    assert record["best"]["test"]["accuracy"] == test_best["accuracy"]
    assert record["generic_test"]["p_generic_after"] == pytest.approx(test_best["p_generic"], rel=1e-12)
    assert record["p_answer_test"]["after"] == pytest.approx(test_best["p_answer"], rel=1e-12)
    rows = (dest / dynamics.SUMMARY_CSV).read_text().splitlines()
    assert rows[0].split(",") == list(dynamics.CSV_COLUMNS) and len(rows) == 4
    assert (dest / dynamics.FIGURE).stat().st_size > 10_000
    summary = json.loads((dest / dynamics.SUMMARY_JSON).read_text())
    assert summary["rows"][2]["best_variant"] == best and FF2_REMOVED.key in summary["tracked"]["step_000020"]


def test_a_killed_run_redoes_only_the_missing_checkpoints(trained, scored, tmp_path):
    out, _ = trained
    series, dest, records = scored
    copy = tmp_path / "run"
    shutil.copytree(dest, copy)
    (copy / dynamics.RECORDS_DIR / "step_000010.json").unlink()
    (copy / dynamics.SUMMARY_CSV).unlink()
    loaded = []

    def load(checkpoint):
        loaded.append(checkpoint.label)
        return load_model(checkpoint.source)

    again = dynamics.run_dynamics(series, load_examples(out / "examples.json"), copy, **GRID, track=[FF2_REMOVED],
                                  load=load, log=lambda _: None)
    assert loaded == ["step_000010"]
    assert json.dumps(again) == json.dumps(records)
    assert (copy / dynamics.SUMMARY_CSV).read_text() == (dest / dynamics.SUMMARY_CSV).read_text()
    with pytest.raises(Exception, match="holds a different run"):
        dynamics.run_dynamics(series, load_examples(out / "examples.json"), copy, layers=[1], taus=["fc_in"], rhos=[0.5],
                              log=lambda _: None)


def test_series_of_different_architectures_is_refused(trained, tmp_path):
    out, _ = trained
    other = SyntheticConfig(seq_len=16, d_model=8, mlp_ratio=1)
    from laser_jax import checkpoint

    checkpoint.save(tmp_path / "step_30", as_model(other, init_params(jax.random.PRNGKey(0), other)))
    series = dynamics.local_series([out / "models" / "seed0" / "step_000020", tmp_path / "step_30"])
    with pytest.raises(ConfigError, match=r"checkpoint step_30 has d_model=8, not 16 as step_000020"):
        dynamics.run_dynamics(series, load_examples(out / "examples.json"), tmp_path / "run", layers=[1], taus=["fc_in"],
                              rhos=[0.5], load=pytest.fail, log=lambda _: None)  # refused before loading any weights
    assert not (tmp_path / "run").exists()


def test_cli_dynamics_and_its_errors(trained, tmp_path, capsys):
    out, _ = trained
    models = out / "models" / "seed0"
    argv = ["dynamics", "--checkpoints", str(models / "step_000010"), str(models / "step_000000"),
            "--examples", str(out / "examples.json"), "--layers", "1", "--taus", "fc_in,mlp", "--rhos", "0,0.5",
            "--track", "mlp:1:0", "--out", str(tmp_path / "cli")]
    assert main(argv) == 0
    assert "2 checkpoints" in capsys.readouterr().out
    rows = (tmp_path / "cli" / dynamics.SUMMARY_CSV).read_text().splitlines()
    assert [r.split(",")[1] for r in rows[1:]] == ["0", "10"]  # ordered by step
    code = main(["dynamics", "--model", "x/y", "--examples", str(out / "examples.json"), "--out", str(tmp_path / "e")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "--model and --revisions go together" in err


def test_step_labels_and_examples_file(tmp_path):
    assert dynamics.step_of("step1000") == 1000 and dynamics.step_of("run/step_000120") == 120
    assert dynamics.step_of("final") is None
    series = dynamics.hub_series("EleutherAI/pythia-70m", ["step3000", "step1000"])
    assert [(c.label, c.step, c.revision) for c in series] == [("step1000", 1000, "step1000"), ("step3000", 3000, "step3000")]
    with pytest.raises(DataError, match="revisions repeat"):
        dynamics.hub_series("m", ["step1", "step1"])
    from laser_jax.examples import Example

    examples = [Example((1, 2, 3), (4,), probe_ids=(2,)), Example((5,), (6, 7), choice_ids=((6, 7), (8,)), label=1)]
    save_examples(tmp_path / "e.json", examples)
    assert load_examples(tmp_path / "e.json") == examples
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(DataError, match="not a laser-jax examples file"):
        load_examples(tmp_path / "bad.json")


def test_hf_series_with_a_task(tmp_path, capsys):
    """Tiny random GPT-2 "training checkpoints" with a tokenizer, a CounterFact file: the base rows are the
    engine's own evaluation of each checkpoint; a checkpoint with another width is refused before any scoring."""
    from laser_jax.sweep import evaluate
    from laser_jax.tasks import get_task
    from tests.test_checkpoint import save_tiny_gpt2
    from tests.test_cli import FACTS

    for step, seed in ((100, 1), (200, 2)):
        save_tiny_gpt2(tmp_path / f"step_{step}", n_layer=2, seed=seed)
    records = [{"case_id": i, "prompt": p, "ground_truth": a, "rephrase_prompt": r} for i, (p, a, r) in enumerate(FACTS)]
    (tmp_path / "cf.json").write_text(json.dumps(records))
    def argv(steps, out):
        return ["dynamics", "--checkpoints", *(str(tmp_path / f"step_{s}") for s in steps), "--task", "counterfact",
                "--data", str(tmp_path / "cf.json"), "--layers", "1", "--taus", "fc_in", "--rhos", "0.5,0.1",
                "--out", str(tmp_path / out)]

    assert main(argv((200, 100), "out")) == 0
    task = get_task("counterfact")
    for step in (100, 200):
        model = load_model(tmp_path / f"step_{step}")
        examples = task.examples(task.load(str(tmp_path / "cf.json")), model.tokenizer)
        record = json.loads((tmp_path / "out" / dynamics.RECORDS_DIR / f"step_{step}.json").read_text())
        want = evaluate(model, examples[len(examples) // 5:]).metrics
        assert record["base"]["test"]["accuracy"] == want["accuracy"]
        assert record["base"]["test"]["answer_nll"] == pytest.approx(want["answer_nll"], rel=1e-6)
        assert record["generic_test"]["p_generic_before"] > 0  # CounterFact's generic probes " the", " a", " of"
    save_tiny_gpt2(tmp_path / "step_300", n_layer=2, n_embd=48)
    capsys.readouterr()
    code = main(argv((100, 300, 200), "mixed"))
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "checkpoint step_300 has d_mlp=192, not 128 as step_100" in err, err
    assert not (tmp_path / "mixed").exists()  # refused before writing anything
