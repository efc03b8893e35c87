"""The ``laser-jax`` command line: argument parsing and orchestration only.

Subcommands: ``sweep`` (resumable LASER grid search, :mod:`laser_jax.sweep` +
:mod:`laser_jax.results`), ``report`` (:mod:`laser_jax.report`), ``apply``
(:mod:`laser_jax.laser`, :mod:`laser_jax.checkpoint`, :mod:`laser_jax.export`)
and ``synthetic`` (the no-download synthetic experiment, :mod:`synthetic`).
Any :class:`~laser_jax.errors.LaserJaxError` ends the program with one line,
``laser-jax: error: <message>``, and exit code 2 (argparse's own usage errors
also exit 2).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from laser_jax.errors import ConfigError, DataError, InterventionError, LaserJaxError

PROG = "laser-jax"
EXIT_ERROR = 2
DEFAULT_RHOS = "0.9,0.8,0.6,0.4,0.2,0.1,0.05,0.01"
ROW_DELAY_ENV = "LASER_JAX_ROW_DELAY"  # seconds to pause after each recorded variant (tests kill runs midway)


# ----------------------------------------------------------------------------- argument values


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


def parse_rhos(text: str) -> list[float]:
    rhos = []
    for part in text.split(","):
        try:
            rho = float(part)
        except ValueError:
            raise InterventionError(f"rho {part.strip()!r} is not a number (give e.g. --rhos 0.1,0.01)") from None
        if not 0.0 <= rho <= 1.0:
            raise InterventionError(f"rho={rho:g} is outside [0, 1] (rho is the fraction of the rank kept)")
        rhos.append(rho)
    return list(dict.fromkeys(rhos))


def parse_edit(text: str):
    """``fc_in:27:0.01`` (τ, layer, ρ) to an :class:`~laser_jax.laser.Intervention`."""
    from laser_jax.laser import Intervention

    parts = text.split(":")
    if len(parts) != 3:
        raise InterventionError(f"bad --edit {text!r}: use TAU:LAYER:RHO, e.g. fc_in:27:0.01")
    tau, layer, rho = parts
    try:
        layer = int(layer)
    except ValueError:
        raise InterventionError(f"bad --edit {text!r}: layer {layer!r} is not an integer") from None
    (rho,) = parse_rhos(rho)
    return Intervention(layer, tau.strip(), rho)


# ----------------------------------------------------------------------------- the parser


class Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors: ``laser-jax sweep: error: ... (see --help)``, exit 2."""

    def error(self, message):
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description="Layer-selective rank reduction (LASER) for Hugging Face language models, in JAX.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    sweep = commands.add_parser("sweep", help="evaluate every (layer, tau, rho) reduction of a model on a task (resumable)",
                                description="Evaluate the base model and every (layer, tau, rho) rank reduction on a task. "
                                            "Rows are written as they finish; rerun the same command to resume.")
    sweep.add_argument("--model", required=True, metavar="SRC", help="hub id, local checkpoint directory or .gguf file")
    sweep.add_argument("--task", required=True, metavar="NAME", help="task name (e.g. counterfact)")
    sweep.add_argument("--data", metavar="FILE", help="data file (default: the task's file under $LASER_JAX_DATA, else its hub id)")
    sweep.add_argument("--limit", type=int, metavar="N", help="use the first N records")
    sweep.add_argument("--split", choices=("all", "val+test"), default="val+test",
                       help="val+test: first 20%% validation, rest test (default); all: one split")
    sweep.add_argument("--layers", default="all", metavar="RANGE", help="layers, e.g. 20-29 or 0-2,5 (default: all)")
    sweep.add_argument("--taus", default="fc_in,fc_out", metavar="LIST", help="matrix types, e.g. fc_in,fc_out (default)")
    sweep.add_argument("--rhos", default=DEFAULT_RHOS, metavar="LIST", help=f"fractions of rank kept (default {DEFAULT_RHOS})")
    sweep.add_argument("--out", required=True, metavar="DIR", help="run directory: results.csv, scores/, run.json")
    sweep.add_argument("--batch-size", type=int, default=32, metavar="B", help="examples per batch (default 32)")
    sweep.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32", help="parameter dtype")
    sweep.add_argument("--revision", help="hub branch, tag or commit of --model")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    sweep.set_defaults(func=cmd_sweep)

    report = commands.add_parser("report", help="heatmaps and a base-vs-best table from a sweep directory",
                                 description="Write heatmap_accuracy.png, heatmap_loss.png, generic_tokens.png (when the task "
                                             "has generic probe tokens) and report.md into DIR.")
    report.add_argument("dir", metavar="DIR", help="a sweep's --out directory")
    report.add_argument("--out", metavar="DIR", help="write the files here instead of DIR")
    report.set_defaults(func=cmd_report)

    apply = commands.add_parser("apply", help="apply rank reductions and save the reduced model",
                                description="Apply one or more LASER edits and save the reduced model with Orbax "
                                            "(load it back with laser_jax.load_model(DIR)) and/or as a Hugging Face directory.")
    apply.add_argument("--model", required=True, metavar="SRC", help="hub id, local checkpoint directory or .gguf file")
    apply.add_argument("--edit", action="append", required=True, metavar="TAU:LAYER:RHO", type=str,
                       help="an edit, e.g. fc_in:27:0.01; repeat for several")
    apply.add_argument("--out", metavar="DIR", help="Orbax checkpoint directory")
    apply.add_argument("--factored", action="store_true", help="store truncated matrices as U_k, S_k, V_k only")
    apply.add_argument("--export-hf", metavar="DIR", help="also write a Hugging Face directory (config.json + model.safetensors)")
    apply.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32", help="parameter dtype")
    apply.add_argument("--revision", help="hub branch, tag or commit of --model")
    apply.set_defaults(func=cmd_apply)

    dynamics = commands.add_parser("dynamics", help="LASER across training checkpoints: base vs best variant at each step",
                                   description="For each checkpoint of one series, sweep the grid, select the best variant on "
                                               "the first 20%% (validation) and report base vs best on the rest, with P(answer) "
                                               "and P(generic tokens); writes dynamics.csv/json/png. Rerun to resume.")
    series = dynamics.add_mutually_exclusive_group(required=True)
    series.add_argument("--checkpoints", nargs="+", metavar="DIR", help="local checkpoint directories (HF or laser-jax)")
    series.add_argument("--model", metavar="ID", help="a hub model whose --revisions form the series")
    dynamics.add_argument("--revisions", metavar="LIST", help="hub revisions of --model, e.g. step1000,step2000")
    source = dynamics.add_mutually_exclusive_group(required=True)
    source.add_argument("--task", metavar="NAME", help="task name (tokenised with each checkpoint's tokenizer)")
    source.add_argument("--examples", metavar="FILE", help="token-id examples (laser_jax.examples.save_examples; the "
                                                          "synthetic trainer writes examples.json)")
    dynamics.add_argument("--data", metavar="FILE", help="the task's data file (as for sweep)")
    dynamics.add_argument("--limit", type=int, metavar="N", help="use the first N records of the task")
    dynamics.add_argument("--layers", default="all", metavar="RANGE", help="layers, e.g. 20-29 (default: all)")
    dynamics.add_argument("--taus", default="fc_in,fc_out", metavar="LIST", help="matrix types (default fc_in,fc_out)")
    dynamics.add_argument("--rhos", default=DEFAULT_RHOS, metavar="LIST", help=f"fractions of rank kept (default {DEFAULT_RHOS})")
    dynamics.add_argument("--track", action="append", default=[], metavar="TAU:LAYER:RHO",
                          help="a variant to draw at every checkpoint (not selected), e.g. mlp:1:0; repeatable")
    dynamics.add_argument("--out", required=True, metavar="DIR", help="run directory")
    dynamics.add_argument("--batch-size", type=int, default=32, metavar="B", help="examples per batch (default 32)")
    dynamics.set_defaults(func=cmd_dynamics)

    synthetic = commands.add_parser("synthetic", help="run the synthetic LASER experiment (no downloads)",
                                    description="Train small transformers on synthetic data and measure the effect of LASER on them.")
    synthetic.add_argument("--preset", default="quick", metavar="NAME",
                           help="quick (CPU demo, default), paper (GPU-sized) or tiny (smoke test)")
    synthetic.add_argument("--out", metavar="DIR", help="write summary.json, metrics.json and plots here")
    synthetic.set_defaults(func=cmd_synthetic)
    return parser


