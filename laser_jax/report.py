"""Figures and a summary table from a sweep's run directory (``laser-jax report DIR``).

- ``heatmap_accuracy.png`` / ``heatmap_loss.png``: one panel per τ, layer × ρ,
  x axis "reduction %" = 100·(1 − ρ), in the style of the LASER paper's figure 2;
  colours diverge around the base model's value so gains and losses read at once.
  Cells are over every scored example (val and test rows pooled by their counts).
- ``report.md``: base vs best on validation and test. Best follows the LASER
  selection protocol of :mod:`laser_jax.selection`: the highest validation
  accuracy, ties to the lower validation loss (validation = the first 20%).
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

from laser_jax.errors import DataError
from laser_jax.results import BASE_TAU, load_results, load_scores, variant_key

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
    """The selection order of :mod:`laser_jax.selection`: higher accuracy, then lower loss (NaN last)."""
    from laser_jax.selection import _rank_key

    return _rank_key({"accuracy": _number(row.get("accuracy")), "answer_nll": _number(row.get("loss"))}, "accuracy", "answer_nll")


def select_best(rows: Sequence[Mapping], split: str = "val") -> Optional[tuple]:
    """The variant ranked first on ``split`` by :func:`rank_key` (then by results order); variants stopped by racing
    (``raced``) do not compete."""
    candidates = [(key, row) for key, row in split_rows(rows, split).items() if key[0] != BASE_TAU and not row.get("raced")]
    if not candidates:
        return None
    return min(candidates, key=lambda item: rank_key(item[1]))[0]


def _number(value) -> float:
    return math.nan if value is None else float(value)


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


def summary_table(rows: Sequence[Mapping]) -> str:
    """Markdown: base vs the best variant (selected on validation) on validation and test."""
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
        note = "Best: highest validation accuracy (first 20% of the data), ties to the lower validation loss."
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


def write_report(directory, out: Optional[Path] = None) -> list[Path]:
    """Write the figures and ``report.md`` for the run in ``directory``; return the files written."""
    import matplotlib.pyplot as plt

    directory = Path(directory).expanduser()
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
    path.write_text(header + summary_table(rows) + "\n" + (choices + "\n" if choices else "") + figures)
    written.append(path)
    return written


__all__ = ["write_report", "summary_table", "choice_table", "candidate_means", "select_best", "heatmap_figure", "probe_figure", "pooled", "reduction_percent", "PROBE_COLUMN"]
