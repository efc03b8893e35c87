"""Build a local lm-eval task from CounterFact at run time (nothing is copied into the repository).

Writes ``counterfact_lm_eval.yaml`` and ``counterfact_lm_eval.json`` into ``--out`` (default: a new temporary
folder) from the data file laser-jax's own ``counterfact`` task reads (``counterfact/counterfact-val.json`` under the
data root): the same items, prompt and paraphrase per case, with the answer as ``" " + true target``. The task is
lm-eval's ``loglikelihood`` type: ``acc`` is 1 when the whole answer is the greedy continuation (for a one-token
answer, laser-jax's top-1 accuracy), ``perplexity`` is exp of the mean per-item answer NLL. It prints the folder; run
lm-eval on it with the laser-jax backend, e.g.::

    DIR=$(python experiments/lm_eval_counterfact.py)
    laser-jax lm-eval --model_args model=smollm2 --tasks counterfact_lm_eval --include_path $DIR --limit 500
    laser-jax lm-eval --model_args model=smollm2,edit=fc_up:28:0.2 --tasks counterfact_lm_eval --include_path $DIR --limit 500
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from script_args import add_data_root, data_root

TASK = "counterfact_lm_eval"


def task_yaml(data_file: Path) -> str:
    return (f"task: {TASK}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data_file}\ntest_split: test\n"
            "output_type: loglikelihood\ndoc_to_text: \"{{prompt}}\"\ndoc_to_target: \"{{answer}}\"\ntarget_delimiter: \"\"\n"
            "metric_list:\n  - metric: acc\n  - metric: perplexity\n")


def build(out: Path, source: Path) -> Path:
    from laser_jax.tasks import get_task

    items = get_task("counterfact").load(source)
    out.mkdir(parents=True, exist_ok=True)
    data_file = (out / f"{TASK}.json").resolve()
    data_file.write_text(json.dumps([{"prompt": item.prompt, "answer": item.answer, "case": item.group} for item in items]))
    (out / f"{TASK}.yaml").write_text(task_yaml(data_file))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_root(parser)
    parser.add_argument("--out", metavar="DIR", help="where to write the task (default: a new temporary folder)")
    args = parser.parse_args()
    source = data_root(args.data_root) / "counterfact" / "counterfact-val.json"
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="lm_eval_counterfact-"))
    print(build(out, source).resolve())


if __name__ == "__main__":
    main()
