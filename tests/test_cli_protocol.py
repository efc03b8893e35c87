"""The protocol's commands end to end on a tiny GPT-2: ``sweep --mode selection`` (killed and resumed), racing,
``table``, ``compose`` and ``apply --edits``, and their one-line errors."""

from __future__ import annotations

import json
import shlex
import threading

import pytest

from laser_jax import laser, load_model
from laser_jax.cli import main
from laser_jax.generate import generation_accuracy
from laser_jax.results import RESULTS_FILE, read_csv
from laser_jax.screen import screen
from laser_jax.selection import validation_split
from laser_jax.sweep import variant_readouts
from laser_jax.table import side_by_side
from laser_jax.tasks import get_task
from tests.test_cli import FACTS, _assert_one_line_error, run_and_kill, setup  # noqa: F401  (setup is a fixture)

GRID = ["--layers", "0-2", "--taus", "fc_in,fc_out", "--rhos", "0.5,0.3,0.2,0.1,0.05,0.02"]
CLAIMS = [("Velmor Hut keeps its spoons in jars.", "SUPPORTS"), ("Brimble Quax likes mauve.", "REFUTES"),
          ("Oskel Dunne hums the kazoo.", "SUPPORTS"), ("Plinth Ferry sails on Tuesdays.", "REFUTES"),
          ("The cat of Marrow Lane is called Pebble.", "SUPPORTS"), ("Tobin Wex paints his door green.", "REFUTES"),
          ("The bakery in Sallow Cove sells buns.", "SUPPORTS"), ("Nessa Brool drinks her tea with lemon.", "REFUTES"),
          ("The clock tower of Orrin chimes at noon.", "SUPPORTS"), ("Quill Harbour's lighthouse is striped.", "REFUTES")]


def selection_argv(setup, out, *extra):
    return ["sweep", "--model", str(setup / "model"), "--task", "counterfact", "--data", str(setup / "counterfact.json"),
            "--mode", "selection", *GRID, "--out", str(out), "--quiet", *extra]


