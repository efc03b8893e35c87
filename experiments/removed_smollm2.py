"""What the best LASER step of SmolLM2-135M on CounterFact removes: the removed part's predictions on the items it fixes.

    python experiments/removed_smollm2.py --out experiments/results/removed_smollm2

The step is the exhaustive sweep's choice, fc_up of layer 28 at ρ = 0.2
(``experiments/results/counterfact_smollm2.md``). On the validation items (the
first 20% of the examples of ``../shared/data/counterfact/counterfact-val.json``)
that it fixes (base top-1 wrong, LASER top-1 right), ``laser_jax.removed``
lists the top 3 next tokens of the base, the LASER model and the removed part
alone (``W − W_k``), and counts how often the removed part's top token is a
generic word (" the", " a", " of", the task's probes). Writes ``summary.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from laser_jax.gguf import smollm2_path
from laser_jax.laser import Intervention
from laser_jax.loading import load_model
from laser_jax.removed import MODELS, fixed_items, format_report
from laser_jax.results import split_indices, write_text_atomic
from laser_jax.tasks import GENERIC_PROBES, get_task
from laser_jax.tasks.common import encode_probes

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "counterfact" / "counterfact-val.json"
STEP = Intervention(28, "fc_up", 0.2)
COMMAND = "python experiments/removed_smollm2.py --out experiments/results/removed_smollm2"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    task = get_task("counterfact")
    model = load_model(str(smollm2_path()))
    examples = task.examples(task.load(str(DATA)), model.tokenizer)
    validation = [examples[i] for i in split_indices(len(examples), "val+test")["val"]]
    items = fixed_items(model, validation, STEP, top_n=5)
    generic = set(encode_probes(model.tokenizer, GENERIC_PROBES))
    counts = {name: sum(item.predictions[name].tokens[0] in generic for item in items) for name in MODELS}
    lines = ["# The removed part of fc_up, layer 28, ρ = 0.2 (SmolLM2-135M, CounterFact validation)", "",
             "```", COMMAND, "```", "",
             f"{len(items)} of {len(validation)} validation items are fixed (base top-1 wrong, LASER top-1 right). "
             "Top token a generic word (" + ", ".join(repr(w) for w in GENERIC_PROBES) + "): "
             + ", ".join(f"{name} {counts[name]}" for name in MODELS) + ".", "",
             format_report(items, STEP, model.tokenizer, validation)]
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "summary.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
