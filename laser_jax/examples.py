"""Scored examples: token ids of a prompt and its answer, the unit the sweep engine evaluates.

Pure Python; tasks build these from text with a tokenizer, and the engine packs
them into arrays. :func:`save_examples` / :func:`load_examples` keep examples
as token ids in a JSON file, for models without a tokenizer (the synthetic
task writes its test set this way).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Sequence

from laser_jax.errors import DataError
from laser_jax.ground import write_text_atomic

EXAMPLES_FORMAT = "laser-jax-examples"


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


def save_examples(path, examples: Sequence[Example]) -> Path:
    """Write examples as token ids: ``{"format", "examples": [{"prompt_ids", "answer_ids", ...}]}`` (atomic)."""
    rows = [{f.name: _jsonable(getattr(e, f.name)) for f in dataclasses.fields(Example)} for e in examples]
    path = Path(path)
    write_text_atomic(path, json.dumps({"format": EXAMPLES_FORMAT, "examples": rows}, separators=(",", ":")) + "\n")
    return path


def load_examples(path) -> list[Example]:
    """The examples of a file written by :func:`save_examples`; anything else is a one-line :class:`DataError`."""
    path = Path(path).expanduser()
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"cannot read examples from {path}: {type(error).__name__}: {error}") from error
    if not isinstance(raw, dict) or raw.get("format") != EXAMPLES_FORMAT or not isinstance(raw.get("examples"), list):
        raise DataError(f"{path} is not a laser-jax examples file (format {EXAMPLES_FORMAT!r})")
    out = []
    for index, row in enumerate(raw["examples"]):
        try:
            out.append(Example(prompt_ids=tuple(row["prompt_ids"]), answer_ids=tuple(row["answer_ids"]),
                               choice_ids=tuple(tuple(c) for c in row.get("choice_ids", ())),
                               label=int(row.get("label", -1)), probe_ids=tuple(row.get("probe_ids", ()))))
        except (KeyError, TypeError, ValueError) as error:
            raise DataError(f"{path}: example {index} is malformed ({type(error).__name__}: {error})") from error
    if not out:
        raise DataError(f"{path} holds no examples")
    return out


def _jsonable(value):
    return [_jsonable(v) for v in value] if isinstance(value, tuple) else value
