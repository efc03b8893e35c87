"""``laser-jax sweep``, and the run machinery that ``table`` shares: the grid, the exhaustive sweep and the selection
protocol into a resumable run directory (:mod:`laser_jax.sweep`, :mod:`laser_jax.protocol`, :mod:`laser_jax.results`)."""

from __future__ import annotations

import sys

from laser_jax.cli.arguments import (DEFAULT_RHOS, add_batch_argument, add_device_arguments,
                                     add_grid_arguments, add_model_arguments, add_protocol_arguments, add_split_seed_argument,
                                     check_counts, data_source, dtype, parse_layers, parse_rhos, parse_taus, quiet_libraries,
                                     setup_devices, split_seed_args)
from laser_jax.errors import DataError

SCREEN_FILE = "screen.csv"  # a --screen-top run's screen of its whole grid, read back on resume


def register(commands) -> None:
    sweep = commands.add_parser("sweep", help="evaluate every (layer, tau, rho) reduction of a model on a task (resumable)",
                                description="Evaluate the base model and every (layer, tau, rho) rank reduction on a task. "
                                            "Rows are written as they finish; rerun the same command to resume.")
    add_model_arguments(sweep)
    sweep.add_argument("--task", required=True, metavar="NAME", help="task name (e.g. counterfact)")
    sweep.add_argument("--data", metavar="FILE", help="data file (default: the task's file under $LASER_JAX_DATA, else its hub id)")
    sweep.add_argument("--limit", type=int, metavar="N", help="use the first N records")
    sweep.add_argument("--split", choices=("all", "val+test"), default="val+test",
                       help="val+test: first 20%% validation, rest test (default); all: one split")
    add_split_seed_argument(sweep)
    add_grid_arguments(sweep, rhos=DEFAULT_RHOS)
    sweep.add_argument("--out", required=True, metavar="DIR", help="run directory: results.csv, scores/, run.json")
    add_batch_argument(sweep)
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    add_protocol_arguments(sweep)
    add_device_arguments(sweep)
    sweep.set_defaults(func=cmd_sweep)


def cmd_sweep(args) -> int:
    from laser_jax.tasks import get_task

    layers, taus, rhos = parse_layers(args.layers), parse_taus(args.taus), parse_rhos(args.rhos)
    check_counts(args)
    if args.mode == "selection" and args.split != "val+test":
        raise DataError("--mode selection selects on validation: it needs --split val+test")
    if args.mode != "selection" and args.screen_top is not None:
        raise DataError("--screen-top prunes the grid of a selection run: use it with --mode selection")
    if args.split_seed is not None and args.split != "val+test":
        raise DataError("--split-seed draws the validation part: it needs --split val+test")
    devices = setup_devices(args)  # before any JAX computation: may join a multi-process run
    task = get_task(args.task)
    data = data_source(task, args.data)
    quiet_libraries()
    items = task.load(data, limit=args.limit)
    run_args = sweep_run_args(args, task.name, data, layers, taus, rhos)
    from laser_jax.loading import load_model

    store = open_store(devices, args.out, run_args, args.argv)
    model = load_model(args.model, revision=args.revision, dtype=dtype(args.dtype))
    if args.mode == "selection":
        run_selection(model, task, items, store, layers, taus, rhos, args, devices)
    else:
        run_exhaustive(model, task, items, store, layers, taus, rhos, args, devices)
    print(f"{len(store.rows)} rows in {store.directory / 'results.csv'}")
    return 0


def sweep_run_args(args, task: str, data, layers, taus, rhos) -> dict:
    """What a sweep's ``run.json`` records, and a resumed run must match: model and data as the user gave them."""
    run_args = {"model": args.model, "revision": args.revision, "task": task, "data": data,
                "limit": args.limit, "split": args.split, "layers": "all" if layers is None else layers, "taus": taus,
                "rhos": rhos, "batch_size": args.batch_size, "dtype": args.dtype, **split_seed_args(args)}
    if args.mode == "selection":
        run_args.update(selection_args(args))
    return run_args


def racing(args):
    """The run's :class:`~laser_jax.protocol.Racing`, or None without ``--racing``."""
    if not args.racing:
        return None
    from laser_jax.protocol import Racing

    return Racing(delta=args.racing_delta, first=args.racing_first)


def selection_args(args) -> dict:
    """A selection run's protocol options, as its ``run.json`` records them."""
    race = racing(args)
    screen = {} if args.screen_top is None else {"screen_top": args.screen_top}  # absent when off: older runs resume
    return {"mode": "selection", "top_n": args.top_n, "racing": None if race is None else race.as_args(), **screen}


