"""The lm-eval backend (laser_jax.harness): log-likelihoods, rolling log-likelihoods and greedy generation equal
lm-eval's own ``hf`` backend on the same tiny checkpoint; accuracies through lm-eval equal laser-jax's task scoring;
edits in model_args act as laser.apply; bad input is a one-line error."""

import json
import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
pytest.importorskip("lm_eval")
pytest.importorskip("torch")

from lm_eval.api.instance import Instance  # noqa: E402

from laser_jax import load_model  # noqa: E402
from laser_jax.errors import ConfigError, DataError, InterventionError  # noqa: E402
from laser_jax.harness import LaserJaxLM  # noqa: E402
from laser_jax.laser import Intervention, apply  # noqa: E402
from tests.models.hf_tiny_text import CORPUS, save_tiny_text_model  # noqa: E402
from tests.test_loading import raises_one_line  # noqa: E402

PAIRS = [("The capital of France is", " Paris"), ("The capital of France is", " Rome"), ("A cat sat on the ", "mat."),
         ("", "Rome is a city in Italy."), ("Question: Is fire cold? Answer:", " no"), ("One, two,", " three, four.")]
TEXTS = ["The sky is blue.", " ".join(CORPUS * 2)]  # the second is longer than max_length (64): several windows
CONTEXTS = ["The capital of France is", "A cat", "Question: Is the sky blue? Answer:"]
EDIT = "fc_in:1:0.25"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    directory = tmp_path_factory.mktemp("llama-text")
    save_tiny_text_model("llama", directory)
    return directory


@pytest.fixture(scope="module")
def ours(checkpoint):
    return LaserJaxLM(model=str(checkpoint), batch_size=4)


@pytest.fixture(scope="module")
def hf(checkpoint):
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=str(checkpoint), device="cpu", dtype="float32", batch_size=4)


def requests(kind, arguments):
    return [Instance(request_type=kind, doc={}, arguments=args, idx=0) for args in arguments]


def test_loglikelihood_equals_the_hf_backend(ours, hf):
    mine = ours.loglikelihood(requests("loglikelihood", PAIRS), disable_tqdm=True)
    theirs = hf.loglikelihood(requests("loglikelihood", PAIRS), disable_tqdm=True)
    np.testing.assert_allclose([m[0] for m in mine], [t[0] for t in theirs], atol=1e-4)
    assert [m[1] for m in mine] == [t[1] for t in theirs]


def test_rolling_loglikelihood_equals_the_hf_backend(ours, hf):
    assert len(ours.tok_encode(TEXTS[1])) > 2 * ours.max_length == 2 * hf.max_length
    mine = ours.loglikelihood_rolling(requests("loglikelihood_rolling", [(t,) for t in TEXTS]), disable_tqdm=True)
    theirs = hf.loglikelihood_rolling(requests("loglikelihood_rolling", [(t,) for t in TEXTS]), disable_tqdm=True)
    np.testing.assert_allclose(mine, theirs, atol=1e-4)


def test_greedy_generation_equals_the_hf_backend(ours, hf):
    kwargs = [{"until": ["."], "max_gen_toks": 12, "do_sample": False}, {"max_gen_toks": 8, "temperature": 0.0}]
    arguments = [(context, dict(k)) for context in CONTEXTS for k in kwargs]
    mine = ours.generate_until(requests("generate_until", arguments), disable_tqdm=True)
    theirs = hf.generate_until(requests("generate_until", [(c, dict(k)) for c, k in arguments]), disable_tqdm=True)
    assert mine == theirs
    assert any(text.strip() for text in mine)


# ----------------------------------------------------------------------------- accuracy through lm-eval's tasks


def write_task(folder, name, records, yaml_body):
    data = folder / f"{name}.json"
    data.write_text(json.dumps(records))
    (folder / f"{name}.yaml").write_text(f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\n"
                                         f"test_split: test\ndoc_to_text: \"{{{{prompt}}}}\"\n{yaml_body}")


