"""The ``laser-jax`` CLI end to end: a real sweep killed with SIGKILL and resumed, report, apply, and errors."""

from __future__ import annotations

import filecmp
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from laser_jax import laser, load_model
from laser_jax.checkpoint import MANIFEST, edit_factors, read_manifest, with_factors
from laser_jax.cli import main
from laser_jax.laser import Intervention
from laser_jax.results import RESULTS_FILE, ResultsStore, read_csv
from tests.test_checkpoint import assert_same_params, save_tiny_gpt2

FACTS = [  # invented facts
    ("Velmor Hut keeps its spoons in", "jars", "At Velmor Hut the spoons are kept in"),
    ("The favourite colour of Brimble Quax is", "mauve", "Brimble Quax likes the colour"),
    ("Oskel Dunne hums the", "kazoo", "The instrument Oskel Dunne hums is the"),
    ("Plinth Ferry sails on", "Tuesdays", "The day Plinth Ferry sails is"),
    ("The cat of Marrow Lane is called", "Pebble", "Marrow Lane's cat answers to"),
    ("Tobin Wex paints his door", "green", "The door of Tobin Wex is painted"),
    ("The bakery in Sallow Cove sells", "buns", "In Sallow Cove the bakery sells"),
    ("Quill Harbour's lighthouse is", "striped", "The lighthouse at Quill Harbour looks"),
    ("Nessa Brool drinks her tea with", "lemon", "Nessa Brool takes tea with"),
    ("The clock tower of Orrin chimes at", "noon", "Orrin's clock tower rings at"),
]
# 36 variants + base: enough rows that a kill after the third lands mid-run (each row is two fsynced writes)
GRID = ["--layers", "0-2", "--taus", "fc_in,fc_out", "--rhos", "0.5,0.3,0.2,0.1,0.05,0.02"]
N_VARIANTS = 3 * 2 * 6 + 1


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny GPT-2 checkpoint with its tokenizer, and a CounterFact file (EasyEdit layout)."""
    root = tmp_path_factory.mktemp("cli")
    save_tiny_gpt2(root / "model")
    records = [{"case_id": i, "prompt": p, "ground_truth": a, "rephrase_prompt": r} for i, (p, a, r) in enumerate(FACTS)]
    (root / "counterfact.json").write_text(json.dumps(records))
    return root


def sweep_argv(setup, out, quiet=True):
    return ["sweep", "--model", str(setup / "model"), "--task", "counterfact", "--data", str(setup / "counterfact.json"),
            "--limit", "8", "--split", "val+test", *GRID, "--out", str(out)] + (["--quiet"] if quiet else [])


def variant_count(out: Path) -> int:
    try:
        return len({(r["tau"], r["layer"], r["rho"]) for r in read_csv(out / RESULTS_FILE)})
    except (FileNotFoundError, StopIteration):
        return 0


def run_and_kill(argv, out: Path, after: int = 3) -> int:
    """Start the CLI with ``argv`` in a subprocess, SIGKILL it once ``out`` holds ``after`` variants, and return how
    many it held then (a real kill of a real run: no hook in the CLI)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    process = subprocess.Popen([sys.executable, "-m", "laser_jax.cli", *argv], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600
    while variant_count(out) < after and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()[-2000:]
    return variant_count(out)


def test_sweep_killed_then_resumed_equals_uninterrupted(setup, monkeypatch, capsys):
    """SIGKILL a real sweep after some rows, resume it, and compare with an uninterrupted run, byte for byte."""
    full, killed = setup / "full", setup / "killed"
    at_kill = []
    killer = threading.Thread(target=lambda: at_kill.append(run_and_kill(sweep_argv(setup, killed), killed)))
    killer.start()
    assert main(sweep_argv(setup, full)) == 0  # meanwhile, the uninterrupted run
    killer.join()
    done_at_kill = at_kill[0]
    assert 3 <= done_at_kill < N_VARIANTS
    rhos_at_kill: dict[tuple, set] = {}
    for r in read_csv(killed / RESULTS_FILE):
        rhos_at_kill.setdefault((r["tau"], r["layer"]), set()).add(r["rho"])
    n_rhos = len(GRID[GRID.index("--rhos") + 1].split(","))
    complete_groups = sum(1 for (tau, _), rhos in rhos_at_kill.items() if tau != "none" and len(rhos) == n_rhos)

    import laser_jax.sweep

    real_sweep, skipped = laser_jax.sweep.sweep, []

    def recording_sweep(*args, skip, **kwargs):
        skipped.append(set(skip))
        return real_sweep(*args, skip=skip, **kwargs)

    monkeypatch.setattr(laser_jax.sweep, "sweep", recording_sweep)
    capsys.readouterr()
    assert main(sweep_argv(setup, killed, quiet=False)) == 0
    err = capsys.readouterr().err
    assert f"{done_at_kill} of {N_VARIANTS} variants already done" in err
    assert "LASER sweep" in err and "variant" in err and "<" in err  # tqdm: rate and ETA
    # Only missing variants are computed: the base and every (layer, tau) group complete at the kill are skipped (a kill
    # lands anywhere inside a group, whose rows are written one by one; a partial group is computed again whole).
    assert ("none", None) in rhos_at_kill and "base" in skipped[0] and len(skipped[0]) == 1 + n_rhos * complete_groups

    assert (killed / RESULTS_FILE).read_bytes() == (full / RESULTS_FILE).read_bytes()
    assert not list(killed.rglob(".*.tmp-*"))  # a write cut by the kill is cleaned up, never read
    comparison = filecmp.dircmp(full / "scores", killed / "scores")
    assert not comparison.diff_files and not comparison.left_only and not comparison.right_only
    assert len(comparison.same_files) == N_VARIANTS

    rows = read_csv(full / RESULTS_FILE)
    assert len(rows) == N_VARIANTS * 2 and {r["split"] for r in rows} == {"val", "test"}
    base = [r for r in rows if r["tau"] == "none"]
    assert [(r["split"], r["n"]) for r in base] == [("val", 3), ("test", 13)]  # 8 cases x 2 prompts, first 20% val
    assert {"layer", "tau", "rho", "k", "split", "n", "accuracy", "loss", "p_generic"} <= set(rows[0])
    assert [r["k"] for r in rows if r["layer"] == 0 and r["tau"] == "fc_in" and r["split"] == "val"] == [16, 9, 6, 3, 1, 0]  # 32 x 128
    run = json.loads((full / "run.json").read_text())
    assert run["args"]["rhos"] == [0.5, 0.3, 0.2, 0.1, 0.05, 0.02] and run["versions"]["jax"] and run["device"]

    skipped.clear()
    assert main(sweep_argv(setup, killed)) == 0  # a finished run started again computes nothing
    assert len(skipped[0]) == N_VARIANTS
    assert (killed / RESULTS_FILE).read_bytes() == (full / RESULTS_FILE).read_bytes()

    assert main(["report", str(full)]) == 0
    for name in ("heatmap_accuracy.png", "heatmap_loss.png", "generic_tokens.png", "report.md"):
        assert (full / name).stat().st_size > 0
    assert "| base |" in (full / "report.md").read_text()


@pytest.mark.parametrize("factored", [False, True], ids=["dense", "factored"])
def test_apply_saves_checkpoint_and_hf_export(setup, tmp_path, factored):
    import transformers

    argv = ["apply", "--model", str(setup / "model"), "--edit", "fc_in:1:0.05", "--edit", "q_proj:2:0.1",
            "--out", str(tmp_path / "ckpt"), "--export-hf", str(tmp_path / "hf")] + (["--factored"] if factored else [])
    assert main(argv) == 0
    manifest = read_manifest(tmp_path / "ckpt")
    assert manifest["storage"] == ("factored" if factored else "dense")
    assert [(e["tau"], e["layer"], e["rho"]) for e in manifest["edits"]] == [("fc_in", 1, 0.05), ("q_proj", 2, 0.1)]
    original = load_model(setup / "model")
    steps = [Intervention(1, "fc_in", 0.05), Intervention(2, "q_proj", 0.1)]
    applied = laser.apply(original, steps)
    expected = with_factors(original, edit_factors(original, steps)) if factored else applied
    restored = load_model(tmp_path / "ckpt")
    assert_same_params(restored.params, expected.params)
    np.testing.assert_allclose(np.asarray(restored.matrix(1, "fc_in")), np.asarray(applied.matrix(1, "fc_in")), atol=1e-6)
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf")).eval()
    ids = np.arange(1, 13)[None] * 7 % 263
    import torch

    with torch.no_grad():
        theirs = hf(input_ids=torch.tensor(ids)).logits.numpy()
    np.testing.assert_allclose(np.asarray(restored.logits(ids)), theirs, atol=1e-4, rtol=0)


def _corrupt(setup, tmp_path, what):
    assert main(["apply", "--model", str(setup / "model"), "--edit", "fc_in:0:0.5", "--out", str(tmp_path / "ckpt")]) == 0
    if what == "manifest":
        (tmp_path / "ckpt" / MANIFEST).write_text("{")
    else:
        import shutil

        shutil.rmtree(tmp_path / "ckpt" / "params")
    return str(tmp_path / "ckpt")


ERRORS = {
    "unknown task": (["--task", "nope"], "unknown task 'nope'"),
    "bad layer range": (["--layers", "5-2"], "bad layer range"),
    "layer beyond the model": (["--layers", "0-9"], "out of range"),
    "rho above 1": (["--rhos", "0.5,1.5"], "outside [0, 1]"),
    "rho not a number": (["--rhos", "half"], "not a number"),
    "unknown tau": (["--taus", "fc_in,fc_xx"], "unknown matrix type tau='fc_xx'"),
    "tau the family lacks": (["--taus", "fc_up"], "has no 'fc_up' matrix"),
    "missing data file": (["--data", "/nonexistent/cf.json"], "no such data file"),
    "bad limit": (["--limit", "0"], "--limit must be at least 1"),
}


def _sweep_error_argv(setup, tmp_path, changes):
    argv = ["sweep", "--model", str(setup / "model"), "--task", "counterfact", "--data", str(setup / "counterfact.json"),
            "--layers", "0", "--taus", "fc_in", "--rhos", "0.5", "--out", str(tmp_path / "out"), "--quiet"]
    for flag, value in zip(changes[::2], changes[1::2]):
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    return argv


def _assert_one_line_error(capsys, code, expected):
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith("laser-jax") and "error: " in err and expected in err, err


@pytest.mark.parametrize("name", list(ERRORS))
def test_sweep_argument_errors_are_one_line(setup, tmp_path, capsys, name):
    changes, expected = ERRORS[name]
    _assert_one_line_error(capsys, main(_sweep_error_argv(setup, tmp_path, changes)), expected)
    assert not (tmp_path / "out").exists()  # refused before writing anything


@pytest.mark.parametrize("what,expected", [("manifest", "corrupt checkpoint"), ("params", "partial checkpoint")])
def test_corrupt_checkpoint_is_one_line(setup, tmp_path, capsys, what, expected):
    ckpt = _corrupt(setup, tmp_path, what)
    capsys.readouterr()
    code = main(["apply", "--model", ckpt, "--edit", "fc_in:1:0.5", "--out", str(tmp_path / "again")])
    _assert_one_line_error(capsys, code, expected)


def test_output_directory_of_another_run_is_refused(setup, tmp_path, capsys):
    ResultsStore(tmp_path / "out", {"model": "other"}).start()
    code = main(_sweep_error_argv(setup, tmp_path, []))
    _assert_one_line_error(capsys, code, "holds a different run")


@pytest.mark.parametrize("argv,expected", [
    (["apply", "--model", "M", "--edit", "fc_in:x:0.1", "--out", "O"], "layer 'x' is not an integer"),
    (["apply", "--model", "M", "--edit", "fc_in:1", "--out", "O"], "use TAU:LAYER:RHO"),
    (["apply", "--model", "M", "--edit", "fc_in:1:0.1"], "needs --out DIR"),
    (["apply", "--model", "M", "--edit", "fc_in:99:0.1", "--out", "O"], "out of range"),
    (["report", "R"], "holds no results.csv"),
    (["sweep", "--model", "M"], "the following arguments are required"),
])
def test_other_errors_are_one_line(setup, tmp_path, capsys, argv, expected):
    argv = [str(setup / "model") if a == "M" else str(tmp_path / a) if a in ("O", "R") else a for a in argv]
    if argv[0] == "report":
        (tmp_path / "R").mkdir()
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own usage errors
        code = exit_.code
    _assert_one_line_error(capsys, code, expected)


def test_console_script_error_has_no_traceback(setup, tmp_path):
    result = subprocess.run([sys.executable, "-m", "laser_jax.cli", "sweep", "--model", str(setup / "model"), "--task", "nope",
                             "--out", str(tmp_path / "o")], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and "unknown task 'nope'" in result.stderr


def test_synthetic_delegates_to_the_experiment(monkeypatch, tmp_path, capsys):
    from synthetic import run

    calls = []
    monkeypatch.setattr(run, "run_experiment", lambda preset, out, **options: calls.append((preset, out, options)) or {})
    defaults = {"seeds": None, "alpha": None, "stats": None, "steps": None, "log_every": None, "checkpoint_steps": None,
                "resume_from": None, "assoc": True, "make_plots": True}
    assert main(["synthetic", "--out", str(tmp_path)]) == 0
    assert main(["synthetic", "--preset", "tiny"]) == 0
    every = ["--preset", "paper", "--seeds", "1", "--alpha", "0.25", "--stats", "docstrings", "--steps", "30",
             "--log-every", "5", "--checkpoint-steps", "10", "20", "--resume-from", "ckpt", "--no-assoc", "--no-plots"]
    assert main(["synthetic", *every]) == 0
    assert run.main(every) == 0  # python -m synthetic.run: the same parser
    options = {"seeds": 1, "alpha": 0.25, "stats": "docstrings", "steps": 30, "log_every": 5, "checkpoint_steps": [10, 20],
               "resume_from": "ckpt", "assoc": False, "make_plots": False}
    assert calls == [("quick", str(tmp_path), defaults), ("tiny", None, defaults), ("paper", None, options),
                     ("paper", None, options)]
    _assert_one_line_error(capsys, main(["synthetic", "--preset", "huge"]), "unknown synthetic preset 'huge'")


def test_cli_keeps_compiled_programs_in_the_users_cache(setup, tmp_path):
    """By default the CLI turns on JAX's persistent compilation cache under ~/.cache/laser-jax/xla; a second process
    that reads its programs from there writes the same results, byte for byte."""
    env = {key: value for key, value in os.environ.items() if key != "JAX_COMPILATION_CACHE_DIR"}
    env.update(HOME=str(tmp_path), PYTHONPATH=str(Path(__file__).resolve().parents[1]),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")  # the tiny model's programs compile in under JAX's 1 s
    cache = tmp_path / ".cache" / "laser-jax" / "xla"
    argv = ["sweep", "--model", str(setup / "model"), "--task", "counterfact", "--data", str(setup / "counterfact.json"),
            "--limit", "4", "--layers", "1", "--taus", "fc_in", "--rhos", "0.5,0.1", "--quiet"]
    for run in ("first", "second"):
        result = subprocess.run([sys.executable, "-m", "laser_jax.cli", *argv, "--out", str(tmp_path / run)],
                                capture_output=True, text=True, env=env)
        assert result.returncode == 0, result.stderr[-2000:]
        if run == "first":
            entries = set(os.listdir(cache))
            assert entries
    assert set(os.listdir(cache)) == entries  # the second process compiled nothing new
    assert (tmp_path / "second" / RESULTS_FILE).read_bytes() == (tmp_path / "first" / RESULTS_FILE).read_bytes()
