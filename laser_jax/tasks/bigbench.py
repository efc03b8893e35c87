"""BIG-bench epistemic_reasoning and qa_wikidata, as the official LASER code scored them.

Two layouts, detected per record: a BIG-bench ``task.json`` (records in its
``examples`` list: ``input`` with ``target_scores`` or ``target``), or hub
``tasksource/bigbench`` (``inputs``, ``targets``; splits validation then train,
as the official code read them). The input is used raw, as the prompt. Note that
the two sources differ in text: the hub's ``inputs`` carry BIG-bench's own
formatting (task prefix, and for epistemic_reasoning a final ``"Relation:"``, on
which the official code relied), a task.json ``input`` is the bare example.

- ``bigbench_epistemic``: choices ``" entailment"`` / ``" non-entailment"``, scored
  by each choice's summed log-prob (several tokens each).
- ``bigbench_wikidata``: a cloze input; only records with a single target are
  kept; greedy-decode 10 tokens, correct iff the target is a substring of the
  continuation.
"""

from __future__ import annotations

from laser_jax.tasks.common import CHOICE, GENERATION, Hub, Item, Record, Task, choice_item, spaced

RELATIONS = ("entailment", "non-entailment")


def _input(record: Record) -> str:
    return record.text("inputs") if record.has("inputs") else record.text("input")


def _targets(record: Record) -> list[str]:
    """The gold targets: hub ``targets``, task.json ``target`` or the 1-scored keys of ``target_scores``."""
    if record.has("targets"):
        return record.texts("targets")
    if record.has("target"):
        return record.texts("target")
    scores = record.get("target_scores")
    if isinstance(scores, dict) and scores:
        return [name for name, score in scores.items() if score == 1]
    raise record.error("no targets: expected 'targets', 'target' or 'target_scores'")


def epistemic_items(record: Record) -> list[Item]:
    targets = _targets(record)
    if len(targets) != 1 or targets[0] not in RELATIONS:
        raise record.error(f"expected exactly one target among {', '.join(RELATIONS)}; got {targets}")
    return [choice_item(_input(record), tuple(spaced(r) for r in RELATIONS), RELATIONS.index(targets[0]))]


def wikidata_items(record: Record) -> list[Item]:
    targets = _targets(record)
    return [Item(prompt=_input(record), answer=spaced(targets[0]))] if len(targets) == 1 else []


def _hub(config: str) -> Hub:
    return Hub("tasksource/bigbench", config, ("validation", "train"))


EPISTEMIC_TASK = Task(
    name="bigbench_epistemic",
    scoring=CHOICE,
    description="BIG-bench epistemic_reasoning: entailment vs non-entailment by summed log-prob",
    record_items=epistemic_items,
    default_path="bigbench/epistemic_reasoning.json",
    hub=_hub("epistemic_reasoning"),
    json_field="examples",
)

WIKIDATA_TASK = Task(
    name="bigbench_wikidata",
    scoring=GENERATION,
    description="BIG-bench qa_wikidata cloze (single-target): greedy 10 tokens, substring match",
    record_items=wikidata_items,
    default_path="bigbench/qa_wikidata.json",
    hub=_hub("qa_wikidata"),
    json_field="examples",
    max_new_tokens=10,
)
