"""CounterFact: factual recall of a case's true target, from its prompt and its paraphrases.

Two file layouts, detected per record:

- ROME (``counterfact.json``): ``requested_rewrite: {prompt: "{} ...", subject,
  target_true: {str}}`` and ``paraphrase_prompts: [..]`` (two per case);
- EasyEdit (``counterfact-{train,val,edit}.json``): ``prompt`` (subject filled
  in), ``ground_truth`` and ``rephrase_prompt`` (one per case).

Each case gives its prompt and then its paraphrases, in file order, all with the
answer ``" " + true target`` and the case id as group (for paraphrase
robustness, :func:`laser_jax.tasks.analysis.paraphrase_robustness`). Scored by
the top-k accuracy of the answer's first token plus the answer NLL, with the
generic probe tokens reported alongside.
"""

from __future__ import annotations

from laser_jax.tasks.common import FIRST_TOKEN, GENERIC_PROBES, Item, Record, Task, spaced


def record_items(record: Record) -> list[Item]:
    if record.has("requested_rewrite"):
        template = record.text("requested_rewrite.prompt")
        if "{}" not in template:
            raise record.error("field 'requested_rewrite.prompt' has no '{}' for the subject")
        prompt = template.replace("{}", record.text("requested_rewrite.subject"))
        answer = record.text("requested_rewrite.target_true.str")
        paraphrases = record.texts("paraphrase_prompts")
    elif record.has("prompt") or record.has("ground_truth"):
        prompt = record.text("prompt")
        answer = record.text("ground_truth")
        paraphrases = record.texts("rephrase_prompt")
    else:
        raise record.error("neither the ROME layout (requested_rewrite) nor the EasyEdit layout (prompt, ground_truth)")
    group = record.get("case_id")
    group = record.index if group is None else group
    return [Item(prompt=p, answer=spaced(answer), group=group) for p in [prompt, *paraphrases]]


TASK = Task(
    name="counterfact",
    scoring=FIRST_TOKEN,
    description="CounterFact true-target recall: prompt and paraphrases, first-token top-k + answer NLL",
    record_items=record_items,
    default_path="counterfact/counterfact-val.json",
    probes=GENERIC_PROBES,
)
