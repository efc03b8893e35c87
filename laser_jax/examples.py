"""Scored examples: token ids of a prompt and its answer, the unit the sweep engine evaluates.

Pure Python; tasks build these from text with a tokenizer, and the engine packs
them into arrays.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Example:
    """One scored item.

    ``answer_ids`` is the gold answer, tokenised on its own and appended to the
    prompt. ``choice_ids`` are candidate answers for classification, ``label``
    the index of the gold one. ``probe_ids`` are single tokens (generic words
    such as " the") whose probability at the last prompt position is reported.
    """

    prompt_ids: tuple[int, ...]
    answer_ids: tuple[int, ...]
    choice_ids: tuple[tuple[int, ...], ...] = ()
    label: int = -1
    probe_ids: tuple[int, ...] = ()

    def __post_init__(self):
        if not self.prompt_ids:
            raise ValueError("an example needs at least one prompt token")
        if not self.answer_ids:
            raise ValueError("an example needs at least one answer token")
        if self.choice_ids and not 0 <= self.label < len(self.choice_ids):
            raise ValueError(f"label {self.label} does not index the {len(self.choice_ids)} choices")
