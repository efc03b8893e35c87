"""The lm-evaluation-harness backend ``laser-jax``: lm-eval's benchmarks on a (LASER-reduced) JAX model.

Importing this module registers :class:`LaserJaxLM` with lm-eval's own
registry (``register_model("laser-jax")``), so ``simple_evaluate(model=
"laser-jax", model_args=...)`` and lm-eval's command line (``laser-jax
lm-eval ...``) find it. Its ``model_args``:

- ``model=SRC``: any ``--model`` source (hub id, directory, ``.gguf`` file,
  ``smollm2``, ``gemma3-270m``); ``revision=``, ``dtype=float32|bfloat16|float16``;
- ``edits=compose.json`` and/or ``edit=TAU:LAYER:RHO`` (several separated by
  ``;``), applied with :func:`laser_jax.laser.apply` exactly as ``laser-jax
  apply`` does;
- lm-eval's usual ``batch_size``, ``max_length``, ``max_gen_toks``,
  ``add_bos_token`` (``device`` and ``max_batch_size`` are accepted and unused:
  JAX places the work).

Scoring follows lm-eval's ``hf`` backend request by request: the context and
continuation are split as :class:`lm_eval.api.model.TemplateLM` does, an
empty context is the prefix token, rolling log-likelihoods use lm-eval's own
disjoint windows, and generation is greedy, cut at the ``until`` strings and
the end-of-text token (:func:`lm_eval.models.utils.postprocess_generated_text`).
Requests are packed by :func:`laser_jax.batching.plan_sequences` /
:func:`~laser_jax.batching.make_batches` (identical sequences shared, lengths
bucketed) and scored by one jitted forward per batch shape, the head only at
the continuation's positions; generation runs
:func:`laser_jax.generate.greedy_generate`'s cache. Sampling, beam search and
multimodal requests are refused with one-line errors.

Needs the ``lm-eval`` extra: ``pip install 'laser-jax[lm-eval]'`` (add ``gguf`` for GGUF sources).
"""

from __future__ import annotations

import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

try:
    import lm_eval.models  # noqa: F401  (the built-in backends first: lm-eval loads them only into an empty registry)
    from lm_eval import utils as lm_utils
    from lm_eval.api.model import TemplateLM
    from lm_eval.api.registry import register_model
    from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs, postprocess_generated_text
except ImportError as error:  # pragma: no cover - depends on the environment
    from laser_jax.errors import SourceError

    raise SourceError(f"the lm-eval backend needs lm-eval: pip install 'laser-jax[lm-eval]' ({error})") from error

from laser_jax.errors import ConfigError, DataError, SourceError
from laser_jax.examples import Example
from laser_jax.models import base

NAME = "laser-jax"
DEFAULT_MAX_LENGTH = 2048  # lm-eval's, when neither the config nor the tokenizer gives one
DEFAULT_BATCH_SIZE = 16
TOKENS_PER_ROW = 256  # a batch holds at most batch_size * TOKENS_PER_ROW padded tokens
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
IGNORED_ARGS = ("device", "max_batch_size")  # lm-eval passes them to every backend
TOKENIZER_INFINITY = 1000000000000000019884624838656


@functools.partial(jax.jit, static_argnums=(0, 1))
def _score(family, cfg, params, ids, mask, select, targets):
    """Per scored position: the target's log-probability and whether it is the argmax ([B, A] each)."""
    logits = base.forward(family, cfg, params, ids, mask, select).astype(jnp.float32)
    target = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    logprob = target - jax.nn.logsumexp(logits, axis=-1)
    return logprob, jnp.argmax(logits, axis=-1) == targets


def score_continuations(model, pairs, batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = False) -> list[tuple[float, bool]]:
    """``(sum of log-probs, greedy)`` of each ``(context_ids, continuation_ids)`` pair, in order.

    ``greedy`` is True when every continuation token is the argmax at its
    position. Pairs are packed and padded by the sweep engine's batching.
    """
    from tqdm.auto import tqdm

    from laser_jax.batching import make_batches, plan_sequences

    if not pairs:
        return []
    examples = [Example(prompt_ids=tuple(context), answer_ids=tuple(continuation)) for context, continuation in pairs]
    plan = plan_sequences(examples)
    sums = np.zeros(len(plan.sequences))
    greedy = np.zeros(len(plan.sequences), bool)
    batches = make_batches(plan, batch_size, batch_tokens=batch_size * TOKENS_PER_ROW)
    for batch in tqdm(batches, desc="laser-jax log-likelihoods", disable=not progress):
        logprob, top = _score(model.family, model.config, model.params, batch.ids, batch.mask, batch.select, batch.targets)
        logprob, top = np.asarray(logprob, np.float64), np.asarray(top)
        for row, sequence in enumerate(batch.rows):
            n = len(plan.sequences[sequence].targets)
            sums[sequence] = logprob[row, :n].sum()
            greedy[sequence] = bool(top[row, :n].all())
    return [(float(sums[s]), bool(greedy[s])) for s in plan.main]


