"""HotpotQA: open questions answered by greedy generation.

Records ``{question, answer, ...}`` (the simplified dev file, or hub
``hotpot_qa`` ``fullwiki``). Prompt ``"<question> The answer is"`` (a ``?`` is
added when missing); greedy-decode 15 tokens; correct iff the answer is a
substring of the continuation (:func:`laser_jax.tasks.common.generation_match`).

From the hub we read what the official code read: the first 7,405 train
questions (as many as the validation split), then the validation split. The
official code also dropped answers longer than 15 LLaMA tokens; we keep every
question (the answer length depends on the tokenizer).
"""

from __future__ import annotations

from laser_jax.tasks.common import GENERATION, Hub, Item, Record, Task, spaced


def record_items(record: Record) -> list[Item]:
    question = record.text("question")
    if not question.endswith("?"):
        question += "?"
    return [Item(prompt=f"{question} The answer is", answer=spaced(record.text("answer")))]


TASK = Task(
    name="hotpotqa",
    scoring=GENERATION,
    description="HotpotQA questions: greedy 15 tokens, answer substring of the continuation",
    record_items=record_items,
    default_path="hotpotqa/hotpot_dev_v1_simplified.json",
    hub=Hub("hotpot_qa", "fullwiki", ("train[:7405]", "validation")),
    max_new_tokens=15,
)
