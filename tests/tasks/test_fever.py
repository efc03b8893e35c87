"""FEVER: label filter, prompt, hub evidence repeats, errors, the real dev file."""

import pytest

from laser_jax.errors import DataError
from laser_jax.tasks import CHOICE, get_task
from tests.conftest import shared_file
from tests.tasks.helpers import fake_hub, write_jsonl

TASK = get_task("fever")

RECORDS = [
    {"id": 1, "verifiable": "VERIFIABLE", "label": "SUPPORTS", "claim": "Oliver Reed was a film actor.", "evidence": [[[1, 2, "Oliver_Reed", 0]]]},
    {"id": 2, "verifiable": "NOT VERIFIABLE", "label": "NOT ENOUGH INFO", "claim": "Tilda Swinton is a vegan.", "evidence": [[[3, None, None, None]]]},
    {"id": 3, "verifiable": "VERIFIABLE", "label": "REFUTES", "claim": "Lorelai Gilmore's father is named Robert", "evidence": [[[4, 5, "Lorelai_Gilmore", 3]]]},
]


def test_keeps_supports_and_refutes_with_the_official_prompt(tmp_path):
    items = TASK.load(write_jsonl(tmp_path, "paper_dev.jsonl", RECORDS))
    assert [i.prompt for i in items] == [
        "Consider the following claim: Oliver Reed was a film actor. Is this claim true or false. The claim is",
        "Consider the following claim: Lorelai Gilmore's father is named Robert. Is this claim true or false. The claim is",
    ]
    assert [(i.choices, i.label, i.answer) for i in items] == [((" true", " false"), 0, " true"), ((" true", " false"), 1, " false")]
    assert TASK.scoring == CHOICE


def test_hub_repeats_a_claim_per_evidence_row(monkeypatch):
    rows = [
        {"id": 1, "label": "SUPPORTS", "claim": "A is B.", "evidence_id": 10},
        {"id": 1, "label": "SUPPORTS", "claim": "A is B.", "evidence_id": 11},
        {"id": 2, "label": "REFUTES", "claim": "C is D.", "evidence_id": 12},
    ]
    calls = fake_hub(monkeypatch, {"paper_dev": rows, "paper_test": [{"id": 5, "label": "REFUTES", "claim": "E.", "evidence_id": 1}]})
    items = TASK.load("EleutherAI/fever")
    assert [c[2] for c in calls] == ["paper_dev", "paper_test"] and calls[0][:2] == ("EleutherAI/fever", "v1.0")
    assert [i.label for i in items] == [0, 1, 1]


def test_errors(tmp_path):
    path = write_jsonl(tmp_path, "bad_label.jsonl", [RECORDS[0], dict(RECORDS[2], label="MAYBE")])
    with pytest.raises(DataError, match=rf"^{path}: record 1 \(from 0\): label 'MAYBE' is not SUPPORTS, REFUTES or NOT ENOUGH INFO$"):
        TASK.load(path)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": 1, "label": "SUPPORTS", "claim": "x"}\n{"id": 2, oops}\n')
    with pytest.raises(DataError, match=rf"^{broken}: line 2 is not valid JSON"):
        TASK.load(broken)
    only_nei = write_jsonl(tmp_path, "nei.jsonl", [RECORDS[1]])
    with pytest.raises(DataError, match=r"none of its 1 records is usable for task fever$"):
        TASK.load(only_nei)


def test_true_false_are_single_tokens(tmp_path, gpt2_tokenizer):
    examples = TASK.examples(TASK.load(write_jsonl(tmp_path, "d.jsonl", RECORDS)), gpt2_tokenizer)
    assert [e.choice_ids for e in examples] == [((2081,), (3991,))] * 2
    assert examples[1].answer_ids == (3991,)


def test_real_dev_file():
    items = TASK.load(shared_file("fever", "paper_dev.jsonl"))
    assert len(items) == 6666 and sum(i.label == 0 for i in items) == 3333
    assert items[0].prompt == "Consider the following claim: Fox 2000 Pictures released the film Soul Food. Is this claim true or false. The claim is"
    assert items[0].label == 0
