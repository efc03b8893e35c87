"""The committed run directories resume with the commands they record: each ``run.json``'s ``argv`` still parses, and
the arguments that command would record (model and data as given, never made absolute) equal the stored ones, so
``ResultsStore`` accepts the directory instead of refusing it as another run's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from laser_jax.cli import build_parser
from laser_jax.cli.arguments import data_root, data_source, parse_layers, parse_rhos, parse_taus
from laser_jax.cli.runs import sweep_run_args
from laser_jax.cli.table import table_data, table_run_args
from laser_jax.models import get_family
from laser_jax.models.base import MLP_TAUS
from laser_jax.tasks import get_task

REPO = Path(__file__).resolve().parents[1]
RUNS = sorted(path for path in (REPO / "experiments" / "results").rglob("run.json")
              if json.loads(path.read_text()).get("argv", [None, None])[1] in ("sweep", "table"))
PACKAGED_FAMILY = {"smollm2": "llama", "gemma3-270m": "gemma3"}  # the packaged models' families (no model loaded)


def test_the_committed_runs_are_found():
    assert len(RUNS) >= 20


@pytest.mark.parametrize("run_file", RUNS, ids=[str(p.parent.relative_to(REPO / "experiments" / "results")) for p in RUNS])
def test_recorded_command_reproduces_the_recorded_arguments(run_file, monkeypatch):
    record = json.loads(run_file.read_text())
    monkeypatch.chdir(REPO)  # the commands were run from the repository root
    monkeypatch.delenv("LASER_JAX_DATA", raising=False)
    args = build_parser().parse_args(record["argv"][1:])
    layers, rhos = parse_layers(args.layers), parse_rhos(args.rhos)
    if args.command == "sweep":
        task = get_task(args.task)
        assert args.data is not None or task.generate is not None
        expected = sweep_run_args(args, task.name, data_source(task, args.data), layers, parse_taus(args.taus), rhos)
    else:
        task = get_task(record["args"]["task"])
        root = data_root(args.data_root)
        if task.generate is None and not (Path(root) / task.default_path).exists():
            pytest.skip(f"{root}/{task.default_path} is not here")
        family = get_family(PACKAGED_FAMILY[args.model])
        taus = parse_taus(args.taus) if args.taus else [tau for tau in MLP_TAUS if tau in family.taus]
        expected = table_run_args(args, task.name, table_data(task, root), layers, taus, rhos)
    assert expected == record["args"]
    assert not any(str(value).startswith("/") for value in record["args"].values())
