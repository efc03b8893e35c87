"""Marchenko-Pastur ranks against the rho grid on CounterFact, per layer and matrix type (default: SmolLM2-135M).

    python experiments/mp_vs_grid.py [--model smollm2] --out experiments/results/mp_table_smollm2

Reads two runs of ``--model``, no model: the MP-rank selection run (``bash experiments/run_table_mp.sh MODEL``: each
MLP matrix cut to its own MP rank, ``experiments/results/mp_table_MODEL/counterfact``; ``--mp-run``) and the exhaustive
rho grid (``bash experiments/run_counterfact.sh MODEL``, merged into ``experiments/results/counterfact_MODEL.csv``;
``--grid-csv``: the same matrices at the paper's seven rho). Per (layer, tau) it compares the validation accuracy
(the first 20% of the items) of the MP rank with the best rho of the grid, and writes ``mp_vs_grid.png`` (one panel
per tau) and ``mp_vs_grid.md`` with the test numbers of both selections.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from laser_jax.report import rank_key, select_best, split_rows  # noqa: E402
from laser_jax.results import BASE_TAU, load_results, read_csv, write_text_atomic  # noqa: E402
from script_args import add_model, model_label  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "experiments" / "results"
TAUS = ("fc_in", "fc_up", "fc_out")
DEFAULT_MODEL = "smollm2"


def best_per_matrix(rows) -> dict:
    """(layer, tau) -> the validation row ranked first among that matrix's variants."""
    best = {}
    for key, row in split_rows(rows, "val").items():
        if key[0] == BASE_TAU:
            continue
        matrix = (key[1], key[0])
        if matrix not in best or rank_key(row) < rank_key(best[matrix]):
            best[matrix] = row
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_model(parser, DEFAULT_MODEL)
    parser.add_argument("--mp-run", type=Path, help="the MP-rank run directory (default: experiments/results/mp_table_MODEL/counterfact)")
    parser.add_argument("--grid-csv", type=Path, help="the rho grid's rows (default: experiments/results/counterfact_MODEL.csv)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    name = args.model.rstrip("/").rsplit("/", 1)[-1]
    _, mp_rows = load_results(args.mp_run or RESULTS / f"mp_table_{name}" / "counterfact")
    grid_rows = read_csv(args.grid_csv or RESULTS / f"counterfact_{name}.csv")
    options = [("--model", None if args.model == DEFAULT_MODEL else args.model), ("--mp-run", args.mp_run),
               ("--grid-csv", args.grid_csv), ("--out", args.out)]
    command = " ".join(["python experiments/mp_vs_grid.py"] + [f"{flag} {value}" for flag, value in options if value])
    label = model_label(args.model)
    mp, grid = best_per_matrix(mp_rows), best_per_matrix(grid_rows)
    base_row = split_rows(mp_rows, "val")[(BASE_TAU, None, None)]
    base = base_row["accuracy"]
    layers = sorted({layer for layer, _ in mp})
    fig, axes = plt.subplots(1, len(TAUS), figsize=(5 * len(TAUS), 3.6), sharey=True)
    for ax, tau in zip(axes, TAUS):
        ax.plot(layers, [100 * grid[(l, tau)]["accuracy"] for l in layers], marker="o", ms=3, label="best ρ of the grid")
        ax.plot(layers, [100 * mp[(l, tau)]["accuracy"] for l in layers], marker="s", ms=3, label="MP rank")
        ax.axhline(100 * base, color="grey", ls="--", lw=1, label="base")
        ax.set_title(tau)
        ax.set_xlabel("layer")
    axes[0].set_ylabel(f"validation accuracy % ({int(base_row['n'])} items)")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{label}, CounterFact: each matrix at its Marchenko-Pastur rank vs the best ρ of the grid")
    fig.tight_layout()
    args.out.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out / "mp_vs_grid.png", dpi=120, bbox_inches="tight")

    at_least = sum(mp[m]["accuracy"] >= grid[m]["accuracy"] for m in mp)
    above_base = sum(mp[m]["accuracy"] > base for m in mp), sum(grid[m]["accuracy"] > base for m in grid)
    lines = [f"# Marchenko-Pastur ranks vs the ρ grid ({label}, CounterFact)", "", "```", command, "```", "",
             "| selection over | chosen ℓ, τ, ρ (k) | val accuracy (loss) | test accuracy (loss) |", "|---|---|---|---|"]
    n_mp, n_grid = (len({key for key in split_rows(rows, "val") if key[0] != BASE_TAU}) for rows in (mp_rows, grid_rows))
    for name, rows in ((f"{n_mp} MP-rank variants", mp_rows), (f"{n_grid} grid variants", grid_rows)):
        key = select_best(rows, "val")
        val, test = split_rows(rows, "val")[key], split_rows(rows, "test")[key]
        lines.append(f"| {name} | {key[1]}, {key[0]}, {key[2]:.4g} ({val['k']}) | {100 * val['accuracy']:.2f}% "
                     f"({val['loss']:.3f}) | {100 * test['accuracy']:.2f}% = {round(test['accuracy'] * test['n'])} of "
                     f"{test['n']} ({test['loss']:.3f}) |")
    lines += ["", f"Per matrix ({len(mp)}): the MP rank's validation accuracy is at least the grid's best on {at_least}; "
              f"above the base ({100 * base:.2f}%) for {above_base[0]} MP ranks and for the grid's best of "
              f"{above_base[1]} matrices.", "", "![MP vs grid](mp_vs_grid.png)", ""]
    write_text_atomic(args.out / "mp_vs_grid.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
