"""Evaluation tasks: data loaders and prompts for the LASER papers' datasets (pure Python, no JAX).

``task = get_task("counterfact")``; ``items = task.load(path, limit=None)``;
``examples = task.examples(items, tokenizer)``. See :mod:`laser_jax.tasks.common`
for the types and the tokenisation rule, :mod:`laser_jax.tasks.registry` for the
names, and :mod:`laser_jax.tasks.analysis` for paraphrase robustness and the
generic-token table.
"""

from laser_jax.tasks.analysis import GenericTokenTable, generic_token_table, paraphrase_robustness
from laser_jax.tasks.common import (
    CHOICE,
    FIRST_TOKEN,
    GENERATION,
    GENERIC_PROBES,
    Hub,
    Item,
    Task,
    generation_match,
    multi_token_count,
)
from laser_jax.tasks.registry import TASKS, get_task, task_names

__all__ = [
    "CHOICE",
    "FIRST_TOKEN",
    "GENERATION",
    "GENERIC_PROBES",
    "GenericTokenTable",
    "Hub",
    "Item",
    "TASKS",
    "Task",
    "generation_match",
    "generic_token_table",
    "get_task",
    "multi_token_count",
    "paraphrase_robustness",
    "task_names",
]
