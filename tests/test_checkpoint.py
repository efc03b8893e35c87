"""Orbax checkpoints: dense and factored round trips are bit-exact; bad directories are one-line errors.

Also home of the tiny fixtures the other CLI-level tests share: a byte-level
GPT-2 tokenizer built in memory and a tiny random GPT-2 checkpoint saved with it.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from laser_jax import load_model
from laser_jax import laser
from laser_jax.checkpoint import MANIFEST, checkpoint_size, edit_factors, read_factors, read_manifest, restore, save, with_factors
from laser_jax.errors import InterventionError, SourceError
from laser_jax.laser import Intervention


def byte_tokenizer():
    """A GPT-2 byte-level BPE tokenizer: 256 byte tokens, ``<|endoftext|>`` (256) and merges that make
    the generic probes " the", " a", " of" single tokens (263 ids in all)."""
    from transformers import GPT2Tokenizer

    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    codes = dict(zip(printable, printable))
    for byte in range(256):
        if byte not in codes:
            codes[byte] = 256 + len(codes) - len(printable)
    vocab = {chr(codes[byte]): byte for byte in range(256)}
    vocab["<|endoftext|>"] = 256
    merges = [("Ġ", "t"), ("Ġt", "h"), ("Ġth", "e"), ("Ġ", "a"), ("Ġ", "o"), ("Ġo", "f")]
    for left, right in merges:
        vocab[left + right] = len(vocab)
    return GPT2Tokenizer(vocab=vocab, merges=merges)


def save_tiny_gpt2(directory, n_layer: int = 3, n_embd: int = 32, seed: int = 0):
    """A tiny random GPT-2 (vocab 263, d=32 by default) saved with the byte tokenizer; returns the torch model."""
    import transformers

    from tests.models.hf_tiny import save_tiny

    config = transformers.GPT2Config(vocab_size=263, n_positions=128, n_embd=n_embd, n_layer=n_layer, n_head=4,
                                     bos_token_id=256, eos_token_id=256)
    model = save_tiny(transformers.GPT2LMHeadModel, config, directory, seed=seed)
    byte_tokenizer().save_pretrained(str(directory))
    return model


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny_gpt2")
    save_tiny_gpt2(directory)
    return directory


@pytest.fixture(scope="module")
def reduced(tiny_dir):
    """The tiny model with layer 1's fc_in at rho 0.05 (k=1) and layer 2's q_proj at rho 0.1 (k=3), and its factors."""
    model = load_model(tiny_dir)
    steps = [Intervention(1, "fc_in", 0.05), Intervention(2, "q_proj", 0.1)]
    factors = edit_factors(model, steps)
    reduced = with_factors(model, factors)
    applied = laser.apply(model, steps)
    for (layer, tau) in factors:  # the factored model is laser.apply's, up to float rounding
        np.testing.assert_allclose(np.asarray(reduced.matrix(layer, tau)), np.asarray(applied.matrix(layer, tau)), atol=1e-6)
    return reduced, factors, steps


def assert_same_params(a, b):
    import jax

    flat_a, tree_a = jax.tree.flatten(a)
    flat_b, tree_b = jax.tree.flatten(b)
    assert tree_a == tree_b
    for x, y in zip(flat_a, flat_b):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("factored", [False, True], ids=["dense", "factored"])
def test_round_trip_is_bit_exact(tmp_path, reduced, factored):
    model, factors, edits = reduced
    out = save(tmp_path / "ckpt", model, edits=edits, factors=factors if factored else None)
    manifest = read_manifest(out)
    assert manifest["storage"] == ("factored" if factored else "dense")
    assert manifest["family"] == "gpt2" and [e["layer"] for e in manifest["edits"]] == [1, 2]
    assert {(r["layer"], r["tau"], r["k"]) for r in manifest["factored"]} == ({(1, "fc_in", 1), (2, "q_proj", 3)} if factored else set())
    back = load_model(out)  # load_model dispatches a laser-jax checkpoint to restore()
    assert back.config == model.config and back.family is model.family
    assert_same_params(back.params, model.params)
    assert back.tokenizer(" Paris").input_ids == model.tokenizer(" Paris").input_ids
    stored = read_factors(out)
    assert set(stored) == (set(factors) if factored else set())
    for key, low in stored.items():
        for got, want in zip((low.u, low.s, low.vt), (factors[key].u, factors[key].s, factors[key].vt)):
            np.testing.assert_array_equal(np.asarray(got), want)


def test_factored_checkpoint_is_smaller(tmp_path):
    """rho=0.01 on fc_in and fc_out of a one-block d=100 GPT-2 (k=1 of 100): far fewer bytes on disk."""
    save_tiny_gpt2(tmp_path / "src", n_layer=1, n_embd=100)
    model = load_model(tmp_path / "src")
    steps = [Intervention(layer, tau, 0.01) for layer in range(model.n_layers) for tau in ("fc_in", "fc_out")]
    factors = edit_factors(model, steps)
    reduced = with_factors(model, factors)
    assert {low.s.shape[0] for low in factors.values()} == {1}
    dense = checkpoint_size(save(tmp_path / "dense", reduced, edits=steps))
    factored_dir = save(tmp_path / "factored", reduced, edits=steps, factors=factors)
    factored = checkpoint_size(factored_dir)
    print(f"\nfactored/dense checkpoint size (rho=0.01 on fc_in, fc_out): {factored} / {dense} bytes = {factored / dense:.3f}")
    assert factored < 0.7 * dense
    assert "blocks/fc_in" not in read_manifest(factored_dir)["leaves"]  # every layer factored: no dense stack
    assert_same_params(restore(factored_dir).params, reduced.params)
    zero = edit_factors(model, [Intervention(0, "q_proj", 0.001)])  # k=0: a zero matrix stays dense
    assert zero == {}


def test_factors_must_match_the_model(tmp_path, tiny_dir):
    model = load_model(tiny_dir)
    with pytest.raises(InterventionError, match="do not reproduce"):
        save(tmp_path / "bad", model, factors=edit_factors(model, [Intervention(0, "fc_in", 0.1)]))
    assert not (tmp_path / "bad").exists()


def test_existing_foreign_directory_is_not_overwritten(tmp_path, reduced):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(SourceError, match="refusing to overwrite"):
        save(tmp_path / "mine", reduced[0])
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def _corrupt_manifest(path):
    (path / MANIFEST).write_text("{not json")


def _partial(path):
    shutil.rmtree(path / "params")


def _truncated_arrays(path):
    for file in (path / "params").rglob("*"):
        if file.is_file() and file.parent.name == "d":
            file.write_bytes(file.read_bytes()[:7])


def _wrong_leaf(path):
    manifest = json.loads((path / MANIFEST).read_text())
    manifest["leaves"]["blocks/fc_out"]["shape"][0] += 1
    (path / MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize("damage", [_corrupt_manifest, _partial, _truncated_arrays, _wrong_leaf])
def test_damaged_checkpoint_is_a_one_line_source_error(tmp_path, reduced, damage):
    out = save(tmp_path / "ckpt", reduced[0], factors=reduced[1])
    damage(out)
    with pytest.raises(SourceError) as info:
        load_model(out)
    message = str(info.value)
    assert "\n" not in message and str(out) in message
