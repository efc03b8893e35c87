"""One tiny trained run shared by the synthetic tests (compiled once per session)."""

import dataclasses

import pytest

from synthetic import presets, train


@dataclasses.dataclass
class Tiny:
    preset: presets.Preset
    cfg: object
    sampler: object
    testset: object
    probeset: object


@pytest.fixture(scope="session")
def tiny():
    from synthetic.run import setup

    preset = presets.TINY
    cfg, _, sampler, testset, probeset = setup(preset)
    return Tiny(preset, cfg, sampler, testset, probeset)


@pytest.fixture(scope="session")
def tiny_trained(tiny):
    """Two seeds after 30 steps."""
    states = train.init_states(tiny.cfg, tiny.preset.optim, [0, 1])
    states, _ = train.train_steps(states, tiny.sampler, 30, cfg=tiny.cfg, task=tiny.preset.task, optim=tiny.preset.optim)
    return states
