"""In-training truncation metrics equal laser_jax.laser.apply on the synthetic Model; probes are sane."""

import jax
import numpy as np
import pytest

from laser_jax import laser
from synthetic import probes, train
from synthetic.model import as_model


@pytest.fixture(scope="module")
def evaluated(tiny, tiny_trained):
    steps = probes.default_variants(tiny.cfg, tiny.preset.rhos)
    metrics, values = probes.evaluate_seeds(tiny_trained.params, tiny.testset, tiny.probeset, tiny.sampler.triggers[0],
                                            cfg=tiny.cfg, steps=steps, noise_token=tiny.preset.task.noise_token)
    return steps, np.asarray(metrics), np.asarray(values)


def test_variants_cover_ff_and_attention_matrices(tiny):
    names = [probes.variant_name(s) for s in probes.default_variants(tiny.cfg, (0.0, 0.1, 0.2))]
    assert len(names) == 2 * 4 * 3 + 2 and len(set(names)) == len(names)
    assert {"layer1_ff_rho0", "layer2_ff_rho0", "layer2_fc_in_rho0.1", "layer1_out_proj_rho0.2"} <= set(names)


def test_in_training_truncation_equals_laser_apply(tiny, tiny_trained, evaluated):
    steps, metrics, _ = evaluated
    noise = tiny.preset.task.noise_token
    model = as_model(tiny.cfg, train.seed_state(tiny_trained, 1).params)
    # every layer x matrix at rho = 0.5, plus one at rho = 0 and the FF groups (the rest share this code)
    checked = [i for i, s in enumerate(steps) if s.rho == 0.5 or (s.layer == 1 and s.tau == "fc_in") or s.tau == "mlp"]
    for index in checked:
        edited = laser.apply(model, [steps[index]])
        logits = edited.logits(tiny.testset.batch.inputs, select=tiny.testset.select)
        expected = probes.repeat_metrics(logits, tiny.testset.targets, tiny.testset.valid, noise)
        np.testing.assert_allclose(metrics[1, index + 1], np.asarray(expected), atol=2e-5,
                                   err_msg=probes.variant_name(steps[index]))
    full = probes.repeat_metrics(model.logits(tiny.testset.batch.inputs, select=tiny.testset.select),
                                 tiny.testset.targets, tiny.testset.valid, noise)
    np.testing.assert_allclose(metrics[1, 0], np.asarray(full), atol=2e-5)


def test_ff_rho0_is_the_model_without_that_ff(tiny, tiny_trained, evaluated):
    steps, metrics, _ = evaluated
    index = [probes.variant_name(s) for s in steps].index("layer2_ff_rho0")
    params = train.seed_state(tiny_trained, 0).params
    blocks = dict(params["blocks"])
    blocks["ff_gate"] = blocks["ff_gate"].at[1].set(0.0)
    model = as_model(tiny.cfg, {**params, "blocks": blocks})
    logits = model.logits(tiny.testset.batch.inputs, select=tiny.testset.select)
    expected = probes.repeat_metrics(logits, tiny.testset.targets, tiny.testset.valid, tiny.preset.task.noise_token)
    np.testing.assert_allclose(metrics[0, index + 1], np.asarray(expected), atol=2e-5)


def test_probe_values_are_in_range(evaluated):
    _, metrics, values = evaluated
    assert values.shape == (2, len(probes.PROBES)) and np.isfinite(values).all()
    column = {name: values[:, i] for i, name in enumerate(probes.PROBES)}
    for name in probes.PROBES[2:]:  # attention masses
        assert ((column[name] >= 0) & (column[name] <= 1 + 1e-6)).all(), name
    assert (column["attn2_to_noise"] + column["attn2_to_correct"] <= 1 + 1e-5).all()
    assert ((metrics[..., 1:] >= 0) & (metrics[..., 1:] <= 1 + 1e-6)).all()


def test_metrics_of_a_perfect_predictor():
    logits = jax.nn.one_hot(np.array([[3, 4]]), 6) * 50.0
    out = np.asarray(probes.repeat_metrics(logits, np.array([[3, 4]]), np.array([[True, True]]), 2))
    np.testing.assert_allclose(out, [0, 1, 0, 1], atol=1e-6)
