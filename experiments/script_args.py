"""What the scripts in experiments/ and benchmarks/ share: where the data is, which model, and the benchmarks' grid.

The data root is ``--data-root DIR``, else ``$LASER_JAX_DATA``, else ``../shared/data`` (relative to the current
directory: the commands run from the repository root), as the tests and ``laser-jax table --data-root`` read it. A
task's file under it is the task's own ``default_path`` (:meth:`laser_jax.tasks.common.Task.data_path`), where the CLI
looks for it too. The scripts that serve any model take ``--model`` with the model of their committed results as the
default, so those results reproduce with the commands they record.

The scripts in benchmarks/ import this module by putting experiments/ on ``sys.path``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import NamedTuple, Optional

DATA_ENV = "LASER_JAX_DATA"
DEFAULT_DATA_ROOT = "../shared/data"


def add_data_root(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", metavar="DIR",
                        help=f"folder holding the tasks' data files (default: ${DATA_ENV}, else {DEFAULT_DATA_ROOT})")


def data_root(given: Optional[str] = None) -> Path:
    """``given``, else ``$LASER_JAX_DATA``, else ``../shared/data``; kept relative when given so."""
    return Path(given or os.environ.get(DATA_ENV) or DEFAULT_DATA_ROOT)


def task_data(task: str, root: Optional[str] = None) -> str:
    """The data file of ``task`` under the data root (see :func:`data_root`), as a string."""
    from laser_jax.tasks import get_task

    path = get_task(task).data_path(data_root(root))
    if path is None:
        raise SystemExit(f"task {task} generates its items and has no data file")
    return str(path)


class ModelInfo(NamedTuple):
    label: str  # in titles and figures
    file: str  # what the packaged file is
    n_layers: int


MODELS = {"smollm2": ModelInfo("SmolLM2-135M", "SmolLM2-135M-Instruct (Q4_1 GGUF)", 30),
          "gemma3-270m": ModelInfo("Gemma 3 270M", "Gemma 3 270M (Q4_K_M GGUF)", 18)}


def add_model(parser: argparse.ArgumentParser, default: str = "smollm2") -> None:
    parser.add_argument("--model", default=default,
                        help="a packaged model's name (" + ", ".join(MODELS) + "), a .gguf file, a local directory or a "
                             "hub id (default: %(default)s, the model of the committed results)")


def model_label(model: str) -> str:
    """The model's name in titles: the packaged model's, else the source as given."""
    return MODELS[model].label if model in MODELS else model


def counterfact_setting(parser: argparse.ArgumentParser, layers: str, limit: Optional[int] = None) -> tuple:
    """A benchmark's start: ``--model``, ``--limit``, ``--layers`` and the data root added to ``parser`` (after the
    script's own) and parsed, the load printed. Returns (args, model, CounterFact's examples, the grid of
    ``--layers`` x fc_in, fc_up, fc_out x the paper's seven rho)."""
    from laser_jax import load_model
    from laser_jax.laser import expand_grid
    from laser_jax.selection import PAPER_RHOS
    from laser_jax.tasks import get_task

    add_model(parser)
    parser.add_argument("--limit", type=int, default=limit, help="CounterFact's first records only (default: %(default)s)")
    parser.add_argument("--layers", default=layers, help="first-last layer of the grid (default: %(default)s)")
    add_data_root(parser)
    args = parser.parse_args()
    print(f"load: {os.getloadavg()[0]:.2f}")
    model = load_model(args.model)
    task = get_task("counterfact")
    examples = task.examples(task.load(task_data("counterfact", args.data_root), limit=args.limit), model.tokenizer)
    first, last = (int(x) for x in args.layers.split("-"))
    return args, model, examples, expand_grid(range(first, last + 1), ["fc_in", "fc_up", "fc_out"], PAPER_RHOS)