@pytest.fixture(scope="module")
def data_root(setup):
    """A data root in the shared layout: CounterFact's validation file and FEVER's paper_dev (invented claims)."""
    root = setup / "data"
    (root / "counterfact").mkdir(parents=True)
    (root / "counterfact" / "counterfact-val.json").write_text((setup / "counterfact.json").read_text())
    (root / "fever").mkdir()
    lines = [json.dumps({"id": i, "label": label, "claim": claim, "evidence": []}) for i, (claim, label) in enumerate(CLAIMS * 2)]
    (root / "fever" / "paper_dev.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_selection_run_killed_and_resumed_equals_uninterrupted(setup, tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    at_kill = []
    killer = threading.Thread(target=lambda: at_kill.append(run_and_kill(selection_argv(setup, killed), killed)))
    killer.start()
    assert main(selection_argv(setup, full)) == 0
    killer.join()
    assert 3 <= at_kill[0] < 37
    assert json.loads((killed / "timing.json").read_text())["val"]["wall_s"] > 0  # the killed session's seconds count
    assert main(selection_argv(setup, killed)) == 0
    assert (killed / RESULTS_FILE).read_bytes() == (full / RESULTS_FILE).read_bytes()

    rows = read_csv(full / RESULTS_FILE)
    validation = [r for r in rows if r["split"] == "val"]
    test = [r for r in rows if r["split"] == "test"]
    assert len(validation) == 37 and {r["n"] for r in validation} == {4}  # 10 cases x 2 prompts: the first 4 items
    tested = {(r["tau"], r["layer"], r["rho"]) for r in test}
    assert ("none", None, None) in tested and {t for t, _, _ in tested} == {"none", "fc_in", "fc_out"}
    assert {r["n"] for r in test} == {16}
    assert json.loads((full / "timing.json").read_text())["val"]["cpu_s"] > 0

    assert main(["report", str(full)]) == 0
    report = (full / "report.md").read_text()
    assert "Selection run" in report and "| base |" in report and (full / "heatmap_accuracy.png").stat().st_size


def test_a_directory_of_another_mode_is_refused(setup, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(selection_argv(setup, out, "--layers", "2", "--rhos", "0.1")) == 0
    capsys.readouterr()
    argv = [a for a in selection_argv(setup, out, "--layers", "2", "--rhos", "0.1") if a != "selection"]
    argv[argv.index("--mode") + 1:argv.index("--mode") + 1] = ["exhaustive"]
    _assert_one_line_error(capsys, main(argv), "holds a selection run, not a exhaustive one")
    _assert_one_line_error(capsys, main(selection_argv(setup, out, "--layers", "1", "--rhos", "0.1")), "holds a different run")


def test_racing_run_marks_stopped_variants_and_never_selects_them(setup, tmp_path, monkeypatch):
    """The command's bookkeeping of racing: looks at 1, 2 and 4 validation items (``--racing-first 1``), stopped
    variants recorded with their partial counts and ``raced`` = 1, on validation only, and never tested.

    The tiny random model scores every variant alike, so the sign test alone would stop none here (it is tested on
    controlled scores in tests/test_protocol.py); the stopping rule is replaced by one that keeps, after the first
    look, only each τ's first variant, so that the command's handling of stopped variants is what is tested."""
    from laser_jax import protocol

    looks = []

    def first_of_each_tau(alive, seen, level):
        looks.append(len(next(iter(seen.values()))))
        return [iv for iv in alive if iv == next(other for other in alive if other.tau == iv.tau)]

    monkeypatch.setattr(protocol, "survivors", first_of_each_tau)
    out = tmp_path / "race"
    assert main(selection_argv(setup, out, "--racing", "--racing-first", "1")) == 0
    rows = read_csv(out / RESULTS_FILE)
    run = json.loads((out / "run.json").read_text())
    assert run["args"]["racing"] == {"delta": 0.05, "first": 1, "growth": 2.0, "seed": 0}
    assert looks == [1, 2] and (out / "race" / "look1.npz").exists()  # looks at 1 and 2 items; the last is all 4
    raced = [row for row in rows if row.get("raced")]
    assert len(raced) == 2 * 3 * 6 - 2  # 2 taus x 3 layers x 6 rhos, less each tau's survivor
    for row in raced:
        assert row["split"] == "val" and row["n"] == 1
    survivors = [row for row in rows if row["split"] == "val" and row["tau"] != "none" and not row.get("raced")]
    assert {(row["tau"], row["layer"], row["rho"]) for row in survivors} == {("fc_in", 0, 0.5), ("fc_out", 0, 0.5)}
    assert all(row["n"] == 4 for row in survivors)
    tested = {(row["tau"], row["layer"], row["rho"]) for row in rows if row["split"] == "test" and row["tau"] != "none"}
    assert tested == {("fc_in", 0, 0.5), ("fc_out", 0, 0.5)}
    assert not any(r.get("raced") for r in rows if r["split"] == "test")


def test_table_runs_each_task_and_writes_table_1(setup, data_root, tmp_path, capsys):
    argv = ["table", "--model", str(setup / "model"), "--tasks", "counterfact,fever", "--data-root", str(data_root),
            "--layers", "1-2", "--rhos", "0.5,0.1", "--out", str(tmp_path / "t"), "--quiet"]
    assert main(argv) == 0
    assert variant_readouts._cache_size() == 0  # each task's programs are dropped after it (Linux's map-count limit)
    table = read_csv(tmp_path / "t" / "table.csv")
    assert [r["task"] for r in table] == ["counterfact", "fever"]
    fever = table[1]
    assert fever["n_val"] == 4 and fever["n_test"] == 16 and fever["tau"] in ("fc_in", "fc_out")  # MLP taus by default
    assert 0.0 <= fever["base_auc"] <= 1.0 and table[0]["base_auc"] is None  # AUC for the two-way choice task only
    assert [r["scored_by"] for r in table] == ["top-1", "choice"]
    fever_rows = read_csv(tmp_path / "t" / "fever" / RESULTS_FILE)
    base_test = next(r for r in fever_rows if r["tau"] == "none" and r["split"] == "test")
    assert fever["base_accuracy"] == base_test["accuracy"] and fever["base_auc"] == base_test["auc"]
    markdown = (tmp_path / "t" / "table.md").read_text()
    assert "| fever | choice |" in markdown and "record cap" in markdown and (tmp_path / "t" / "table.png").stat().st_size
    assert f"```\n{shlex.join(['laser-jax', *argv])}\n```" in markdown  # the exact command, at the top
    before = (tmp_path / "t" / "fever" / RESULTS_FILE).read_bytes()
    assert main(argv) == 0  # finished: resumes to nothing and rewrites the same table
    assert (tmp_path / "t" / "fever" / RESULTS_FILE).read_bytes() == before
    assert read_csv(tmp_path / "t" / "table.csv")[1]["laser_accuracy"] == fever["laser_accuracy"]
    (tmp_path / "t" / "truthfulqa").mkdir()  # a task dir without a finished run is left out of the table
    argv[argv.index("counterfact,fever")] = "fever"
    assert main(argv) == 0  # one task again: the table keeps the other finished task's row, in the paper's order
    untimed = lambda rows: [{k: v for k, v in row.items() if k not in ("cpu_s", "wall_s")} for row in rows]  # noqa: E731
    assert untimed(read_csv(tmp_path / "t" / "table.csv")) == untimed(table)  # a resumed run adds its seconds

    side = side_by_side({"tiny": tmp_path / "t", "unrun": tmp_path / "none"}).splitlines()  # models side by side
    assert len(side) == 4 and side[1] == "|---|---|---|---|---|"
    assert side[3] == (f"| fever | {100 * fever['base_accuracy']:.2f} → {100 * fever['laser_accuracy']:.2f} | "
                       f"{fever['layer']}, {fever['tau']}, {fever['rho']:g} | – | – |")


def test_table_scores_a_generation_task_by_greedy_decoding_on_test(setup, tmp_path):
    """HotpotQA is selected by top-1 like the other tasks; its table row adds the paper's own score, greedy decoding on
    the test part, for the base and the selected variant. One gold is planted from the base's own continuation, so the
    base gets at least that item right."""
    model = load_model(setup / "model")
    task = get_task("hotpotqa")
    records = [{"question": prompt, "answer": answer} for prompt, answer, _ in FACTS]
    path = tmp_path / "data" / "hotpotqa" / "hotpot_dev_v1_simplified.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(records))
    planted = 6  # a test item (the first 2 of 10 are validation) whose continuation in this tiny model is letters, not spaces
    example = task.examples(task.load(str(path))[planted:planted + 1], model.tokenizer)
    records[planted]["answer"] = generation_accuracy(model, example, ["-"], 15).continuations[0].strip()[:2]
    path.write_text(json.dumps(records))
    root = tmp_path / "data"
    argv = ["table", "--model", str(setup / "model"), "--tasks", "hotpotqa", "--data-root", str(root), "--layers", "1-2",
            "--rhos", "0.5,0.1", "--out", str(tmp_path / "t"), "--quiet"]
    assert main(argv) == 0
    row = read_csv(tmp_path / "t" / "table.csv")[0]
    record = json.loads((tmp_path / "t" / "hotpotqa" / "generation.json").read_text())
    assert record["variant"] == {"layer": row["layer"], "tau": row["tau"], "rho": row["rho"]} and record["n"] == 8

    items = task.load(str(path))
    examples = task.examples(items, model.tokenizer)[2:]
    golds = [item.answer for item in items][2:]
    base = generation_accuracy(model, examples, golds, 15)
    reduced = generation_accuracy(laser.apply(model, laser.Intervention(row["layer"], row["tau"], row["rho"])), examples,
                                  golds, 15)
    assert base.correct[planted - 2] and record["base"]["correct"] == sum(base.correct) >= 1
    assert record["laser"]["correct"] == sum(reduced.correct)
    assert (row["base_generation"], row["laser_generation"]) == (base.accuracy, reduced.accuracy)
    assert row["scored_by"] == "top-1" and f"| {100 * base.accuracy:.2f} → {100 * reduced.accuracy:.2f} |" in (
        tmp_path / "t" / "table.md").read_text()


@pytest.mark.parametrize("tasks,root,expected", [
    ("counterfact,nope", True, "unknown task 'nope'"),
    ("counterfact", False, "needs its data: give --data-root"),
    ("hotpotqa", True, "does not exist"),
])
def test_table_errors_are_one_line(setup, data_root, tmp_path, capsys, tasks, root, expected, monkeypatch):
    monkeypatch.delenv("LASER_JAX_DATA", raising=False)
    argv = ["table", "--model", str(setup / "model"), "--tasks", tasks, "--out", str(tmp_path / "t")]
    _assert_one_line_error(capsys, main(argv + (["--data-root", str(data_root)] if root else [])), expected)
    assert not (tmp_path / "t").exists()


def test_compose_then_apply_its_edits(setup, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(selection_argv(setup, run, "--layers", "1-2", "--rhos", "0.5,0.05")) == 0
    capsys.readouterr()
    assert main(["compose", str(run), "--quiet"]) == 0
    record = json.loads((run / "compose.json").read_text())
    assert record["trials"] and {t["edit"].split(":")[0] for t in record["trials"]} == {"fc_in", "fc_out"}
    assert [t["edit"] for t in record["trials"]][0].split(":")[1] == "2"  # the largest layer first
    assert set(record["validation"]) == {"base", "composed"} and "accuracy" in record["test"]["composed"]
    kept = [t["edit"] for t in record["trials"] if t["kept"]]
    assert record["edits"] == kept and kept  # this grid's composition keeps steps, so apply has something to check
    out = tmp_path / "ckpt"
    assert main(["apply", "--model", str(setup / "model"), "--edits", str(run / "compose.json"), "--out", str(out)]) == 0
    steps = [laser.Intervention(int(layer), tau, float(rho)) for tau, layer, rho in (e.split(":") for e in kept)]
    expected = laser.apply(load_model(setup / "model"), steps)
    restored = load_model(out)
    for tau in ("fc_in", "fc_out"):
        assert (restored.params["blocks"][tau] == expected.params["blocks"][tau]).all()


def test_compose_and_apply_errors_are_one_line(setup, tmp_path, capsys):
    whole = tmp_path / "whole"
    argv = ["sweep", "--model", str(setup / "model"), "--task", "counterfact", "--data", str(setup / "counterfact.json"),
            "--split", "all", "--layers", "2", "--taus", "fc_in", "--rhos", "0.1", "--out", str(whole), "--quiet"]
    assert main(argv) == 0
    capsys.readouterr()
    _assert_one_line_error(capsys, main(["compose", str(whole)]), "has no validation rows")
    for edits, expected in ((["fc_in:99:0.1"], "out of range"), (["fc_up:1:0.1"], "fc_up"), ("x", "not a laser-jax composition file")):
        path = tmp_path / "compose.json"
        path.write_text(json.dumps({"edits": edits}) if isinstance(edits, list) else edits)
        code = main(["apply", "--model", str(setup / "model"), "--edits", str(path), "--out", str(tmp_path / "o")])
        _assert_one_line_error(capsys, code, expected)
    _assert_one_line_error(capsys, main(["apply", "--model", str(setup / "model"), "--out", str(tmp_path / "o")]),
                           "needs --edit")


def test_screened_selection_sweeps_the_screens_top_variants_only(setup, tmp_path):
    out = tmp_path / "screened"
    assert main(selection_argv(setup, out, "--screen-top", "5")) == 0
    assert json.loads((out / "run.json").read_text())["args"]["screen_top"] == 5
    assert json.loads((out / "timing.json").read_text())["screen"]["cpu_s"] > 0  # the screen's cost is counted

    model = load_model(setup / "model")
    task = get_task("counterfact")
    examples = task.examples(task.load(str(setup / "counterfact.json")), model.tokenizer)
    validation, _ = validation_split(len(examples))
    grid = laser.expand_grid(range(3), ["fc_in", "fc_out"], [0.5, 0.3, 0.2, 0.1, 0.05, 0.02])
    predicted = screen(model, [examples[i] for i in validation], variants=grid).ranked()
    rows = read_csv(out / RESULTS_FILE)
    swept = {(r["tau"], r["layer"], r["rho"]) for r in rows if r["split"] == "val" and r["tau"] != "none"}
    assert swept == {(row.intervention.tau, row.intervention.layer, row.intervention.rho) for row in predicted[:5]}
    tested = {(r["tau"], r["layer"], r["rho"]) for r in rows if r["split"] == "test" and r["tau"] != "none"}
    assert tested and tested <= swept

    stored = read_csv(out / "screen.csv")  # the whole grid's screen, kept for a resumed run
    assert [(r["layer"], r["tau"], r["rho"]) for r in stored] == [(iv.layer, iv.tau, iv.rho) for iv in grid]
    by_key = {row.intervention: row.predicted_change for row in predicted}
    assert [r["predicted_change"] for r in stored] == [by_key[iv] for iv in grid]

    import laser_jax.protocol

    before = (out / RESULTS_FILE).read_bytes()
    with pytest.MonkeyPatch.context() as patch:  # a resumed run reads the stored screen instead of computing it
        patch.setattr(laser_jax.protocol, "validation_screen", lambda *a, **k: pytest.fail("screened again"))
        assert main(selection_argv(setup, out, "--screen-top", "5")) == 0  # nothing left to run
    assert (out / RESULTS_FILE).read_bytes() == before


def test_screen_top_errors_are_one_line(setup, tmp_path, capsys):
    _assert_one_line_error(capsys, main(selection_argv(setup, tmp_path / "a", "--screen-top", "0")),
                           "--screen-top must be at least 1, got 0")
    argv = [a for a in selection_argv(setup, tmp_path / "b", "--screen-top", "3") if a != "selection"]
    argv[argv.index("--mode") + 1:argv.index("--mode") + 1] = ["exhaustive"]
    _assert_one_line_error(capsys, main(argv), "--screen-top prunes the grid of a selection run")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_table_row_intervals_are_recomputed_from_the_stored_scores_alone(setup, data_root, tmp_path, capsys):
    """A row's intervals, difference, McNemar p and AUC intervals follow from the two scores files of its run alone
    (checked against statsmodels where it has the statistic); without the scores the row says "–" and table.md says
    they are missing; --require-scores makes that, and a bootstrap count below 100, one-line errors."""
    import shutil

    import numpy as np
    from statsmodels.stats.contingency_tables import mcnemar
    from statsmodels.stats.proportion import proportion_confint

    from laser_jax import stats
    from laser_jax.results import variant_name
    from laser_jax.table import write_table

    out = tmp_path / "t"
    argv = ["table", "--model", str(setup / "model"), "--tasks", "fever", "--data-root", str(data_root),
            "--layers", "1-2", "--rhos", "0.5,0.1", "--out", str(out), "--quiet", "--bootstrap", "500"]
    assert main(argv) == 0
    row = read_csv(out / "table.csv")[0]
    scores = {}
    for name, key in (("base", ("none", None, None)), ("laser", (row["tau"], row["layer"], row["rho"]))):
        test = sorted((r for r in read_csv(out / "fever" / "scores" / f"{variant_name(key)}.csv") if r["split"] == "test"),
                      key=lambda r: r["index"])
        scores[name] = test
    base = np.array([r["correct"] for r in scores["base"]], bool)
    laser = np.array([r["correct"] for r in scores["laser"]], bool)
    assert len(base) == row["n_test"] == 16 and base.mean() == row["base_accuracy"] and laser.mean() == row["laser_accuracy"]
    for name, outcomes in (("base", base), ("laser", laser)):
        low, high = proportion_confint(int(outcomes.sum()), len(outcomes), alpha=0.05, method="wilson")
        assert (row[f"{name}_low"], row[f"{name}_high"]) == pytest.approx((low, high), abs=1e-12)
    b, c = int((base & ~laser).sum()), int((laser & ~base).sum())
    both, neither = int((base & laser).sum()), int((~base & ~laser).sum())
    assert row["mcnemar_p"] == pytest.approx(mcnemar([[both, b], [c, neither]], exact=True).pvalue, rel=1e-12)
    assert row["holm_p"] == pytest.approx(row["mcnemar_p"])  # one row: Holm changes nothing
    difference = stats.paired_bootstrap(base, laser, resamples=500, seed=0)
    assert (row["difference"], row["difference_low"], row["difference_high"]) == pytest.approx(
        (difference.value, difference.low, difference.high), abs=1e-12)
    for name in ("base", "laser"):  # FEVER is a two-way choice task: the AUC of the stored log-prob margin
        margin = np.array([r["choice1_logprob"] - r["choice0_logprob"] for r in scores[name]])
        auc = stats.auc_interval(margin, np.array([r["label"] for r in scores[name]]) == 1, resamples=500, seed=0)
        assert auc.value == pytest.approx(row[f"{name}_auc"], abs=1e-12)
        assert (row[f"{name}_auc_low"], row[f"{name}_auc_high"]) == pytest.approx((auc.low, auc.high), abs=1e-12)
    markdown = (out / "table.md").read_text()
    assert "| fever | " in markdown.split("Uncertainty on the test part")[1] and "Scores missing" not in markdown

    stability = json.loads((out / "fever" / "stability.json").read_text())
    assert (stability["chosen"]["tau"], stability["chosen"]["layer"], stability["chosen"]["rho"]) == (row["tau"], row["layer"], row["rho"])
    assert row["stability_chosen"] == stability["chosen_share"] and stability["resamples"] == row["stability_resamples"] == 1000
    assert sum(pick["count"] for pick in stability["picks"]) == 1000 and (out / "fever" / "stability.png").exists()

    shutil.rmtree(out / "fever" / "scores")  # as in a committed run: scores/ is git-ignored, scores.npz is not
    write_table(out, ["fever"], resamples=500)
    assert read_csv(out / "table.csv")[0] == row  # every number again, from scores.npz alone
    (out / "fever" / "scores.npz").unlink()
    write_table(out, ["fever"])
    row = read_csv(out / "table.csv")[0]
    assert row["mcnemar_p"] is None and row["base_low"] is None and row["laser_accuracy"] is not None
    assert row["stability_chosen"] is None
    assert "Scores missing for fever" in (out / "table.md").read_text() and "No stability for fever" in (out / "table.md").read_text()
    capsys.readouterr()
    assert main(argv + ["--require-scores"]) != 0  # the runs resume to nothing (their progress lines), then the error
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("laser-jax: error: ") and "scores missing for the row of fever" in err[-1]
    assert not any("Traceback" in line for line in err)
    _assert_one_line_error(capsys, main(argv[:-1] + ["99"]), "a bootstrap needs at least 100 resamples, got 99")
    _assert_one_line_error(capsys, main(argv + ["--stability", "50"]), "a bootstrap needs at least 100 resamples, got 50")
    _assert_one_line_error(capsys, main(argv + ["--split-seed", "3"]), "holds a different run (split_seed=None, now 3)")


def test_split_seed_draws_a_random_validation_fifth_and_is_kept_by_the_run(setup, tmp_path, capsys):
    from laser_jax.results import load_scores

    seeded, plain = tmp_path / "seeded", tmp_path / "plain"
    assert main(selection_argv(setup, seeded, "--layers", "2", "--rhos", "0.1", "--split-seed", "3")) == 0
    assert main(selection_argv(setup, plain, "--layers", "2", "--rhos", "0.1")) == 0
    assert json.loads((seeded / "run.json").read_text())["args"]["split_seed"] == 3
    assert "split_seed" not in json.loads((plain / "run.json").read_text())["args"]  # no new key without the flag
    n = 20  # 10 cases x 2 prompts
    for directory, seed in ((seeded, 3), (plain, None)):
        stored = load_scores(directory, ("none", None, None))
        validation, test = validation_split(n, seed=seed)
        assert [r["index"] for r in stored if r["split"] == "val"] == validation.tolist()
        assert [r["index"] for r in stored if r["split"] == "test"] == test.tolist()
    assert validation_split(n, seed=3)[0].tolist() != list(range(4))
    assert main(selection_argv(setup, seeded, "--layers", "2", "--rhos", "0.1", "--split-seed", "3")) == 0  # resumes
    capsys.readouterr()
    _assert_one_line_error(capsys, main(selection_argv(setup, seeded, "--layers", "2", "--rhos", "0.1")),
                           "holds a different run (split_seed=3, now None)")
    argv = selection_argv(setup, tmp_path / "all", "--split-seed", "1")
    argv[argv.index("selection")] = "exhaustive"
    _assert_one_line_error(capsys, main(argv + ["--split", "all"]), "--split-seed draws the validation part")
    _assert_one_line_error(capsys, main(selection_argv(setup, tmp_path / "neg", "--split-seed", "-1")),
                           "--split-seed must be at least 0")
