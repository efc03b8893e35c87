"""llama.cpp (through llama-cpp-python) runs our exported GGUF files: its greedy tokens equal laser-jax's.

Slow, and skipped where llama-cpp-python is not installed (it has no prebuilt wheel for this platform: pip builds
llama.cpp from source, see docs/lm_eval_gguf.md).
"""

import numpy as np
import pytest

pytest.importorskip("gguf")
llama_cpp = pytest.importorskip("llama_cpp")

from laser_jax import load_model  # noqa: E402
from laser_jax.generate import greedy_generate  # noqa: E402
from laser_jax.gguf import EDITS_KEY, export_gguf  # noqa: E402
from laser_jax.laser import Intervention, apply  # noqa: E402
from tests.models.hf_tiny_text import save_tiny_text_model  # noqa: E402
from tests.test_gguf_export import SETUPS  # noqa: E402

pytestmark = pytest.mark.slow
NEW_TOKENS = 12


def llama_cpp_greedy(path, prompt: list[int], n: int) -> list[int]:
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=128, n_threads=2, verbose=False)
    tokens = []
    for token in llm.generate(prompt, top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0):
        tokens.append(int(token))
        if len(tokens) == n:
            break
    return tokens, llm.metadata


@pytest.mark.parametrize("family", sorted(SETUPS))
def test_llama_cpp_generates_our_greedy_tokens_from_a_tiny_export(family, tmp_path):
    save_tiny_text_model(family, tmp_path / "hf", **dict(SETUPS[family], initializer_range=0.2))
    steps = [Intervention(1, "fc_in", 0.25)]
    reduced = apply(load_model(tmp_path / "hf"), steps)
    path = export_gguf(reduced, tmp_path / "reduced.gguf", "f32", edits=steps)
    prompt = reduced.tokenizer("The capital of France is")["input_ids"]
    theirs, metadata = llama_cpp_greedy(path, prompt, NEW_TOKENS)
    (ours,) = greedy_generate(reduced, [prompt], NEW_TOKENS)
    assert theirs == list(ours)
    assert metadata[EDITS_KEY] == "fc_in:1:0.25"


def test_llama_cpp_generates_our_greedy_tokens_from_reduced_smollm2(tmp_path):
    from laser_jax.gguf import smollm2_path
    from tests.models.gguf_reference import gguf_file

    gguf_file(smollm2_path)
    steps = [Intervention(28, "fc_up", 0.2)]
    reduced = apply(load_model("smollm2"), steps)
    path = export_gguf(reduced, tmp_path / "smollm2-fc_up28.gguf", "f32", edits=steps)
    prompt = reduced.tokenizer("The Eiffel Tower is located in the city of")["input_ids"]
    theirs, _ = llama_cpp_greedy(path, prompt, NEW_TOKENS)
    (ours,) = greedy_generate(reduced, [prompt], NEW_TOKENS)
    assert theirs == list(ours), (reduced.tokenizer.decode(theirs), reduced.tokenizer.decode(list(ours)))
    assert np.asarray(ours).size == NEW_TOKENS
