"""known_1000: prompt -> " attribute" with the generic probes."""

import pytest

from laser_jax.errors import DataError
from laser_jax.tasks import get_task
from tests.conftest import shared_file
from tests.tasks.helpers import write_json

TASK = get_task("known1000")

RECORDS = [
    {"known_id": 0, "subject": "Vinson Massif", "attribute": "Antarctica", "template": "{} is located in the continent", "prediction": " of", "prompt": "Vinson Massif is located in the continent of", "relation_id": "P30"},
    {"known_id": 1, "subject": "Beats Music", "attribute": "Apple", "template": "{} is owned by", "prediction": " Apple", "prompt": "Beats Music is owned by", "relation_id": "P127"},
]


def test_items_and_probes(tmp_path, gpt2_tokenizer):
    items = TASK.load(write_json(tmp_path, "known_1000.json", RECORDS))
    assert [(i.prompt, i.answer, i.group) for i in items] == [
        ("Vinson Massif is located in the continent of", " Antarctica", 0),
        ("Beats Music is owned by", " Apple", 1),
    ]
    examples = TASK.examples(items, gpt2_tokenizer)
    assert [gpt2_tokenizer.decode(list(e.probe_ids[:1])) for e in examples] == [" the", " the"]
    assert gpt2_tokenizer.decode(list(examples[0].answer_ids)) == " Antarctica"


def test_malformed_record(tmp_path):
    path = write_json(tmp_path, "known.json", [RECORDS[0], dict(RECORDS[1], attribute="  ")])
    with pytest.raises(DataError, match=rf"^{path}: record 1 \(from 0\): field 'attribute' is empty$"):
        TASK.load(path)


def test_real_file():
    items = TASK.load(shared_file("counterfact", "known_1000.json"))
    assert len(items) == 1209
    assert (items[0].prompt, items[0].answer) == ("Vinson Massif is located in the continent of", " Antarctica")
    assert (items[-1].prompt, items[-1].answer, items[-1].group) == ("Ballers premieres on", " HBO", 1208)
