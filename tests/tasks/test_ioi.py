"""IOI: seeded generation, the answer is the non-repeated name, single-token names."""

import pytest

from laser_jax.errors import DataError
from laser_jax.tasks import get_task, multi_token_count
from laser_jax.tasks.ioi import NAMES, ioi_items

TASK = get_task("ioi")


def test_seeded_and_deterministic():
    assert ioi_items(20, seed=3) == ioi_items(20, seed=3)
    assert ioi_items(20, seed=3) != ioi_items(20, seed=4)
    assert TASK.load() == ioi_items(200, seed=0) and len(TASK.load(limit=7)) == 7


def test_answer_is_the_indirect_object():
    for item in ioi_items(50):
        io, s = (c.strip() for c in item.choices)
        assert item.label == 0 and item.answer == " " + io and io != s
        assert item.prompt.count(s) == 2 and item.prompt.count(io) == 1, item.prompt
        assert item.prompt.index(io) < item.prompt.rindex(s)  # introduced before the subject repeats


def test_takes_no_data_file():
    with pytest.raises(DataError, match=r"^task ioi generates its prompts and takes no data file"):
        TASK.load("prompts.json")


def test_names_and_probes_are_single_gpt2_tokens(gpt2_tokenizer):
    assert all(len(gpt2_tokenizer(" " + n, add_special_tokens=False)["input_ids"]) == 1 for n in NAMES)
    examples = TASK.examples(TASK.load(), gpt2_tokenizer)
    assert multi_token_count(examples) == 0 and examples[0].probe_ids == (262, 257, 286)
