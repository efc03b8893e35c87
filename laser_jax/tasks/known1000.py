"""known_1000 (ROME): factual recall of a known fact against generic next tokens.

Records ``{known_id, subject, attribute, prompt, ...}``; the item is ``prompt``
-> ``" " + attribute`` with the known id as group, scored by the answer's first
token (top-k, NLL) while the generic probe tokens (" the", " a", " of") are
reported at the same position: the measurement of the "Madrid is located in ->
Spain vs the" analysis (:func:`laser_jax.tasks.analysis.generic_token_table`).
"""

from __future__ import annotations

from laser_jax.tasks.common import FIRST_TOKEN, GENERIC_PROBES, Item, Record, Task, spaced


def record_items(record: Record) -> list[Item]:
    group = record.get("known_id")
    return [Item(prompt=record.text("prompt"), answer=spaced(record.text("attribute")), group=record.index if group is None else group)]


TASK = Task(
    name="known1000",
    scoring=FIRST_TOKEN,
    description="ROME known_1000 facts: answer first token vs generic probe tokens",
    record_items=record_items,
    default_path="counterfact/known_1000.json",
    probes=GENERIC_PROBES,
)
