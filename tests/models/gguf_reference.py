"""The reference the real-model tests compare with: transformers' own load and PyTorch forward of a GGUF file."""

from __future__ import annotations

import numpy as np
import pytest

TORCH_BATCH = 64


def gguf_file(finder):
    """The path ``finder()`` returns (``smollm2_path``, ``gemma3_path``), or a skip with the reason."""
    pytest.importorskip("gguf", reason="reading the GGUF file needs the gguf package")
    pytest.importorskip("torch", reason="the reference forward needs torch")
    pytest.importorskip("accelerate", reason="transformers' GGUF load needs accelerate")
    from laser_jax.errors import SourceError

    try:
        return finder()
    except SourceError as error:
        pytest.skip(str(error))


def transformers_gguf_model(path):
    """``AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)`` in float32, in eval mode, on 2 threads."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(2)
    return AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()


def torch_answer_scores(reference, examples, batch_size: int = TORCH_BATCH) -> tuple[np.ndarray, np.ndarray]:
    """(top-1 correct [N], mean answer NLL per token [N]) of each example from ``reference``'s forward.

    Each row is ``prompt_ids + answer_ids``, right-padded (real positions are
    unchanged); the item is correct when the answer's first token is the top-1
    at the last prompt position.
    """
    import torch

    n = len(examples)
    top1 = np.zeros(n, bool)
    nll = np.zeros(n, np.float64)
    order = sorted(range(n), key=lambda i: len(examples[i].prompt_ids) + len(examples[i].answer_ids))
    with torch.inference_mode():
        for first in range(0, n, batch_size):
            rows = order[first:first + batch_size]
            sequences = [list(examples[i].prompt_ids) + list(examples[i].answer_ids) for i in rows]
            length = max(map(len, sequences))
            ids = torch.zeros((len(rows), length), dtype=torch.long)
            mask = torch.zeros((len(rows), length), dtype=torch.long)
            for r, sequence in enumerate(sequences):
                ids[r, :len(sequence)] = torch.tensor(sequence)
                mask[r, :len(sequence)] = 1
            logprobs = torch.log_softmax(reference(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
            for r, i in enumerate(rows):
                p, answer = len(examples[i].prompt_ids), list(examples[i].answer_ids)
                at = torch.arange(p - 1, p - 1 + len(answer))
                top1[i] = int(logprobs[r, p - 1].argmax()) == answer[0]
                nll[i] = -float(logprobs[r, at, torch.tensor(answer)].mean())
    return top1, nll
