"""The paper's Table 1 from selection runs: one row per task, base → LASER on the test part (``laser-jax table``).

Each task's run directory (made by :func:`laser_jax.protocol.run_selection`
through the CLI) holds the base and the selected variants' rows; this module
only reads them and writes ``table.md``, ``table.csv`` and ``table.png`` (base
vs LASER test accuracy per task). The chosen variant is the one with the best
validation accuracy, ties to the lower validation loss
(:func:`laser_jax.selection.rank_on_validation`).

From each run's per-example scores (``scores/``), a row also gets the 95%
intervals of the two test accuracies, the paired difference with its seeded
bootstrap interval, the exact McNemar p-value and, for two-way choice tasks,
the AUC intervals (:func:`laser_jax.report.uncertainty`); ``table.md`` marks a
difference as significant only when it survives Holm's correction across the
table's rows, and ``table.png`` draws the accuracy intervals as error bars.
From its validation scores, a row gets its selection stability
(:mod:`laser_jax.stability`: how often resampled validation items pick the
same variant), and each run directory ``stability.json`` and
``stability.png``. The scores are read from ``scores/`` or the run's committed
``scores.npz`` (:func:`laser_jax.results.score_columns`); a run without them
gets "–" there, and ``table.md`` says which rows lack them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Mapping, Optional, Sequence

from laser_jax import stability, stats
from laser_jax.errors import DataError
from laser_jax.report import interval_text, p_text, select_best, split_rows, uncertainty
from laser_jax.ground import write_text_atomic
from laser_jax.results import (BASE_TAU, GENERATION_FILE, RUN_FILE, TIMING_FILE, command_line, load_results, to_csv,
                               variant_record)

COLUMNS = ("task", "scored_by", "n_val", "n_test", "limit", "base_accuracy", "laser_accuracy", "base_loss", "laser_loss", "base_auc",
           "laser_auc", "base_generation", "laser_generation", "layer", "tau", "rho", "k", "raced", "cpu_s", "wall_s",
           "split_seed", "base_low", "base_high", "laser_low", "laser_high", "difference", "difference_low",
           "difference_high", "mcnemar_p", "holm_p", "significant", "base_auc_low", "base_auc_high", "laser_auc_low",
           "laser_auc_high", "stability_chosen", "stability_matrix", "stability_alternatives", "stability_resamples")
INTERVAL_COLUMNS = COLUMNS[COLUMNS.index("base_low"):COLUMNS.index("stability_chosen")]  # None without test scores
STABILITY_COLUMNS = COLUMNS[COLUMNS.index("stability_chosen"):]  # None without validation scores


def _variant_text(key: tuple) -> str:
    tau, layer, rho = key
    return f"L{layer} {tau} ρ={rho:g}"


def stability_columns(found: Optional[stability.Stability]) -> dict:
    """A row's stability columns from :func:`laser_jax.stability.selection_stability` (all None without it)."""
    if found is None:
        return dict.fromkeys(STABILITY_COLUMNS)
    return {"stability_chosen": found.chosen_share, "stability_matrix": found.matrix_share,
            "stability_alternatives": "; ".join(f"{_variant_text(key)} {100 * share:.1f}%"
                                                for key, share in found.alternatives()),
            "stability_resamples": found.resamples}


def row_uncertainty(directory, rows, best, resamples: int = stats.DEFAULT_RESAMPLES) -> dict:
    """The interval columns of a row (:func:`laser_jax.report.uncertainty` on test), all None without scores."""
    found = uncertainty(directory, rows, best, "test", resamples)
    out = dict.fromkeys(INTERVAL_COLUMNS)
    if found is None:
        return out
    for name in ("base", "laser", "difference"):
        out[f"{name}_low"], out[f"{name}_high"] = found[name].low, found[name].high
    out["difference"], out["mcnemar_p"] = found["difference"].value, found["mcnemar_p"]
    for name in ("base_auc", "laser_auc"):
        if found[name] is not None:
            out[f"{name}_low"], out[f"{name}_high"] = found[name].low, found[name].high
    return out


