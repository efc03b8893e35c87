"""The results store (atomic, sorted, resumable, argument-checked) and the report built from it."""

from __future__ import annotations

import csv
import json

import pytest

from laser_jax.report import select_best, summary_table, write_report
from laser_jax.results import RESULTS_FILE, ResultsStore, RunMismatchError, load_results, load_scores

ARGS = {"model": "tiny", "task": "counterfact", "layers": [0, 1], "taus": ["fc_in", "fc_out"], "rhos": [0.5, 0.1]}


def variant_rows(tau, layer, rho, val_acc, val_loss, test_acc=0.5, probe=None):
    extra = {} if probe is None else {"p_generic": probe}
    k = None if tau == "none" else max(1, int(rho * 32))
    return [
        {"layer": layer, "tau": tau, "rho": rho, "k": k, "split": "val", "n": 2, "accuracy": val_acc, "loss": val_loss, **extra},
        {"layer": layer, "tau": tau, "rho": rho, "k": k, "split": "test", "n": 8, "accuracy": test_acc, "loss": 2.0, **extra},
    ]


def fill(store, probe=False):
    """Base plus the full 2 x 2 x 2 grid; fc_out layer 1 rho 0.1 and fc_in layer 0 rho 0.5 tie on val accuracy."""
    p = (lambda v: v) if probe else (lambda v: None)
    store.record(variant_rows("none", None, None, 0.5, 1.0, probe=p(0.3)), scores={"index": [0, 1], "correct": [1, 0]})
    for tau in ("fc_out", "fc_in"):  # deliberately not in sorted order
        for layer in (1, 0):
            for rho in (0.1, 0.5):
                acc = 1.0 if (tau, layer, rho) in {("fc_out", 1, 0.1), ("fc_in", 0, 0.5)} else 0.5
                loss = 0.7 if (tau, layer, rho) == ("fc_out", 1, 0.1) else 0.9
                store.record(variant_rows(tau, layer, rho, acc, loss, test_acc=0.75, probe=p(0.1 * layer + rho)),
                             scores={"index": [0, 1], "correct": [1, 1]})


def test_rows_are_sorted_and_files_complete(tmp_path):
    store = ResultsStore(tmp_path / "run", ARGS)
    fill(store)
    run, rows = load_results(tmp_path / "run")
    assert run["args"] == ARGS and "jax" in run["versions"] and run["device"]
    with open(tmp_path / "run" / RESULTS_FILE) as handle:
        lines = list(csv.reader(handle))
    assert lines[0][:8] == ["layer", "tau", "rho", "k", "split", "n", "accuracy", "loss"]
    assert lines[1][:5] == ["", "none", "", "", "val"] and lines[2][4] == "test"
    order = [(r["tau"], r["layer"], r["rho"]) for r in rows[2::2]]
    assert order == sorted(order, key=lambda t: (t[0], t[1], -t[2]))
    assert len(rows) == 2 * 9
    assert load_scores(tmp_path / "run", ("fc_in", 0, 0.5)) == [{"index": 0, "correct": 1}, {"index": 1, "correct": 1}]
    assert not [p for p in (tmp_path / "run").rglob(".*tmp*")]  # no temporary files left behind


def test_reopen_resumes_and_rerecording_replaces(tmp_path):
    first = ResultsStore(tmp_path / "run", ARGS)
    first.record(variant_rows("none", None, None, 0.5, 1.0))
    first.record(variant_rows("fc_in", 0, 0.5, 0.5, 1.0))
    first.close()
    second = ResultsStore(tmp_path / "run", ARGS)
    assert second.done() == {("none", None, None), ("fc_in", 0, 0.5)}
    second.record(variant_rows("fc_in", 0, 0.5, 1.0, 1.0))  # a variant recorded again replaces its rows
    assert len(load_results(tmp_path / "run")[1]) == 4


def test_different_arguments_are_refused(tmp_path):
    ResultsStore(tmp_path / "run", ARGS).record(variant_rows("none", None, None, 0.5, 1.0))
    with pytest.raises(RunMismatchError, match=r"holds a different run \(rhos="):
        ResultsStore(tmp_path / "run", {**ARGS, "rhos": [0.5]})
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(RunMismatchError, match="not empty"):
        ResultsStore(tmp_path / "other", ARGS)


