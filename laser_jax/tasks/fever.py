"""FEVER: is a claim true or false?

Records ``{id, label, claim, ...}`` (``paper_dev.jsonl``, or hub
``EleutherAI/fever`` ``v1.0`` splits paper_dev then paper_test, which repeat a
claim once per evidence row: a repeated ``id`` is skipped). SUPPORTS claims are
true and REFUTES claims false; NOT ENOUGH INFO claims are dropped, so the dev
file keeps 6,666 of 9,999. (The official code also merged equal claim texts
with different ids and dropped texts with conflicting labels; the dev file has
127 repeated texts, which we keep.)

Prompt ``"Consider the following claim: <claim>. Is this claim true or false.
The claim is"`` (no extra full stop when the claim ends in one); choices
``" true"`` / ``" false"``.
"""

from __future__ import annotations

from laser_jax.tasks.common import CHOICE, Hub, Item, Record, Task, choice_item, sentence

CHOICES = (" true", " false")
LABELS = {"SUPPORTS": 0, "REFUTES": 1}
DROPPED = "NOT ENOUGH INFO"


def record_items(record: Record) -> list[Item]:
    label = record.text("label")
    if label == DROPPED:
        return []
    if label not in LABELS:
        raise record.error(f"label {label!r} is not SUPPORTS, REFUTES or {DROPPED}")
    prompt = f"Consider the following claim: {sentence(record.text('claim'))} Is this claim true or false. The claim is"
    return [choice_item(prompt, CHOICES, LABELS[label])]


TASK = Task(
    name="fever",
    scoring=CHOICE,
    description="FEVER claims: ' true' vs ' false' at the last prompt position",
    record_items=record_items,
    default_path="fever/paper_dev.jsonl",
    hub=Hub("EleutherAI/fever", "v1.0", ("paper_dev", "paper_test")),
    unique_key="id",
    single_token=True,
)
