"""How well does the first-order screen rank a model's CounterFact LASER grid (default: SmolLM2-135M)?

    python experiments/screen_vs_sweep.py [--model smollm2] --out experiments/results/screen_smollm2

One forward and one backward pass per batch over the validation items (the
first 20% of the examples of ``counterfact/counterfact-val.json`` under
``--data-root``, else ``$LASER_JAX_DATA``, else ``../shared/data``, split exactly
as ``laser-jax sweep --split val+test``) predict the change in
mean validation answer NLL of every variant (every layer × fc_in, fc_up,
fc_out × ρ in 0.9, 0.8, 0.6, 0.2, 0.1, 0.05, 0.01; :mod:`laser_jax.screen`).
They are compared with the true validation loss of the exhaustive sweep of
``bash experiments/run_counterfact.sh MODEL``, merged into
``experiments/results/counterfact_MODEL.csv`` (``--sweep-csv``): Spearman rank
correlation of predicted vs true change (all variants, and by ρ), and where
the true top 5 (by validation accuracy, ties to the lower loss, as
:mod:`laser_jax.selection`) fall in the predicted ranking (by predicted loss
decrease). Writes ``screen.csv`` (one row per variant, predicted and true) and
``summary.md``.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from laser_jax.loading import load_model
from laser_jax.results import read_csv, split_indices, to_csv, write_text_atomic
from laser_jax.screen import screen
from laser_jax.tasks import get_task
from script_args import add_data_root, add_model, model_label, task_data

RESULTS = Path(__file__).resolve().parents[1] / "experiments" / "results"
DEFAULT_MODEL = "smollm2"
TAUS = ("fc_in", "fc_up", "fc_out")
RHOS = (0.9, 0.8, 0.6, 0.2, 0.1, 0.05, 0.01)
TOP_TRUE = 5
TOP_PREDICTED = 50


def true_validation_rows(path: Path) -> tuple[dict, dict]:
    """(base val row, {(layer, tau, rho): val row}) from the sweep's merged CSV."""
    rows = [row for row in read_csv(path) if row["split"] == "val"]
    base = next(row for row in rows if row["tau"] == "none")
    return base, {(int(r["layer"]), r["tau"], float(r["rho"])): r for r in rows if r["tau"] != "none"}


