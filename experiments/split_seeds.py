"""One model's Table 1 rows across validation splits: the chosen variant and the test gain per split seed.

Each TABLE directory is a `laser-jax table` run of the same tasks and flags, with a different `--split-seed` (or
none: the first 20% of the items). The script reads their `table.csv` files (written with intervals and stability
from the runs' stored scores) and writes, per task, one line per split: the chosen (ℓ, τ, ρ), base → LASER test
accuracy, LASER − base with its paired-bootstrap 95% interval, the Holm-corrected McNemar p of that table, and the
selection stability. A gain that holds across splits, with other validation items and other test items, is one a
reader can trust more than one split's.

    python experiments/split_seeds.py experiments/results/table_screened_smollm2 \\
        experiments/results/table_screened_smollm2_split{1,2,3} --tasks counterfact,known1000,fever \\
        --out experiments/results/split_seeds_smollm2.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from laser_jax.results import command_line, read_csv


def _points(value) -> str:
    return "–" if value is None else f"{100 * value:+.2f}"


def _percent(value) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def task_lines(task: str, tables: list[Path]) -> list[str]:
    lines = [f"## {task}", "", "| split | chosen ℓ, τ, ρ | base acc % | LASER acc % | LASER − base, points [95%] | "
             "Holm p | stability % chosen / (ℓ, τ) |", "|---|---|---|---|---|---|---|"]
    chosen = []
    for table in tables:
        rows = [row for row in read_csv(table / "table.csv") if row["task"] == task]
        if not rows:
            lines.append(f"| {table.name} | not run | | | | | |")
            continue
        row = rows[0]
        seed = row.get("split_seed")
        chosen.append((row["layer"], row["tau"]))
        interval = ("–" if row.get("difference_low") is None else
                    f"{_points(row['difference'])} [{_points(row['difference_low'])}, {_points(row['difference_high'])}]")
        holm = "–" if row.get("holm_p") is None else f"{row['holm_p']:.3g}" + (" (significant)" if row.get("significant") else "")
        stability = ("–" if row.get("stability_chosen") is None else
                     f"{_percent(row['stability_chosen'])} / {_percent(row['stability_matrix'])}")
        lines.append(f"| {'first 20%' if seed is None else f'seed {seed}'} | {row['layer']}, {row['tau']}, {row['rho']:g} | "
                     f"{_percent(row['base_accuracy'])} | {_percent(row['laser_accuracy'])} | {interval} | {holm} | {stability} |")
    if chosen:
        matrices = sorted(set(chosen), key=str)
        lines += ["", f"Matrices chosen: {', '.join(f'L{layer} {tau}' for layer, tau in matrices)} "
                      f"({len(chosen)} splits)."]
    return lines + [""]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tables", nargs="+", help="table directories of the same tasks, one per validation split")
    parser.add_argument("--tasks", required=True, help="comma-separated task names")
    parser.add_argument("--out", help="write the markdown here (default: print it)")
    args = parser.parse_args(argv)
    tables = [Path(table) for table in args.tables]
    text = "\n".join([f"# Table 1 rows across validation splits", "",
                      f"Made by `{command_line(['python', 'experiments/split_seeds.py', *(argv or sys.argv[1:])])}` "
                      f"from the `table.csv` of: {', '.join(f'`{t}`' for t in tables)}.", "",
                      *[line for task in filter(None, args.tasks.split(",")) for line in task_lines(task, tables)]])
    if args.out:
        Path(args.out).write_text(text)
        print(args.out)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
