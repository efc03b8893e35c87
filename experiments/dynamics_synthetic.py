"""LASER across the checkpoints of a ``quick`` synthetic training, checked against the trainer's own probes.

    python experiments/dynamics_synthetic.py TRAIN_DIR DYNAMICS_DIR [--seed 0]

TRAIN_DIR is a ``synthetic.run`` output with ``--checkpoint-steps`` (its
``metrics.json`` holds the in-training evaluation of every logged step);
DYNAMICS_DIR is a ``laser-jax dynamics`` run over ``TRAIN_DIR/models/seed<SEED>``
with ``--track mlp:1:0``. Prints, per checkpoint, base vs best (test part) and
the all-examples numbers of the base and of layer 2's FF removed next to the
trainer's ``full`` and ``layer2_ff_rho0`` at the same step, and the largest
difference.
"""

import argparse
import json
from pathlib import Path

from laser_jax.dynamics import RECORDS_DIR
from laser_jax.laser import Intervention

PAIRS = (("base", "full"), (Intervention(1, "mlp", 0.0).key, "layer2_ff_rho0"))
COLUMNS = (("accuracy", "accuracy"), ("p_generic", "p_noise"), ("p_answer", "p_correct"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("train_dir", type=Path)
    parser.add_argument("dynamics_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    metrics = json.loads((args.train_dir / "metrics.json").read_text())
    logged = {step: i for i, step in enumerate(metrics["steps"])}
    records = sorted((json.loads(p.read_text()) for p in (args.dynamics_dir / RECORDS_DIR).glob("*.json")),
                     key=lambda r: r["step"])
    print(f"{'step':>5} | {'test: base acc':>14} {'best acc':>8}  {'best variant':<20} {'p_noise base':>12} {'best':>6} | "
          f"all examples, dynamics (trainer): base acc, p_noise; FF2 removed acc, p_noise")
    worst = 0.0
    for record in records:
        best, generic = record["best"], record["generic_test"]
        line = (f"{record['step']:>5} | {record['base']['test']['accuracy']:>14.3f} {best['test']['accuracy']:>8.3f}  "
                f"{best['variant']:<20} {generic['p_generic_before']:>12.3f} {generic['p_generic_after']:>6.3f} |")
        for key, trainer_name in PAIRS:
            row = next(r for r in record["variants"][key] if r["split"] == "all")
            for mine, theirs in COLUMNS[:2]:
                text = f" {row[mine]:.4f}"
                if record["step"] in logged:
                    value = metrics["metrics"][trainer_name][theirs]["per_seed"][logged[record["step"]]][args.seed]
                    text += f" ({value:.4f})"
                line += text
            if record["step"] in logged:
                for mine, theirs in COLUMNS:
                    value = metrics["metrics"][trainer_name][theirs]["per_seed"][logged[record["step"]]][args.seed]
                    worst = max(worst, abs(row[mine] - value))
        print(line)
    print(f"largest |dynamics - trainer| over the shared steps (accuracy, p_noise, p_correct of full and FF2 removed): "
          f"{worst:.2e}")


if __name__ == "__main__":
    main()
