"""Shared fixtures: tiny random Hugging Face checkpoints and the paths to ../shared/data."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The CLI keeps JAX's persistent compilation cache in ~/.cache/laser-jax/xla unless this is set; the tests compile
# afresh (an empty value turns the cache off), except where a test sets its own place.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", "")
SHARED_DATA = Path(os.environ.get("LASER_JAX_DATA", REPO.parent / "shared" / "data"))


def shared_file(*parts: str) -> Path:
    """A file of ../shared/data, or a skip with the reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not present (real data lives in ../shared/data; set LASER_JAX_DATA)")
    return path


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory):
    """A tiny random GPT-2 (``tests/models/hf_tiny.py``) loaded without a tokenizer."""
    from laser_jax import load_model
    from tests.models.hf_tiny import save_tiny_family

    directory = tmp_path_factory.mktemp("gpt2")
    save_tiny_family("gpt2", directory)
    return load_model(directory, tokenizer=False)


@pytest.fixture(scope="module", autouse=True)
def _fresh_compilation_caches():
    """Each test module starts from empty JAX caches: a whole-suite process otherwise keeps every compiled program of
    every module, and XLA's CPU compiler has crashed late in such a run (a segfault inside a compile in test_sweep)."""
    yield
    import jax

    jax.clear_caches()
