"""BIG-bench epistemic_reasoning and qa_wikidata: task.json and hub layouts, errors, real files."""

import pytest

from laser_jax.errors import DataError
from laser_jax.tasks import CHOICE, GENERATION, get_task
from tests.conftest import shared_file
from tests.tasks.helpers import fake_hub, write_json

EPISTEMIC = get_task("bigbench_epistemic")
WIKIDATA = get_task("bigbench_wikidata")

EPISTEMIC_JSON = {
    "name": "epistemic_reasoning",
    "examples": [
        {"input": "Premise: Amelia assumes that a dog runs. Hypothesis: A dog runs.", "target_scores": {"entailment": 0, "non-entailment": 1}},
        {"input": "Premise: Bob knows that it rains. Hypothesis: It rains.", "target_scores": {"entailment": 1, "non-entailment": 0}},
    ],
}
# qa_wikidata mixes a string target and a list of targets, which datasets' field= reader cannot type.
WIKIDATA_JSON = {
    "name": "qa_wikidata",
    "examples": [
        {"input": "The genre of Weird Al Yankovic is", "target": ["comedy", "parody"]},
        {"input": "The language of Satisfaction is", "target": "English"},
        {"input": "The capital of France is", "target": ["Paris"]},
    ],
}


def test_epistemic_task_json(tmp_path):
    items = EPISTEMIC.load(write_json(tmp_path, "task.json", EPISTEMIC_JSON))
    assert items[0].prompt == "Premise: Amelia assumes that a dog runs. Hypothesis: A dog runs."
    assert [(i.choices, i.label) for i in items] == [((" entailment", " non-entailment"), 1), ((" entailment", " non-entailment"), 0)]
    assert EPISTEMIC.scoring == CHOICE and not EPISTEMIC.single_token


def test_wikidata_keeps_single_targets(tmp_path):
    items = WIKIDATA.load(write_json(tmp_path, "task.json", WIKIDATA_JSON))
    assert [(i.prompt, i.answer) for i in items] == [("The language of Satisfaction is", " English"), ("The capital of France is", " Paris")]
    assert WIKIDATA.scoring == GENERATION and WIKIDATA.max_new_tokens == 10


def test_hub_layout(monkeypatch):
    epistemic = {"inputs": "Premise: x. Hypothesis: y.\nRelation:", "targets": ["non-entailment"], "multiple_choice_targets": ["entailment", "non-entailment"], "idx": 0}
    calls = fake_hub(monkeypatch, {"validation": [epistemic], "train": [dict(epistemic, targets=["entailment"])]})
    items = EPISTEMIC.load("tasksource/bigbench")
    assert calls == [("tasksource/bigbench", "epistemic_reasoning", "validation"), ("tasksource/bigbench", "epistemic_reasoning", "train")]
    assert [i.label for i in items] == [1, 0] and items[0].prompt == epistemic["inputs"]
    wikidata = {"inputs": "The capital of Italy is", "targets": ["Rome"], "multiple_choice_targets": [], "idx": 1}
    fake_hub(monkeypatch, {"validation": [wikidata], "train": [dict(wikidata, targets=["a", "b"])]})
    assert [i.answer for i in WIKIDATA.load("tasksource/bigbench")] == [" Rome"]


def test_malformed(tmp_path):
    bad = {"examples": [EPISTEMIC_JSON["examples"][0], {"input": "P", "target_scores": {"entailment": 0, "non-entailment": 0}}]}
    path = write_json(tmp_path, "task.json", bad)
    with pytest.raises(DataError, match=rf"^{path}: record 1 \(from 0\): expected exactly one target among entailment, non-entailment; got \[\]$"):
        EPISTEMIC.load(path)
    no_examples = write_json(tmp_path, "noex.json", {"name": "x"})
    with pytest.raises(DataError, match=rf"^{no_examples}: expected a list 'examples' in the JSON object$"):
        WIKIDATA.load(no_examples)


def test_real_epistemic():
    items = EPISTEMIC.load(shared_file("bigbench", "epistemic_reasoning.json"))
    assert len(items) == 2000 and sum(i.label == 0 for i in items) == 741
    assert items[1].prompt == "Premise: Amelia assumes that Joseph knows that a dog runs. Hypothesis: Joseph knows that a dog runs."


def test_real_wikidata():
    items = WIKIDATA.load(shared_file("bigbench", "qa_wikidata.json"))
    assert len(items) == 18933  # of 20,442 examples
    assert (items[0].prompt, items[0].answer) == ("The language of (I Can't Get No) Satisfaction is", " English")