def _version() -> str:
    from laser_jax import __version__

    return __version__


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``laser-jax`` console script; returns the exit code."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = [PROG, *argv]
    try:
        return args.func(args) or 0
    except LaserJaxError as error:
        message = " ".join(str(error).split("\n")[0].split()) or type(error).__name__
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


# ----------------------------------------------------------------------------- report


def cmd_report(args) -> int:
    from laser_jax.report import write_report

    for path in write_report(args.dir, Path(args.out) if args.out else None):
        print(path)
    return 0


# ----------------------------------------------------------------------------- apply


def cmd_apply(args) -> int:
    steps = [parse_edit(text) for text in args.edit]
    if not args.out and not args.export_hf:
        raise InterventionError("apply needs --out DIR (Orbax checkpoint) and/or --export-hf DIR")
    if args.factored and not args.out:
        raise InterventionError("--factored describes the Orbax checkpoint: give --out DIR")
    from laser_jax import checkpoint, laser
    from laser_jax.loading import load_model

    model = load_model(args.model, revision=args.revision, dtype=_dtype(args.dtype))
    if args.factored:  # the model is defined by its stored factors (== laser.apply up to float rounding)
        factors = checkpoint.edit_factors(model, steps)
        reduced = checkpoint.with_factors(laser.apply(model, steps), factors)
    else:
        factors, reduced = None, laser.apply(model, steps)
    if args.out:
        path = checkpoint.save(args.out, reduced, edits=steps, factors=factors)
        print(f"saved {'factored' if args.factored else 'dense'} checkpoint: {path}")
    if args.export_hf:
        from laser_jax.export import export_hf

        print(f"exported Hugging Face directory: {export_hf(reduced, args.export_hf)}")
    return 0


