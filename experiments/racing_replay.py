"""Racing replayed offline on a finished run's per-example validation scores (no model is run).

For each racing setting and order seed, :func:`laser_jax.protocol.replay_race` says which variants racing would
have stopped and how many variant-items it would have scored; this script reports that against the full grid,
and whether the winner and the best of each tau (selected on the whole validation part) survive.

Run: ``python experiments/racing_replay.py RUN_DIR [--out FILE.md]`` on a selection or exhaustive run directory
whose stored scores (``scores/`` or ``scores.npz``) hold every variant's validation rows (a run of ``bash experiments/run_table.sh counterfact``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from laser_jax.laser import Intervention
from laser_jax.protocol import Racing, replay_race
from laser_jax.report import rank_key
from laser_jax.results import BASE_TAU, intervention_key, load_results, load_scores, variant_key
from laser_jax.sweep import BASE_KEY, ExampleScores


def validation_scores(directory) -> tuple[dict[str, ExampleScores], list[Intervention], dict]:
    """Every variant's validation scores (correctness and answer NLL per item), the variants, and their val rows."""
    _, rows = load_results(directory)
    validation = {variant_key(row): row for row in rows if row["split"] == "val"}
    scores, variants = {}, []
    for key in validation:
        table = [r for r in load_scores(directory, key) if r["split"] == "val"]
        if not table:
            raise SystemExit(f"{directory}: no per-example scores for {key}")
        correct = np.array([bool(r["correct"]) for r in table])
        nll = np.array([r["answer_nll"] for r in table], np.float64)
        empty = np.full((len(table), 0), np.nan)
        scores[intervention_key(key)] = ExampleScores(
            top1=correct, topk=correct, answer_nll=nll, answer_first_logprob=-nll, choice_logprobs=empty,
            choice_correct=np.zeros(len(table), bool), has_choices=np.zeros(len(table), bool), probe_logprobs=empty,
            label=np.full(len(table), -1))
        if key[0] != BASE_TAU:
            variants.append(Intervention(key[1], key[0], key[2]))
    return scores, variants, validation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()
    scores, variants, rows = validation_scores(args.run)
    n = len(scores[BASE_KEY])
    by_rank = sorted(variants, key=lambda iv: rank_key(rows[(iv.tau, iv.layer, iv.rho)]))
    winners = {"overall": by_rank[0], **{tau: next(iv for iv in by_rank if iv.tau == tau) for tau in dict.fromkeys(iv.tau for iv in variants)}}
    full = n * len(variants)
    lines = [f"# Racing replayed on `{args.run}`", "",
             f"Command: `python experiments/racing_replay.py {args.run}`. {len(variants)} variants x {n} validation items "
             f"= {full:,} variant-items without racing. Winner: {winners['overall'].key}; best per tau: "
             + ", ".join(f"{tau} {iv.key}" for tau, iv in winners.items() if tau != "overall") + ".", "",
             "| delta | first look | seeds | variant-items (mean) | fraction of the grid | stopped (mean) | winner kept | every tau's best kept |",
             "|---|---|---|---|---|---|---|---|"]
    for delta in (0.05, 0.2):
        for first in (64, 128, 256):
            racing_runs = [replay_race(scores, variants, Racing(delta=delta, first=first, seed=seed)) for seed in range(args.seeds)]
            items = [count for _, count in racing_runs]
            stopped = [len(s) for s, _ in racing_runs]
            winner_kept = sum(winners["overall"].key not in s for s, _ in racing_runs)
            all_kept = sum(all(iv.key not in s for iv in winners.values()) for s, _ in racing_runs)
            lines.append(f"| {delta} | {first} | {args.seeds} | {np.mean(items):,.0f} | {np.mean(items) / full:.3f} | "
                         f"{np.mean(stopped):.1f} | {winner_kept}/{args.seeds} | {all_kept}/{args.seeds} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