def lm_eval_samples(folder, task, model_args):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    out = simple_evaluate(model="laser-jax", model_args=model_args, tasks=[task], task_manager=TaskManager(include_path=str(folder)),
                          log_samples=True, batch_size=4)
    samples = sorted(out["samples"][task], key=lambda s: s["doc_id"])
    return out["results"][task]["acc,none"], [bool(s["acc"]) for s in samples]


def test_two_way_choice_accuracy_equals_laser_jax_scoring(checkpoint, tmp_path):
    from laser_jax.sweep import evaluate
    from laser_jax.tasks.common import CHOICE, Task, choice_item

    records = [{"prompt": p, "choices": list(c), "label": label} for p, c, label in [
        ("The capital of France is", (" Paris", " Rome"), 0), ("The capital of Italy is", (" Paris", " Rome"), 1),
        ("The sky is", (" blue", " green"), 0), ("The grass is", (" blue", " green"), 1), ("Fire is", (" hot", " wet"), 0),
        ("Water is", (" hot", " wet"), 1), ("Is fire cold? Answer:", (" yes", " no"), 1), ("Is the sky blue? Answer:", (" yes", " no"), 0)]]
    write_task(tmp_path, "tiny_choice", records, "output_type: multiple_choice\ndoc_to_choice: \"{{choices}}\"\n"
               "doc_to_target: \"{{label}}\"\ntarget_delimiter: \"\"\nmetric_list:\n  - metric: acc\n")
    for args in ({"model": str(checkpoint)}, {"model": str(checkpoint), "edit": EDIT}):
        accuracy, correct = lm_eval_samples(tmp_path, "tiny_choice", args)
        model = load_model(checkpoint)
        model = apply(model, [Intervention(1, "fc_in", 0.25)]) if "edit" in args else model
        task = Task(name="tiny_choice", scoring=CHOICE, description="", record_items=lambda record: [])
        items = [choice_item(r["prompt"], r["choices"], r["label"]) for r in records]
        row = evaluate(model, task.examples(items, model.tokenizer))
        assert correct == [bool(c) for c in row.scores.choice_correct]
        assert accuracy == pytest.approx(row.metrics["accuracy"])
        assert 0 < accuracy < 1


def test_first_token_accuracy_equals_laser_jax_scoring(checkpoint, tmp_path):
    from laser_jax.sweep import evaluate
    import transformers

    from laser_jax.tasks.common import FIRST_TOKEN, Item, Task
    from tests.models.hf_tiny import torch_logits

    model = load_model(checkpoint)
    tokenizer = model.tokenizer
    prompts = ["The capital of France is", "The capital of Spain is", "A cat sat on the", "The dog ran in the", "Water is",
               "One, two,", "Rome is a city in", "The sky is blue and the"]
    words = [w for w in (" Paris", " Rome", " the", " is", " a", " in", " city", " blue", " sky", " cat")
             if len(tokenizer(w, add_special_tokens=False)["input_ids"]) == 1]
    reference = transformers.AutoModelForCausalLM.from_pretrained(str(checkpoint))
    records = []
    for index, prompt in enumerate(prompts):  # half the answers are the torch model's own top-1 token: accuracy near 1/2
        top = tokenizer.decode([int(torch_logits(reference, np.array([tokenizer(prompt)["input_ids"]]))[0, -1].argmax())])
        single = tokenizer(top, add_special_tokens=False)["input_ids"]
        answer = top if index % 2 == 0 and len(single) == 1 else next(w for w in words if w != top)
        records.append({"prompt": prompt, "answer": answer})
    write_task(tmp_path, "tiny_first_token", records, "output_type: loglikelihood\ndoc_to_target: \"{{answer}}\"\n"
               "target_delimiter: \"\"\nmetric_list:\n  - metric: acc\n")
    accuracy, correct = lm_eval_samples(tmp_path, "tiny_first_token", {"model": str(checkpoint)})
    task = Task(name="tiny_first_token", scoring=FIRST_TOKEN, description="", record_items=lambda record: [])
    row = evaluate(model, task.examples([Item(r["prompt"], r["answer"]) for r in records], tokenizer))
    assert correct == [bool(c) for c in row.scores.top1]
    assert accuracy == pytest.approx(row.metrics["top1_accuracy"])
    assert 0 < accuracy < 1