def _dtype(name: str):
    import jax.numpy as jnp

    return jnp.dtype(name)


# ----------------------------------------------------------------------------- synthetic


def cmd_synthetic(args) -> int:
    """Delegate to the synthetic experiment (``synthetic.run.run_experiment``)."""
    try:
        from synthetic import run
        from synthetic.presets import PRESETS
    except ModuleNotFoundError as error:
        if not (error.name or "").startswith("synthetic"):
            raise
        raise DataError("the synthetic experiment is not installed (no synthetic.run module)") from None
    if args.preset not in PRESETS:
        raise ConfigError(f"unknown synthetic preset {args.preset!r}; known: {', '.join(PRESETS)}")
    run.run_experiment(args.preset, args.out)
    return 0


# ----------------------------------------------------------------------------- dynamics


def cmd_dynamics(args) -> int:
    """Delegate to :func:`laser_jax.dynamics.run_dynamics`."""
    from laser_jax import dynamics
    from laser_jax.examples import load_examples

    if (args.model is None) != (args.revisions is None):
        raise DataError("--model and --revisions go together (or give --checkpoints)")
    series = (dynamics.hub_series(args.model, args.revisions.split(",")) if args.model
              else dynamics.local_series(args.checkpoints))
    layers, taus, rhos = parse_layers(args.layers), parse_taus(args.taus), parse_rhos(args.rhos)
    track = [parse_edit(text) for text in args.track]
    if args.examples:
        examples, source = load_examples(args.examples), {"examples": _absolute_if_local(args.examples)}
    else:
        from laser_jax.tasks import get_task

        task = get_task(args.task)
        data = _data_source(task, args.data)
        items = task.load(data, limit=args.limit)
        source = {"task": task.name, "data": data, "limit": args.limit}

        def examples(model):
            if model.tokenizer is None:
                raise DataError(f"checkpoint {model.source} has no tokenizer files; the task needs one")
            return task.examples(items, model.tokenizer)

    if layers is None:  # all layers of the series (its first checkpoint's count)
        from laser_jax.loading import load_model

        first = series[0]
        layers = list(range(load_model(first.source, revision=first.revision, tokenizer=False).n_layers))
    records = dynamics.run_dynamics(series, examples, args.out, layers, taus, rhos, track=track,
                                    run_args={**source, "batch_size": args.batch_size}, info={"argv": args.argv},
                                    log=lambda text: print(text, file=sys.stderr), batch_size=args.batch_size)
    print(f"{len(records)} checkpoints in {Path(args.out) / dynamics.SUMMARY_CSV}")
    return 0


