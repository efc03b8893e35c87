"""Figures of the synthetic task on CPU (preset ``quick``): dynamics, probes, ρ x matrix heatmap, toy memory.

    python experiments/synthetic_quick.py [--out experiments/results/synthetic_quick] [--seeds 3] [--alpha 0.5]

Writes dynamics.png, probes.png, heatmap.png, assoc_memory.png, metrics.json and
summary.json, and prints the before/after table and the wall time.
"""

import sys

from synthetic.run import main

if __name__ == "__main__":
    args = sys.argv[1:]
    if "--out" not in args:
        args += ["--out", "experiments/results/synthetic_quick"]
    sys.exit(main(["--preset", "quick", *args]))
