"""The analysis commands: ``report`` (heatmaps and tables of a run, :mod:`laser_jax.report`), ``removed`` (what a step
removes, :mod:`laser_jax.removed`), ``screen`` (the first-order screen, :mod:`laser_jax.screen`) and ``dynamics``
(LASER across training checkpoints, :mod:`laser_jax.dynamics`)."""

from __future__ import annotations

import sys
from pathlib import Path

from laser_jax.cli.arguments import (DEFAULT_RHOS, add_batch_argument, add_grid_arguments, add_model_arguments,
                                     add_task_arguments, data_source, dtype, parse_edit, parse_layers, parse_rhos,
                                     parse_taus, quiet_libraries)
from laser_jax.errors import DataError, InterventionError


def register(commands) -> None:
    report = commands.add_parser("report", help="heatmaps and a base-vs-best table from a sweep directory",
                                 description="Write heatmap_accuracy.png, heatmap_loss.png, generic_tokens.png (when the task "
                                             "has generic probe tokens) and report.md into DIR.")
    report.add_argument("dir", metavar="DIR", help="a sweep's --out directory (or a results CSV, e.g. several runs' rows merged)")
    report.add_argument("--out", metavar="DIR", help="write the files here instead of DIR")
    report.set_defaults(func=cmd_report)

    removed = commands.add_parser("removed", help="what a LASER step removes: the removed part's predictions on the items it fixes",
                                  description="For the items one step fixes (base top-1 wrong, LASER top-1 right), list the "
                                              "top next tokens of the base, the LASER model and the removed part alone "
                                              "(W - W_k), and count generic words among them; writes DIR/summary.md "
                                              "and DIR/removed.png (see laser_jax.removed).")
    add_model_arguments(removed)
    add_task_arguments(removed)
    removed.add_argument("--edit", required=True, metavar="TAU:LAYER:RHO", help="the LASER step, e.g. fc_up:28:0.2 (RHO mp: its MP rank)")
    removed.add_argument("--out", required=True, metavar="DIR", help="writes DIR/summary.md and DIR/removed.png")
    removed.set_defaults(func=cmd_removed)

    screen = commands.add_parser("screen", help="predict every variant's change in answer NLL to first order (no variants run)",
                                 description="One forward and backward pass per batch give the gradient of the mean "
                                             "answer NLL; every (layer, tau, rho) change follows from the SVDs "
                                             "(see laser_jax.screen). Prints the predicted best and writes a CSV.")
    add_model_arguments(screen)
    add_grid_arguments(screen, rhos=DEFAULT_RHOS)
    add_task_arguments(screen)
    screen.add_argument("--out", required=True, metavar="FILE", help="CSV, one row per variant")
    screen.set_defaults(func=cmd_screen)

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
    add_grid_arguments(dynamics, rhos=DEFAULT_RHOS)
    dynamics.add_argument("--track", action="append", default=[], metavar="TAU:LAYER:RHO",
                          help="a variant to draw at every checkpoint (not selected), e.g. mlp:1:0; repeatable")
    dynamics.add_argument("--out", required=True, metavar="DIR", help="run directory")
    add_batch_argument(dynamics)
    dynamics.set_defaults(func=cmd_dynamics)


def cmd_report(args) -> int:
    from laser_jax.report import write_report

    for path in write_report(args.dir, Path(args.out) if args.out else None):
        print(path)
    return 0


def task_examples(args):
    """``(task, model, examples)`` for the analysis commands: the task's first ``--limit`` records tokenised for
    ``--model``; only the validation part (the first 20%, as a sweep's) under ``--split val``."""
    from laser_jax.loading import load_model
    from laser_jax.results import split_indices
    from laser_jax.tasks import get_task

    if args.limit is not None and args.limit < 1:
        raise DataError(f"--limit must be at least 1, got {args.limit}")
    task = get_task(args.task)
    data = data_source(task, args.data)
    quiet_libraries()
    items = task.load(data, limit=args.limit)
    model = load_model(args.model, revision=args.revision, dtype=dtype(args.dtype))
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
    task, model, examples = task_examples(args)
    from laser_jax import removed, results
    from laser_jax.ground import write_text_atomic
    from laser_jax.edits import resolve_edits
    from laser_jax.tasks import GENERIC_PROBES
    from laser_jax.tasks.common import encode_probes

    (step,) = resolve_edits(model, [step])
    step.complement()  # refuses rho = 1 (nothing removed)
    words = task.probes or GENERIC_PROBES
    generic = encode_probes(model.tokenizer, words)
    fixed = removed.fixed_items(model, examples, step, batch_size=args.batch_size)
    title = (f"# The removed part of {step.tau}, layer {step.layer}, ρ = {step.rho:g} ({args.model}, {task.name}, "
             f"{'validation' if args.split == 'val' else 'all'} items)")
    text = (f"{title}\n\n```\n{results.command_line(args.argv)}\n```\n\n"
            + removed.summary(fixed, step, len(examples), generic, model.tokenizer, examples, words))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fig = removed.figure(fixed, generic, title[2:])
    fig.savefig(out / "removed.png", dpi=120, bbox_inches="tight")
    write_text_atomic(out / "summary.md", text + "\n![top tokens](removed.png)\n")
    print(text)
    return 0


def cmd_screen(args) -> int:
    from laser_jax import results, screen
    from laser_jax.ground import write_text_atomic

    layers, taus, rhos = parse_layers(args.layers), parse_taus(args.taus), parse_rhos(args.rhos)
    if rhos == ["mp"]:
        raise InterventionError("screen takes numeric --rhos (the first-order screen of every rho is free)")
    _, model, examples = task_examples(args)
    result = screen.screen(model, examples, range(model.n_layers) if layers is None else layers, taus, rhos,
                           batch_size=args.batch_size)
    print(f"{args.split} loss (mean answer NLL) {result.base_loss:.5f} on {len(examples)} examples; predicted best:")
    for row in result.ranked()[:10]:
        print(f"  {row.intervention.key:<20} {row.predicted_change:+.5f}")
    write_text_atomic(args.out, results.to_csv(result.csv_rows(), screen.CSV_COLUMNS))
    print(f"wrote {args.out}")
    return 0


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
        examples, source = load_examples(args.examples), {"examples": args.examples}
    else:
        from laser_jax.tasks import get_task

        task = get_task(args.task)
        data = data_source(task, args.data)
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
    from laser_jax.sweep import SweepOptions

    records = dynamics.run_dynamics(series, examples, args.out, layers, taus, rhos, track=track,
                                    run_args={**source, "batch_size": args.batch_size}, info={"argv": args.argv},
                                    log=lambda text: print(text, file=sys.stderr),
                                    options=SweepOptions(batch_size=args.batch_size))
    print(f"{len(records)} checkpoints in {Path(args.out) / dynamics.SUMMARY_CSV}")
    return 0
