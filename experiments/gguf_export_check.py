"""Export a LASER variant of a GGUF model to GGUF and check what transformers' GGUF loader reads back.

For each ``--types`` (default ``f32 q8_0``): ``laser-jax apply``'s export (:func:`laser_jax.gguf.export_gguf`) of
the model with ``--edit`` into a temporary folder, then ``AutoModelForCausalLM.from_pretrained(gguf_file=...)`` on it
and, on the first ``--prompts`` CounterFact prompts (``counterfact/counterfact-val.json`` under the data root), the
largest |logit difference| to laser-jax's reduced model at the real positions and the agreement of the next-token
argmax at each prompt's last position. Prints one line per type, with the file's size and the export's time. With
``--llama-cpp N`` (needs llama-cpp-python), llama.cpp also decodes 12 tokens greedily from each of the first N
prompts, compared with :func:`laser_jax.generate.greedy_generate`.

    python experiments/gguf_export_check.py --model smollm2 --edit fc_up:28:0.2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from script_args import add_data_root, data_root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--edit", default="fc_up:28:0.2")
    parser.add_argument("--types", nargs="+", default=["f32", "q8_0"])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--llama-cpp", type=int, default=0, metavar="N", help="also run llama.cpp on N prompts")
    add_data_root(parser)
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM

    from laser_jax import load_model
    from laser_jax.edits import parse_edit, resolve_edits
    from laser_jax.gguf import export_gguf
    from laser_jax.laser import apply
    from laser_jax.tasks import get_task

    torch.set_num_threads(2)
    model = load_model(args.model)
    steps = resolve_edits(model, [parse_edit(args.edit)])
    reduced = apply(model, steps)
    items = get_task("counterfact").load(data_root(args.data_root) / "counterfact" / "counterfact-val.json")[:args.prompts]
    rows = [model.tokenizer(item.prompt)["input_ids"] for item in items]
    length = max(map(len, rows))
    ids = np.zeros((len(rows), length), np.int64)
    mask = np.zeros((len(rows), length), bool)
    for i, row in enumerate(rows):
        ids[i, :len(row)], mask[i, :len(row)] = row, True
    ours = np.asarray(reduced.logits(ids, mask), np.float32)
    last = np.array([len(row) - 1 for row in rows])
    with tempfile.TemporaryDirectory() as folder:
        for kind in args.types:
            start = time.perf_counter()
            path = export_gguf(reduced, Path(folder) / f"{args.model}-{kind}.gguf", kind, edits=steps)
            seconds = time.perf_counter() - start
            reference = AutoModelForCausalLM.from_pretrained(folder, gguf_file=path.name, dtype=torch.float32).eval()
            with torch.no_grad():
                theirs = reference(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask.astype(np.int64))).logits.numpy()
            gap = float(np.abs(np.where(mask[..., None], ours - theirs, 0)).max())
            agree = float(np.mean(ours[np.arange(len(rows)), last].argmax(-1) == theirs[np.arange(len(rows)), last].argmax(-1)))
            print(f"{args.model} {args.edit} {kind}: {path.stat().st_size / 2**20:.1f} MiB written in {seconds:.1f} s; "
                  f"max |logit - laser-jax| {gap:.2e} over {int(mask.sum())} positions of {len(rows)} prompts; "
                  f"next-token argmax agreement {agree:.3f}")
            if args.llama_cpp:
                print(f"  llama.cpp: {llama_cpp_agreement(path, reduced, rows[:args.llama_cpp])}")


def llama_cpp_agreement(path, reduced, prompts, new_tokens: int = 12) -> str:
    """How many prompts llama.cpp continues with laser-jax's greedy tokens, and the first prompt's two continuations."""
    import llama_cpp

    from laser_jax.generate import greedy_generate

    llm = llama_cpp.Llama(model_path=str(path), n_ctx=256, n_threads=2, verbose=False)
    ours = greedy_generate(reduced, prompts, new_tokens)
    same = 0
    for prompt, mine in zip(prompts, ours):
        llm.reset()
        theirs = [int(t) for t, _ in zip(llm.generate(prompt, top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0),
                                         range(new_tokens))]
        same += theirs == list(mine)
        if prompt is prompts[0]:
            first = (reduced.tokenizer.decode(theirs), reduced.tokenizer.decode(list(mine)))
    return (f"greedy {new_tokens} tokens equal laser-jax's on {same} of {len(prompts)} prompts; first prompt: "
            f"llama.cpp {first[0]!r}, laser-jax {first[1]!r}")


if __name__ == "__main__":
    main()
