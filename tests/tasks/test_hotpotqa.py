"""HotpotQA: prompt building, hub splits, errors, the real dev file."""

import pytest

from laser_jax.errors import DataError
from laser_jax.tasks import GENERATION, get_task
from tests.conftest import shared_file
from tests.tasks.helpers import fake_hub, write_json

TASK = get_task("hotpotqa")

RECORDS = [
    {"question": "Were Scott Derrickson and Ed Wood of the same nationality?", "answer": "yes", "type": "comparison"},
    {"question": " Which city hosts the Louvre ", "answer": " Paris ", "type": "bridge"},
]


def test_prompts_add_question_mark_and_answers_get_a_space(tmp_path):
    items = TASK.load(write_json(tmp_path, "hotpot.json", RECORDS))
    assert [(i.prompt, i.answer) for i in items] == [
        ("Were Scott Derrickson and Ed Wood of the same nationality? The answer is", " yes"),
        ("Which city hosts the Louvre? The answer is", " Paris"),
    ]
    assert TASK.scoring == GENERATION and TASK.max_new_tokens == 15


def test_hub_reads_the_official_splits(monkeypatch):
    calls = fake_hub(monkeypatch, {"train[:7405]": [dict(RECORDS[0], level="hard")], "validation": [RECORDS[1]]})
    items = TASK.load("hotpot_qa")
    assert calls == [("hotpot_qa", "fullwiki", "train[:7405]"), ("hotpot_qa", "fullwiki", "validation")]
    assert [i.answer for i in items] == [" yes", " Paris"]


def test_malformed_record(tmp_path):
    path = write_json(tmp_path, "hotpot.json", [RECORDS[0], {"question": 7, "answer": "x"}])
    with pytest.raises(DataError, match=rf"^{path}: record 1 \(from 0\): field 'question' should be a string, not int$"):
        TASK.load(path)


def test_real_dev_file():
    items = TASK.load(shared_file("hotpotqa", "hotpot_dev_v1_simplified.json"))
    assert len(items) == 7405
    assert items[0].prompt == "Were Scott Derrickson and Ed Wood of the same nationality? The answer is"
    assert items[-1].answer == " Norwood, Massachusetts"
    assert sum(not i.prompt.endswith("? The answer is") for i in items) == 0