def selection_order(keys, truth) -> list:
    """Variants by validation accuracy (higher first), ties to the lower validation loss, then grid order."""
    return sorted(keys, key=lambda key: (-truth[key]["accuracy"], truth[key]["loss"], keys.index(key)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_model(parser, DEFAULT_MODEL)
    parser.add_argument("--sweep-csv", type=Path, help="the exhaustive sweep's rows (default: experiments/results/counterfact_MODEL.csv)")
    parser.add_argument("--data", help="the CounterFact file swept (default: counterfact/counterfact-val.json under the data root)")
    add_data_root(parser)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--replot", action="store_true", help="only draw screen.png from the screen.csv in --out")
    args = parser.parse_args()
    label = model_label(args.model)
    if args.replot:
        figure(read_csv(args.out / "screen.csv"), args.out / "screen.png", label)
        return
    options = [("--model", None if args.model == DEFAULT_MODEL else args.model), ("--sweep-csv", args.sweep_csv),
               ("--data", args.data), ("--data-root", args.data_root), ("--out", args.out),
               ("--batch-size", None if args.batch_size == 32 else args.batch_size)]
    command = " ".join(["python experiments/screen_vs_sweep.py"] + [f"{flag} {value}" for flag, value in options if value])

    base_truth, truth = true_validation_rows(args.sweep_csv or RESULTS / f"counterfact_{args.model.rstrip('/').rsplit('/', 1)[-1]}.csv")
    task = get_task("counterfact")
    model = load_model(args.model)
    examples = task.examples(task.load(args.data or task_data("counterfact", args.data_root)), model.tokenizer)
    validation = split_indices(len(examples), "val+test")["val"]
    validation_examples = [examples[i] for i in validation]
    if len(validation_examples) != int(base_truth["n"]):
        raise SystemExit(f"{len(validation_examples)} validation examples, the sweep had {base_truth['n']}")

    started = time.perf_counter()
    result = screen(model, validation_examples, range(model.n_layers), TAUS, RHOS, batch_size=args.batch_size)
    seconds = time.perf_counter() - started

    keys = [(row.intervention.layer, row.intervention.tau, row.intervention.rho) for row in result]
    predicted = np.array([row.predicted_change for row in result])
    true = np.array([truth[key]["loss"] - base_truth["loss"] for key in keys])
    predicted_rank = {key: i + 1 for i, key in enumerate(sorted(keys, key=lambda key: predicted[keys.index(key)]))}
    true_rank = {key: i + 1 for i, key in enumerate(sorted(keys, key=lambda key: true[keys.index(key)]))}
    chosen = selection_order(keys, truth)

    rows = [{"layer": layer, "tau": tau, "rho": rho, "predicted_change": float(p), "true_change": float(t),
             "predicted_rank": predicted_rank[(layer, tau, rho)], "true_loss_rank": true_rank[(layer, tau, rho)],
             "selection_rank": chosen.index((layer, tau, rho)) + 1,
             "val_accuracy": truth[(layer, tau, rho)]["accuracy"], "val_loss": truth[(layer, tau, rho)]["loss"]}
            for (layer, tau, rho), p, t in zip(keys, predicted, true)]
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "screen.csv", to_csv(rows, list(rows[0])))
    figure(rows, args.out / "screen.png", label)
    write_text_atomic(args.out / "summary.md", summary(result, keys, predicted, true, predicted_rank, chosen, truth,
                                                       base_truth, seconds, label, model.n_layers, command))
    print((args.out / "summary.md").read_text())


def figure(rows, path: Path, label: str) -> None:
    """Predicted against true change in validation loss, one point per variant, coloured by rho (symlog axes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.6, 4.6))
    rhos = sorted({row["rho"] for row in rows})
    colours = plt.cm.viridis(np.linspace(0, 1, len(rhos)))
    for rho, colour in zip(rhos, colours):
        at = [row for row in rows if row["rho"] == rho]
        ax.scatter([r["predicted_change"] for r in at], [r["true_change"] for r in at], s=9, color=colour, label=f"ρ={rho:g}")
    top = [row for row in rows if row["selection_rank"] <= 5]
    ax.scatter([r["predicted_change"] for r in top], [r["true_change"] for r in top], s=60, facecolors="none",
               edgecolors="red", label="true top 5 (val accuracy)")
    ends = [min(min(r["predicted_change"], r["true_change"]) for r in rows), max(max(r["predicted_change"], r["true_change"]) for r in rows)]
    ax.plot(ends, ends, color="grey", lw=1, ls="--")
    ax.set_xscale("symlog", linthresh=0.1)
    ax.set_yscale("symlog", linthresh=0.1)
    ax.set_xlabel("predicted change in val loss (first order)")
    ax.set_ylabel("true change in val loss (sweep)")
    ax.set_title(f"{label}, CounterFact: the first-order screen, {len(rows)} variants", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def spearman(a, b) -> float:
    return float(spearmanr(a, b).statistic) if len(a) > 2 else math.nan


def summary(result, keys, predicted, true, predicted_rank, chosen, truth, base_truth, seconds, label, n_layers,
            command) -> str:
    rho_of = np.array([key[2] for key in keys])
    small = rho_of >= 0.6
    lines = [
        f"# First-order screen vs the exhaustive sweep: {label}, CounterFact validation",
        "",
        "```",
        command,
        "```",
        "",
        f"{len(keys)} variants ({n_layers} layers × {', '.join(TAUS)} × ρ in {', '.join(map(str, RHOS))}), "
        f"{int(base_truth['n'])} validation items; screen: one forward + backward per batch and the {n_layers * len(TAUS)} SVDs, "
        f"{seconds:.0f} s on this shared 2-core CPU.",
        f"Base validation loss (mean answer NLL): screen {result.base_loss:.6f}, sweep {base_truth['loss']:.6f}.",
        "",
        "## Rank correlation of predicted and true change in validation loss",
        "",
        "| variants | n | Spearman |",
        "|---|---|---|",
        f"| all | {len(keys)} | {spearman(predicted, true):.3f} |",
        f"| ρ ≥ 0.6 (small edits) | {small.sum()} | {spearman(predicted[small], true[small]):.3f} |",
        f"| ρ ≤ 0.2 | {(~small).sum()} | {spearman(predicted[~small], true[~small]):.3f} |",
    ]
    for rho in RHOS:
        pick = rho_of == rho
        lines.append(f"| ρ = {rho} | {pick.sum()} | {spearman(predicted[pick], true[pick]):.3f} |")
    for tau in TAUS:
        pick = np.array([key[1] == tau for key in keys])
        lines.append(f"| τ = {tau} | {pick.sum()} | {spearman(predicted[pick], true[pick]):.3f} |")
    sign_agree = float(np.mean(np.sign(predicted) == np.sign(true)))
    lines += [
        "",
        f"Sign of the change predicted correctly for {sign_agree:.1%} of the variants; "
        f"the true loss falls for {int((true < 0).sum())} of {len(keys)}, the predicted for {int((predicted < 0).sum())}.",
        "",
        f"## The true top {TOP_TRUE} (validation accuracy, ties to lower loss) in the predicted ranking",
        "",
        "| variant | val accuracy | true Δloss | predicted Δloss | predicted rank | "
        f"in predicted top {TOP_PREDICTED} |",
        "|---|---|---|---|---|---|",
    ]
    for key in chosen[:TOP_TRUE]:
        i = keys.index(key)
        lines.append(f"| L{key[0]} {key[1]} ρ={key[2]} | {truth[key]['accuracy']:.4f} | {true[i]:+.4f} | "
                     f"{predicted[i]:+.4f} | {predicted_rank[key]} | {'yes' if predicted_rank[key] <= TOP_PREDICTED else 'no'} |")
    hits = sum(predicted_rank[key] <= TOP_PREDICTED for key in chosen[:TOP_TRUE])
    lines += [
        "",
        f"{hits} of the true top {TOP_TRUE} are in the predicted top {TOP_PREDICTED} "
        f"(chance: {TOP_TRUE * TOP_PREDICTED / len(keys):.2f} expected).",
        f"Base validation accuracy {base_truth['accuracy']:.4f}.",
        "",
        "## The predicted top 10",
        "",
        "| predicted rank | variant | predicted Δloss | true Δloss | val accuracy | selection rank |",
        "|---|---|---|---|---|---|",
    ]
    for key in sorted(keys, key=lambda key: predicted_rank[key])[:10]:
        i = keys.index(key)
        lines.append(f"| {predicted_rank[key]} | L{key[0]} {key[1]} ρ={key[2]} | {predicted[i]:+.4f} | {true[i]:+.4f} | "
                     f"{truth[key]['accuracy']:.4f} | {chosen.index(key) + 1} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