def table_row(directory, resamples: Optional[int] = stats.DEFAULT_RESAMPLES, require_scores: bool = False) -> dict:
    """The table row of one task's selection run directory.

    ``resamples``: the bootstrap's, for the interval columns (None: leave them out, e.g. to list finished tasks).
    ``require_scores``: a row whose run has no per-example scores is a one-line error instead of "–".
    """
    directory = Path(directory)
    run, rows = load_results(directory)
    args = run.get("args", {})
    val, test = split_rows(rows, "val"), split_rows(rows, "test")
    base_key = (BASE_TAU, None, None)
    if base_key not in val or base_key not in test:
        raise DataError(f"{directory}: the base model has no validation and test rows yet; run the table command again to finish it")
    best = select_best(rows, "val")
    if best is None or best not in test:
        raise DataError(f"{directory}: the selected variant has no test row yet; run the table command again to finish it")
    timing_file = directory / TIMING_FILE
    timing = json.loads(timing_file.read_text()) if timing_file.exists() else {}
    seconds = {name: sum(phase.get(name, 0.0) for phase in timing.values()) for name in ("cpu_s", "wall_s")}
    base, laser = test[base_key], test[best]
    task = args.get("task", directory.name)
    generation_file = directory / GENERATION_FILE
    generation = json.loads(generation_file.read_text()) if generation_file.exists() else {}
    if generation.get("variant") != variant_record(best):
        generation = {}  # a check of another variant (the run was extended since): not this row's
    intervals = dict.fromkeys(INTERVAL_COLUMNS) if resamples is None else row_uncertainty(directory, rows, best, resamples)
    if require_scores and intervals["mcnemar_p"] is None:
        raise DataError(f"{directory}: scores missing for the row of {args.get('task', directory.name)} (no per-example "
                        f"test scores of the base and the selected variant in {directory / 'scores'})")
    return {**intervals, "split_seed": args.get("split_seed"), "task": task, "scored_by": scored_by(task), "n_val": val[base_key]["n"], "n_test": base["n"],
            "limit": args.get("limit"), "base_accuracy": base["accuracy"], "laser_accuracy": laser["accuracy"],
            "base_loss": base["loss"], "laser_loss": laser["loss"], "base_auc": base.get("auc"), "laser_auc": laser.get("auc"),
            "base_generation": generation.get("base", {}).get("accuracy"),
            "laser_generation": generation.get("laser", {}).get("accuracy"),
            "tau": best[0], "layer": best[1], "rho": best[2], "k": laser.get("k"),
            "raced": sum(1 for row in val.values() if row.get("raced")), "cpu_s": seconds["cpu_s"] or None,
            "wall_s": seconds["wall_s"] or None, "command": command_line(run["argv"]) if run.get("argv") else None}


def scored_by(task: str) -> str:
    """What a task's accuracy counts in a sweep: ``choice`` (the gold candidate has the highest summed log-prob) or
    ``top-1`` (the answer's first token is the argmax after the prompt). The generation tasks (HotpotQA, qa_wikidata),
    which the paper scores by a greedy continuation that contains the answer, are swept and selected by top-1 too
    (one teacher-forced pass per variant); their rows add that paper score for the base and the selected variant
    (``generation.json``, :func:`laser_jax.protocol.generation_on_test`)."""
    from laser_jax.tasks import CHOICE, TASKS

    return "choice" if task in TASKS and TASKS[task].scoring == CHOICE else "top-1"


def _percent(value) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}"


def _loss(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def _duration(seconds) -> str:
    if seconds is None:
        return "–"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.2f} h"


def with_holm(rows: Sequence[dict], alpha: float = 1.0 - stats.LEVEL) -> list[dict]:
    """``rows`` with ``holm_p`` (Holm-adjusted McNemar p-value across the rows that have one) and ``significant``."""
    rejected, adjusted = stats.holm([row.get("mcnemar_p") for row in rows], alpha)
    return [{**row, "holm_p": p, "significant": reject} for row, p, reject in zip(rows, adjusted, rejected)]


def _significance(row: Mapping) -> str:
    if row.get("significant") is None:
        return "–"
    if not row["significant"]:
        return "no"
    return "**yes, gain**" if row["difference"] > 0 else "**yes, loss**"


def markdown(rows: Sequence[dict], model: str, resamples: int = stats.DEFAULT_RESAMPLES) -> str:
    """Table 1 in markdown: the commands that made its runs, then base → LASER test accuracy % (answer loss), the
    chosen (ℓ, τ, ρ), counts and time; then the rows' intervals and significance."""
    commands = list(dict.fromkeys(row["command"] for row in rows if row.get("command")))
    lines = [f"# LASER, Table 1 form: {model}", "",
             *(["Made by (each task's `run.json`; run it again to resume or to add tasks):", "", "```",
                *commands, "```", ""] if commands else []),
             "Test accuracy % (answer loss) of the base model and of the variant selected on validation (the first 20% "
             "of the items, or a seeded random 20% where the row names a split seed: highest validation accuracy, ties "
             "to the lower validation loss, then `results.csv` order). AUC: ROC AUC of the "
             "log-prob margin between the two answers, for two-way choice tasks. Scored by: `choice`, the gold "
             "candidate has the highest summed log-prob; `top-1`, the answer's first token is the argmax after the "
             "prompt (also for the generation tasks HotpotQA and qa_wikidata, which the paper scores by a greedy "
             "continuation that contains the answer). Generation: that paper's score on the test part, base → the "
             "selected variant (greedy decoding of the task's 10 or 15 tokens).", "",
             "| task | scored by | base acc % (loss) | LASER acc % (loss) | chosen ℓ, τ, ρ (k) | AUC base → LASER | "
             "generation acc % base → LASER | val / test items | record cap | CPU time | wall time |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        auc = "–" if row["base_auc"] is None else f"{row['base_auc']:.3f} → {row['laser_auc']:.3f}"
        generation = ("–" if row["base_generation"] is None else
                      f"{_percent(row['base_generation'])} → {_percent(row['laser_generation'])}")
        lines.append(
            f"| {row['task']} | {row['scored_by']} | {_percent(row['base_accuracy'])} ({_loss(row['base_loss'])}) | "
            f"{_percent(row['laser_accuracy'])} ({_loss(row['laser_loss'])}) | "
            f"{row['layer']}, {row['tau']}, {row['rho']:g} ({row['k']}) | {auc} | {generation} | {row['n_val']} / {row['n_test']}"
            f"{'' if row.get('split_seed') is None else ' (split seed ' + str(row['split_seed']) + ')'} | "
            f"{row['limit'] if row['limit'] is not None else 'none'} | {_duration(row['cpu_s'])} | {_duration(row['wall_s'])} |")
    return "\n".join(lines) + "\n\n" + uncertainty_markdown(rows, resamples)


def _estimate(row: Mapping, name: str, value: str) -> Optional[stats.Estimate]:
    if row.get(f"{name}_low") is None:
        return None
    return stats.Estimate(row[value], row[f"{name}_low"], row[f"{name}_high"])


def _share(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def uncertainty_markdown(rows: Sequence[dict], resamples: int = stats.DEFAULT_RESAMPLES) -> str:
    """The rows' intervals, significance and selection stability (:func:`with_holm` rows, with
    :func:`stability_columns`), with lines naming the rows without scores."""
    missing = [row["task"] for row in rows if row.get("mcnemar_p") is None]
    unstable = [row["task"] for row in rows if row.get("stability_chosen") is None]
    draws = {row["stability_resamples"] for row in rows if row.get("stability_resamples")}
    lines = [f"Uncertainty on the test part, recomputed from each run's per-example scores (`scores.npz`, or `scores/` while it runs): 95% Wilson "
             f"intervals of the accuracies; LASER − base in points with a seeded paired-bootstrap 95% percentile "
             f"interval ({resamples:,} resamples); the exact McNemar p-value on the items only one of the two gets "
             f"right; Holm: that p-value adjusted across the table's rows, and a difference is significant only "
             f"when the adjusted p is at most 0.05; AUC: its bootstrap interval, for two-way choice tasks. Stability: "
             f"the % of seeded bootstrap resamples of the validation items"
             f"{' (' + ', '.join(f'{d:,}' for d in sorted(draws)) + ')' if draws else ''} on which the selection rule "
             f"picks the chosen (ℓ, τ, ρ), and (after the slash) its matrix (ℓ, τ) at any ρ; the most frequent other "
             f"picks follow the table.", "",
             "| task | base acc % [95%] | LASER acc % [95%] | LASER − base, points [95%] | McNemar p | Holm p | "
             "significant | AUC base [95%] | AUC LASER [95%] | stability % chosen / (ℓ, τ) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row['task']} | {interval_text(_estimate(row, 'base', 'base_accuracy'))} | "
            f"{interval_text(_estimate(row, 'laser', 'laser_accuracy'))} | "
            f"{interval_text(_estimate(row, 'difference', 'difference'))} | {p_text(row.get('mcnemar_p'))} | "
            f"{p_text(row.get('holm_p'))} | {_significance(row)} | "
            f"{interval_text(_estimate(row, 'base_auc', 'base_auc'), 1.0, 3)} | "
            f"{interval_text(_estimate(row, 'laser_auc', 'laser_auc'), 1.0, 3)} | "
            f"{_share(row.get('stability_chosen'))} / {_share(row.get('stability_matrix'))} |")
    alternatives = [row for row in rows if row.get("stability_alternatives")]
    if alternatives:
        lines += ["", "Most frequent other picks on the validation resamples (% of resamples):", ""]
        lines += [f"- {row['task']}: {row['stability_alternatives']}" for row in alternatives]
    if missing:
        lines += ["", f"Scores missing for {', '.join(missing)}: these runs have no per-example test scores "
                      f"(`scores/` or `scores.npz`), so their intervals and significance are \"–\" and the Holm "
                      f"correction is over the other rows only."]
    if unstable:
        lines += ["", f"No stability for {', '.join(unstable)}: these runs' stored scores lack the validation scores "
                      f"of the variants that competed."]
    return "\n".join(lines) + "\n"


def figure(rows: Sequence[dict], model: str):
    """Grouped bars: base vs LASER test accuracy per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    def errors(name):  # asymmetric 95% error bars in points; zero-length where the run has no scores
        value = np.array([100 * r[f"{name}_accuracy"] for r in rows])
        low = np.array([np.nan if r.get(f"{name}_low") is None else 100 * r[f"{name}_low"] for r in rows])
        high = np.array([np.nan if r.get(f"{name}_high") is None else 100 * r[f"{name}_high"] for r in rows])
        return value, np.nan_to_num(np.vstack([value - low, high - value]))

    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(rows), 3.6))
    for offset, name, label, color in ((-0.2, "base", "base", "#999999"), (0.2, "laser", "LASER", "#2166ac")):
        value, bars = errors(name)
        ax.bar(x + offset, value, 0.4, label=label, color=color, yerr=bars if bars.any() else None, capsize=3,
               error_kw={"elinewidth": 1})
    ax.set_xticks(x, [r["task"] for r in rows], rotation=30, ha="right")
    ax.set_ylabel("test accuracy %")
    scored = sum(r.get("base_low") is not None for r in rows)
    ax.set_title(f"base vs LASER: {model}" + (" (bars: 95% Wilson intervals)" if scored else ""), fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def finished_rows(directory) -> dict[str, dict]:
    """The table row of every task whose run in ``directory`` is finished, by task name, in the registry's order."""
    from laser_jax.tasks import task_names

    rows = {}
    for name in task_names():
        if (Path(directory) / name / RUN_FILE).exists():
            try:
                rows[name] = table_row(Path(directory) / name, resamples=None)
            except (DataError, FileNotFoundError):
                pass
    return rows


def table_tasks(directory, tasks: Sequence[str]) -> list[str]:
    """``tasks`` and every other task whose run in ``directory`` is finished, in the registry's order (the paper's
    Table 1 order), so that running one more task into a table directory adds its row and keeps the others."""
    return table_tasks_order(set(tasks) | set(finished_rows(directory)))


def table_tasks_order(tasks) -> list[str]:
    """``tasks`` in the registry's order (the paper's Table 1 order), unknown names last."""
    from laser_jax.tasks import task_names

    names = task_names()
    return sorted(tasks, key=lambda name: (names.index(name) if name in names else len(names), name))


def side_by_side(tables: Mapping[str, Path]) -> str:
    """Several models' tables in one, as the paper's Table 1 sets its models side by side: a row per task (every task
    finished in any of the ``{model name: table directory}``, in the registry's order), base → LASER test accuracy %
    and the chosen (ℓ, τ, ρ) per model; "–" where a model's run of that task is not finished."""
    rows = {model: finished_rows(directory) for model, directory in tables.items()}
    tasks = table_tasks_order({name for model_rows in rows.values() for name in model_rows})
    header = "| task | " + " | ".join(f"{model}: base → LASER acc % | {model}: chosen ℓ, τ, ρ" for model in tables) + " |"
    lines = [header, "|---|" + "---|---|" * len(tables)]
    for name in tasks:
        cells = []
        for model in tables:
            row = rows[model].get(name)
            cells += (["–", "–"] if row is None else
                      [f"{_percent(row['base_accuracy'])} → {_percent(row['laser_accuracy'])}",
                       f"{row['layer']}, {row['tau']}, {row['rho']:g}"])
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_table(directory, tasks: Sequence[str], model: Optional[str] = None, resamples: int = stats.DEFAULT_RESAMPLES,
                require_scores: bool = False, stability_resamples: int = stability.DEFAULT_RESAMPLES) -> list[Path]:
    """Write ``table.md``, ``table.csv`` and ``table.png`` for the runs ``directory/<task>``, and each run's
    ``stability.json`` and ``stability.png`` where its validation scores are stored; return the table's paths.

    ``resamples``: the bootstrap's; ``require_scores``: a run without its per-example test scores is a one-line
    error; ``stability_resamples``: the validation resamples of :func:`laser_jax.stability.selection_stability`.
    """
    import matplotlib.pyplot as plt

    directory = Path(directory)
    stats.check_resamples(resamples)
    stats.check_resamples(stability_resamples)
    rows = with_holm([{**table_row(directory / task, resamples, require_scores),
                       **stability_columns(stability.write_stability(directory / task, stability_resamples))}
                      for task in tasks])
    if model is None:
        model = json.loads((directory / tasks[0] / RUN_FILE).read_text())["args"]["model"]
    paths = [directory / name for name in ("table.md", "table.csv", "table.png")]
    write_text_atomic(paths[0], markdown(rows, model, resamples))
    write_text_atomic(paths[1], to_csv(rows, COLUMNS))
    fig = figure(rows, model)
    fig.savefig(paths[2], dpi=120, bbox_inches="tight")
    plt.close(fig)
    return paths


__all__ = ["COLUMNS", "INTERVAL_COLUMNS", "STABILITY_COLUMNS", "stability_columns", "row_uncertainty", "with_holm", "uncertainty_markdown", "table_row", "scored_by", "finished_rows", "table_tasks", "table_tasks_order", "markdown", "figure", "side_by_side", "write_table"]