def model_edits(edits: Optional[str] = None, edit: Optional[str] = None) -> list:
    """The edits ``model_args`` name: a composition file's, then each ``;``-separated ``TAU:LAYER:RHO``."""
    from laser_jax.edits import parse_edit, read_composition

    steps = list(read_composition(edits)) if edits else []
    if edit:
        steps += [parse_edit(text.strip()) for text in str(edit).split(";") if text.strip()]
    return steps


@register_model(NAME)
class LaserJaxLM(TemplateLM):
    """lm-eval's ``LM`` on a laser-jax model (see the module docstring for ``model_args``)."""

    def __init__(self, model=None, edits: Optional[str] = None, edit: Optional[str] = None, revision: Optional[str] = None,
                 dtype: str = "float32", batch_size=DEFAULT_BATCH_SIZE, max_length: Optional[int] = None,
                 max_gen_toks: int = 256, add_bos_token: Optional[bool] = None, **unknown):
        super().__init__()
        unknown = {k: v for k, v in unknown.items() if k not in IGNORED_ARGS}
        if unknown:
            known = "model, edits, edit, revision, dtype, batch_size, max_length, max_gen_toks, add_bos_token"
            raise ConfigError(f"unknown laser-jax model argument(s) {', '.join(sorted(unknown))} (known: {known})")
        if dtype not in DTYPES:
            raise ConfigError(f"model argument dtype={dtype!r} is not one of {', '.join(DTYPES)}")
        steps = model_edits(edits, edit)  # read before the (slow) load, so a typo fails at once
        if isinstance(model, str) or model is None:
            if not model:
                raise ConfigError("the laser-jax backend needs model_args model=SRC (a hub id, directory, .gguf file, "
                                  "smollm2 or gemma3-270m)")
            from laser_jax.loading import load_model

            model = load_model(model, revision=revision, dtype=DTYPES[dtype])
        if steps:
            from laser_jax import laser
            from laser_jax.edits import resolve_edits

            steps = resolve_edits(model, steps)
            model = laser.apply(model, steps)
        if model.tokenizer is None:
            raise SourceError(f"model {model.source!r} has no tokenizer; lm-eval requests are text")
        self.model = model
        self.edits = tuple(steps)
        self.tokenizer = model.tokenizer
        self.add_bos_token = add_bos_token
        self._batch_size = int(batch_size) if str(batch_size).isdigit() else DEFAULT_BATCH_SIZE  # "auto": our default
        self._max_length = int(max_length) if max_length else None
        self._max_gen_toks = int(max_gen_toks)

    # ----------------------------------------------------------------------------- what lm-eval asks of a backend

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def prefix_token_id(self) -> int:
        bos = self.tokenizer.bos_token_id
        return bos if bos is not None else self.tokenizer.eos_token_id

    @property
    def max_length(self) -> int:
        if self._max_length:
            return self._max_length
        for field in ("n_positions", "max_position_embeddings", "n_ctx"):
            value = getattr(self.model.config, field, None)
            if value is not None:
                return int(value)
        limit = getattr(self.tokenizer, "model_max_length", None)
        return int(limit) if limit is not None and limit != TOKENIZER_INFINITY else DEFAULT_MAX_LENGTH

    @property
    def max_gen_toks(self) -> int:
        return self._max_gen_toks

    @property
    def batch_size(self) -> int:
        return self._batch_size

    @property
    def tokenizer_name(self) -> str:
        return getattr(self.tokenizer, "name_or_path", "").replace("/", "__")

    def tok_encode(self, string: str, add_special_tokens: Optional[bool] = None, left_truncate_len=None, **kwargs) -> list[int]:
        """As lm-eval's ``hf`` backend: the tokenizer's default special tokens unless told (a string that already starts
        with the BOS text gets none)."""
        if add_special_tokens is not None:
            special = {"add_special_tokens": add_special_tokens}
        elif self.add_bos_token is not None:
            special = {"add_special_tokens": self.add_bos_token}
        else:
            special = {}
        if add_special_tokens is None and string.startswith(self.tokenizer.decode(self.prefix_token_id)):
            special = {"add_special_tokens": False}
        ids = self.tokenizer.encode(string, **special)
        return ids[-left_truncate_len:] if left_truncate_len else ids

    def tok_decode(self, tokens, skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=skip_special_tokens)

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        check_requests(requests, "loglikelihood", 2)
        return super().loglikelihood(requests, disable_tqdm=disable_tqdm)

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        pairs = []
        for _, context, continuation in requests:
            whole = (list(context) + list(continuation))[-(self.max_length + 1):]  # as hf: the newest max_length inputs
            cut = max(1, len(whole) - len(continuation))
            pairs.append((whole[:cut], whole[cut:]))
        return score_continuations(self.model, pairs, self.batch_size, progress=not disable_tqdm)

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        check_requests(requests, "loglikelihood_rolling", 1)
        windows, owners = [], []
        for index, (string,) in enumerate(request.args for request in requests):
            for context, continuation in map(lm_utils.make_disjoint_window, lm_utils.get_rolling_token_windows(
                    token_list=self.tok_encode(string), prefix_token=self.prefix_token_id, max_seq_len=self.max_length,
                    context_len=1)):
                windows.append((None, context, continuation))
                owners.append(index)
        totals = [0.0] * len(requests)
        for owner, (logprob, _) in zip(owners, self._loglikelihood_tokens(windows, disable_tqdm=disable_tqdm)):
            totals[owner] += logprob
        return totals

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        from laser_jax.generate import greedy_generate

        check_requests(requests, "generate_until", 2)
        eos = self.tok_decode([self.eot_token_id], skip_special_tokens=False)
        groups: dict = {}
        for index, (context, gen_kwargs) in enumerate(request.args for request in requests):
            kwargs = normalize_gen_kwargs(dict(gen_kwargs), self.max_gen_toks)
            if kwargs.get("do_sample") or float(kwargs.get("temperature") or 0.0) > 0.0 or int(kwargs.get("num_beams", 1)) > 1:
                raise ConfigError(f"laser-jax generates greedily only; got {dict(gen_kwargs)!r} "
                                  "(use do_sample: false, temperature: 0, num_beams: 1)")
            until = tuple(handle_stop_sequences(kwargs.get("until"), eos=eos))
            groups.setdefault((until, int(kwargs["max_gen_toks"])), []).append((index, context))
        out = [""] * len(requests)
        for (until, max_gen_toks), members in groups.items():
            keep = self.max_length - max_gen_toks
            if keep <= 0:
                raise ConfigError(f"max_gen_toks={max_gen_toks} leaves no room for a prompt in max_length={self.max_length}")
            prompts = [self.tok_encode(context, left_truncate_len=keep) for _, context in members]
            tokens = greedy_generate(self.model, prompts, max_gen_toks, batch_size=self.batch_size, eos_id=self.eot_token_id)
            for (index, _), continuation in zip(members, tokens):
                out[index] = postprocess_generated_text(self.tok_decode(list(continuation)), list(until), None)
        return out

    def get_model_info(self) -> dict:
        from laser_jax.edits import edit_text

        return {"model_source": self.model.source, "laser_jax_edits": [edit_text(step) for step in self.edits]}


def check_requests(requests, kind: str, arity: int) -> None:
    """Every request is a text-only ``kind`` request (one-line error otherwise)."""
    for request in requests:
        request_type = getattr(request, "request_type", kind)
        if request_type != kind:
            raise DataError(f"laser-jax does not support the lm-eval request type {request_type!r} in {kind} "
                                    f"(it serves loglikelihood, loglikelihood_rolling and generate_until)")
        if len(request.args) != arity:
            raise DataError(f"laser-jax serves text-only {kind} requests of {arity} argument(s); "
                                    f"got {len(request.args)} (task {getattr(request, 'task_name', None)!r})")


__all__ = ["LaserJaxLM", "score_continuations", "model_edits", "NAME"]
