"""CounterFact: both layouts, item order and groups, errors, the real files."""

import pytest

from laser_jax.errors import DataError
from laser_jax.tasks import get_task
from tests.conftest import shared_file
from tests.tasks.helpers import write_json

TASK = get_task("counterfact")

ROME = [
    {
        "case_id": 0,
        "requested_rewrite": {
            "prompt": "The mother tongue of {} is",
            "subject": "Odile Varenne",
            "target_new": {"str": "English", "id": "Q1860"},
            "target_true": {"str": "French", "id": "Q150"},
        },
        "paraphrase_prompts": ["Shayna does this. Odile Varenne speaks", "Odile Varenne, a native"],
    },
    {
        "case_id": 1,
        "requested_rewrite": {"prompt": "{} is located in", "subject": "Tamsin Glacier", "target_new": {"str": "Europe"}, "target_true": {"str": "Antarctica"}},
        "paraphrase_prompts": ["Tamsin Glacier belongs to the continent of", "Where is Tamsin Glacier? It is in"],
    },
]

EASYEDIT = [
    {"case_id": 10, "prompt": "Radio Quill, by", "subject": "Radio Quill", "ground_truth": "BBC", "target_new": "Sega", "rephrase_prompt": "Radio Quill is owned by", "locality_prompt": "x", "locality_ground_truth": "y"},
    {"case_id": 11, "prompt": "Ines Marlow, the", "subject": "Ines Marlow", "ground_truth": "guitar", "target_new": "piano", "rephrase_prompt": "Ines Marlow plays the", "locality_prompt": "x", "locality_ground_truth": "y"},
]


def test_rome_layout_gives_prompt_then_paraphrases_per_case(tmp_path):
    items = TASK.load(write_json(tmp_path, "counterfact.json", ROME))
    assert [i.prompt for i in items[:3]] == [
        "The mother tongue of Odile Varenne is",
        "Shayna does this. Odile Varenne speaks",
        "Odile Varenne, a native",
    ]
    assert [i.answer for i in items] == [" French"] * 3 + [" Antarctica"] * 3
    assert [i.group for i in items] == [0, 0, 0, 1, 1, 1]
    assert items[3].prompt == "Tamsin Glacier is located in"


def test_easyedit_layout_gives_prompt_then_rephrase(tmp_path):
    items = TASK.load(write_json(tmp_path, "counterfact-val.json", EASYEDIT))
    assert [(i.prompt, i.answer, i.group) for i in items] == [
        ("Radio Quill, by", " BBC", 10),
        ("Radio Quill is owned by", " BBC", 10),
        ("Ines Marlow, the", " guitar", 11),
        ("Ines Marlow plays the", " guitar", 11),
    ]


def test_limit_counts_cases_so_groups_stay_whole(tmp_path):
    items = TASK.load(write_json(tmp_path, "counterfact.json", ROME), limit=1)
    assert len(items) == 3 and {i.group for i in items} == {0}


def test_examples_tokenise_prompt_and_answer_separately(tmp_path, gpt2_tokenizer):
    items = TASK.load(write_json(tmp_path, "counterfact.json", ROME))
    example = TASK.examples(items, gpt2_tokenizer)[0]
    assert example.prompt_ids == tuple(gpt2_tokenizer("The mother tongue of Odile Varenne is")["input_ids"])
    assert example.answer_ids == tuple(gpt2_tokenizer(" French", add_special_tokens=False)["input_ids"])
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
    items = TASK.load(shared_file("counterfact", "counterfact-val.json"))
    assert len(items) == 3838 and len({i.group for i in items}) == 1919
    assert (items[0].prompt, items[0].answer, items[0].group) == ("BBC One, by", " BBC", 10)
    assert items[1].prompt == "BBC One is my favorite product out of everything owned by"
    assert (items[-2].prompt, items[-2].answer, items[-2].group) == ("Gamal Abdel-Rahim performs on the", " piano", 21910)


def test_real_files_hold_all_21919_cases():
    names = ("counterfact-train.json", "counterfact-val.json", "counterfact-edit.json")
    groups = [g for n in names for g in {i.group for i in TASK.load(shared_file("counterfact", n))}]
    assert len(groups) == len(set(groups)) == 21919 and set(groups) == set(range(21919))