def test_a_second_concurrent_writer_is_refused(tmp_path):
    first = ResultsStore(tmp_path / "run", ARGS)
    first.start()
    with pytest.raises(RunMismatchError, match="another laser-jax process"):
        ResultsStore(tmp_path / "run", ARGS).start()
    first.close()
    ResultsStore(tmp_path / "run", ARGS).start()  # free again once the first has finished


def test_selection_protocol_ties_go_to_lower_val_loss(tmp_path):
    store = ResultsStore(tmp_path / "run", ARGS)
    fill(store)
    rows = load_results(tmp_path / "run")[1]
    assert select_best(rows) == ("fc_out", 1, 0.1)
    table = summary_table(rows)
    assert "| base |" in table and "fc_out layer 1, ρ=0.1 (90% reduction)" in table and "0.7500" in table


def test_report_writes_heatmaps_table_and_probe_plot(tmp_path):
    store = ResultsStore(tmp_path / "run", ARGS)
    fill(store, probe=True)
    written = {p.name for p in write_report(tmp_path / "run")}
    assert written == {"heatmap_accuracy.png", "heatmap_loss.png", "generic_tokens.png", "report.md"}
    for name in written - {"report.md"}:
        assert (tmp_path / "run" / name).read_bytes()[:4] == b"\x89PNG"
    text = (tmp_path / "run" / "report.md").read_text()
    assert "val accuracy" in text and "![heatmap_accuracy](heatmap_accuracy.png)" in text


def test_report_without_probes_or_validation(tmp_path):
    store = ResultsStore(tmp_path / "run", ARGS)
    for tau, layer, rho, acc in (("none", None, None, 0.4), ("fc_in", 0, 0.5, 0.6), ("fc_in", 1, 0.5, 0.2)):
        store.record([{"layer": layer, "tau": tau, "rho": rho, "k": 3, "split": "all", "n": 5, "accuracy": acc, "loss": 1.0}])
    written = {p.name for p in write_report(tmp_path / "run")}
    assert "generic_tokens.png" not in written
    assert "optimistic" in (tmp_path / "run" / "report.md").read_text()
    assert json.loads((tmp_path / "run" / "run.json").read_text())["args"]["task"] == "counterfact"


def test_report_gives_each_candidates_mean_probability_on_test(tmp_path):
    """IOI: P(indirect object) and P(subject) of the base and of the selected variant, on the test examples only."""
    import math

    store = ResultsStore(tmp_path / "run", {**ARGS, "task": "ioi"})
    logp = lambda *ps: [math.log(p) for p in ps]  # noqa: E731
    split = ["val", "test", "test"]
    store.record(variant_rows("none", None, None, 0.5, 1.0),
                 scores={"index": [0, 1, 2], "split": split, "correct": [1, 0, 1],
                         "choice0_logprob": logp(0.9, 0.2, 0.4), "choice1_logprob": logp(0.1, 0.6, 0.3)})
    store.record(variant_rows("fc_in", 1, 0.1, 1.0, 0.5),
                 scores={"index": [0, 1, 2], "split": split, "correct": [1, 1, 1],
                         "choice0_logprob": logp(0.99, 0.5, 0.7), "choice1_logprob": logp(0.01, 0.1, 0.2)})
    store.record(variant_rows("fc_in", 0, 0.1, 0.5, 0.5))
    write_report(tmp_path / "run")
    text = (tmp_path / "run" / "report.md").read_text()
    assert "| model | P(indirect object) | P(subject) |" in text
    assert "| base | 0.3000 | 0.4500 |" in text and "| fc_in layer 1, ρ=0.1 (90% reduction) | 0.6000 | 0.1500 |" in text


