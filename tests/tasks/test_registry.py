"""The registry, and the errors every file-backed loader gives for a missing or empty file."""

import pytest

from laser_jax.errors import DataError
from laser_jax.tasks import TASKS, get_task, task_names
from laser_jax.tasks.common import SCORING_MODES
from tests.conftest import SHARED_DATA

NAMES = ("counterfact", "hotpotqa", "fever", "bios_gender", "bios_profession", "truthfulqa",
         "bigbench_epistemic", "bigbench_wikidata", "known1000", "ioi")
FILE_TASKS = [name for name in NAMES if name != "ioi"]
ABSENT_HERE = {"bios_gender", "bios_profession"}  # Bias in Bios is not in ../shared/data


def test_names_and_declarations():
    assert task_names() == NAMES
    for name in NAMES:
        task = get_task(name)
        assert task.name == name and task.scoring in SCORING_MODES and task.description
    assert get_task("ioi").data_path("/data") is None
    assert str(get_task("fever").data_path("/data")) == "/data/fever/paper_dev.jsonl"


def test_unknown_task_lists_the_known_ones():
    with pytest.raises(DataError) as error:
        get_task("squad")
    assert str(error.value) == f"unknown task 'squad'; known tasks: {', '.join(NAMES)}"


@pytest.mark.parametrize("name", FILE_TASKS)
def test_missing_file(name, tmp_path):
    task = TASKS[name]
    path = tmp_path / "nope.json"
    hint = f" (or give the hub id {task.hub.id!r})" if task.hub else ""
    with pytest.raises(DataError) as error:
        task.load(path)
    assert str(error.value) == f"{path}: no such data file{hint}"
    with pytest.raises(DataError, match=rf"^task {name} needs a data file \(default: <data root>/"):
        task.load()


@pytest.mark.parametrize("name", FILE_TASKS)
def test_empty_file(name, tmp_path):
    suffix = TASKS[name].default_path.rsplit(".", 1)[1]
    path = tmp_path / f"empty.{suffix}"
    path.write_text("\n")
    with pytest.raises(DataError) as error:
        TASKS[name].load(path)
    assert str(error.value) == f"{path}: empty file"


@pytest.mark.parametrize("name", sorted(set(FILE_TASKS) - ABSENT_HERE))
def test_default_paths_exist_in_shared_data(name):
    if not SHARED_DATA.exists():
        pytest.skip(f"{SHARED_DATA} not present")
    assert TASKS[name].data_path(SHARED_DATA).is_file()


def test_tasks_package_has_no_jax():
    import ast
    from pathlib import Path

    import laser_jax.tasks

    for path in Path(laser_jax.tasks.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n == "jax" or n.startswith(("jax.", "flax", "laser_jax.model", "laser_jax.generate")) for n in names), (path.name, names)
