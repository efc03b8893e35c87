"""The command line's shared pieces: argument builders used by several commands, and the parsing of their values.

Every option that more than one command takes is defined here once (``--model``, the grid, the task, the devices, the
selection protocol), and so is the reading of its value (layer ranges, τ lists, ρ lists, data sources).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Optional

from laser_jax.devices import DEFAULT_COORDINATOR_TIMEOUT, PRECISIONS
from laser_jax.edits import parse_edit, parse_rhos, read_composition
from laser_jax.errors import DataError, InterventionError

DEFAULT_RHOS = "0.9,0.8,0.6,0.4,0.2,0.1,0.05,0.01"
PAPER_RHOS = (0.9, 0.8, 0.6, 0.2, 0.1, 0.05, 0.01)  # laser_jax.selection.PAPER_RHOS (not imported: it pulls in JAX)
DTYPES = ("float32", "bfloat16", "float16")
MODEL_HELP = "hub id, local checkpoint directory, .gguf file or a packaged model name (smollm2, gemma3-270m)"
DATA_ROOT_ENV = "LASER_JAX_DATA"


# ----------------------------------------------------------------------------- values


def parse_layers(text: str) -> Optional[list[int]]:
    """``"20-29"``, ``"3"``, ``"0-2,5,7-8"`` or ``"all"`` (None) to a sorted list of distinct layers."""
    if text.strip().lower() == "all":
        return None
    layers: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part[1:]:
                first, last = (int(x) for x in part.split("-", 1))
            else:
                first = last = int(part)
        except ValueError:
            raise InterventionError(f"bad layer range {text!r}: use e.g. 20-29, 3 or 0-2,5") from None
        if first < 0 or last < first:
            raise InterventionError(f"bad layer range {part!r} in {text!r}: layers count from 0 and a range goes up (20-29)")
        layers.update(range(first, last + 1))
    return sorted(layers)


def parse_taus(text: str) -> list[str]:
    from laser_jax.laser import TAU_NAMES

    taus = [t.strip() for t in text.split(",") if t.strip()]
    if not taus:
        raise InterventionError("--taus is empty")
    for tau in taus:
        if tau not in TAU_NAMES:
            raise InterventionError(f"unknown matrix type tau={tau!r}; known: {', '.join(TAU_NAMES)}")
    return list(dict.fromkeys(taus))


def dtype(name: str):
    import jax.numpy as jnp

    return jnp.dtype(name)


def data_root(given: Optional[str]) -> Optional[str]:
    """``--data-root`` as given, else ``$LASER_JAX_DATA`` (None when neither is set)."""
    return given or os.environ.get(DATA_ROOT_ENV) or None


def data_source(task, data: Optional[str]) -> Optional[str]:
    """``--data`` as given; else the task's file under ``$LASER_JAX_DATA`` (as that variable says it), else its hub id.

    Paths are recorded as the user wrote them, never made absolute: a run directory names no machine's paths, and a
    resumed run compares the same text.
    """
    if data is not None:
        return data
    if task.generate is not None:
        return None
    root = data_root(None)
    if root and task.default_path and (Path(root) / task.default_path).exists():
        return str(Path(root) / task.default_path)
    if task.hub is not None:
        return task.hub.id
    raise DataError(f"task {task.name} needs --data FILE (or set {DATA_ROOT_ENV} to the data root holding {task.default_path})")


def quiet_libraries() -> None:
    """No progress bars from the data and model libraries: the sweep's bar is the only one."""
    import datasets

    datasets.disable_progress_bars()


def check_counts(args) -> None:
    """The counts a run takes (``--limit``, ``--batch-size``, ``--top-n``, ``--screen-top``) are positive."""
    if getattr(args, "limit", None) is not None and args.limit < 1:
        raise DataError(f"--limit must be at least 1, got {args.limit}")
    if getattr(args, "batch_size", 1) < 1:
        raise DataError(f"--batch-size must be at least 1, got {args.batch_size}")
    if getattr(args, "top_n", 0) < 0:
        raise DataError(f"--top-n must be at least 0, got {args.top_n}")
    if getattr(args, "screen_top", None) is not None and args.screen_top < 1:
        raise DataError(f"--screen-top must be at least 1, got {args.screen_top}")
    if getattr(args, "split_seed", None) is not None and args.split_seed < 0:
        raise DataError(f"--split-seed must be at least 0, got {args.split_seed}")


def edits_of(args) -> list:
    """The steps of ``--edits FILE`` (first) and every ``--edit TAU:LAYER:RHO``."""
    return [*(read_composition(args.edits) if getattr(args, "edits", None) else []),
            *(parse_edit(text) for text in args.edit)]


# ----------------------------------------------------------------------------- builders


def add_model_arguments(parser, required: bool = True) -> None:
    parser.add_argument("--model", required=required, metavar="SRC", help=MODEL_HELP)
    parser.add_argument("--dtype", choices=DTYPES, default="float32", help="parameter dtype")
    parser.add_argument("--revision", help="hub branch, tag or commit of --model")


def add_task_arguments(parser) -> None:
    """The examples of the analysis commands (``screen``, ``removed``)."""
    parser.add_argument("--task", required=True, metavar="NAME", help="task name (e.g. counterfact)")
    parser.add_argument("--data", metavar="FILE", help=f"data file (default: the task's file under ${DATA_ROOT_ENV}, else its hub id)")
    parser.add_argument("--limit", type=int, metavar="N", help="use the first N records")
    parser.add_argument("--split", choices=("val", "all"), default="val",
                        help="val: the first 20%% of the examples, as a sweep's validation split (default); all: every example")
    add_batch_argument(parser)


