"""Fixtures for the task tests: a private datasets cache and the real GPT-2 tokenizer."""

import datasets
import pytest
from transformers import GPT2TokenizerFast

from tests.conftest import shared_file


@pytest.fixture(scope="session")
def _fixture_cache(tmp_path_factory):
    datasets.disable_progress_bars()
    return str(tmp_path_factory.mktemp("hf_datasets_cache"))


@pytest.fixture(autouse=True)
def _datasets_cache(request, _fixture_cache):
    """``load_dataset`` caches Arrow copies of what it reads. Fixture files (tests using
    ``tmp_path``) are cached in a throw-away folder; the real files of ../shared/data keep
    the user's cache, so later runs reuse it."""
    if "tmp_path" not in request.fixturenames:
        yield
        return
    saved = datasets.config.HF_DATASETS_CACHE
    datasets.config.HF_DATASETS_CACHE = _fixture_cache
    yield
    datasets.config.HF_DATASETS_CACHE = saved


@pytest.fixture(scope="session")
def gpt2_tokenizer():
    """The real GPT-2 BPE tokenizer from ../shared/data (skips when absent).

    transformers 5 reads the folder with ``from_pretrained``; the constructor
    ``GPT2TokenizerFast(vocab_file=..., merges_file=...)`` no longer reads the
    files and silently tokenises everything to [].
    """
    return GPT2TokenizerFast.from_pretrained(str(shared_file("tokenizers", "gpt2", "vocab.json").parent))
