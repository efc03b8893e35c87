"""Figures and a summary table from a sweep's run directory (``laser-jax report DIR``).

- ``heatmap_accuracy.png`` / ``heatmap_loss.png``: one panel per τ, layer × ρ,
  x axis "reduction %" = 100·(1 − ρ), in the style of the LASER paper's figure 2;
  colours diverge around the base model's value so gains and losses read at once.
  Cells are over every scored example (val and test rows pooled by their counts).
- ``report.md``: base vs best on validation and test. Best follows the LASER
  selection protocol of :mod:`laser_jax.selection`
  (:func:`~laser_jax.selection.rank_on_validation`): the highest validation
  accuracy, ties to the lower validation loss (validation = the first 20%, or
  a seeded 20% with a split seed). From the run's per-example scores
  (``scores/``), it adds the 95% intervals of the two test accuracies, the
  paired difference with its bootstrap interval, the exact McNemar p-value and,
  for two-way choice tasks, the AUC intervals (:func:`uncertainty`); without the
  scores it says so.
- For choice tasks, ``report.md`` adds the mean probability of each candidate
  (IOI: the indirect object and the subject) for the base and the best variant,
  read from the per-example scores.
- ``generic_tokens.png``: when the task reports generic probe tokens (" the",
  " a", " of"), their mean probability at the answer position for the base model
  and the best variant of each τ, against reduction %.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from laser_jax import stats
from laser_jax.errors import DataError
from laser_jax.results import BASE_TAU, load_results, load_scores, score_columns, variant_key, variant_name
from laser_jax.selection import _sort_key, rank_on_validation

PROBE_COLUMN = "p_generic"  # mean summed probability of the generic probe tokens


def reduction_percent(rho: float) -> float:
    """The paper's x axis: percentage of the maximal rank removed."""
    return 100.0 * (1.0 - rho)


def _label(percent: float) -> str:
    return f"{percent:.4g}"


# ----------------------------------------------------------------------------- aggregation


def pooled(rows: Sequence[Mapping]) -> dict[tuple, dict]:
    """One row per variant over every scored example: the ``all`` row, or val and test pooled by ``n``."""
    groups: dict[tuple, list[Mapping]] = {}
    for row in rows:
        groups.setdefault(variant_key(row), []).append(row)
    out = {}
    for key, group in groups.items():
        whole = [r for r in group if r["split"] == "all"]
        parts = whole or group
        n = sum(int(r["n"]) for r in parts)
        merged = {"tau": key[0], "layer": key[1], "rho": key[2], "k": parts[0].get("k"), "split": "all", "n": n}
        for column in set().union(*parts) - set(merged):
            values = [(r.get(column), int(r["n"])) for r in parts]
            if all(isinstance(v, (int, float)) for v, _ in values) and n:
                merged[column] = sum(v * w for v, w in values) / n
        out[key] = merged
    return out


def split_rows(rows: Sequence[Mapping], split: str) -> dict[tuple, Mapping]:
    return {variant_key(row): row for row in rows if row["split"] == split}


def rank_key(row: Mapping) -> tuple:
    """A sort key of one results row in the order of :func:`laser_jax.selection.rank_on_validation` (higher
    accuracy, lower loss, then ``results.csv`` order); it ignores coverage and racing, which that rule checks."""
    return _sort_key(variant_key(row), row)


def split_size(rows: Sequence[Mapping], split: str) -> Optional[int]:
    """How many items ``split`` holds: the base row's count (the base is always scored on the whole part), else the
    largest count of the split's rows; None when the split has no rows."""
    part = split_rows(rows, split)
    if (BASE_TAU, None, None) in part:
        return int(part[(BASE_TAU, None, None)]["n"])
    return max((int(row["n"]) for row in part.values()), default=None)


def select_best(rows: Sequence[Mapping], split: str = "val") -> Optional[tuple]:
    """The variant :func:`laser_jax.selection.rank_on_validation` ranks first on ``split`` (None if none competes):
    rows that do not cover the whole split (a partial row, a variant stopped by racing) never win."""
    candidates = [(key, row) for key, row in split_rows(rows, split).items() if key[0] != BASE_TAU]
    size = split_size(rows, split)
    ranked = rank_on_validation(candidates, size) if size is not None else []
    return ranked[0] if ranked else None


