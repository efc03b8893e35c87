"""What a LASER step removes: on the items it fixes, the predictions of the removed part next to the base's and LASER's.

LASER keeps ``W_k``; the removed part is ``W − W_k`` (``Intervention(...,
keep="bottom")``, :meth:`~laser_jax.laser.Intervention.complement`). For the
items the step fixes (the base model's top-1 is wrong, the LASER model's is
right), :func:`fixed_items` lists the top predictions at the last prompt
position of three models: the base, LASER (``W → W_k``) and the removed part
alone (``W → W − W_k``). Chen, Bruna & Bietti predict that the removed part
carries the global associations (generic tokens such as " the"), so its top
predictions should be generic words where the base's were; LASER adds that
they may be a wrong entity of the right type. :func:`summary` counts the first
(generic top tokens, agreement with the base's top token, the right answer);
the table shows the second. ``laser-jax removed`` runs it on a task.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from laser_jax.examples import Example
from laser_jax.laser import Intervention, apply
from laser_jax.sweep import SweepOptions, sweep

MODELS = ("base", "laser", "removed")


@dataclasses.dataclass(frozen=True)
class Prediction:
    """The top tokens at the last prompt position and their probabilities, most likely first."""

    tokens: tuple[int, ...]
    probs: tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class FixedItem:
    """One item the step fixes: its index in the examples, its answer's first token, and each model's top tokens
    (``predictions[name]`` for ``name`` in :data:`MODELS`)."""

    index: int
    answer: int
    predictions: dict


def fixed_items(model, examples: Sequence[Example], step: Intervention, top_n: int = 5, batch_size: int = 32,
                options: Optional[SweepOptions] = None) -> list[FixedItem]:
    """The items ``step`` fixes (base top-1 wrong, LASER top-1 right), in order, with the top ``top_n``
    predictions of the base, the LASER model and the removed part (``options`` default to ``batch_size``'s)."""
    laser_step = dataclasses.replace(step, keep="top")
    options = SweepOptions(batch_size=batch_size) if options is None else options
    result = sweep(model, examples, [laser_step], options=options)
    fixed = np.flatnonzero(~result.base.scores.top1 & result.row(laser_step).scores.top1)
    models = {"base": model, "laser": apply(model, laser_step), "removed": apply(model, laser_step.complement())}
    prompts = [examples[i].prompt_ids for i in fixed]
    tops = {name: top_predictions(m, prompts, top_n, batch_size) for name, m in models.items()}
    return [FixedItem(int(i), int(examples[i].answer_ids[0]), {name: tops[name][j] for name in MODELS})
            for j, i in enumerate(fixed)]


def top_predictions(model, prompts: Sequence[Sequence[int]], top_n: int, batch_size: int = 32) -> list[Prediction]:
    """The ``top_n`` next tokens after each prompt (right-padded batches, read at the last real token)."""
    out = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start:start + batch_size]
        width = max(map(len, chunk))
        ids = np.zeros((len(chunk), width), np.int32)
        mask = np.zeros((len(chunk), width), bool)
        for i, prompt in enumerate(chunk):
            ids[i, :len(prompt)], mask[i, :len(prompt)] = prompt, True
        last = np.array([[len(p) - 1] for p in chunk], np.int32)
        logits = model.logits(ids, mask, last)[:, 0].astype(jnp.float32)
        probs, tokens = jax.lax.top_k(jax.nn.softmax(logits, axis=-1), top_n)
        out.extend(Prediction(tuple(map(int, t)), tuple(map(float, p))) for t, p in zip(np.asarray(tokens), np.asarray(probs)))
    return out


def counts(items: Sequence[FixedItem], generic_ids) -> dict:
    """Per model: on how many fixed items its top token is a generic word (``generic_ids``), the base's top
    token, and the right answer's first token."""
    generic = set(int(t) for t in generic_ids)
    out = {}
    for name in MODELS:
        tops = [item.predictions[name].tokens[0] for item in items]
        out[name] = {"generic": sum(t in generic for t in tops),
                     "base_top": sum(t == item.predictions["base"].tokens[0] for t, item in zip(tops, items)),
                     "answer": sum(t == item.answer for t, item in zip(tops, items))}
    return out


def summary(items: Sequence[FixedItem], step: Intervention, n_items: int, generic_ids, tokenizer=None, examples=None,
            generic_words: Sequence[str] = ()) -> str:
    """The counts of :func:`counts` in one paragraph, then :func:`format_report`'s table."""
    table = counts(items, generic_ids)
    words = f" ({', '.join(repr(w) for w in generic_words)})" if generic_words else ""
    line = lambda key: ", ".join(f"{name} {table[name][key]}" for name in MODELS)  # noqa: E731
    return (f"{len(items)} of {n_items} items are fixed (base top-1 wrong, LASER top-1 right). On them the top token is "
            f"a generic word{words}: {line('generic')}; the base's own top token: {line('base_top')}; the right "
            f"answer: {line('answer')}.\n\n" + format_report(items, step, tokenizer, examples))


def figure(items: Sequence[FixedItem], generic_ids, title: str = ""):
    """A matplotlib Figure of :func:`counts`: per model, the fixed items whose top token is a generic word, the
    base's top token, or the right answer."""
    import matplotlib.pyplot as plt

    table = counts(items, generic_ids)
    kinds = (("generic", "a generic word"), ("base_top", "the base's top token"), ("answer", "the right answer"))
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    width = 0.8 / len(kinds)
    for j, (key, label) in enumerate(kinds):
        ax.bar(np.arange(len(MODELS)) + (j - 1) * width, [table[name][key] for name in MODELS], width, label=label)
    ax.set_xticks(np.arange(len(MODELS)), ["base", "LASER (W_k)", "removed part (W − W_k)"])
    ax.set_ylabel(f"fixed items (of {len(items)})")
    ax.set_title(title or "top token on the items LASER fixes", fontsize=9)
    ax.legend(fontsize=8, title="top token is", title_fontsize=8)
    fig.tight_layout()
    return fig


def format_report(items: Sequence[FixedItem], step: Intervention, tokenizer=None, examples=None, top_n: int = 3) -> str:
    """A markdown table: per fixed item, its prompt and answer, and each model's top ``top_n`` tokens with probabilities."""

    def text(token: int) -> str:
        return repr(tokenizer.decode([token])) if tokenizer is not None else str(token)

    def cell(prediction: Prediction) -> str:
        return ", ".join(f"{text(t)} {p:.2f}" for t, p in list(zip(prediction.tokens, prediction.probs))[:top_n])

    laser = dataclasses.replace(step, keep="top")
    lines = [f"Items fixed by {laser.tau}, layer {laser.layer}, ρ={laser.rho:g} (base wrong, LASER right): {len(items)}",
             "", "| item | prompt | answer | base | LASER | removed part |", "|---|---|---|---|---|---|"]
    for item in items:
        prompt = ""
        if examples is not None and tokenizer is not None:
            prompt = " ".join(tokenizer.decode(list(examples[item.index].prompt_ids)).replace("|", "\\|").split())  # one table row
        lines.append(f"| {item.index} | {prompt} | {text(item.answer)} | "
                     + " | ".join(cell(item.predictions[name]) for name in MODELS) + " |")
    return "\n".join(lines) + "\n"


__all__ = ["MODELS", "Prediction", "FixedItem", "fixed_items", "top_predictions", "counts", "summary", "figure", "format_report"]
