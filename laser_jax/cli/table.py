"""``laser-jax table`` (the paper's Table 1: the selection protocol on several tasks, :mod:`laser_jax.table`) and
``laser-jax compose`` (greedy composition on a run's validation part, :mod:`laser_jax.selection`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

from laser_jax.cli.arguments import (PAPER_RHOS, add_batch_argument, add_device_arguments, add_model_arguments,
                                     add_protocol_arguments, add_split_seed_argument, check_counts, data_root, dtype,
                                     parse_layers, parse_rhos, parse_taus, quiet_libraries, setup_devices, split_seed_args)
from laser_jax.cli.runs import grid_of, open_store, run_selection, selection_args
from laser_jax.errors import DataError, InterventionError

COMPOSITION_FILE = "compose.json"


def register(commands) -> None:
    table = commands.add_parser("table", help="the paper's Table 1: the selection protocol on several tasks (resumable)",
                                description="Run the selection protocol (grid on validation, selected variants on test) for "
                                            "each task in DIR/<task>/, then write table.md, table.csv and table.png into DIR.")
    add_model_arguments(table)
    table.add_argument("--tasks", required=True, metavar="LIST", help="task names, e.g. counterfact,fever,truthfulqa")
    table.add_argument("--out", required=True, metavar="DIR", help="table directory (one run directory per task inside)")
    table.add_argument("--data-root", metavar="DIR", help="folder holding the tasks' data files (default: $LASER_JAX_DATA)")
    table.add_argument("--limit", type=int, metavar="N", help="cap every task at its first N records (one rule for all)")
    table.add_argument("--layers", default="all", metavar="RANGE", help="layers (default: all)")
    table.add_argument("--taus", metavar="LIST", help="matrix types (default: the family's MLP matrices)")
    table.add_argument("--rhos", default=",".join(str(r) for r in PAPER_RHOS), metavar="LIST",
                       help="fractions of rank kept (default: the paper's seven)")
    add_batch_argument(table)
    table.add_argument("--quiet", action="store_true", help="no progress bar")
    add_split_seed_argument(table)
    table.add_argument("--bootstrap", type=int, default=10_000, metavar="N",
                       help="resamples of the paired bootstrap behind each row's intervals (default 10000, at least 100)")
    table.add_argument("--stability", type=int, default=1000, metavar="N",
                       help="validation resamples behind each row's selection stability (default 1000, at least 100)")
    table.add_argument("--require-scores", action="store_true",
                       help="a row whose run has no per-example test scores (scores/ or scores.npz) is an error "
                            "instead of '–' intervals")
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


def cmd_table(args) -> int:
    from laser_jax.tasks import GENERATION, get_task

    names = [name.strip() for name in args.tasks.split(",") if name.strip()]
    if not names:
        raise DataError("--tasks is empty")
    tasks = [get_task(name) for name in dict.fromkeys(names)]  # an unknown task fails here, before any loading
    layers, rhos = parse_layers(args.layers), parse_rhos(args.rhos)
    taus = parse_taus(args.taus) if args.taus else None
    check_counts(args)
    from laser_jax.stats import check_resamples

    check_resamples(args.bootstrap)
    check_resamples(args.stability)
    root = data_root(args.data_root)
    sources = {task.name: table_data(task, root) for task in tasks}
    devices = setup_devices(args)
    quiet_libraries()
    import jax

    from laser_jax.loading import load_model
    from laser_jax.models.base import MLP_TAUS
    from laser_jax.table import table_tasks, write_table

    model = load_model(args.model, revision=args.revision, dtype=dtype(args.dtype))
    taus = taus or [tau for tau in MLP_TAUS if tau in model.family.taus]
    out = Path(args.out)
    for task in tasks:
        run_args = table_run_args(args, task.name, sources[task.name], layers, taus, rhos)
        store = open_store(devices, out / task.name, run_args, args.argv)
        print(f"== {task.name}", file=sys.stderr)
        items = task.load(sources[task.name], limit=args.limit)
        run_selection(model, task, items, store, layers, taus, rhos, args, devices)
        if task.scoring == GENERATION:
            generation_check(model, task, items, out / task.name, args, devices)
        # Each compiled XLA CPU program holds hundreds of memory maps, and a task's batch shapes are its own: drop the
        # programs between tasks (the persistent compilation cache still has them) so a long table holds few maps.
        jax.clear_caches()
    if devices.is_writer:
        for path in write_table(out, table_tasks(out, [task.name for task in tasks]), resamples=args.bootstrap,
                                require_scores=args.require_scores, stability_resamples=args.stability):
            print(path)
    return 0


def table_run_args(args, task: str, data, layers, taus, rhos) -> dict:
    """What one task's ``run.json`` in a table records, and a resumed table must match."""
    return {"model": args.model, "revision": args.revision, "task": task, "data": data, "limit": args.limit,
            "split": "val+test", "layers": "all" if layers is None else layers, "taus": taus, "rhos": rhos,
            "batch_size": args.batch_size, "dtype": args.dtype, **split_seed_args(args), **selection_args(args)}


