"""Hugging Face export: transformers loads the directory and reproduces our reduced model's logits."""

from __future__ import annotations

import numpy as np
import pytest
import transformers

from laser_jax import laser, load_model
from laser_jax.export import export_hf
from laser_jax.laser import Intervention
from tests.models.hf_tiny import random_batch, torch_logits
from tests.test_checkpoint import save_tiny_gpt2


def test_exported_reduced_model_matches_transformers(tmp_path):
    save_tiny_gpt2(tmp_path / "src")
    original = load_model(tmp_path / "src")
    model = laser.apply(original, [Intervention(1, "fc_in", 0.05), Intervention(0, "v_proj", 0.1)])  # v_proj: in the fused c_attn
    out = export_hf(model, tmp_path / "hf")
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in out.iterdir()}

    hf = transformers.AutoModelForCausalLM.from_pretrained(str(out)).eval()
    ids, mask = random_batch(263, seed=3)
    ours = np.asarray(model.logits(ids, mask))
    theirs = torch_logits(hf, ids, mask)
    real = mask.astype(bool)
    assert np.abs(ours[real] - theirs[real]).max() <= 1e-4
    assert np.abs(ours - np.asarray(original.logits(ids, mask)))[real].max() > 1e-3  # the edit is really there
    assert transformers.AutoTokenizer.from_pretrained(str(out))(" Paris").input_ids == model.tokenizer(" Paris").input_ids

    again = load_model(out)  # and our own loader reads the export back exactly
    np.testing.assert_array_equal(np.asarray(again.matrix(0, "v_proj")), np.asarray(model.matrix(0, "v_proj")))


def test_export_refuses_to_overwrite_a_foreign_directory(tmp_path):
    save_tiny_gpt2(tmp_path / "src")
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "data.csv").write_text("x")
    with pytest.raises(Exception, match="refusing to overwrite"):
        export_hf(load_model(tmp_path / "src"), tmp_path / "hf")
