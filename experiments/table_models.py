"""Table 1 of both real models side by side, as the paper sets its models: a row per task, per model base → LASER
test accuracy % and the chosen (ℓ, τ, ρ): SmolLM2 has 30 layers (0–29), Gemma 3 270M 18 (0–17).

    python experiments/table_models.py --out experiments/results/table_models.md

Reads the screened table directories of ``bash experiments/run_table_screened.sh smollm2`` and
``bash experiments/run_table_screened.sh gemma3-270m`` (no model; :func:`laser_jax.table.side_by_side`); a task a model
has not finished shows "–".
"""

from __future__ import annotations

import argparse
from pathlib import Path

from laser_jax.table import side_by_side

REPO = Path(__file__).resolve().parents[1]
TABLES = {"SmolLM2-135M": REPO / "experiments" / "results" / "table_screened_smollm2",
          "Gemma 3 270M": REPO / "experiments" / "results" / "table_screened_gemma3"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "experiments" / "results" / "table_models.md")
    args = parser.parse_args()
    text = ("# Table 1, both real models (screened selection runs, `--screen-top 50`, each task capped at 2,000 records)\n\n"
            "Made by `python experiments/table_models.py` from `experiments/results/table_screened_smollm2/` and "
            "`experiments/results/table_screened_gemma3/` (each directory's `table.md` has the losses, item counts and "
            "times). Test accuracy %; the variant is selected on the validation part (the first 20% of the items). "
            "SmolLM2-135M has 30 layers (0–29), Gemma 3 270M 18 (0–17).\n\n"
            + side_by_side(TABLES))
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
