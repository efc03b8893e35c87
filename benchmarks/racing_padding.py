"""Benchmark (not a test, host only: no forward pass): the padded work of racing's looks, with and without riders.

Default: the protocol benchmark's setting (SmolLM2-135M's tokenizer, CounterFact's 3,838 items under the data root,
layers 26-29 x fc_in, fc_up, fc_out x the paper's seven rho, ``batch_size`` 32). Builds the run's plan
(:class:`laser_jax.sweep.SweepPlan`), then for each look of :class:`laser_jax.protocol.Racing` over the validation
items prints its items, the items scored ahead in its free rows (:meth:`laser_jax.batching.ShapePlan.spare_rows`,
as :func:`laser_jax.protocol.race` picks them), its batches and padded positions (``rows x length``), against the
same looks without riders and one pass over all of validation.
Run: ``python benchmarks/racing_padding.py`` (``--model``, ``--limit``, ``--batch-size`` for others).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from laser_jax.batching import plan_sequences
from laser_jax.protocol import Racing, look_sweep
from laser_jax.selection import validation_split
from laser_jax.sweep import SweepOptions, SweepPlan

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
from script_args import counterfact_setting  # noqa: E402  (experiments/script_args.py)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=32)
    args, model, examples, grid = counterfact_setting(parser, layers="26-29")
    plan = SweepPlan.build(model, examples, grid, SweepOptions(batch_size=args.batch_size))
    validation, _ = validation_split(len(examples))
    items = [examples[i] for i in validation]

    def padded(indices) -> tuple[int, int]:
        layout = plan.shapes.layout(plan_sequences([items[i] for i in indices])) if len(indices) else []
        return len(layout), sum(shape.rows * shape.length for shape, _ in layout)

    print(f"{len(examples)} items, plan: {plan.shapes.describe()}")
    print(f"one pass over validation ({len(items)} items): {padded(range(len(items)))[1]:,} padded positions")
    racing = Racing()
    order, bounds = racing.order(len(items)), racing.looks(len(items))
    done: set[int] = set()
    totals = [0, 0]
    for look, stop in enumerate(bounds):
        own = [int(i) for i in order[bounds[look - 1] if look else 0:stop]]
        left = len([i for i in own if i not in done])
        run = look_sweep(plan.shapes, items, own, order[stop:], done)
        done.update(run)
        alone, ridden = padded(own), padded(run)
        totals[0] += alone[1]
        totals[1] += ridden[1]
        print(f"look {look}: {len(own)} items; alone {alone[0]} batches, {alone[1]:,} positions; with riders "
              f"{left} left + {len(run) - left} ahead, {ridden[0]} batches, {ridden[1]:,} positions")
    print(f"looks: {totals[0]:,} padded positions alone, {totals[1]:,} with riders")


if __name__ == "__main__":
    main()