def open_store(devices, out, run_args, argv):
    """The run directory (refusing another run's); in a multi-process run only process 0 writes."""
    from laser_jax import results

    def make_store():
        return results.ResultsStore(out, run_args, info={"argv": argv})

    if devices.num_processes == 1:
        return make_store()
    return results.FollowerStore(make_store if devices.is_writer else None)


def grid_of(model, layers, taus, rhos):
    """The run's interventions, each checked against the model (``rhos == ["mp"]``: each matrix's MP rank)."""
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


def rank_of(model, step) -> int:
    """k of an intervention (of its first matrix, for a τ group)."""
    from laser_jax import laser

    tau = laser.matrices_of(model.family, step.tau)[0]
    return laser.rank_for(step.rho, model.params["blocks"][tau].shape)


def run_exhaustive(model, task, items, store, layers, taus, rhos, args, devices) -> None:
    from laser_jax import results
    from laser_jax.sweep import SweepOptions, sweep

    grid = grid_of(model, layers, taus, rhos)
    examples = task.examples(items, model.tokenizer)
    splits = results.split_indices(len(examples), args.split, getattr(args, "split_seed", None))
    done_keys = {results.intervention_key(key) for key in store.done()}
    skip = results.resume_skip(store.done(), grid)
    store.start()
    if done_keys:
        print(f"resuming {store.directory}: {len(done_keys)} of {len(grid) + 1} variants already done", file=sys.stderr)

    def on_row(row) -> None:
        if row.key in done_keys:  # recomputed with its (layer, tau) group; keep the stored rows
            return
        k = None if row.intervention is None else rank_of(model, row.intervention)
        store.record(results.sweep_rows(row, splits, k), scores=results.example_columns(row, splits))

    try:
        with devices.matmul_precision():
            sweep(model, examples, grid, options=SweepOptions(batch_size=args.batch_size, mesh=devices.mesh), skip=skip,
                  on_row=on_row, progress=not args.quiet and devices.is_writer)
    finally:
        store.close()


def run_selection(model, task, items, store, layers, taus, rhos, args, devices) -> dict:
    """The selection protocol of one task into ``store``; returns the run's wall/CPU seconds per phase, summed over resumes."""
    from laser_jax import protocol, results
    from laser_jax.ground import timing_line
    from laser_jax.selection import TEST, VALIDATION
    from laser_jax.sweep import SweepOptions

    grid = grid_of(model, layers, taus, rhos)
    examples = task.examples(items, model.tokenizer)
    recorder = results.StoreRecorder(store, lambda step: rank_of(model, step), writer=devices.is_writer)
    store.start()
    try:
        with devices.matmul_precision():
            if args.screen_top is not None:
                grid = protocol.top_predicted(grid, screen_predictions(model, examples, grid, store, args, devices),
                                              args.screen_top)
                recorder.lap("screen")
            done = len(recorder.done(VALIDATION))
            if done:
                print(f"resuming {store.directory}: {done} of {len(grid) + 1} variants already scored on validation",
                      file=sys.stderr)
            run = protocol.run_selection(model, examples, grid, recorder, top_n=args.top_n, racing=racing(args),
                                         split_seed=getattr(args, "split_seed", None),
                                         progress=not args.quiet and devices.is_writer,
                                         options=SweepOptions(batch_size=args.batch_size, mesh=devices.mesh))
        total = recorder.lap(TEST)  # what is left after the last row: the recorder counts time as rows land
    finally:
        store.close()
    if run.stopped:
        print(f"racing stopped {len(run.stopped)} of {len(grid)} variants early", file=sys.stderr)
    tested = ", ".join(f"{step.tau}:{step.layer}:{step.rho:g}" for step in run.tested)
    print(f"{store.directory}: tested on the test part: base, {tested}")
    print(f"{store.directory}: {timing_line(total)}")
    return total


def screen_predictions(model, examples, grid, store, args, devices) -> dict:
    """The first-order screen's predicted change per variant of ``grid``, on the validation part: read from the run's
    ``screen.csv`` when it covers this grid (a resumed run skips the screen), else computed and written there."""
    from laser_jax import laser, protocol, results, screen
    from laser_jax.ground import write_text_atomic

    path = store.directory / SCREEN_FILE
    if path.exists():
        stored = {laser.Intervention(row["layer"], row["tau"], row["rho"], row["keep"]): row["predicted_change"]
                  for row in results.read_csv(path)}
        if set(stored) == set(grid):
            return stored
    result = protocol.validation_screen(model, examples, grid, batch_size=args.batch_size,
                                        split_seed=getattr(args, "split_seed", None))
    if devices.is_writer:
        write_text_atomic(path, results.to_csv(result.csv_rows(), screen.CSV_COLUMNS))
    return {row.intervention: row.predicted_change for row in result.rows}