# ----------------------------------------------------------------------------- uncertainty from per-example scores


def split_scores(directory, key: tuple, split: str, row: Mapping) -> Optional[dict]:
    """One variant's stored per-example outcomes on ``split`` (:func:`laser_jax.results.score_columns`), in item
    order, checked against its results ``row``; None when the run holds no scores for it.

    ``index`` and ``correct`` always; ``answer_nll`` when stored; ``margin`` (log p(candidate 1) − log p(candidate 0))
    and ``positive`` (the gold is candidate 1) for two-way choice tasks."""
    columns = score_columns(directory, key)
    if not columns or "split" not in columns:
        return None
    part = columns["split"] == split
    if not part.any():
        return None
    order = np.argsort(columns["index"][part], kind="stable")
    scores = {name: values[part][order] for name, values in columns.items()}
    correct = scores["correct"].astype(int)
    if len(correct) != int(row["n"]) or abs(float(correct.mean()) - float(row["accuracy"])) > 1e-9:
        raise DataError(f"{directory}: the stored scores of {variant_name(key)} do not match results.csv on {split} "
                        f"({int(correct.sum())} of {len(correct)} right, results.csv: accuracy {row['accuracy']} of {row['n']})")
    out = {"index": scores["index"].astype(int), "correct": correct.astype(bool)}
    if "answer_nll" in scores:
        out["answer_nll"] = scores["answer_nll"].astype(np.float64)
    if {"choice0_logprob", "choice1_logprob"} <= set(scores) and "choice2_logprob" not in scores:
        choices = np.stack([scores["choice0_logprob"], scores["choice1_logprob"]], axis=1).astype(np.float64)
        if not np.isnan(choices).any():
            if "label" in scores:
                label = scores["label"].astype(int)
            else:  # older scores files: the gold is the argmax when right, the other candidate when wrong
                best = np.argmax(choices, axis=1)
                label = np.where(out["correct"], best, 1 - best)
            out["margin"], out["positive"] = choices[:, 1] - choices[:, 0], label == 1
    return out


def uncertainty(directory, rows: Sequence[Mapping], best: tuple, split: str = "test",
                resamples: int = stats.DEFAULT_RESAMPLES, seed: int = 0) -> Optional[dict]:
    """The base and ``best`` on ``split``, recomputed from the run's per-example scores alone (:mod:`laser_jax.stats`):

    - ``base`` and ``laser``: the accuracies with their 95% Wilson intervals;
    - ``difference``: LASER − base, with a seeded paired-bootstrap 95% percentile interval (``resamples``, ``seed``);
    - ``mcnemar_p``: the exact McNemar p-value, and ``discordant``: (base right only, LASER right only);
    - ``base_auc``, ``laser_auc``: for two-way choice tasks, the AUC of log p(candidate 1) − log p(candidate 0) with
      its bootstrap interval (else None).

    None when the run holds no scores for either variant (they are git-ignored, so a committed run has none); a
    one-line :class:`~laser_jax.errors.DataError` when they do not match ``results.csv``.
    """
    stats.check_resamples(resamples)
    part = split_rows(rows, split)
    base_key = (BASE_TAU, None, None)
    if Path(directory).is_file() or base_key not in part or best not in part:
        return None
    base, laser = split_scores(directory, base_key, split, part[base_key]), split_scores(directory, best, split, part[best])
    if base is None or laser is None:
        return None
    if not np.array_equal(base["index"], laser["index"]):
        raise DataError(f"{directory}: the stored {split} scores of the base and of {variant_name(best)} cover different items")
    n = len(base["correct"])
    out = {"n": n,
           "base": stats.accuracy_interval(int(base["correct"].sum()), n),
           "laser": stats.accuracy_interval(int(laser["correct"].sum()), n),
           "difference": stats.paired_bootstrap(base["correct"], laser["correct"], resamples, seed),
           "mcnemar_p": stats.mcnemar_exact(base["correct"], laser["correct"]),
           "discordant": stats.discordant(base["correct"], laser["correct"]), "base_auc": None, "laser_auc": None}
    if "margin" in base and "margin" in laser:
        out["base_auc"] = stats.auc_interval(base["margin"], base["positive"], resamples, seed)
        out["laser_auc"] = stats.auc_interval(laser["margin"], laser["positive"], resamples, seed)
    return out


