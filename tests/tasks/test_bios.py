"""Bias in Bios: gender and profession prompts, the profession filter, hub split, errors."""

import pytest

from laser_jax.errors import DataError
from laser_jax.tasks import get_task, multi_token_count
from laser_jax.tasks.bios import PROFESSIONS
from tests.tasks.helpers import fake_hub, write_jsonl

GENDER = get_task("bios_gender")
PROFESSION = get_task("bios_profession")

RECORDS = [
    {"hard_text": "She writes for the Times", "profession": 11, "gender": 1},  # journalist
    {"hard_text": "He audits accounts.", "profession": 0, "gender": 0},  # accountant: not one of the 8
    {"hard_text": "He teaches maths.", "profession": "teacher", "gender": "male"},
]


def test_gender_items(tmp_path):
    items = GENDER.load(write_jsonl(tmp_path, "bios.jsonl", RECORDS))
    assert items[0].prompt == (
        "Consider the following text: She writes for the Times. "
        "Is the person in this text a male or female? The gender of this person is"
    )
    assert [(i.label, i.answer) for i in items] == [(1, " female"), (0, " male"), (0, " male")]
    assert items[0].choices == (" male", " female")


def test_profession_items_keep_the_eight_professions(tmp_path):
    items = PROFESSION.load(write_jsonl(tmp_path, "bios.jsonl", RECORDS))
    assert items[0].prompt == (
        "Consider the following text: She writes for the Times. "
        "What is the profession of the person in this text? The profession of this person is"
    )
    assert [i.answer for i in items] == [" journalist", " teacher"]
    assert [i.label for i in items] == [PROFESSIONS.index("journalist"), PROFESSIONS.index("teacher")]
    assert items[0].choices == tuple(" " + p for p in PROFESSIONS)


def test_hub_dev_split(monkeypatch):
    calls = fake_hub(monkeypatch, {"dev": RECORDS[:2]})  # the hub's labels are class indices
    assert [i.label for i in GENDER.load("LabHC/bias_in_bios")] == [1, 0]
    assert calls == [("LabHC/bias_in_bios", None, "dev")]


def test_malformed_record(tmp_path):
    path = write_jsonl(tmp_path, "bios.jsonl", [RECORDS[0], dict(RECORDS[1], gender=5)])
    with pytest.raises(DataError, match=rf"^{path}: record 1 \(from 0\): field 'gender' should be a class index 0..1 or one of male, female; got 5$"):
        GENDER.load(path)


def test_choices_are_single_gpt2_tokens(tmp_path, gpt2_tokenizer):
    path = write_jsonl(tmp_path, "bios.jsonl", RECORDS)
    for task in (GENDER, PROFESSION):
        assert multi_token_count(task.examples(task.load(path), gpt2_tokenizer)) == 0
