"""The ``laser-jax`` command line: argument parsing and orchestration only.

Subcommands: ``sweep`` (resumable LASER grid search, exhaustive or the
selection protocol, :mod:`laser_jax.sweep`, :mod:`laser_jax.protocol` +
:mod:`laser_jax.results`; devices and hosts from :mod:`laser_jax.devices`),
``table`` (the paper's Table 1, :mod:`laser_jax.table`), ``compose`` (greedy
composition, :mod:`laser_jax.selection`), ``dynamics`` (LASER across training
checkpoints, :mod:`laser_jax.dynamics`), ``report`` (:mod:`laser_jax.report`), ``apply``
(:mod:`laser_jax.laser`, :mod:`laser_jax.checkpoint`, :mod:`laser_jax.export`),
``synthetic`` (the no-download synthetic experiment, :mod:`synthetic`), ``rmt``
(Marchenko-Pastur ranks, :mod:`laser_jax.rmt`), ``removed`` (what a step
removes, :mod:`laser_jax.removed`) and ``screen`` (the first-order screen,
:mod:`laser_jax.screen`).
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

from laser_jax.devices import add_device_arguments, setup_devices
from laser_jax.errors import ConfigError, DataError, InterventionError, LaserJaxError

PROG = "laser-jax"
EXIT_ERROR = 2
DEFAULT_RHOS = "0.9,0.8,0.6,0.4,0.2,0.1,0.05,0.01"
PAPER_RHOS = (0.9, 0.8, 0.6, 0.2, 0.1, 0.05, 0.01)  # laser_jax.selection.PAPER_RHOS (not imported: it pulls in JAX)
MODES = ("exhaustive", "selection")
COMPOSITION_FILE = "compose.json"
SCREEN_FILE = "screen.csv"  # a --screen-top run's screen of its whole grid, read back on resume
COMPILE_CACHE = Path.home() / ".cache" / "laser-jax" / "xla"  # JAX's persistent compilation cache, unless the user set one


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


def parse_rhos(text: str) -> list:
    """``"0.1,0.01"`` to a list of distinct ρs, or ``"mp"`` to ``["mp"]`` (each matrix's MP rank, :mod:`laser_jax.rmt`)."""
    parts = [part.strip() for part in text.split(",")]
    if "mp" in parts:
        if len(parts) > 1:
            raise InterventionError(f"rho 'mp' (each matrix's Marchenko-Pastur rank) cannot be mixed with other values: {text!r}")
        return ["mp"]
    rhos = []
    for part in parts:
        try:
            rho = float(part)
        except ValueError:
            raise InterventionError(f"rho {part.strip()!r} is not a number (give e.g. --rhos 0.1,0.01)") from None
        if not 0.0 <= rho <= 1.0:
            raise InterventionError(f"rho={rho:g} is outside [0, 1] (rho is the fraction of the rank kept)")
        rhos.append(rho)
    return list(dict.fromkeys(rhos))


def parse_edit(text: str):
    """``fc_in:27:0.01`` (τ, layer, ρ) to an :class:`~laser_jax.laser.Intervention`; ``fc_in:27:0.01:bottom``
    keeps the removed part; ``fc_in:27:mp`` is an :class:`~laser_jax.rmt.MPEdit` (resolved against the model)."""
    from laser_jax.laser import Intervention
    from laser_jax.rmt import MPEdit

    parts = text.split(":")
    if len(parts) not in (3, 4):
        raise InterventionError(f"bad --edit {text!r}: use TAU:LAYER:RHO[:top|bottom], e.g. fc_in:27:0.01")
    tau, layer, rho, *keep = parts
    try:
        layer = int(layer)
    except ValueError:
        raise InterventionError(f"bad --edit {text!r}: layer {layer!r} is not an integer") from None
    (rho,) = parse_rhos(rho)
    if rho == "mp":
        return MPEdit(layer, tau.strip(), *keep)
    return Intervention(layer, tau.strip(), rho, *keep)


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
    sweep.add_argument("--rhos", default=DEFAULT_RHOS, metavar="LIST",
                       help=f"fractions of rank kept (default {DEFAULT_RHOS}), or mp: each matrix's Marchenko-Pastur rank")
    sweep.add_argument("--out", required=True, metavar="DIR", help="run directory: results.csv, scores/, run.json")
    sweep.add_argument("--batch-size", type=int, default=32, metavar="B", help="examples per batch (default 32)")
    sweep.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32", help="parameter dtype")
    sweep.add_argument("--revision", help="hub branch, tag or commit of --model")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    add_protocol_arguments(sweep)
    add_device_arguments(sweep)
    sweep.set_defaults(func=cmd_sweep)

    table = commands.add_parser("table", help="the paper's Table 1: the selection protocol on several tasks (resumable)",
                                description="Run the selection protocol (grid on validation, selected variants on test) for "
                                            "each task in DIR/<task>/, then write table.md, table.csv and table.png into DIR.")
    table.add_argument("--model", required=True, metavar="SRC", help="hub id, local checkpoint directory, .gguf file or a packaged model name")
    table.add_argument("--tasks", required=True, metavar="LIST", help="task names, e.g. counterfact,fever,truthfulqa")
    table.add_argument("--out", required=True, metavar="DIR", help="table directory (one run directory per task inside)")
    table.add_argument("--data-root", metavar="DIR", help="folder holding the tasks' data files (default: $LASER_JAX_DATA)")
    table.add_argument("--limit", type=int, metavar="N", help="cap every task at its first N records (one rule for all)")
    table.add_argument("--layers", default="all", metavar="RANGE", help="layers (default: all)")
    table.add_argument("--taus", metavar="LIST", help="matrix types (default: the family's MLP matrices)")
    table.add_argument("--rhos", default=",".join(str(r) for r in PAPER_RHOS), metavar="LIST",
                       help="fractions of rank kept (default: the paper's seven)")
    table.add_argument("--batch-size", type=int, default=32, metavar="B", help="examples per batch (default 32)")
    table.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32", help="parameter dtype")
    table.add_argument("--revision", help="hub branch, tag or commit of --model")
    table.add_argument("--quiet", action="store_true", help="no progress bar")
    add_protocol_arguments(table, selection_only=True)
    add_device_arguments(table)
    table.set_defaults(func=cmd_table)

    compose = commands.add_parser("compose", help="greedy composition of LASER steps on a run's validation part",
                                  description="The paper's greedy composition (MLP matrices, largest layer and smallest rho "
                                              "first, a step kept only if validation accuracy does not drop) over the grid of "
                                              "the run in DIR. Writes DIR/compose.json; `laser-jax apply --edits` takes it.")
    compose.add_argument("dir", metavar="DIR", help="a sweep's or table task's run directory (with a val+test split)")
    compose.add_argument("--out", metavar="FILE", help="write the composition here (default DIR/compose.json)")
    compose.add_argument("--quiet", action="store_true", help="no progress bar")
    compose.set_defaults(func=cmd_compose)

    report = commands.add_parser("report", help="heatmaps and a base-vs-best table from a sweep directory",
                                 description="Write heatmap_accuracy.png, heatmap_loss.png, generic_tokens.png (when the task "
                                             "has generic probe tokens) and report.md into DIR.")
    report.add_argument("dir", metavar="DIR", help="a sweep's --out directory (or a results CSV, e.g. several runs' rows merged)")
    report.add_argument("--out", metavar="DIR", help="write the files here instead of DIR")
    report.set_defaults(func=cmd_report)

    apply = commands.add_parser("apply", help="apply rank reductions and save the reduced model",
                                description="Apply one or more LASER edits and save the reduced model with Orbax "
                                            "(load it back with laser_jax.load_model(DIR)) and/or as a Hugging Face directory.")
    apply.add_argument("--model", required=True, metavar="SRC", help="hub id, local checkpoint directory or .gguf file")
    apply.add_argument("--edit", action="append", default=[], metavar="TAU:LAYER:RHO", type=str,
                       help="an edit, e.g. fc_in:27:0.01 (RHO mp: the matrix's Marchenko-Pastur rank; a 4th part "
                            "bottom keeps the removed part, W - W_k); repeat for several")
    apply.add_argument("--edits", metavar="FILE", help="the edits of a composition file (laser-jax compose), applied first")
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

    rmt = commands.add_parser("rmt", help="Marchenko-Pastur ranks and signal-to-noise ratios of the weight matrices",
                              description="For every (layer, tau) matrix: the noise scale (Gavish-Donoho median estimator), "
                                          "the Marchenko-Pastur edge, the rank above it and the SNR; printed from the "
                                          "lowest SNR up (see laser_jax.rmt).")
    _model_arguments(rmt)
    _grid_arguments(rmt)
    rmt.add_argument("--out", metavar="FILE", help="also write the table as CSV")
    rmt.set_defaults(func=cmd_rmt)

    removed = commands.add_parser("removed", help="what a LASER step removes: the removed part's predictions on the items it fixes",
                                  description="For the items one step fixes (base top-1 wrong, LASER top-1 right), list the "
                                              "top next tokens of the base, the LASER model and the removed part alone "
                                              "(W - W_k), and count generic words among them; writes DIR/summary.md "
                                              "and DIR/removed.png "
                                              "(see laser_jax.removed).")
    _model_arguments(removed)
    _task_arguments(removed)
    removed.add_argument("--edit", required=True, metavar="TAU:LAYER:RHO", help="the LASER step, e.g. fc_up:28:0.2 (RHO mp: its MP rank)")
    removed.add_argument("--out", required=True, metavar="DIR", help="writes DIR/summary.md and DIR/removed.png")
    removed.set_defaults(func=cmd_removed)

    screen = commands.add_parser("screen", help="predict every variant's change in answer NLL to first order (no variants run)",
                                 description="One forward and backward pass per batch give the gradient of the mean "
                                             "answer NLL; every (layer, tau, rho) change follows from the SVDs "
                                             "(see laser_jax.screen). Prints the predicted best and writes a CSV.")
    _model_arguments(screen)
    _grid_arguments(screen)
    screen.add_argument("--rhos", default=DEFAULT_RHOS, metavar="LIST", help=f"fractions of rank kept (default {DEFAULT_RHOS})")
    _task_arguments(screen)
    screen.add_argument("--out", required=True, metavar="FILE", help="CSV, one row per variant")
    screen.set_defaults(func=cmd_screen)
    return parser


def _model_arguments(parser) -> None:
    parser.add_argument("--model", required=True, metavar="SRC", help="hub id, local checkpoint directory or .gguf file")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32", help="parameter dtype")
    parser.add_argument("--revision", help="hub branch, tag or commit of --model")


def _task_arguments(parser) -> None:
    """The examples of the analysis commands (``screen``, ``removed``; read by :func:`_task_examples`)."""
    parser.add_argument("--task", required=True, metavar="NAME", help="task name (e.g. counterfact)")
    parser.add_argument("--data", metavar="FILE", help="data file (default: the task's file under $LASER_JAX_DATA, else its hub id)")
    parser.add_argument("--limit", type=int, metavar="N", help="use the first N records")
    parser.add_argument("--split", choices=("val", "all"), default="val",
                        help="val: the first 20%% of the examples, as a sweep's validation split (default); all: every example")
    parser.add_argument("--batch-size", type=int, default=32, metavar="B", help="examples per batch (default 32)")


def _grid_arguments(parser) -> None:
    parser.add_argument("--layers", default="all", metavar="RANGE", help="layers, e.g. 20-29 (default: all)")
    parser.add_argument("--taus", default="fc_in,fc_out", metavar="LIST", help="matrix types (default fc_in,fc_out)")


def _version() -> str:
    from laser_jax import __version__

    return __version__


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``laser-jax`` console script; returns the exit code."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = [PROG, *argv]
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        # Compiling dominates short and resumed runs: a grid reuses a few programs, but each process compiled them
        # anew. JAX opens the cache at its first compile; an empty JAX_COMPILATION_CACHE_DIR turns it off.
        import jax

        jax.config.update("jax_compilation_cache_dir", str(COMPILE_CACHE))
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
    steps = [*(read_composition(args.edits) if args.edits else []), *(parse_edit(text) for text in args.edit)]
    if not steps:
        raise InterventionError("apply needs --edit TAU:LAYER:RHO (repeatable) or --edits FILE")
    if not args.out and not args.export_hf:
        raise InterventionError("apply needs --out DIR (Orbax checkpoint) and/or --export-hf DIR")
    if args.factored and not args.out:
        raise InterventionError("--factored describes the Orbax checkpoint: give --out DIR")
    from laser_jax import checkpoint, laser
    from laser_jax.loading import load_model

    model = load_model(args.model, revision=args.revision, dtype=_dtype(args.dtype))
    from laser_jax.rmt import resolve

    steps = [resolve(model, step) for step in steps]
    for step in steps:
        laser.check_intervention(model, step)
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


# ----------------------------------------------------------------------------- rmt


def cmd_rmt(args) -> int:
    from laser_jax import rmt
    from laser_jax.loading import load_model
    from laser_jax.results import to_csv, write_text_atomic

    layers, taus = parse_layers(args.layers), parse_taus(args.taus)
    model = load_model(args.model, revision=args.revision, dtype=_dtype(args.dtype))
    rows = rmt.spectra(model, range(model.n_layers) if layers is None else layers, taus)
    rows.sort(key=lambda s: (s.snr, s.layer, s.tau))
    print(rmt.format_table(rows))
    if args.out:
        write_text_atomic(args.out, to_csv([s.row() for s in rows], rmt.CSV_COLUMNS))
        print(f"wrote {args.out}")
    return 0


# ----------------------------------------------------------------------------- removed


def _task_examples(args):
    """``(task, model, examples)`` for the analysis commands: the task's first ``--limit`` records tokenised for
    ``--model``; only the validation part (the first 20%, as a sweep's) under ``--split val``."""
    from laser_jax.loading import load_model
    from laser_jax.results import split_indices
    from laser_jax.tasks import get_task

    if args.limit is not None and args.limit < 1:
        raise DataError(f"--limit must be at least 1, got {args.limit}")
    task = get_task(args.task)
    data = _data_source(task, args.data)
    _quiet_libraries()
    items = task.load(data, limit=args.limit)
    model = load_model(_absolute_if_local(args.model), revision=args.revision, dtype=_dtype(args.dtype))
    if model.tokenizer is None:
        raise DataError(f"model {args.model!r} has no tokenizer files; the task needs one")
    examples = task.examples(items, model.tokenizer)
    if args.split == "val":
        examples = [examples[i] for i in split_indices(len(examples), "val+test")["val"]]
    return task, model, examples


def cmd_removed(args) -> int:
    step = parse_edit(args.edit)
    if step.keep != "top":
        raise InterventionError(f"--edit {args.edit!r}: give the LASER step itself (its removed part is what is shown)")
    task, model, examples = _task_examples(args)
    from laser_jax import laser, removed, results
    from laser_jax.rmt import resolve
    from laser_jax.tasks import GENERIC_PROBES
    from laser_jax.tasks.common import encode_probes

    step = resolve(model, step)
    laser.check_intervention(model, step)
    step.complement()  # refuses rho = 1 (nothing removed)
    words = task.probes or GENERIC_PROBES
    generic = encode_probes(model.tokenizer, words)
    fixed = removed.fixed_items(model, examples, step, batch_size=args.batch_size)
    title = (f"# The removed part of {step.tau}, layer {step.layer}, ρ = {step.rho:g} ({args.model}, {task.name}, "
             f"{'validation' if args.split == 'val' else 'all'} items)")
    text = (f"{title}\n\n```\n{results.command_line(args.argv)}\n```\n\n"
            + removed.summary(fixed, step, len(examples), generic, model.tokenizer,
                              examples, words))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fig = removed.figure(fixed, generic, title[2:])
    fig.savefig(out / "removed.png", dpi=120, bbox_inches="tight")
    results.write_text_atomic(out / "summary.md", text + "\n![top tokens](removed.png)\n")
    print(text)
    return 0


# ----------------------------------------------------------------------------- screen


def cmd_screen(args) -> int:
    from laser_jax import results, screen

    layers, taus, rhos = parse_layers(args.layers), parse_taus(args.taus), parse_rhos(args.rhos)
    if rhos == ["mp"]:
        raise InterventionError("screen takes numeric --rhos (the first-order screen of every rho is free)")
    _, model, examples = _task_examples(args)
    result = screen.screen(model, examples, range(model.n_layers) if layers is None else layers, taus, rhos,
                           batch_size=args.batch_size)
    print(f"{args.split} loss (mean answer NLL) {result.base_loss:.5f} on {len(examples)} examples; predicted best:")
    for row in result.ranked()[:10]:
        print(f"  {row.intervention.key:<20} {row.predicted_change:+.5f}")
    results.write_text_atomic(args.out, results.to_csv(result.csv_rows(), screen.CSV_COLUMNS))
    print(f"wrote {args.out}")
    return 0


# ----------------------------------------------------------------------------- sweep


def add_protocol_arguments(parser, selection_only: bool = False) -> None:
    """The selection protocol's options (:mod:`laser_jax.protocol`)."""
    if not selection_only:
        parser.add_argument("--mode", choices=MODES, default="exhaustive",
                            help="exhaustive: every variant on every item (full heatmaps, default); selection: the grid on "
                                 "validation only, then the base and the selected variants on test")
    parser.add_argument("--top-n", type=int, default=0, metavar="N",
                        help="selection: also test the N best variants on validation (default: best overall and per tau)")
    parser.add_argument("--racing", action="store_true",
                        help="selection: score validation in growing looks and stop variants that cannot reach their tau's leader")
    parser.add_argument("--racing-delta", type=float, default=0.05, metavar="D",
                        help="racing: probability allowed of stopping the best variant of a tau (default 0.05)")
    parser.add_argument("--screen-top", type=int, metavar="N",
                        help="selection: sweep only the N variants the first-order screen (laser-jax screen) predicts to "
                             "lower the validation loss most; a heuristic, off by default")


def _racing(args):
    if not args.racing:
        return None
    from laser_jax.protocol import Racing

    return Racing(delta=args.racing_delta)


def _check_counts(args) -> None:
    if getattr(args, "limit", None) is not None and args.limit < 1:
        raise DataError(f"--limit must be at least 1, got {args.limit}")
    if args.batch_size < 1:
        raise DataError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.top_n < 0:
        raise DataError(f"--top-n must be at least 0, got {args.top_n}")
    if args.screen_top is not None and args.screen_top < 1:
        raise DataError(f"--screen-top must be at least 1, got {args.screen_top}")


def cmd_sweep(args) -> int:
    from laser_jax.tasks import get_task

    layers, taus, rhos = parse_layers(args.layers), parse_taus(args.taus), parse_rhos(args.rhos)
    _check_counts(args)
    if args.mode == "selection" and args.split != "val+test":
        raise DataError("--mode selection selects on validation: it needs --split val+test")
    if args.mode != "selection" and args.screen_top is not None:
        raise DataError("--screen-top prunes the grid of a selection run: use it with --mode selection")
    devices = _setup_devices(args)  # before any JAX computation: may join a multi-process run
    task = get_task(args.task)
    data = _data_source(task, args.data)
    _quiet_libraries()
    items = task.load(data, limit=args.limit)
    run_args = {"model": _absolute_if_local(args.model), "revision": args.revision, "task": task.name, "data": data,
                "limit": args.limit, "split": args.split, "layers": "all" if layers is None else layers, "taus": taus,
                "rhos": rhos, "batch_size": args.batch_size, "dtype": args.dtype}
    if args.mode == "selection":
        run_args.update(_selection_args(args))
    from laser_jax.loading import load_model

    store = _open_store(devices, args.out, run_args, args.argv)
    model = load_model(run_args["model"], revision=args.revision, dtype=_dtype(args.dtype))
    if args.mode == "selection":
        _run_selection(model, task, items, store, layers, taus, rhos, args, devices)
    else:
        _run_exhaustive(model, task, items, store, layers, taus, rhos, args, devices)
    print(f"{len(store.rows)} rows in {store.directory / 'results.csv'}")
    return 0


def _selection_args(args) -> dict:
    racing = _racing(args)
    screen = {} if args.screen_top is None else {"screen_top": args.screen_top}  # absent when off: older runs resume
    return {"mode": "selection", "top_n": args.top_n, "racing": None if racing is None else racing.as_args(), **screen}


def _setup_devices(args):
    """:func:`laser_jax.devices.setup_devices`, refusing what a multi-process run does not support."""
    devices = setup_devices(args)
    if devices.num_processes > 1 and getattr(args, "racing", False):
        raise DataError("--racing runs in one process only (its looks are resumed from files process 0 writes)")
    return devices


def _open_store(devices, out, run_args, argv):
    """The run directory (refusing another run's); in a multi-process run only process 0 writes."""
    from laser_jax import results

    return devices.open_store(lambda: results.ResultsStore(out, run_args, info={"argv": argv}))


def _grid(model, layers, taus, rhos):
    from laser_jax import laser

    if model.tokenizer is None:
        raise DataError(f"model {model.source or '?'!r} has no tokenizer files; the task needs one")
    layers = list(range(model.n_layers)) if layers is None else layers
    if rhos == ["mp"]:
        from laser_jax.rmt import mp_interventions

        grid = mp_interventions(model, layers, taus)
    else:
        grid = laser.expand_grid(layers, taus, rhos)
    for step in grid:
        laser.check_intervention(model, step)
    return grid


def _run_exhaustive(model, task, items, store, layers, taus, rhos, args, devices) -> None:
    from laser_jax import results
    from laser_jax.sweep import sweep

    grid = _grid(model, layers, taus, rhos)
    examples = task.examples(items, model.tokenizer)
    splits = results.split_indices(len(examples), args.split)
    done_keys = {results.intervention_key(key) for key in store.done()}
    skip = results.resume_skip(store.done(), grid)
    store.start()
    if done_keys:
        print(f"resuming {store.directory}: {len(done_keys)} of {len(grid) + 1} variants already done", file=sys.stderr)

    def on_row(row) -> None:
        if row.key in done_keys:  # recomputed with its (layer, tau) group; keep the stored rows
            return
        k = None if row.intervention is None else _rank(model, row.intervention)
        store.record(results.sweep_rows(row, splits, k), scores=results.example_columns(row, splits))

    try:
        with devices.matmul_precision():
            sweep(model, examples, variants=grid, batch_size=args.batch_size, skip=skip, on_row=on_row,
                  progress=not args.quiet and devices.is_writer, mesh=devices.mesh)
    finally:
        store.close()


def _run_selection(model, task, items, store, layers, taus, rhos, args, devices) -> dict:
    """The selection protocol of one task into ``store``; returns the run's wall/CPU seconds per phase, summed over resumes."""
    from laser_jax import protocol, results

    grid = _grid(model, layers, taus, rhos)
    examples = task.examples(items, model.tokenizer)
    recorder = results.StoreRecorder(store, lambda step: _rank(model, step), writer=devices.is_writer)
    store.start()
    try:
        with devices.matmul_precision():
            if args.screen_top is not None:
                grid = protocol.top_predicted(grid, _screen_predictions(model, examples, grid, store, args, devices),
                                              args.screen_top)
                recorder.lap("screen")
            done = len(recorder.done(protocol.VALIDATION))
            if done:
                print(f"resuming {store.directory}: {done} of {len(grid) + 1} variants already scored on validation",
                      file=sys.stderr)
            run = protocol.run_selection(model, examples, grid, recorder, top_n=args.top_n, racing=_racing(args),
                                         batch_size=args.batch_size, progress=not args.quiet and devices.is_writer,
                                         mesh=devices.mesh)
        total = recorder.lap(protocol.TEST)  # what is left after the last row: the recorder counts time as rows land
    finally:
        store.close()
    if run.stopped:
        print(f"racing stopped {len(run.stopped)} of {len(grid)} variants early", file=sys.stderr)
    tested = ", ".join(f"{step.tau}:{step.layer}:{step.rho:g}" for step in run.tested)
    print(f"{store.directory}: tested on the test part: base, {tested}")
    return total


def _screen_predictions(model, examples, grid, store, args, devices) -> dict:
    """The first-order screen's predicted change per variant of ``grid``, on the validation part: read from the run's
    ``screen.csv`` when it covers this grid (a resumed run skips the screen), else computed and written there."""
    from laser_jax import laser, protocol, results, screen

    path = store.directory / SCREEN_FILE
    if path.exists():
        stored = {laser.Intervention(row["layer"], row["tau"], row["rho"], row["keep"]): row["predicted_change"]
                  for row in results.read_csv(path)}
        if set(stored) == set(grid):
            return stored
    result = protocol.validation_screen(model, examples, grid, batch_size=args.batch_size)
    if devices.is_writer:
        results.write_text_atomic(path, results.to_csv(result.csv_rows(), screen.CSV_COLUMNS))
    return {row.intervention: row.predicted_change for row in result.rows}


# ----------------------------------------------------------------------------- table


def cmd_table(args) -> int:
    from laser_jax.tasks import GENERATION, get_task

    names = [name.strip() for name in args.tasks.split(",") if name.strip()]
    if not names:
        raise DataError("--tasks is empty")
    tasks = [get_task(name) for name in dict.fromkeys(names)]  # an unknown task fails here, before any loading
    layers, rhos = parse_layers(args.layers), parse_rhos(args.rhos)
    taus = parse_taus(args.taus) if args.taus else None
    _check_counts(args)
    data_root = args.data_root or os.environ.get("LASER_JAX_DATA")
    sources = {task.name: _table_data(task, data_root) for task in tasks}
    devices = _setup_devices(args)
    _quiet_libraries()
    import jax

    from laser_jax.loading import load_model
    from laser_jax.models.base import MLP_TAUS
    from laser_jax.table import table_tasks, write_table

    model = load_model(args.model, revision=args.revision, dtype=_dtype(args.dtype))
    taus = taus or [tau for tau in MLP_TAUS if tau in model.family.taus]
    out = Path(args.out)
    for task in tasks:
        run_args = {"model": args.model, "revision": args.revision, "task": task.name, "data": sources[task.name],
                    "limit": args.limit, "split": "val+test", "layers": "all" if layers is None else layers, "taus": taus,
                    "rhos": rhos, "batch_size": args.batch_size, "dtype": args.dtype, **_selection_args(args)}
        store = _open_store(devices, out / task.name, run_args, args.argv)
        print(f"== {task.name}", file=sys.stderr)
        items = task.load(sources[task.name], limit=args.limit)
        _run_selection(model, task, items, store, layers, taus, rhos, args, devices)
        if task.scoring == GENERATION:
            _generation_check(model, task, items, out / task.name, args, devices)
        # Each compiled XLA CPU program holds hundreds of memory maps, and a task's batch shapes are its own: drop the
        # programs between tasks (the persistent compilation cache still has them) so a long table stays under
        # Linux's vm.max_map_count.
        jax.clear_caches()
    if devices.is_writer:
        for path in write_table(out, table_tasks(out, [task.name for task in tasks])):
            print(path)
    return 0


def _generation_check(model, task, items, directory: Path, args, devices) -> None:
    """A generation task's row in the paper's own metric: greedy decoding on the test part for the base and the
    selected variant (:func:`laser_jax.protocol.generation_on_test`), into ``generation.json``; kept when it already
    covers the selected variant."""
    import json

    from laser_jax import laser, protocol, results
    from laser_jax.report import select_best

    tau, layer, rho = best = select_best(results.load_results(directory)[1], "val")
    path = directory / results.GENERATION_FILE
    variant = results.variant_record(best)
    if path.exists() and json.loads(path.read_text()).get("variant") == variant:
        return
    examples = task.examples(items, model.tokenizer)
    with devices.matmul_precision():
        record = protocol.generation_on_test(model, examples, [item.answer for item in items],
                                             laser.Intervention(layer, tau, rho), task.max_new_tokens,
                                             batch_size=args.batch_size)
    if devices.is_writer:
        results.write_text_atomic(path, json.dumps(record, indent=2) + "\n")
    print(f"{directory}: greedy {task.max_new_tokens}-token generation on test, base {record['base']['accuracy']:.4f} "
          f"-> LASER {record['laser']['accuracy']:.4f}", file=sys.stderr)


def _table_data(task, data_root: Optional[str]) -> Optional[str]:
    """A task's data file under the data root, as given (relative paths stay relative: no machine's path is recorded)."""
    if task.generate is not None:
        return None
    if not data_root:
        raise DataError(f"task {task.name} needs its data: give --data-root DIR (holding {task.default_path}) or set LASER_JAX_DATA")
    path = Path(data_root) / task.default_path
    if not path.exists():
        raise DataError(f"task {task.name}: {path} does not exist (--data-root must hold {task.default_path})")
    return str(path)


# ----------------------------------------------------------------------------- compose


def cmd_compose(args) -> int:
    import json

    from laser_jax import results
    from laser_jax.loading import load_model
    from laser_jax.models.base import MLP_TAUS
    from laser_jax.selection import compose
    from laser_jax.tasks import get_task

    run, rows = results.load_results(args.dir)
    run_args = run.get("args", {})
    if run_args.get("split") != "val+test" or not any(row["split"] == "val" for row in rows):
        raise DataError(f"{args.dir} has no validation rows (made with --split {run_args.get('split', '?')}): compose selects "
                        "on validation; run a sweep with --split val+test")
    taus = [tau for tau in run_args["taus"] if tau in MLP_TAUS]
    if run_args["rhos"] == ["mp"]:
        raise InterventionError(f"{args.dir} swept the Marchenko-Pastur ranks (--rhos mp): composition tries numeric rhos")
    if not taus:
        raise InterventionError(f"{args.dir} swept no MLP matrix ({', '.join(run_args['taus'])}): composition is over fc_in, fc_up, fc_out")
    task = get_task(run_args["task"])
    _quiet_libraries()
    items = task.load(run_args["data"], limit=run_args.get("limit"))
    model = load_model(run_args["model"], revision=run_args.get("revision"), dtype=_dtype(run_args.get("dtype", "float32")))
    layers = None if run_args["layers"] == "all" else run_args["layers"]
    _grid(model, layers, taus, run_args["rhos"])
    examples = task.examples(items, model.tokenizer)
    result = compose(model, examples, layers=layers, rhos=run_args["rhos"], taus=taus,
                     batch_size=run_args.get("batch_size", 32), progress=not args.quiet)
    edits = [f"{step.tau}:{step.layer}:{step.rho!r}" for step in result.steps]
    record = {"run": str(args.dir), "edits": edits,
              "validation": {"base": result.base_validation, "composed": result.final_validation},
              "test": {"base": result.base_test, "composed": result.final_test},
              "trials": [{"edit": f"{t.step.tau}:{t.step.layer}:{t.step.rho!r}", "validation_accuracy": t.accuracy,
                          "kept": t.kept} for t in result.trials]}
    path = Path(args.out) if args.out else Path(args.dir) / COMPOSITION_FILE
    results.write_text_atomic(path, json.dumps(record, indent=2) + "\n")
    print(f"kept {len(edits)} steps: {' '.join(edits) or '(none)'}")
    for split in ("validation", "test"):
        base, composed = record[split]["base"], record[split]["composed"]
        print(f"{split}: accuracy {base['accuracy']:.4f} -> {composed['accuracy']:.4f}, "
              f"loss {base['answer_nll']:.4f} -> {composed['answer_nll']:.4f}")
    print(path)
    return 0


def read_composition(path) -> list:
    """The edits of a ``compose.json`` file as interventions."""
    import json

    try:
        record = json.loads(Path(path).read_text())
        edits = record["edits"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(f"{path} is not a laser-jax composition file ({type(error).__name__}: {error})") from None
    if not isinstance(edits, list):
        raise DataError(f"{path}: 'edits' must be a list of TAU:LAYER:RHO strings")
    return [parse_edit(str(edit)) for edit in edits]


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