def interval_text(estimate: Optional[stats.Estimate], scale: float = 100.0, digits: int = 2) -> str:
    """``value [low, high]`` (percent by default), or "–" for none."""
    if estimate is None or math.isnan(estimate.value):
        return "–"
    return f"{scale * estimate.value:.{digits}f} [{scale * estimate.low:.{digits}f}, {scale * estimate.high:.{digits}f}]"


def p_text(p: Optional[float]) -> str:
    """A p-value in three significant digits, or "–"."""
    return "–" if p is None or math.isnan(p) else f"{p:.3g}"


def uncertainty_section(directory, rows: Sequence[Mapping], resamples: int = stats.DEFAULT_RESAMPLES) -> str:
    """Markdown: :func:`uncertainty` of the base and the selected variant on test, or a line saying why there is none."""
    best = select_best(rows, "val")
    if best is None or not any(row["split"] == "test" for row in rows):
        return ""
    try:
        found = uncertainty(directory, rows, best, "test", resamples)
    except DataError as error:  # a report still shows what it can; `laser-jax table` refuses such a row
        return f"No intervals: {error}.\n"
    if found is None:
        return ("Per-example test scores are missing (the run's `scores/` is not on disk for the base and the selected "
                "variant): no intervals or significance.\n")
    b, c = found["discordant"]
    lines = [f"Test part, from the per-example scores ({found['n']} items; 95% intervals: Wilson for the accuracies, a "
             f"seeded paired bootstrap of {resamples:,} resamples for the difference and the AUC):", "",
             "| base acc % | LASER acc % | LASER − base, points | McNemar p (exact) | discordant: base only / LASER only | "
             "AUC base | AUC LASER |", "|---|---|---|---|---|---|---|",
             f"| {interval_text(found['base'])} | {interval_text(found['laser'])} | {interval_text(found['difference'])} | "
             f"{p_text(found['mcnemar_p'])} | {b} / {c} | {interval_text(found['base_auc'], 1.0, 3)} | "
             f"{interval_text(found['laser_auc'], 1.0, 3)} |"]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- table


def _describe(key: tuple) -> str:
    tau, layer, rho = key
    if tau == BASE_TAU:
        return "base"
    return f"{tau} layer {layer}, ρ={rho:g} ({_label(reduction_percent(rho))}% reduction)"


def _cells(row: Optional[Mapping]) -> list[str]:
    if row is None:
        return ["–", "–"]
    loss = row.get("loss")
    return [f"{row['accuracy']:.4f}", "–" if loss is None else f"{loss:.4f}"]


def summary_table(rows: Sequence[Mapping], split_seed: Optional[int] = None) -> str:
    """Markdown: base vs the best variant (selected on validation) on validation and test (``split_seed``: the run's,
    named in the note)."""
    splits = {row["split"] for row in rows}
    base_key = (BASE_TAU, None, None)
    if "val" in splits:
        best = select_best(rows, "val")
        lines = ["| model | k | val n | val accuracy | val loss | test n | test accuracy | test loss |",
                 "|---|---|---|---|---|---|---|---|"]
        val, test = split_rows(rows, "val"), split_rows(rows, "test")
        for key in [base_key] + ([best] if best else []):
            v, t = val.get(key), test.get(key)
            k = (v or t or {}).get("k")
            lines.append(f"| {_describe(key)} | {'' if k is None else k} | {v['n'] if v else '–'} | "
                         + " | ".join(_cells(v)) + f" | {t['n'] if t else '–'} | " + " | ".join(_cells(t)) + " |")
        part = "first 20% of the data" if split_seed is None else f"a random 20% of the data, split seed {split_seed}"
        note = f"Best: highest validation accuracy ({part}), ties to the lower validation loss."
    else:
        best = select_best(rows, "all")
        every = split_rows(rows, "all")
        lines = ["| model | k | n | accuracy | loss |", "|---|---|---|---|---|"]
        for key in [base_key] + ([best] if best else []):
            row = every.get(key)
            k = (row or {}).get("k")
            lines.append(f"| {_describe(key)} | {'' if k is None else k} | {row['n'] if row else '–'} | " + " | ".join(_cells(row)) + " |")
        note = "This run has no validation split (--split all): best is selected on all examples, so it is optimistic."
    return "\n".join(lines) + "\n\n" + note + "\n"


