"""Indirect-object identification (IOI) prompts, generated from our own templates and names.

"When Mary and John went to the store, John gave a drink to" -> " Mary": two
names are introduced, one (the subject, S) is repeated, and the answer is the
other (the indirect object, IO). Each item is a choice between IO (label 0) and
S (the distractor), with the generic probe tokens reported too, so the same
prompts serve the in-context vs generic-association analysis of Chen et al.
Names, places, objects and templates are ours; the names are common first names
that GPT-2-style BPE vocabularies hold as single tokens with a leading space.
Generation is seeded and deterministic: the same (count, seed) gives the same
items on every platform.
"""

from __future__ import annotations

import random
from typing import Optional

from laser_jax.tasks.common import CHOICE, GENERIC_PROBES, Item, Task, choice_item, spaced

NAMES = (
    "Mary", "John", "Alice", "Tom", "James", "Sarah", "Paul", "Anna", "David", "Laura",
    "Mark", "Emma", "Peter", "Kate", "Michael", "Lisa", "Robert", "Jane", "Daniel", "Susan",
)
PLACES = ("store", "park", "school", "station", "office", "garden", "market", "library", "beach", "hospital")
OBJECTS = ("drink", "book", "ring", "bag", "letter", "ball", "gift", "key", "snack", "ticket")
TEMPLATES = (
    "When {A} and {B} went to the {place}, {S} gave a {object} to",
    "After {A} and {B} arrived at the {place}, {S} handed a {object} to",
    "While {A} and {B} were working at the {place}, {S} passed a {object} to",
    "{A} and {B} had lunch near the {place}. Later, {S} offered a {object} to",
    "Yesterday {A} and {B} met at the {place}, and {S} showed a {object} to",
    "Then {A} and {B} walked to the {place}, where {S} threw a {object} to",
)
DEFAULT_COUNT = 200


def ioi_items(count: Optional[int] = None, seed: int = 0) -> list[Item]:
    """``count`` IOI items (default 200); the first name of the pair alternates ABBA/BABA at random."""
    rng = random.Random(seed)
    items = []
    for _ in range(DEFAULT_COUNT if count is None else count):
        io, s = rng.sample(NAMES, 2)
        first, second = (io, s) if rng.random() < 0.5 else (s, io)
        prompt = rng.choice(TEMPLATES).format(A=first, B=second, S=s, place=rng.choice(PLACES), object=rng.choice(OBJECTS))
        items.append(choice_item(prompt, (spaced(io), spaced(s)), 0))
    return items


TASK = Task(
    name="ioi",
    scoring=CHOICE,
    description="IOI prompts from our templates: indirect object vs repeated subject",
    generate=ioi_items,
    single_token=True,
    probes=GENERIC_PROBES,
    choice_names=("indirect object", "subject"),
)
