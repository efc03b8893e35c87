"""The task registry: every task by name, for the CLI's ``--task NAME``."""

from __future__ import annotations

from laser_jax.errors import DataError
from laser_jax.tasks import bigbench, bios, counterfact, fever, hotpotqa, ioi, known1000, truthfulqa
from laser_jax.tasks.common import Task

TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        counterfact.TASK,
        hotpotqa.TASK,
        fever.TASK,
        bios.GENDER_TASK,
        bios.PROFESSION_TASK,
        truthfulqa.TASK,
        bigbench.EPISTEMIC_TASK,
        bigbench.WIKIDATA_TASK,
        known1000.TASK,
        ioi.TASK,
    )
}


def task_names() -> tuple[str, ...]:
    return tuple(TASKS)


def get_task(name: str) -> Task:
    """The task called ``name``; an unknown name is a :class:`DataError` listing the known ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise DataError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}") from None
