"""What every task shares: the :class:`Item` and :class:`Task` types, record reading and tokenisation.

A task turns a data source into :class:`Item` objects (text: a prompt, its gold
answer, candidate choices, a group id) and then, with a checkpoint's
transformers tokenizer, into :class:`laser_jax.examples.Example` objects that the
sweep engine scores. Pure Python (plus the ``datasets`` library): no JAX here.

Reading. A source is a local file, read with ``datasets.load_dataset`` ("json"
for ``.json``/``.jsonl``, "csv", "parquet"), or the hub id a user would load
instead (e.g. ``"EleutherAI/fever"``), read with the splits the official LASER
code used. Problems become one-line :class:`DataError` messages naming the file
(or hub id and split) and, for a bad record, its index counted from 0.

Tokenisation (one decision, here). The prompt is tokenised exactly as
``tokenizer(prompt)`` does by default, i.e. with the checkpoint's default
special tokens: GPT-2 and SmolLM2 add none, LLaMA-family tokenizers prepend BOS.
That is what the model saw in training and what ``model.generate`` receives.
Answers, choices and probes are tokenised on their own with
``add_special_tokens=False`` and appended after the prompt ids; they carry their
own leading space (``" Paris"``), as in the official code.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import datasets

from laser_jax.errors import DataError
from laser_jax.examples import Example

log = logging.getLogger("laser_jax.tasks")

# Scoring modes (the paper's metric for each dataset).
FIRST_TOKEN = "first_token"  # top-k accuracy of the answer's first token + answer NLL
CHOICE = "choice"  # the gold choice has the highest summed log-prob among the candidates
GENERATION = "generation"  # greedy decoding; the gold answer is a substring of the continuation
SCORING_MODES = (FIRST_TOKEN, CHOICE, GENERATION)

# Generic next tokens whose probability the papers watch ("Madrid is located in" -> " the").
GENERIC_PROBES = (" the", " a", " of")

BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}


@dataclasses.dataclass(frozen=True)
class Item:
    """One scored item as text.

    ``answer`` is the gold answer as appended to the prompt (with its leading
    space). For a choice task it is the gold choice: ``choices[label]``.
    ``group`` ties items together (a CounterFact case and its paraphrases, a
    TruthfulQA question and its choices); ``None`` when items stand alone.
    """

    prompt: str
    answer: str
    choices: tuple[str, ...] = ()
    label: int = -1
    group: Optional[Union[int, str]] = None

    def __post_init__(self):
        if self.choices and not (0 <= self.label < len(self.choices) and self.answer == self.choices[self.label]):
            raise ValueError(f"item answer {self.answer!r} is not choice {self.label} of {self.choices}")


def choice_item(prompt: str, choices: Sequence[str], label: int, group=None) -> Item:
    """A classification item: the gold answer is ``choices[label]``."""
    return Item(prompt=prompt, answer=choices[label], choices=tuple(choices), label=label, group=group)


@dataclasses.dataclass(frozen=True)
class Hub:
    """Where a user would load the data set from the Hugging Face hub."""

    id: str
    config: Optional[str] = None
    splits: tuple[str, ...] = ("train",)


class Record:
    """One raw record, with accessors that fail with the file and record index."""

    def __init__(self, data: dict, where: str, index: int):
        self.data = data
        self.where = where
        self.index = index

    def error(self, message: str) -> DataError:
        return DataError(f"{self.where}: record {self.index} (from 0): {message}")

    def get(self, key: str) -> Any:
        """The value at a dotted path (``"requested_rewrite.subject"``), or None when absent."""
        value: Any = self.data
        for part in key.split("."):
            if not isinstance(value, dict):
                return None
            value = value.get(part)
        return value

    def has(self, key: str) -> bool:
        return self.get(key) is not None

    def text(self, key: str) -> str:
        """A required non-empty string, stripped of surrounding whitespace."""
        value = self.get(key)
        if value is None:
            raise self.error(f"missing field {key!r}")
        if not isinstance(value, str):
            raise self.error(f"field {key!r} should be a string, not {type(value).__name__}")
        if not value.strip():
            raise self.error(f"field {key!r} is empty")
        return value.strip()

    def texts(self, key: str) -> list[str]:
        """A required string or non-empty list of strings, each stripped."""
        value = self.get(key)
        if isinstance(value, str):
            value = [value]
        if value is None:
            raise self.error(f"missing field {key!r}")
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
            raise self.error(f"field {key!r} should be a string or a non-empty list of non-empty strings")
        return [v.strip() for v in value]

    def integer(self, key: str) -> int:
        value = self.get(key)
        if value is None:
            raise self.error(f"missing field {key!r}")
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(f"field {key!r} should be an integer, not {type(value).__name__}")
        return value


def sentence(text: str) -> str:
    """Text ending in a full stop, as the official prompts build it (kept if it ends in "." or "?")."""
    text = text.strip()
    return text if text.endswith((".", "?")) else text + "."


def spaced(text: str) -> str:
    """An answer as appended after the prompt: one leading space."""
    return " " + text.strip()


def generation_match(continuation: str, gold: str) -> bool:
    """Generation accuracy for one item: the gold answer is a substring of the continuation.

    Both are lowercased and stripped. Only the generated continuation is
    matched: the official LASER code decoded prompt and continuation together
    and matched that (a known bug: an answer that appears in the prompt counted
    as correct).
    """
    gold = gold.strip().lower()
    return bool(gold) and gold in continuation.strip().lower()


# ----------------------------------------------------------------------------- reading


def read_source(source, hub: Optional[Hub], field: Optional[str] = None) -> list[tuple[str, list[dict]]]:
    """The raw records of a local file, or of the hub splits, as ``[(where, records), ...]``."""
    text = str(source)
    path = Path(text).expanduser()
    if not path.exists() and hub is not None and text == hub.id:
        return _read_hub(hub)
    if not path.exists():
        hint = f" (or give the hub id {hub.id!r})" if hub is not None else ""
        raise DataError(f"{text}: no such data file{hint}")
    if path.is_dir():
        raise DataError(f"{text}: is a directory, not a data file")
    builder = BUILDERS.get(path.suffix.lower())
    if builder is None:
        raise DataError(f"{text}: unsupported file type {path.suffix!r} (use {', '.join(BUILDERS)})")
    if builder != "parquet" and not path.read_bytes().strip():
        raise DataError(f"{text}: empty file")
    # ``field`` names the record list inside one JSON object (a BIG-bench task.json);
    # a JSON Lines file already holds one record per line.
    records = _read_file(path, builder, field if path.suffix.lower() == ".json" else None)
    if not records:
        raise DataError(f"{text}: no records")
    return [(text, records)]


def _read_file(path: Path, builder: str, field: Optional[str]) -> list[dict]:
    kwargs = {"field": field} if field else {}
    try:
        data = datasets.load_dataset(builder, data_files=str(path), split="train", **kwargs)
    except Exception as error:  # datasets raises many types; find the cause ourselves
        if builder != "json":
            raise DataError(f"{path}: cannot be read as {builder.upper()}: {_first_line(error)}") from error
        # Either the JSON is broken (say where), or datasets cannot type it: with
        # ``field=`` it goes through pandas, which cannot hold BIG-bench qa_wikidata's
        # ``target`` (a string in some records, a list in others). Then read it with json.
        return _read_json_stdlib(path, field)
    return data.to_list()


def _read_json_stdlib(path: Path, field: Optional[str]) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".jsonl":
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise DataError(f"{path}: line {number} is not valid JSON ({error.msg})") from None
    else:
        try:
            records = json.loads(text)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}: not valid JSON at line {error.lineno} column {error.colno} ({error.msg})") from None
    if field and isinstance(records, dict):
        if not isinstance(records.get(field), list):
            raise DataError(f"{path}: expected a list {field!r} in the JSON object")
        records = records[field]
    if isinstance(records, dict):
        records = [records]
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise DataError(f"{path}: record {index} (from 0): not a JSON object")
    return records


def _read_hub(hub: Hub) -> list[tuple[str, list[dict]]]:
    chunks = []
    for split in hub.splits:
        where = f"hub {hub.id}" + (f" ({hub.config})" if hub.config else "") + f" split {split}"
        try:
            data = datasets.load_dataset(hub.id, hub.config, split=split)
        except Exception as error:  # offline, missing, renamed: the user needs one line
            raise DataError(f"{where}: could not be loaded: {type(error).__name__}: {_first_line(error)}") from error
        chunks.append((where, data.to_list()))
    return chunks


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# ----------------------------------------------------------------------------- tokenising


def encode_answers(tokenizer, texts: Iterable[str]) -> dict[str, tuple[int, ...]]:
    """Each distinct answer text, tokenised on its own (no special tokens)."""
    unique = list(dict.fromkeys(texts))
    if not unique:
        return {}
    ids = tokenizer(unique, add_special_tokens=False)["input_ids"]
    return {text: tuple(int(i) for i in row) for text, row in zip(unique, ids)}


def encode_probes(tokenizer, probes: Sequence[str]) -> tuple[int, ...]:
    """Probe words as single token ids; a probe that is several tokens is an error, not truncated."""
    encoded = encode_answers(tokenizer, probes)
    for probe, ids in encoded.items():
        if len(ids) != 1:
            raise DataError(f"probe {probe!r} is {len(ids)} tokens for this tokenizer; probes must be single tokens")
    return tuple(encoded[p][0] for p in probes)


def multi_token_count(examples: Sequence[Example]) -> int:
    """How many examples have an answer or a choice longer than one token."""
    return sum(1 for e in examples if len(e.answer_ids) > 1 or any(len(c) > 1 for c in e.choice_ids))


# ----------------------------------------------------------------------------- tasks


@dataclasses.dataclass(frozen=True)
class Task:
    """A named evaluation task: where its data lives, how records become items, how it is scored.

    File- or hub-backed tasks give ``record_items`` (one raw record -> its items,
    possibly none when the record is filtered out); generated tasks (IOI) give
    ``generate`` (a count or None -> items) instead.
    """

    name: str
    scoring: str
    description: str
    record_items: Optional[Callable[[Record], list[Item]]] = None
    generate: Optional[Callable[[Optional[int]], list[Item]]] = None
    default_path: Optional[str] = None  # relative to the data root (../shared/data in this project)
    hub: Optional[Hub] = None
    json_field: Optional[str] = None  # the list of records inside a JSON object (BIG-bench "examples")
    unique_key: Optional[str] = None  # a record whose value here was seen before is skipped (FEVER hub rows)
    single_token: bool = False  # answers/choices are meant to be one token: multi-token ones are reported
    max_new_tokens: int = 0  # generation tasks: tokens to decode greedily
    probes: tuple[str, ...] = ()  # generic tokens whose log-prob is reported per example
    choice_names: tuple[str, ...] = ()  # what each candidate position means, when fixed (IOI: indirect object, subject)

    def __post_init__(self):
        if self.scoring not in SCORING_MODES:
            raise ValueError(f"task {self.name}: scoring {self.scoring!r} is not one of {SCORING_MODES}")
        if (self.record_items is None) == (self.generate is None):
            raise ValueError(f"task {self.name}: give exactly one of record_items and generate")
        if (self.scoring == GENERATION) != (self.max_new_tokens > 0):
            raise ValueError(f"task {self.name}: max_new_tokens is for generation tasks, and they need it")

    def data_path(self, data_root) -> Optional[Path]:
        """The default data file under ``data_root`` (None for generated tasks)."""
        return None if self.default_path is None else Path(data_root) / self.default_path

    def load(self, source=None, limit: Optional[int] = None) -> list[Item]:
        """Items from a local file or the task's hub id, in source order.

        ``limit`` keeps the first ``limit`` records that yield items (a
        CounterFact case with its paraphrases, a TruthfulQA question with all its
        choices, a FEVER claim that is not NOT ENOUGH INFO), so groups stay whole.
        """
        if limit is not None and limit < 1:
            raise DataError(f"task {self.name}: limit must be at least 1, got {limit}")
        if self.generate is not None:
            if source is not None:
                raise DataError(f"task {self.name} generates its prompts and takes no data file (got {source})")
            return self.generate(limit)
        if source is None:
            raise DataError(f"task {self.name} needs a data file (default: <data root>/{self.default_path})")
        items: list[Item] = []
        kept = 0
        seen = 0
        keys: set = set()
        for where, records in read_source(source, self.hub, self.json_field):
            for index, data in enumerate(records):
                if limit is not None and kept >= limit:
                    return items
                seen += 1
                record = Record(data, where, index)
                if self.unique_key is not None and record.has(self.unique_key):
                    key = record.get(self.unique_key)
                    if key in keys:
                        continue
                    keys.add(key)
                record_items = self.record_items(record)
                if record_items:
                    kept += 1
                    items.extend(record_items)
        if not items:
            raise DataError(f"{source}: none of its {seen} records is usable for task {self.name}")
        return items

    def examples(self, items: Sequence[Item], tokenizer) -> list[Example]:
        """Token-id examples with the checkpoint's tokenizer (see the module docstring)."""
        if not items:
            return []
        prompts = tokenizer([item.prompt for item in items])["input_ids"]
        answers = encode_answers(tokenizer, [item.answer for item in items] + [c for item in items for c in item.choices])
        probe_ids = encode_probes(tokenizer, self.probes)
        out = []
        for index, (item, prompt_ids) in enumerate(zip(items, prompts)):
            for text, ids in ((item.prompt, prompt_ids), *((a, answers[a]) for a in (item.answer, *item.choices))):
                if not len(ids):
                    raise DataError(f"task {self.name}: item {index} (from 0): {text!r} gives no tokens; is the tokenizer complete?")
            out.append(
                Example(
                    prompt_ids=tuple(int(i) for i in prompt_ids),
                    answer_ids=answers[item.answer],
                    choice_ids=tuple(answers[c] for c in item.choices),
                    label=item.label,
                    probe_ids=probe_ids,
                )
            )
        if self.single_token:
            count = multi_token_count(out)
            if count:
                log.warning(
                    "task %s: %d of %d items have a multi-token answer or choice for this tokenizer; "
                    "they are scored on their full token sequences, not truncated",
                    self.name, count, len(out),
                )
        return out
