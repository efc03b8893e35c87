"""CounterFact: both layouts, item order and groups, errors, the real files."""

import json

import pytest

from laser_jax.errors import DataError
from laser_jax.tasks import get_task
from tests.conftest import shared_file
from tests.tasks.helpers import write_json

TASK = get_task("counterfact")

ROME = [  # invented facts in each layout; target_new is there to check that it is not the answer
    {
        "case_id": 0,
        "requested_rewrite": {
            "prompt": "The favourite colour of {} is",
            "subject": "Brimble Quax",
            "target_new": {"str": "teal"},
            "target_true": {"str": "mauve"},
        },
        "paraphrase_prompts": ["Brimble Quax likes the colour", "Ask Brimble Quax for a colour and you hear"],
    },
    {
        "case_id": 1,
        "requested_rewrite": {"prompt": "{} keeps its spoons in", "subject": "Velmor Hut", "target_new": {"str": "drawers"}, "target_true": {"str": "jars"}},
        "paraphrase_prompts": ["At Velmor Hut the spoons are kept in", "Where does Velmor Hut keep spoons? In"],
    },
]

EASYEDIT = [
    {"case_id": 10, "prompt": "Plinth Ferry sails on", "subject": "Plinth Ferry", "ground_truth": "Tuesdays", "target_new": "Fridays", "rephrase_prompt": "The day Plinth Ferry sails is"},
    {"case_id": 11, "prompt": "Oskel Dunne hums the", "subject": "Oskel Dunne", "ground_truth": "kazoo", "target_new": "drum", "rephrase_prompt": "The instrument Oskel Dunne hums is the"},
]


def test_rome_layout_gives_prompt_then_paraphrases_per_case(tmp_path):
    items = TASK.load(write_json(tmp_path, "counterfact.json", ROME))
    assert [i.prompt for i in items[:3]] == [
        "The favourite colour of Brimble Quax is",
        "Brimble Quax likes the colour",
        "Ask Brimble Quax for a colour and you hear",
    ]
    assert [i.answer for i in items] == [" mauve"] * 3 + [" jars"] * 3
    assert [i.group for i in items] == [0, 0, 0, 1, 1, 1]
    assert items[3].prompt == "Velmor Hut keeps its spoons in"


def test_easyedit_layout_gives_prompt_then_rephrase(tmp_path):
    items = TASK.load(write_json(tmp_path, "counterfact-val.json", EASYEDIT))
    assert [(i.prompt, i.answer, i.group) for i in items] == [
        ("Plinth Ferry sails on", " Tuesdays", 10),
        ("The day Plinth Ferry sails is", " Tuesdays", 10),
        ("Oskel Dunne hums the", " kazoo", 11),
        ("The instrument Oskel Dunne hums is the", " kazoo", 11),
    ]


def test_limit_counts_cases_so_groups_stay_whole(tmp_path):
    items = TASK.load(write_json(tmp_path, "counterfact.json", ROME), limit=1)
    assert len(items) == 3 and {i.group for i in items} == {0}


def test_examples_tokenise_prompt_and_answer_separately(tmp_path, gpt2_tokenizer):
    items = TASK.load(write_json(tmp_path, "counterfact.json", ROME))
    example = TASK.examples(items, gpt2_tokenizer)[0]
    assert example.prompt_ids == tuple(gpt2_tokenizer("The favourite colour of Brimble Quax is")["input_ids"])
    assert example.answer_ids == tuple(gpt2_tokenizer(" mauve", add_special_tokens=False)["input_ids"])
    assert example.probe_ids == (262, 257, 286)  # " the", " a", " of" in GPT-2
    assert example.choice_ids == () and example.label == -1


def test_malformed_records_name_file_and_record(tmp_path):
    bad = [EASYEDIT[0], {k: v for k, v in EASYEDIT[1].items() if k != "ground_truth"}]
    path = write_json(tmp_path, "cf.json", bad)
    with pytest.raises(DataError, match=rf"^{path}: record 1 \(from 0\): missing field 'ground_truth'$"):
        TASK.load(path)
    rome = [dict(ROME[0], requested_rewrite=dict(ROME[0]["requested_rewrite"], prompt="no slot"))]
    with pytest.raises(DataError, match=r"record 0 \(from 0\): field 'requested_rewrite.prompt' has no '\{\}'"):
        TASK.load(write_json(tmp_path, "rome.json", rome))
    with pytest.raises(DataError, match=r"record 0 \(from 0\): neither the ROME layout"):
        TASK.load(write_json(tmp_path, "other.json", [{"question": "q"}]))


def test_real_val_file():
    """Counts, and items built from the raw records read independently (no record text is copied here)."""
    path = shared_file("counterfact", "counterfact-val.json")
    raw = json.loads(open(path, encoding="utf-8").read())
    items = TASK.load(path)
    assert len(raw) == 1919 and len(items) == 3838 and len({i.group for i in items}) == 1919
    for case, first in ((raw[0], 0), (raw[-1], len(items) - 2)):
        expected = [(case["prompt"], " " + case["ground_truth"], case["case_id"]),
                    (case["rephrase_prompt"], " " + case["ground_truth"], case["case_id"])]
        assert [(i.prompt, i.answer, i.group) for i in items[first:first + 2]] == expected


def test_real_files_hold_all_21919_cases():
    names = ("counterfact-train.json", "counterfact-val.json", "counterfact-edit.json")
    groups = [g for n in names for g in {i.group for i in TASK.load(shared_file("counterfact", n))}]
    assert len(groups) == len(set(groups)) == 21919 and set(groups) == set(range(21919))
