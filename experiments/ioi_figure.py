"""IOI on the real models: base against the selected LASER variant, one panel per model.

    python experiments/ioi_figure.py --out experiments/results/ioi.png

Reads the IOI selection runs of ``bash experiments/run_ioi.sh`` (no model): ``experiments/results/ioi_smollm2/ioi``
and ``experiments/results/ioi_gemma3-270m/ioi``. For the base and the variant selected on validation it draws, on
the 400 test items, the mean probability of the indirect object and of the subject
(:func:`laser_jax.report.candidate_means`), the mean summed probability of the generic words (" the", " a", " of")
and the share of items whose top next token is the indirect object.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from laser_jax.report import candidate_means, select_best, split_rows  # noqa: E402
from laser_jax.results import BASE_TAU, load_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RUNS = {"SmolLM2-135M": REPO / "experiments" / "results" / "ioi_smollm2" / "ioi",
        "Gemma 3 270M": REPO / "experiments" / "results" / "ioi_gemma3-270m" / "ioi"}
MEASURES = ("P(indirect object)", "P(subject)", "P(generic words)", "top token = IO")


def measures(directory: Path) -> dict[tuple, list[float]]:
    """Per model (base, selected variant): the four :data:`MEASURES` on test."""
    _, rows = load_results(directory)
    test = split_rows(rows, "test")
    means = candidate_means(directory, rows)
    return {key: [*means[key], test[key]["p_generic"], test[key]["top1_accuracy"]]
            for key in [(BASE_TAU, None, None), select_best(rows, "val")]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    fig, axes = plt.subplots(1, len(RUNS), figsize=(6 * len(RUNS), 3.4), sharey=True)
    x = np.arange(len(MEASURES))
    for ax, (name, directory) in zip(axes, RUNS.items()):
        (base_key, base), (best_key, best) = measures(directory).items()
        tau, layer, rho = best_key
        ax.bar(x - 0.2, base, 0.4, label="base")
        ax.bar(x + 0.2, best, 0.4, label=f"LASER: {tau} L{layer} ρ={rho:g}")
        ax.set_xticks(x, MEASURES, fontsize=8)
        ax.set_title(f"{name}, IOI (400 test items)", fontsize=10)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("mean over test items")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120, bbox_inches="tight")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
