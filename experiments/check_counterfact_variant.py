"""Independent check of one swept CounterFact variant: truncate the matrix in transformers' own PyTorch model (exact
torch SVD, float64) and score the first N items; compare with the sweep's per-example scores (base and variant) from
a `laser-jax sweep` run directory.

    python experiments/check_counterfact_variant.py N RUN_DIR TAU LAYER RHO [--model smollm2] [--data-root DIR]
    e.g. python experiments/check_counterfact_variant.py 767 experiments/results/counterfact_smollm2/L28-29 fc_up 28 0.2

``--model`` (default smollm2) is a packaged model's name or a .gguf file, read by transformers' GGUF loader; the
model must have the Llama-style MLP (gate_proj, up_proj, down_proj) under ``model.layers``. The data file is
counterfact/counterfact-val.json under ``--data-root``, else ``$LASER_JAX_DATA``, else ``../shared/data``, unless
``--data`` names it. It needs the run directory's stored scores (``scores/`` or ``scores.npz``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from laser_jax.loading import packaged_path
from laser_jax.results import score_columns
from laser_jax.tasks import get_task
from script_args import add_data_root, add_model, task_data

HF_NAMES = {"fc_in": "gate_proj", "fc_up": "up_proj", "fc_out": "down_proj"}


def score(ref, examples, batch_size: int = 64):
    """Per item: the answer's first token is the top-1 after the prompt; the mean answer NLL."""
    top1, nll = [], []
    with torch.inference_mode():
        for b in range(0, len(examples), batch_size):
            rows = examples[b:b + batch_size]
            seqs = [list(e.prompt_ids) + list(e.answer_ids) for e in rows]
            length = max(map(len, seqs))
            ids = torch.zeros(len(seqs), length, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for r, s in enumerate(seqs):
                ids[r, :len(s)] = torch.tensor(s)
                mask[r, :len(s)] = 1
            logprobs = torch.log_softmax(ref(input_ids=ids, attention_mask=mask).logits.float(), -1)
            for r, e in enumerate(rows):
                p, answer = len(e.prompt_ids), list(e.answer_ids)
                top1.append(int(logprobs[r, p - 1].argmax()) == answer[0])
                nll.append(-float(logprobs[r, torch.arange(p - 1, p - 1 + len(answer)), torch.tensor(answer)].mean()))
    return np.array(top1), np.array(nll)


def sweep_scores(run: Path, key: tuple, n: int):
    columns = score_columns(run, key)
    if not columns:
        raise SystemExit(f"{run}: no stored scores of {key}")
    first = np.argsort(columns["index"], kind="stable")[:n]
    return columns["top1"][first].astype(bool), columns["answer_nll"][first].astype(np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("n", type=int, help="score the first N items")
    parser.add_argument("run", type=Path, help="the laser-jax sweep run directory that holds the variant")
    parser.add_argument("tau", choices=sorted(HF_NAMES))
    parser.add_argument("layer", type=int)
    parser.add_argument("rho", type=float)
    add_model(parser)
    parser.add_argument("--data", help="the CounterFact file (default: counterfact/counterfact-val.json under the data root)")
    add_data_root(parser)
    args = parser.parse_args()
    n, tau, layer, rho = args.n, args.tau, args.layer, args.rho

    torch.set_num_threads(2)
    path = packaged_path(args.model) or Path(args.model)
    ref = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    task = get_task("counterfact")
    examples = task.examples(task.load(args.data or task_data("counterfact", args.data_root))[:n], tok)

    t0, n0 = score(ref, examples)
    s0, sn0 = sweep_scores(args.run, ("none", None, None), n)
    mlp = ref.model.layers[layer].mlp
    weight = getattr(mlp, HF_NAMES[tau]).weight
    k = int(rho * min(weight.shape))
    u, s, vh = torch.linalg.svd(weight.data.double(), full_matrices=False)
    weight.data = ((u[:, :k] * s[:k]) @ vh[:k]).float()
    t1, n1 = score(ref, examples)
    s1, sn1 = sweep_scores(args.run, (tau, layer, rho), n)
    print(f"{tau} layer {layer} rho {rho}: first {n} items, k={k}")
    print(f"base   : torch top1 {t0.sum()} nll {n0.mean():.5f} | sweep top1 {s0.sum()} nll {sn0.mean():.5f} | "
          f"disagree {(t0 != s0).sum()} max|dnll| {np.abs(n0 - sn0).max():.2e}")
    print(f"variant: torch top1 {t1.sum()} nll {n1.mean():.5f} | sweep top1 {s1.sum()} nll {sn1.mean():.5f} | "
          f"disagree {(t1 != s1).sum()} max|dnll| {np.abs(n1 - sn1).max():.2e}")


if __name__ == "__main__":
    main()
