"""The associative-memory toy: spectrum and truncation-sweep sanity."""

import numpy as np

from synthetic import assoc_memory, presets

CFG = presets.TINY.assoc  # n_inputs=24, n_outputs=16, d=12, 60 steps; shared with the run test's compilation


def test_spectrum_and_sweeps():
    result = assoc_memory.train(CFG)
    assert [row["step"] for row in result["log"]] == [1, 60]
    for row in result["log"]:
        s = np.asarray(row["singular_values"])
        assert s.shape == (12,) and (s >= 0).all() and (np.diff(s) <= 1e-5).all()
        # the per-component margins add up to the full noise-minus-correct margin, so keep-all = full
        for key in ("p_noise", "accuracy"):
            assert abs(row["keep_top_k"][key][-1] - row["full"][key]) < 1e-5
        assert abs(row["keep_top_k"]["p_noise"][0] - 1 / 16) < 1e-6  # rank 0: uniform logits
    last = result["log"][-1]
    # the noise association sits in the top component: it carries a positive noise margin,
    # and removing it lowers p(noise) below the full memory's
    assert last["noise_margin_by_component"][0] > 0
    assert last["remove_top_k"]["p_noise"][1] < last["full"]["p_noise"]
    assert last["full"]["p_noise"] > 1 / 16
