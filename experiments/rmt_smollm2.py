"""Marchenko-Pastur ranks of SmolLM2-135M's 90 MLP matrices, and its layers ranked by signal-to-noise ratio.

    python experiments/rmt_smollm2.py --out experiments/results/rmt_smollm2

For each of the 30 layers × fc_in, fc_up, fc_out (:mod:`laser_jax.rmt`: the
Gavish-Donoho median noise estimate, the MP edge, the rank above it, the SNR)
and, per layer, the SNR of its three matrices pooled. Does the lowest SNR point
at layer 28, where the exhaustive CounterFact sweep found LASER's gain
(``experiments/results/counterfact_smollm2.md``)? Writes ``spectra.csv``
(the table of ``laser-jax rmt``), ``layers.csv`` and ``summary.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from laser_jax.gguf import smollm2_path
from laser_jax.loading import load_model
from laser_jax.results import read_csv, to_csv, write_text_atomic
from laser_jax.rmt import CSV_COLUMNS, layer_snr, spectra

REPO = Path(__file__).resolve().parents[1]
SWEEP_CSV = REPO / "experiments" / "results" / "counterfact_smollm2.csv"
TAUS = ("fc_in", "fc_up", "fc_out")
COMMAND = "python experiments/rmt_smollm2.py --out experiments/results/rmt_smollm2"


def best_gain_per_layer(path: Path) -> dict[int, float]:
    """Per layer, the best validation accuracy of its 21 variants minus the base's."""
    rows = [row for row in read_csv(path) if row["split"] == "val"]
    base = next(row["accuracy"] for row in rows if row["tau"] == "none")
    gains: dict[int, float] = {}
    for row in rows:
        if row["tau"] != "none":
            gains[int(row["layer"])] = max(gains.get(int(row["layer"]), -1.0), row["accuracy"] - base)
    return gains


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    model = load_model(str(smollm2_path()))
    rows = spectra(model, range(model.n_layers), TAUS)
    pooled = layer_snr(rows)
    gains = best_gain_per_layer(SWEEP_CSV)
    layers = sorted(pooled, key=lambda layer: pooled[layer])
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "spectra.csv", to_csv([s.row() for s in rows], CSV_COLUMNS))
    layer_rows = [{"layer": layer, "snr": pooled[layer], "snr_rank": i + 1, "best_val_gain": gains[layer]}
                  for i, layer in enumerate(layers)]
    write_text_atomic(args.out / "layers.csv", to_csv(layer_rows, list(layer_rows[0])))

    by = {(s.layer, s.tau): s for s in rows}
    lines = ["# Marchenko-Pastur ranks of SmolLM2-135M's MLP matrices", "", "```", COMMAND, "```", "",
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
    rank_28 = layers.index(28) + 1
    lines += ["", "## Layers by pooled SNR, lowest first", "",
              ", ".join(f"{layer} ({pooled[layer]:.3f})" for layer in layers), "",
              f"Layer 28 (the sweep's best, validation gain {gains[28]:+.4f}) is number {rank_28} of 30 from the lowest SNR "
              f"(number {31 - rank_28} from the highest). Spearman correlation over the 30 layers between pooled SNR and "
              f"the best validation gain of the layer's 21 variants: {correlation:.3f}.",
              f"MP ρ over the 90 matrices: median {np.median([s.rho for s in rows]):.3f}, "
              f"range {min(s.rho for s in rows):.3f} to {max(s.rho for s in rows):.3f}."]
    write_text_atomic(args.out / "summary.md", "\n".join(lines) + "\n")
    print((args.out / "summary.md").read_text())


if __name__ == "__main__":
    main()
