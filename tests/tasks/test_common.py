"""Shared machinery: record access, reading errors, the tokenisation rule, multi-token reports, matching."""

import logging

import pytest
from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast

from laser_jax.errors import DataError
from laser_jax.tasks import CHOICE, FIRST_TOKEN, GENERATION, Item, Task, generation_match, multi_token_count
from laser_jax.tasks.common import Hub, Record, choice_item, read_source
from tests.tasks.helpers import fake_hub, word_tokenizer, write_json


def _one_item(record):
    return [Item(prompt=record.text("q"), answer=" " + record.text("a"))]


QA = Task(name="qa", scoring=FIRST_TOKEN, description="test", record_items=_one_item, hub=Hub("org/qa"))


def test_record_accessors():
    record = Record({"a": {"b": " x "}, "n": 3, "l": ["p", "q"], "s": "one"}, "f.json", 4)
    assert record.get("a.b") == " x " and record.get("a.c") is None and record.get("n.x") is None
    assert record.text("a.b") == "x" and record.integer("n") == 3
    assert record.texts("l") == ["p", "q"] and record.texts("s") == ["one"]
    with pytest.raises(DataError, match=r"^f.json: record 4 \(from 0\): field 'n' should be a string, not int$"):
        record.text("n")
    with pytest.raises(DataError, match=r"field 'l' should be an integer, not list$"):
        record.integer("l")


def test_reading_errors_are_one_line_and_name_the_file(tmp_path):
    cases = {
        "list.json": ("[]", "no records"),
        "broken.json": ('[{"q": "a", "a": "b"},\n {"q": }]', "not valid JSON at line 2 column 8"),
        "data.txt": ("q a", "unsupported file type '.txt'"),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(DataError) as error:
            QA.load(path)
        assert str(error.value).startswith(f"{path}: {message}") and "\n" not in str(error.value)
    with pytest.raises(DataError, match=rf"^{tmp_path}: is a directory"):
        QA.load(tmp_path)
    with pytest.raises(DataError, match=r"^task qa: limit must be at least 1"):
        QA.load(tmp_path, limit=0)


def test_hub_ids_and_hub_failures(monkeypatch, tmp_path):
    calls = fake_hub(monkeypatch, {"train": [{"q": "Q", "a": "A"}]})
    assert QA.load("org/qa") == [Item("Q", " A")] and calls == [("org/qa", None, "train")]

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'org/qa' on the Hub (LocalEntryNotFoundError)\nmore detail")

    monkeypatch.setattr("datasets.load_dataset", offline)
    with pytest.raises(DataError) as error:
        QA.load("org/qa")
    assert str(error.value) == "hub org/qa split train: could not be loaded: ConnectionError: Couldn't reach 'org/qa' on the Hub (LocalEntryNotFoundError)"


def test_json_mixed_types_fall_back_to_the_json_module(tmp_path):
    path = write_json(tmp_path, "task.json", {"examples": [{"t": "x"}, {"t": ["y", "z"]}]})
    assert read_source(path, None, field="examples") == [(str(path), [{"t": "x"}, {"t": ["y", "z"]}])]


def test_limit_counts_records_that_yield_items(tmp_path):
    path = write_json(tmp_path, "qa.json", [{"q": f"q{i}", "a": "a"} for i in range(5)])
    assert [i.prompt for i in QA.load(path, limit=2)] == ["q0", "q1"]


def test_prompt_keeps_default_special_tokens_answer_has_none(tmp_path):
    tokenizer = word_tokenizer(["Paris", "is", "in", "France", "the", "a", "of"], bos=True)
    example = QA.examples([Item("Paris is in", " France")], tokenizer)[0]
    assert example.prompt_ids == (1, 3, 4, 5)  # <s> Paris is in: what tokenizer(prompt) gives
    assert example.answer_ids == (6,)
    plain = word_tokenizer(["Paris", "is", "in", "France"], bos=False)
    assert QA.examples([Item("Paris is in", " France")], plain)[0].prompt_ids == (3, 4, 5)


def test_multi_token_answers_are_reported_not_truncated(caplog):
    yes_no = Task(name="yes_no", scoring=CHOICE, description="test", record_items=_one_item, single_token=True)
    tokenizer = word_tokenizer(["q", "yes", "no", "not", "really"], bos=False)
    items = [choice_item("q", (" yes", " no"), 0), choice_item("q", (" yes", " not really"), 1), choice_item("q", (" yes", " no"), 1)]
    with caplog.at_level(logging.WARNING, logger="laser_jax.tasks"):
        examples = yes_no.examples(items, tokenizer)
    assert multi_token_count(examples) == 1
    assert examples[1].answer_ids == (6, 7) and examples[1].choice_ids == ((4,), (6, 7))
    assert "task yes_no: 1 of 3 items have a multi-token answer or choice" in caplog.text


def test_probes_must_be_single_tokens():
    probed = Task(name="probed", scoring=FIRST_TOKEN, description="test", record_items=_one_item, probes=(" the", " of the"))
    with pytest.raises(DataError, match=r"^probe ' of the' is 2 tokens for this tokenizer; probes must be single tokens$"):
        probed.examples([Item("q", " a")], word_tokenizer(["q", "a", "the", "of"], bos=False))


def test_an_incomplete_tokenizer_is_an_error():
    empty = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.BPE()))  # no vocabulary: every text is []
    with pytest.raises(DataError, match=r"^task qa: item 0 \(from 0\): 'q' gives no tokens; is the tokenizer complete\?$"):
        QA.examples([Item("q", " a")], empty)


def test_item_and_task_validation():
    with pytest.raises(ValueError):
        Item("q", " b", choices=(" a", " b"), label=0)
    with pytest.raises(ValueError):
        Task(name="bad", scoring="accuracy", description="", record_items=_one_item)
    with pytest.raises(ValueError):
        Task(name="bad", scoring=GENERATION, description="", record_items=_one_item)


def test_generation_match_uses_the_continuation_only():
    assert generation_match("  PARIS, France. ", " paris")
    assert not generation_match(" in the north", " Paris")
    assert not generation_match("", " ")


def test_neox_tokenizer_adds_no_bos_and_answers_stay_separate():
    from tests.conftest import shared_file

    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(shared_file("tokenizers", "gpt-neox-20b", "tokenizer.json")))
    example = QA.examples([Item("Madrid is located in", " Spain")], tokenizer)[0]
    assert example.prompt_ids == tuple(tokenizer("Madrid is located in")["input_ids"]) and len(example.prompt_ids) == 5
    assert example.answer_ids == tuple(tokenizer(" Spain", add_special_tokens=False)["input_ids"]) == (11268,)