def test_table_row_and_report_recompute_a_row_from_stored_scores(tmp_path):
    """A hand-made selection run whose base and LASER disagree on test: the row's interval columns equal statsmodels'
    Wilson interval and exact McNemar on the stored outcomes, and the paired bootstrap of those outcomes."""
    import numpy as np
    from statsmodels.stats.contingency_tables import mcnemar
    from statsmodels.stats.proportion import proportion_confint

    from laser_jax import stats
    from laser_jax.table import table_row

    rng = np.random.default_rng(0)
    n_val, n_test = 10, 60
    base = rng.random(n_test) < 0.4
    laser = np.where(rng.random(n_test) < 0.7, base, True)  # LASER gains on some items
    store = ResultsStore(tmp_path / "run", {**ARGS, "mode": "selection"})
    for key, val_accuracy, outcomes in ((("none", None, None), 0.5, base), (("fc_in", 1, 0.1), 0.9, laser),
                                        (("fc_in", 0, 0.5), 0.6, None)):
        tau, layer, rho = key
        rows = [{"layer": layer, "tau": tau, "rho": rho, "k": 3, "split": "val", "n": n_val, "accuracy": val_accuracy,
                 "loss": 1.0}]
        scores = {"index": list(range(n_val)), "split": ["val"] * n_val, "correct": [1] * n_val}
        if outcomes is not None:
            rows.append({"layer": layer, "tau": tau, "rho": rho, "k": 3, "split": "test", "n": n_test,
                         "accuracy": float(outcomes.mean()), "loss": 1.0})
            scores = {"index": list(range(n_val + n_test)), "split": ["val"] * n_val + ["test"] * n_test,
                      "correct": [1] * n_val + outcomes.astype(int).tolist()}
        store.record(rows, scores=scores)
    row = table_row(tmp_path / "run", resamples=2000)
    assert (row["tau"], row["layer"], row["rho"]) == ("fc_in", 1, 0.1)
    for name, outcomes in (("base", base), ("laser", laser)):
        low, high = proportion_confint(int(outcomes.sum()), n_test, alpha=0.05, method="wilson")
        assert (row[f"{name}_low"], row[f"{name}_high"]) == pytest.approx((low, high), abs=1e-12)
    b, c = int((base & ~laser).sum()), int((laser & ~base).sum())
    assert c > b
    table = [[int((base & laser).sum()), b], [c, int((~base & ~laser).sum())]]
    assert row["mcnemar_p"] == pytest.approx(mcnemar(table, exact=True).pvalue, rel=1e-12)
    difference = stats.paired_bootstrap(base, laser, resamples=2000, seed=0)
    assert row["difference"] == pytest.approx(laser.mean() - base.mean()) and row["difference"] > 0
    assert (row["difference_low"], row["difference_high"]) == pytest.approx((difference.low, difference.high), abs=1e-12)
    assert row["base_auc_low"] is None  # no candidates: not a choice task
    write_report(tmp_path / "run")
    assert f"| {b} / {c} |" in (tmp_path / "run" / "report.md").read_text()  # report.md: the same discordant counts


def test_closing_a_run_packs_its_scores_exactly_into_one_compressed_file(tmp_path):
    import shutil

    import numpy as np

    from laser_jax.results import SCORES_FILE, score_columns

    store = ResultsStore(tmp_path / "run", ARGS)
    exact32 = float(np.float32(0.1))  # what the engine's float32 scores become in the CSV
    store.record(variant_rows("none", None, None, 0.5, 1.0),
                 scores={"index": [0, 1, 2], "split": ["val", "test", "test"], "correct": [1, 0, 1],
                         "answer_nll": [exact32, 2.5, None], "wide": [0.1, 1e300, 3.0], "count": [7, 70_000, -1]})
    store.record(variant_rows("fc_in", 0, 0.5, 0.5, 1.0), scores={"index": [0], "correct": [1]})
    before = {key: load_scores(tmp_path / "run", key) for key in (("none", None, None), ("fc_in", 0, 0.5))}
    assert not (tmp_path / "run" / SCORES_FILE).exists()  # packed when the run closes
    store.close()
    shutil.rmtree(tmp_path / "run" / "scores")
    after = {key: load_scores(tmp_path / "run", key) for key in before}
    assert after == before and after[("none", None, None)][2]["answer_nll"] is None
    columns = score_columns(tmp_path / "run", ("none", None, None))
    assert columns["answer_nll"].dtype == np.float32 and columns["wide"].dtype == np.float64  # float32 only when exact
    assert columns["correct"].dtype == np.int8 and columns["count"].dtype == np.int32 and columns["split"].tolist() == ["val", "test", "test"]
    assert score_columns(tmp_path / "run", ("fc_up", 3, 0.1)) == {}
    # a resumed run that adds a variant keeps the packed ones whose CSV is gone
    again = ResultsStore(tmp_path / "run", ARGS)
    again.record(variant_rows("fc_in", 1, 0.5, 0.5, 1.0), scores={"index": [0], "correct": [0]})
    again.close()
    shutil.rmtree(tmp_path / "run" / "scores")
    assert load_scores(tmp_path / "run", ("fc_in", 1, 0.5)) == [{"index": 0, "correct": 0}]
    assert {key: load_scores(tmp_path / "run", key) for key in before} == before