def candidate_means(directory, rows: Sequence[Mapping]) -> dict[tuple, list[float]]:
    """The mean probability of each candidate answer, per variant key, for the base and the best variant, on test (or
    on all examples without a split), from the per-example scores; empty when they hold no candidates."""
    split = "test" if any(row["split"] == "val" for row in rows) else "all"
    best = select_best(rows, "val" if split == "test" else "all")
    means = {}
    for key in [(BASE_TAU, None, None)] + ([best] if best else []):
        scores = [s for s in load_scores(directory, key) if s.get("split") == split]
        columns = sorted(c for c in (scores[0] if scores else {}) if c.startswith("choice") and c.endswith("_logprob"))
        if columns:
            means[key] = [float(np.mean([math.exp(s[c]) for s in scores if s[c] is not None])) for c in columns]
    return means


def choice_table(directory, rows: Sequence[Mapping], names: Sequence[str] = ()) -> str:
    """Markdown of :func:`candidate_means`, the candidates named by ``names`` (else "candidate c"); empty when the
    run's scores hold no candidates."""
    means = candidate_means(directory, rows)
    if not means:
        return ""
    split = "test" if any(row["split"] == "val" for row in rows) else "all"
    width = max(map(len, means.values()))
    headers = [f"P({names[c]})" if c < len(names) else f"P(candidate {c})" for c in range(width)]
    lines = [f"Mean probability of each candidate answer ({split} examples):", "",
             "| model | " + " | ".join(headers) + " |", "|---" * (width + 1) + "|"]
    lines += [f"| {_describe(key)} | " + " | ".join(f"{p:.4f}" for p in values) + " |" for key, values in means.items()]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- figures


