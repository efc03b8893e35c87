"""The entry point on the tiny preset: summary.json, metrics.json and plots; checkpoint and resume."""

import json

import numpy as np

from synthetic import run


def test_run_writes_summary_metrics_and_plots(tmp_path):
    result = run.run_experiment("tiny", tmp_path, checkpoint_steps=(10,), progress=False, verbose=False)
    summary = json.loads((tmp_path / "summary.json").read_text())
    for row in ("full", "layer1_ff_rho0", "layer2_ff_rho0"):
        assert set(summary[row]) == {"accuracy", "p_noise", "p_correct"}
    assert summary["wall_seconds"] > 0 and "first_step_p_noise_above_0.8_alpha" in summary["dynamics"]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["steps"] == [0, 10, 20]
    assert len(metrics["metrics"]["layer2_fc_out_rho0.5"]["accuracy"]["per_seed"][0]) == 2
    for name in ("dynamics.png", "probes.png", "heatmap.png", "assoc_memory.png", "assoc_memory.json"):
        assert (tmp_path / name).stat().st_size > 0
    # resuming from the step-10 checkpoint reproduces the final metrics
    resumed = run.run_experiment("tiny", None, resume_from=tmp_path / "checkpoints" / "step_000010", assoc=False,
                                 progress=False, verbose=False)
    assert resumed["history"].steps == [10, 20]
    np.testing.assert_allclose(resumed["history"].metrics[-1], result["history"].metrics[-1], atol=1e-6)


def test_format_table_and_checks():
    summary = {"full": {"accuracy": 0.5, "p_noise": 0.48, "p_correct": 0.5},
               "layer1_ff_rho0": {"accuracy": 0.2, "p_noise": 0.6, "p_correct": 0.2},
               "layer2_ff_rho0": {"accuracy": 0.99, "p_noise": 0.01, "p_correct": 0.8},
               "dynamics": {"p_noise_threshold": 0.4, "first_step_p_noise_above_0.8_alpha": 100,
                            "first_step_layer2_ff_rho0_accuracy_above_0.9": 500,
                            "global_association_learned_first": True}}
    assert all(run.checks(summary, 0.5).values())
    text = run.format_table(summary, run.resolve("quick"))
    assert "layer2_ff_rho0" in text and "NO" not in text


def test_presets_follow_the_official_script():
    """paper logs every 10 steps through step 1,000 (the official script: every 5), then every 100;
    every preset uses the shipped Tiny-Shakespeare statistics by default."""
    paper = run.logged_steps(run.get_preset("paper"))
    assert paper[:101] == list(range(0, 1001, 10)) and paper[101:] == list(range(1100, 5001, 100))
    assert {run.get_preset(name).stats for name in ("quick", "paper", "tiny")} == {"shakespeare"}
    assert run.get_preset("quick").steps == 1000 and run.get_preset("paper").seeds == 3


def test_two_runs_print_the_same_numbers(capsys):
    """Everything is seeded: a second run prints the same table (the wall time aside) and logs the same bits."""
    outputs, histories = [], []
    for _ in range(2):
        result = run.run_experiment("tiny", None, assoc=False, make_plots=False, progress=False, verbose=True)
        outputs.append([line for line in capsys.readouterr().out.splitlines() if not line.startswith("wall time")])
        histories.append(result["history"])
    assert outputs[0] == outputs[1] and any(line.startswith("layer2_ff_rho0") for line in outputs[0])
    np.testing.assert_array_equal(np.asarray(histories[0].metrics), np.asarray(histories[1].metrics))
    np.testing.assert_array_equal(np.asarray(histories[0].probes), np.asarray(histories[1].probes))
