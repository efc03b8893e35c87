"""Marchenko-Pastur ranks of a model's MLP matrices, and its layers ranked by signal-to-noise ratio (default: SmolLM2-135M).

    python experiments/rmt_snr.py [--model smollm2] --out experiments/results/rmt_smollm2

For each layer × fc_in, fc_up, fc_out (:mod:`laser_jax.rmt`: the
Gavish-Donoho median noise estimate, the MP edge, the rank above it, the SNR)
and, per layer, the SNR of its three matrices pooled. Does the lowest SNR point
at the layer where the exhaustive CounterFact sweep found LASER's gain (for
SmolLM2, layer 28: ``experiments/results/counterfact_smollm2.md``)? The sweep's
rows are ``experiments/results/counterfact_MODEL.csv`` (``--sweep-csv``; made by
``bash experiments/run_counterfact.sh MODEL`` and its summary). Writes
``spectra.csv`` (the table of ``laser-jax rmt``), ``layers.csv`` and ``summary.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from laser_jax.loading import load_model
from laser_jax.report import select_best
from laser_jax.results import read_csv, to_csv, write_text_atomic
from laser_jax.rmt import CSV_COLUMNS, layer_snr, spectra
from script_args import add_model, model_label

RESULTS = Path(__file__).resolve().parents[1] / "experiments" / "results"
TAUS = ("fc_in", "fc_up", "fc_out")
DEFAULT_MODEL = "smollm2"


def best_gain_per_layer(path: Path) -> tuple[dict[int, float], int]:
    """Per layer, the best validation accuracy of its variants minus the base's; and the variants per layer."""
    rows = [row for row in read_csv(path) if row["split"] == "val"]
    base = next(row["accuracy"] for row in rows if row["tau"] == "none")
    gains: dict[int, float] = {}
    for row in rows:
        if row["tau"] != "none":
            gains[int(row["layer"])] = max(gains.get(int(row["layer"]), -1.0), row["accuracy"] - base)
    return gains, (len(rows) - 1) // len(gains)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_model(parser, DEFAULT_MODEL)
    parser.add_argument("--sweep-csv", type=Path, help="the exhaustive sweep's rows (default: experiments/results/counterfact_MODEL.csv)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    options = [("--model", None if args.model == DEFAULT_MODEL else args.model), ("--sweep-csv", args.sweep_csv),
               ("--out", args.out)]
    command = " ".join(["python experiments/rmt_snr.py"] + [f"{flag} {value}" for flag, value in options if value])
    sweep_csv = args.sweep_csv or RESULTS / f"counterfact_{args.model.rstrip('/').rsplit('/', 1)[-1]}.csv"
    gains, per_layer = best_gain_per_layer(sweep_csv)
    best = select_best(read_csv(sweep_csv), "val")[1]  # the layer of the variant the sweep selects
    model = load_model(args.model)
    rows = spectra(model, range(model.n_layers), TAUS)
    pooled = layer_snr(rows)
    layers = sorted(pooled, key=lambda layer: pooled[layer])
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "spectra.csv", to_csv([s.row() for s in rows], CSV_COLUMNS))
    layer_rows = [{"layer": layer, "snr": pooled[layer], "snr_rank": i + 1, "best_val_gain": gains[layer]}
                  for i, layer in enumerate(layers)]
    write_text_atomic(args.out / "layers.csv", to_csv(layer_rows, list(layer_rows[0])))

    by = {(s.layer, s.tau): s for s in rows}
    lines = [f"# Marchenko-Pastur ranks of {model_label(args.model)}'s MLP matrices", "", "```", command, "```", "",
             "Noise scale: Gavish & Donoho's median estimator; MP rank: singular values above σ̂(√n + √m); "
             "SNR: energy above the edge / energy below it (`laser_jax.rmt`).", "",
             "## MP rank (and ρ = rank / full rank) per matrix", "",
             "| layer | " + " | ".join(TAUS) + " | pooled SNR | best val gain of the layer's LASER variants |",
             "|---|" + "---|" * (len(TAUS) + 2)]
    for layer in range(model.n_layers):
        cells = [f"{by[(layer, tau)].rank} ({by[(layer, tau)].rho:.3f}), SNR {by[(layer, tau)].snr:.2f}" for tau in TAUS]
        lines.append(f"| {layer} | " + " | ".join(cells) + f" | {pooled[layer]:.3f} | {gains[layer]:+.4f} |")
    correlation = spearmanr([pooled[layer] for layer in range(model.n_layers)],
                            [gains[layer] for layer in range(model.n_layers)]).statistic
    rank = layers.index(best) + 1
    lines += ["", "## Layers by pooled SNR, lowest first", "",
              ", ".join(f"{layer} ({pooled[layer]:.3f})" for layer in layers), "",
              f"Layer {best} (the sweep's best, validation gain {gains[best]:+.4f}) is number {rank} of {model.n_layers} from "
              f"the lowest SNR (number {model.n_layers + 1 - rank} from the highest). Spearman correlation over the "
              f"{model.n_layers} layers between pooled SNR and the best validation gain of the layer's {per_layer} variants: "
              f"{correlation:.3f}.",
              f"MP ρ over the {len(rows)} matrices: median {np.median([s.rho for s in rows]):.3f}, "
              f"range {min(s.rho for s in rows):.3f} to {max(s.rho for s in rows):.3f}."]
    write_text_atomic(args.out / "summary.md", "\n".join(lines) + "\n")
    print((args.out / "summary.md").read_text())


if __name__ == "__main__":
    main()