def heatmap_figure(rows: Sequence[Mapping], metric: str):
    """A matplotlib Figure: one panel per τ, layers × reduction %, coloured by ``metric``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import TwoSlopeNorm

    cells = pooled(rows)
    base = cells.get((BASE_TAU, None, None), {}).get(metric)
    taus = sorted({key[0] for key in cells if key[0] != BASE_TAU})
    if not taus:
        raise DataError("the results hold no reduced variants to plot")
    layers = sorted({key[1] for key in cells if key[0] != BASE_TAU})
    rhos = sorted({key[2] for key in cells if key[0] != BASE_TAU}, reverse=True)  # increasing reduction
    grids = {}
    for tau in taus:
        grid = np.full((len(layers), len(rhos)), np.nan)
        for i, layer in enumerate(layers):
            for j, rho in enumerate(rhos):
                value = cells.get((tau, layer, rho), {}).get(metric)
                if value is not None:
                    grid[i, j] = value
        grids[tau] = grid
    values = np.concatenate([g[~np.isnan(g)] for g in grids.values()] + ([np.array([base])] if base is not None else []))
    low, high = float(values.min()), float(values.max())
    center = base if base is not None else (low + high) / 2
    floor = 0.01 if metric == "accuracy" else 1e-4 * max(1.0, abs(center))  # a flat grid still gets a sane scale
    spread = max(high - center, center - low, floor)
    norm = TwoSlopeNorm(vcenter=center, vmin=center - spread, vmax=center + spread)
    cmap = "RdBu" if metric == "accuracy" else "RdBu_r"  # blue is better than the base model

    width = 1.2 + 0.55 * len(rhos)
    height = 1.4 + 0.32 * len(layers)
    fig, axes = plt.subplots(1, len(taus), figsize=(max(3.2, width) * len(taus) + 1.2, max(2.6, height)), squeeze=False)
    for ax, tau in zip(axes[0], taus):
        image = ax.imshow(grids[tau], cmap=cmap, norm=norm, aspect="auto", origin="lower")
        ax.set_xticks(range(len(rhos)), [_label(reduction_percent(r)) for r in rhos], rotation=45 if len(rhos) > 4 else 0)
        ax.set_yticks(range(len(layers)), [str(layer) for layer in layers])
        ax.set_xlabel("reduction %")
        ax.set_ylabel("layer")
        ax.set_title(f"{metric}: {tau}")
        if len(layers) * len(rhos) <= 120:
            for (i, j), value in np.ndenumerate(grids[tau]):
                if not np.isnan(value):
                    ax.text(j, i, f"{value:.3g}", ha="center", va="center", fontsize=7)
    label = metric + (f" (base {base:.4g}: white)" if base is not None else "")
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.9, label=label)
    return fig


def probe_figure(rows: Sequence[Mapping]):
    """Mean generic-token probability vs reduction %: base and, per τ, its best layer at each ρ; None without probes."""
    cells = pooled(rows)
    if not any(PROBE_COLUMN in row for row in cells.values()):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    base = cells.get((BASE_TAU, None, None), {}).get(PROBE_COLUMN)
    if base is not None:
        ax.axhline(base, color="black", linestyle="--", label="base")
    for tau in sorted({key[0] for key in cells if key[0] != BASE_TAU}):
        points = []
        for rho in sorted({key[2] for key in cells if key[0] == tau}, reverse=True):
            at_rho = [cells[key] for key in cells if key[0] == tau and key[2] == rho and PROBE_COLUMN in cells[key]]
            if at_rho:
                best = min(at_rho, key=rank_key)
                points.append((reduction_percent(rho), best[PROBE_COLUMN]))
        if points:
            ax.plot(*zip(*points), marker="o", label=f"{tau} (most accurate layer)")
    ax.set_xlabel("reduction %")
    ax.set_ylabel("mean summed P(generic probe tokens)")
    ax.set_title("probability of generic next tokens")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _choice_names(task: Optional[str]) -> tuple[str, ...]:
    from laser_jax.tasks import get_task, task_names

    return get_task(task).choice_names if task in task_names() else ()


def write_report(directory, out: Optional[Path] = None, resamples: int = stats.DEFAULT_RESAMPLES) -> list[Path]:
    """Write the figures and ``report.md`` for the run in ``directory``; return the files written. ``resamples``: the
    bootstrap's (:func:`uncertainty_section`)."""
    import matplotlib.pyplot as plt

    directory = Path(directory).expanduser()
    stats.check_resamples(resamples)
    run, rows = load_results(directory)
    if not rows:
        raise DataError(f"{directory}/results.csv holds no rows yet")
    out = Path(out) if out is not None else (directory.parent if directory.is_file() else directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    # A selection run tested only a few variants: its figures use the validation rows, where every variant is, and
    # leave out the partial counts of variants stopped by racing.
    figure_rows = ([row for row in rows if row["split"] == "val" and not row.get("raced")]
                   if run.get("args", {}).get("mode") == "selection" else rows)
    if any(variant_key(row)[0] != BASE_TAU for row in figure_rows):
        for metric in ("accuracy", "loss"):
            if all(row.get(metric) is None for row in figure_rows):
                continue
            fig = heatmap_figure(figure_rows, metric)
            path = out / f"heatmap_{metric}.png"
            fig.savefig(path, dpi=120, bbox_inches="tight")
            plt.close(fig)
            written.append(path)
    fig = probe_figure(figure_rows)
    if fig is not None:
        path = out / "generic_tokens.png"
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    args = run.get("args", {})
    header = f"# LASER sweep: {args.get('task', '?')} on {args.get('model', '?')}\n\n"
    if args.get("mode") == "selection":
        raced = sum(1 for row in rows if row.get("raced"))
        header += ("Selection run: every variant was scored on validation, the test part only for the base and the "
                   "selected variants, so the heatmaps show validation numbers"
                   + (f"; racing stopped {raced} variants early (blank cells)" if raced else "") + ".\n\n")
    done = len({variant_key(row) for row in rows})
    header += f"{done} variants (base included) in results.csv.\n\n"
    figures = "".join(f"![{p.stem}]({p.name})\n\n" for p in written)
    choices = "" if directory.is_file() else choice_table(directory, rows, _choice_names(args.get("task")))
    path = out / "report.md"
    intervals = uncertainty_section(directory, rows, resamples)
    path.write_text(header + summary_table(rows, args.get("split_seed")) + "\n" + (intervals + "\n" if intervals else "")
                    + (choices + "\n" if choices else "") + figures)
    written.append(path)
    return written


__all__ = ["write_report", "summary_table", "choice_table", "candidate_means", "select_best", "split_size", "uncertainty",
           "uncertainty_section", "interval_text", "p_text", "heatmap_figure", "probe_figure", "pooled", "reduction_percent", "PROBE_COLUMN"]