# ----------------------------------------------------------------------------- edits in model_args


def test_an_edit_changes_the_loglikelihoods_exactly_as_apply(checkpoint, ours, tmp_path):
    steps = [Intervention(1, "fc_in", 0.25), Intervention(2, "fc_up", 0.5)]
    reduced = apply(load_model(checkpoint), steps)
    edited = LaserJaxLM.create_from_arg_string(f"model={checkpoint},edit={EDIT};fc_up:2:0.5")
    (tmp_path / "compose.json").write_text(json.dumps({"edits": [EDIT, "fc_up:2:0.5"]}))
    composed = LaserJaxLM(model=str(checkpoint), edits=str(tmp_path / "compose.json"))
    got = [lp for lp, _ in edited.loglikelihood(requests("loglikelihood", PAIRS), disable_tqdm=True)]
    assert got == [lp for lp, _ in composed.loglikelihood(requests("loglikelihood", PAIRS), disable_tqdm=True)]
    assert got == [lp for lp, _ in LaserJaxLM(model=reduced).loglikelihood(requests("loglikelihood", PAIRS), disable_tqdm=True)]
    base = [lp for lp, _ in ours.loglikelihood(requests("loglikelihood", PAIRS), disable_tqdm=True)]
    assert np.abs(np.array(got) - np.array(base)).min() > 1e-3
    # and each value is the reduced model's own full forward
    context, continuation = edited._encode_pair(*PAIRS[0])
    logits = np.asarray(reduced.logits(np.array([context + continuation])), np.float64)[0]
    logprobs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = sum(logprobs[len(context) - 1 + j, token] for j, token in enumerate(continuation))
    assert got[0] == pytest.approx(expected, abs=1e-5)
    assert edited.get_model_info()["laser_jax_edits"] == ["fc_in:1:0.25", "fc_up:2:0.5"]


# ----------------------------------------------------------------------------- one-line errors


def test_an_unknown_model_argument_is_refused(checkpoint):
    raises_one_line(ConfigError, r"unknown laser-jax model argument\(s\) pretrained \(known: model, edits, edit",
                    LaserJaxLM.create_from_arg_string, f"model={checkpoint},pretrained=gpt2", {"device": "cpu"})


def test_edits_naming_a_layer_or_tau_the_model_lacks_are_refused(checkpoint, tmp_path):
    from tests.models.hf_tiny import save_tiny_family

    (tmp_path / "compose.json").write_text(json.dumps({"edits": ["fc_in:7:0.5"]}))
    raises_one_line(InterventionError, r"layer 7", LaserJaxLM, model=str(checkpoint), edits=str(tmp_path / "compose.json"))
    save_tiny_family("gpt2", tmp_path / "gpt2")
    raises_one_line(InterventionError, r"fc_up", LaserJaxLM, model=str(tmp_path / "gpt2"), edit="fc_up:1:0.5")


def test_unsupported_requests_are_refused(ours):
    raises_one_line(DataError, r"does not support the lm-eval request type 'loglikelihood_rolling' in loglikelihood",
                    ours.loglikelihood, requests("loglikelihood_rolling", [("a", "b")]))
    raises_one_line(DataError, r"text-only generate_until requests of 2 argument\(s\); got 3",
                    ours.generate_until, requests("generate_until", [("a", {"max_gen_toks": 2}, {"visual": None})]))
    raises_one_line(ConfigError, r"laser-jax generates greedily only", ours.generate_until,
                    requests("generate_until", [("a", {"do_sample": True, "temperature": 0.7})]))
