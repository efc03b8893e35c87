"""Check a recomputed Table 1 run against the committed one, and give the committed run its ``scores.npz``.

``experiments/rescore_table.sh TABLE_DIR TASKS`` runs the recorded commands again into
``experiments/rescore/<table name>/``. For each task, this script compares every row the two ``results.csv`` share
(same variant and split): item counts and accuracies must be equal, and mean answer losses agree to ``--loss-rtol``
(a float32 mean over another batch layout or JAX version moves in its fifth or sixth digit). It prints the largest
differences. Only when a task passes does it pack the recomputed scores (:func:`laser_jax.results.pack_scores`)
and copy ``scores.npz`` into the committed run directory, whose table row then reads its intervals from it.

    python experiments/rescore_check.py experiments/results/table_screened_smollm2 counterfact,known1000,fever
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
from pathlib import Path

from laser_jax.results import SCORES_FILE, load_results, pack_scores, variant_key


def compare(committed: Path, recomputed: Path, loss_rtol: float) -> tuple[bool, str]:
    _, old = load_results(committed)
    _, new = load_results(recomputed)
    old_rows = {(variant_key(r), r["split"]): r for r in old}
    new_rows = {(variant_key(r), r["split"]): r for r in new}
    shared = sorted(set(old_rows) & set(new_rows), key=str)
    missing = sorted(set(old_rows) - set(new_rows), key=str)
    accuracy = loss = 0.0
    counts = True
    for key in shared:
        a, b = old_rows[key], new_rows[key]
        counts &= int(a["n"]) == int(b["n"])
        accuracy = max(accuracy, abs(float(a["accuracy"]) - float(b["accuracy"])))
        loss = max(loss, abs(float(a["loss"]) - float(b["loss"])) / abs(float(a["loss"])))
    ok = counts and not missing and accuracy == 0.0 and loss <= loss_rtol and not math.isnan(loss)
    text = (f"{len(shared)} shared rows, {len(missing)} committed rows not recomputed, counts equal: {counts}, "
            f"largest |accuracy difference| {accuracy:.3g}, relative |loss difference| {loss:.3g}")
    return ok, text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", help="the committed table directory, e.g. experiments/results/table_screened_smollm2")
    parser.add_argument("tasks", help="comma-separated task names")
    parser.add_argument("--scratch", help="the recomputed table directory (default experiments/rescore/<table name>)")
    parser.add_argument("--loss-rtol", type=float, default=1e-4, help="largest relative loss difference allowed (default 1e-4)")
    args = parser.parse_args(argv)
    table = Path(args.table)
    scratch = Path(args.scratch or Path("experiments/rescore") / table.name)
    failed = 0
    for task in filter(None, args.tasks.split(",")):
        ok, text = compare(table / task, scratch / task, args.loss_rtol)
        print(f"{task}: {'match' if ok else 'MISMATCH'}: {text}")
        if ok:
            packed = pack_scores(scratch / task)
            shutil.copyfile(packed, table / task / SCORES_FILE)
            print(f"{task}: {table / task / SCORES_FILE} ({packed.stat().st_size / 1e6:.2f} MB)")
        failed += not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
