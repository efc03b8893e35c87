"""Builders for the task tests: fixture files in each layout, a word tokenizer, a fake hub."""

from __future__ import annotations

import csv
import json

import datasets
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast


def write_json(directory, name, obj):
    path = directory / name
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def write_jsonl(directory, name, records):
    path = directory / name
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def write_csv(directory, name, rows):
    path = directory / name
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def word_tokenizer(words, bos=True) -> PreTrainedTokenizerFast:
    """A real transformers tokenizer over whitespace-separated words (ids 0-2: <unk> <s> </s>).

    With ``bos`` it prepends <s> by default, like LLaMA-family tokenizers.
    """
    vocab = {w: i for i, w in enumerate(["<unk>", "<s>", "</s>", *dict.fromkeys(words)])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if bos:
        backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def fake_hub(monkeypatch, splits: dict[str, list[dict]]) -> list[tuple]:
    """Replace ``datasets.load_dataset`` with one serving ``splits``; returns the (id, config, split) calls."""
    calls = []

    def load_dataset(path, name=None, split=None, **kwargs):
        calls.append((path, name, split))
        return datasets.Dataset.from_list(splits[split])

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls
