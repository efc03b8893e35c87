"""The associative-memory toy alone: spectrum of W over training and truncation sweeps.

    python experiments/synthetic_assoc_memory.py [--out experiments/results/synthetic_assoc_memory]

Two runs: the exact population gradient, and minibatch SGD (batch 32), which
adds the gradient noise of the paper's analysis. Writes one JSON and one PNG per run.
"""

import argparse
import json
from pathlib import Path

from synthetic import assoc_memory, plots


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="experiments/results/synthetic_assoc_memory")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = {"population": assoc_memory.AssocConfig(),
            "sgd_batch32": assoc_memory.AssocConfig(batch_size=32, learning_rate=1.0, steps=5000,
                                                    log_steps=(1, 10, 100, 1000, 5000))}
    for name, cfg in runs.items():
        result = assoc_memory.train(cfg)
        (out / f"{name}.json").write_text(json.dumps(result, indent=1))
        plots.plot_assoc_memory(result, out / f"{name}.png")
        print(f"{name}:")
        print("\n".join(assoc_memory.summary_lines(result)))


if __name__ == "__main__":
    main()
