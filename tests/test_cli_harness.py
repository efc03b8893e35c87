"""The CLI of issue 29: ``laser-jax apply --export-gguf`` and ``laser-jax lm-eval`` (lm-eval's CLI with our backend)."""

import dataclasses
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
pytest.importorskip("gguf")
pytest.importorskip("lm_eval")

from laser_jax.cli import main  # noqa: E402
from laser_jax.cli.harness import lm_eval_argv  # noqa: E402
from tests.models.hf_tiny_text import save_tiny_text_model  # noqa: E402

EDIT = "fc_in:1:0.25"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    directory = tmp_path_factory.mktemp("llama-text")
    save_tiny_text_model("llama", directory, intermediate_size=64)
    return directory


def one_line_error(capsys, pattern):
    import re

    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(pattern, err), err


def test_apply_exports_a_gguf_file_and_refuses_to_overwrite_it(checkpoint, tmp_path, capsys):
    from laser_jax import load_model
    from laser_jax.gguf import EDITS_KEY, open_gguf

    out = tmp_path / "reduced.gguf"
    argv = ["apply", "--model", str(checkpoint), "--edit", EDIT, "--export-gguf", str(out), "--gguf-type", "q8_0"]
    assert main(argv) == 0
    assert f"exported GGUF file (q8_0): {out}" in capsys.readouterr().out
    reader, architecture = open_gguf(out)
    assert architecture == "llama" and reader.fields[EDITS_KEY].contents() == EDIT
    assert reader.fields["general.file_type"].contents() == 7
    ours, theirs = load_model(out).config, load_model(checkpoint).config
    assert ours.rms_norm_eps == pytest.approx(theirs.rms_norm_eps)  # GGUF stores it as float32
    assert dataclasses.replace(ours, rms_norm_eps=theirs.rms_norm_eps) == theirs
    stamp = out.stat().st_mtime_ns
    assert main(argv) == 2
    one_line_error(capsys, r"^laser-jax: error: output .*reduced\.gguf exists; give --force to replace it$")
    assert out.stat().st_mtime_ns == stamp
    assert main(argv + ["--force"]) == 0


RECORDS = [{"prompt": "The capital of France is", "choices": [" Paris", " Rome"], "label": 0},
           {"prompt": "The sky is", "choices": [" blue", " green"], "label": 0},
           {"prompt": "Water is", "choices": [" hot", " wet"], "label": 1}]


def write_choice_task(folder):
    from tests.test_harness import write_task

    write_task(folder, "cli_choice", RECORDS, "output_type: multiple_choice\ndoc_to_choice: \"{{choices}}\"\n"
               "doc_to_target: \"{{label}}\"\ntarget_delimiter: \"\"\nmetric_list:\n  - metric: acc\n")


def test_lm_eval_runs_lm_eval_with_the_laser_jax_backend(checkpoint, tmp_path, capsys):
    from laser_jax import load_model
    from laser_jax.laser import Intervention, apply
    from laser_jax.sweep import evaluate
    from laser_jax.tasks.common import CHOICE, Task, choice_item

    records = RECORDS
    write_choice_task(tmp_path)
    code = main(["lm-eval", "--model_args", f"model={checkpoint},edit={EDIT}", "--tasks", "cli_choice",
                 "--include_path", str(tmp_path), "--batch_size", "4"])
    assert code == 0
    out = capsys.readouterr().out
    model = apply(load_model(checkpoint), [Intervention(1, "fc_in", 0.25)])
    task = Task(name="cli_choice", scoring=CHOICE, description="", record_items=lambda record: [])
    accuracy = evaluate(model, task.examples([choice_item(r["prompt"], r["choices"], r["label"]) for r in records],
                                             model.tokenizer)).metrics["accuracy"]
    assert "laser-jax" in out and "cli_choice" in out and f"{accuracy:.4f}" in out, out


def test_lm_eval_reports_a_bad_model_argument_on_one_line(checkpoint, tmp_path):
    """In a process of its own, as a user runs it (lm-eval sets up its logging once per process)."""
    import subprocess
    import sys

    write_choice_task(tmp_path)
    done = subprocess.run([sys.executable, "-m", "laser_jax.cli", "lm-eval", "--model_args", f"model={checkpoint},temperature=0",
                           "--tasks", "cli_choice", "--include_path", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "Traceback" not in done.stderr and last.startswith(
        "laser-jax: error: unknown laser-jax model argument(s) temperature (known: model, edits,"), done.stderr


def test_lm_eval_arguments_pass_through():
    assert lm_eval_argv(["--tasks", "t", "-h"]) == ["--model", "laser-jax", "--tasks", "t", "-h"]
    assert lm_eval_argv(["--model", "hf", "--tasks", "t"]) == ["--model", "hf", "--tasks", "t"]