# ----------------------------------------------------------------------------- sweep


def cmd_sweep(args) -> int:
    from laser_jax import laser, results
    from laser_jax.tasks import get_task

    layers = parse_layers(args.layers)
    taus = parse_taus(args.taus)
    rhos = parse_rhos(args.rhos)
    if args.limit is not None and args.limit < 1:
        raise DataError(f"--limit must be at least 1, got {args.limit}")
    if args.batch_size < 1:
        raise DataError(f"--batch-size must be at least 1, got {args.batch_size}")
    task = get_task(args.task)
    data = _data_source(task, args.data)
    _quiet_libraries()
    items = task.load(data, limit=args.limit)
    run_args = {"model": _absolute_if_local(args.model), "revision": args.revision, "task": task.name, "data": data,
                "limit": args.limit, "split": args.split, "layers": "all" if layers is None else layers, "taus": taus,
                "rhos": rhos, "batch_size": args.batch_size, "dtype": args.dtype}
    store = results.ResultsStore(args.out, run_args, info={"argv": args.argv})  # refuses another run's directory

    from laser_jax.loading import load_model
    from laser_jax.sweep import sweep

    model = load_model(run_args["model"], revision=args.revision, dtype=_dtype(args.dtype))
    if model.tokenizer is None:
        raise DataError(f"model {args.model!r} has no tokenizer files; the task needs one")
    layers = list(range(model.n_layers)) if layers is None else layers
    grid = laser.expand_grid(layers, taus, rhos)
    for step in grid:
        laser.check_intervention(model, step)
    examples = task.examples(items, model.tokenizer)
    splits = results.split_indices(len(examples), args.split)
    done_keys = {results.intervention_key(key) for key in store.done()}
    skip = results.resume_skip(store.done(), grid)
    store.start()
    delay = float(os.environ.get(ROW_DELAY_ENV, "0") or 0)
    if done_keys:
        print(f"resuming {store.directory}: {len(done_keys)} of {len(grid) + 1} variants already done", file=sys.stderr)

    def on_row(row) -> None:
        if row.key in done_keys:  # recomputed with its (layer, tau) group; keep the stored rows
            return
        k = None if row.intervention is None else _rank(model, row.intervention)
        store.record(results.sweep_rows(row, splits, k), scores=results.example_columns(row, splits))
        if delay:
            time.sleep(delay)

    try:
        sweep(model, examples, layers, taus, rhos, batch_size=args.batch_size, skip=skip, on_row=on_row, progress=not args.quiet)
    finally:
        store.close()
    print(f"{len(store.rows)} rows in {store.directory / results.RESULTS_FILE}")
    return 0


def _quiet_libraries() -> None:
    """No progress bars from the data and model libraries: the sweep's bar is the only one."""
    import datasets

    datasets.disable_progress_bars()


def _rank(model, step) -> int:
    """k of an intervention (of its first matrix, for a τ group)."""
    from laser_jax import laser

    tau = laser.matrices_of(model.family, step.tau)[0]
    return laser.rank_for(step.rho, model.params["blocks"][tau].shape)


def _absolute_if_local(source: str) -> str:
    """A local path made absolute (so a resumed run may start elsewhere); a hub id as it is."""
    path = Path(source).expanduser()
    return str(path.resolve()) if path.exists() else source


def _data_source(task, data: Optional[str]) -> Optional[str]:
    """``--data`` as an absolute path; else the task's file under $LASER_JAX_DATA, else its hub id."""
    if data is not None:
        return _absolute_if_local(data)
    if task.generate is not None:
        return None
    root = os.environ.get("LASER_JAX_DATA")
    if root and task.default_path and (Path(root) / task.default_path).exists():
        return str((Path(root) / task.default_path).resolve())
    if task.hub is not None:
        return task.hub.id
    raise DataError(f"task {task.name} needs --data FILE (or set LASER_JAX_DATA to the data root holding {task.default_path})")


if __name__ == "__main__":
    sys.exit(main())