def generation_check(model, task, items, directory: Path, args, devices) -> None:
    """A generation task's row in the paper's own metric: greedy decoding on the test part for the base and the
    selected variant (:func:`laser_jax.protocol.generation_on_test`), into ``generation.json``; kept when it already
    covers the selected variant."""
    from laser_jax import laser, protocol, results
    from laser_jax.ground import write_text_atomic
    from laser_jax.report import select_best

    run, rows = results.load_results(directory)
    tau, layer, rho = best = select_best(rows, "val")
    path = directory / results.GENERATION_FILE
    variant = results.variant_record(best)
    if path.exists() and json.loads(path.read_text()).get("variant") == variant:
        return
    examples = task.examples(items, model.tokenizer)
    with devices.matmul_precision():
        record = protocol.generation_on_test(model, examples, [item.answer for item in items],
                                             laser.Intervention(layer, tau, rho), task.max_new_tokens,
                                             batch_size=args.batch_size, split_seed=run["args"].get("split_seed"))
    if devices.is_writer:
        write_text_atomic(path, json.dumps(record, indent=2) + "\n")
    print(f"{directory}: greedy {task.max_new_tokens}-token generation on test, base {record['base']['accuracy']:.4f} "
          f"-> LASER {record['laser']['accuracy']:.4f}", file=sys.stderr)


def table_data(task, root: Optional[str]) -> Optional[str]:
    """A task's data file under the data root, as given (relative paths stay relative: no machine's path is recorded)."""
    if task.generate is not None:
        return None
    if not root:
        raise DataError(f"task {task.name} needs its data: give --data-root DIR (holding {task.default_path}) or set LASER_JAX_DATA")
    path = Path(root) / task.default_path
    if not path.exists():
        raise DataError(f"task {task.name}: {path} does not exist (--data-root must hold {task.default_path})")
    return str(path)


def cmd_compose(args) -> int:
    from laser_jax import results
    from laser_jax.edits import edit_text
    from laser_jax.ground import write_text_atomic
    from laser_jax.loading import load_model
    from laser_jax.models.base import MLP_TAUS
    from laser_jax.selection import compose
    from laser_jax.sweep import SweepOptions
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
    quiet_libraries()
    items = task.load(run_args["data"], limit=run_args.get("limit"))
    model = load_model(run_args["model"], revision=run_args.get("revision"), dtype=dtype(run_args.get("dtype", "float32")))
    layers = None if run_args["layers"] == "all" else run_args["layers"]
    grid_of(model, layers, taus, run_args["rhos"])
    examples = task.examples(items, model.tokenizer)
    result = compose(model, examples, layers=layers, rhos=run_args["rhos"], taus=taus,
                     split_seed=run_args.get("split_seed"), options=SweepOptions(batch_size=run_args.get("batch_size", 32)),
                     progress=not args.quiet)
    edits = [edit_text(step) for step in result.steps]
    record = {"run": str(args.dir), "edits": edits,
              "validation": {"base": result.base_validation, "composed": result.final_validation},
              "test": {"base": result.base_test, "composed": result.final_test},
              "trials": [{"edit": edit_text(t.step), "validation_accuracy": t.accuracy,
                          "kept": t.kept} for t in result.trials]}
    path = Path(args.out) if args.out else Path(args.dir) / COMPOSITION_FILE
    write_text_atomic(path, json.dumps(record, indent=2) + "\n")
    print(f"kept {len(edits)} steps: {' '.join(edits) or '(none)'}")
    for split in ("validation", "test"):
        base, composed = record[split]["base"], record[split]["composed"]
        print(f"{split}: accuracy {base['accuracy']:.4f} -> {composed['accuracy']:.4f}, "
              f"loss {base['answer_nll']:.4f} -> {composed['answer_nll']:.4f}")
    print(path)
    return 0