def add_grid_arguments(parser, rhos: Optional[str] = None) -> None:
    """``--layers`` and ``--taus`` (and ``--rhos`` when a default is given)."""
    parser.add_argument("--layers", default="all", metavar="RANGE", help="layers, e.g. 20-29 or 0-2,5 (default: all)")
    parser.add_argument("--taus", default="fc_in,fc_out", metavar="LIST", help="matrix types, e.g. fc_in,fc_out (default)")
    if rhos is not None:
        parser.add_argument("--rhos", default=rhos, metavar="LIST",
                            help=f"fractions of rank kept (default {rhos}), or mp: each matrix's Marchenko-Pastur rank")


def add_batch_argument(parser) -> None:
    parser.add_argument("--batch-size", type=int, default=32, metavar="B", help="examples per batch (default 32)")


def add_edit_arguments(parser) -> None:
    parser.add_argument("--edit", action="append", default=[], metavar="TAU:LAYER:RHO",
                        help="an edit, e.g. fc_in:27:0.01 (RHO mp: the matrix's Marchenko-Pastur rank; a 4th part "
                             "bottom keeps the removed part, W - W_k); repeat for several")
    parser.add_argument("--edits", metavar="FILE", help="the edits of a composition file (laser-jax compose), applied first")


def add_split_seed_argument(parser) -> None:
    parser.add_argument("--split-seed", type=int, metavar="S",
                        help="validation: a random 20%% of the items drawn with seed S (numpy's permutation), the rest "
                             "test; default: the first 20%%, in file order. A run keeps its seed: resume with the same")


def split_seed_args(args) -> dict:
    """``{"split_seed": S}`` for a run's ``run.json`` when ``--split-seed`` is given, else nothing: runs made without
    the flag record no such key, so they (and every committed run) still resume."""
    return {} if getattr(args, "split_seed", None) is None else {"split_seed": args.split_seed}


def add_protocol_arguments(parser, selection_only: bool = False) -> None:
    """The selection protocol's options (:mod:`laser_jax.protocol`)."""
    if not selection_only:
        parser.add_argument("--mode", choices=("exhaustive", "selection"), default="exhaustive",
                            help="exhaustive: every variant on every item (full heatmaps, default); selection: the grid on "
                                 "validation only, then the base and the selected variants on test")
    parser.add_argument("--top-n", type=int, default=0, metavar="N",
                        help="selection: also test the N best variants on validation (default: best overall and per tau)")
    parser.add_argument("--racing", action="store_true",
                        help="selection: score validation in growing looks and stop variants that cannot reach their tau's leader")
    parser.add_argument("--racing-delta", type=float, default=0.05, metavar="D",
                        help="racing: probability allowed of stopping the best variant of a tau (default 0.05)")
    parser.add_argument("--racing-first", type=int, default=256, metavar="N",
                        help="racing: validation items in the first look; each later look doubles (default 256)")
    parser.add_argument("--screen-top", type=int, metavar="N",
                        help="selection: sweep only the N variants the first-order screen (laser-jax screen) predicts to "
                             "lower the validation loss most; a heuristic, off by default")


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    """The device and multi-process options of a command that runs the sweep engine (:mod:`laser_jax.devices`)."""
    from_env = "default $JAX_COORDINATOR_ADDRESS, $JAX_NUM_PROCESSES, $JAX_PROCESS_ID"
    group = parser.add_argument_group("devices and hosts", f"({from_env}, or what Slurm, Open MPI, Kubernetes or a TPU pod set)")
    group.add_argument("--coordinator", metavar="HOST:PORT", help="address of process 0 of a multi-process run")
    group.add_argument("--num-processes", type=int, metavar="N", help="processes in the run, one per host or GPU")
    group.add_argument("--process-id", type=int, metavar="I", help="this process, 0 to N-1; process 0 writes --out")
    group.add_argument("--coordinator-timeout", type=int, default=DEFAULT_COORDINATOR_TIMEOUT, metavar="S",
                       help=f"seconds to wait for every process to join (default {DEFAULT_COORDINATOR_TIMEOUT})")
    group.add_argument("--mesh", metavar="AXES",
                       help="device mesh over the axes variants, examples, model, e.g. variants=2,model=4; "
                            "examples takes the devices left (default: every device on examples, plus a model axis "
                            "when the parameters would take over half a device's memory)")
    group.add_argument("--precision", choices=PRECISIONS,
                       help="precision of every matmul (jax.default_matmul_precision); default: highest for float32 "
                            "parameters, so results match transformers on any backend, else default")


def setup_devices(args):
    """:func:`laser_jax.devices.setup_devices` from the device options; refuses what a multi-process run does not support."""
    from laser_jax.devices import setup_devices as setup

    devices = setup(coordinator=args.coordinator, num_processes=args.num_processes, process_id=args.process_id,
                    coordinator_timeout=args.coordinator_timeout, mesh=args.mesh, precision=args.precision,
                    dtype=getattr(args, "dtype", "float32"))
    if devices.num_processes > 1 and getattr(args, "racing", False):
        raise DataError("--racing runs in one process only (its looks are resumed from files process 0 writes)")
    return devices


__all__ = ["parse_layers", "parse_taus", "parse_rhos", "parse_edit", "read_composition", "dtype", "data_root",
           "data_source", "quiet_libraries", "check_counts", "edits_of", "add_model_arguments", "add_task_arguments",
           "add_grid_arguments", "add_batch_argument", "add_edit_arguments", "add_protocol_arguments",
           "add_device_arguments", "setup_devices", "DEFAULT_RHOS", "PAPER_RHOS", "DATA_ROOT_ENV"]
