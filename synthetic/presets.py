"""Named experiment presets (frozen dataclasses): ``quick`` (CPU demo), ``paper`` (GPU), ``tiny`` (tests).

Role: one place for every setting of a run. ``paper`` is the official
script ``script_k1_noise05.sh``: d = 256, T = 256, FF 4d in both layers,
SGD (momentum 0.9, lr 0.03, weight decay 1e-4), batch 512, 5,000 steps,
512 clean test sequences, the Tiny-Shakespeare statistics. Two differences:
it trains 3 seeds together (vmapped; the official script runs one seed per
run, ``--seeds 1``), and it logs every 10 steps through step 1,000, then
every 100 (the official script evaluates every 5).

``quick`` is the smallest setting we found, by experiment on the shared 2-core
CPU, that still shows the paper's effect with 3 seeds at alpha = 0.5 (the
measurements are in synthetic/README.md; the sizes were found with the
docstring statistics, the steps again with the Tiny-Shakespeare ones):

- d = 64 (not 32): layer 2's value/output map must copy any of 65 tokens; at
  d = 32 accuracy with FF2 removed stalls at 0.73-0.85.
- T = 64 with batch 16 (not T = 32 with batch 32, the same tokens per step):
  more earlier triggers in context give a larger in-context margin, so what
  FF1 and attention keep of the noise after FF2 is removed stays below 5%
  (p(noise) 0.038 against ~0.05).
- FF hidden width 4d as in the paper (width d left p(noise) at 0.05-0.08).
- The paper's optimizer and lr 0.03 unchanged (lr 0.1 diverged at d = 64).
- 1,000 steps with the paper's Tiny-Shakespeare statistics (800 were enough
  with the docstring statistics it was tuned on): accuracy with FF2 removed
  passes 0.9 at step 650-700 and is 0.967 at 1,000, with p(noise) 0.030, so
  both checks hold by about 0.02; later, FF2-removed p(noise) drifts to
  0.04-0.08 and the p(noise) <= 0.05 check fails at most logged steps.
- 128 clean test and 64 noisy probe sequences keep each logged step (full
  model + 26 truncations, x 3 seeds) near 3 CPU-seconds.
"""

from __future__ import annotations

import dataclasses

from synthetic.assoc_memory import AssocConfig
from synthetic.data import TaskConfig
from synthetic.model import SyntheticConfig
from synthetic.train import OptimConfig


@dataclasses.dataclass(frozen=True)
class Preset:
    name: str
    model: SyntheticConfig
    task: TaskConfig
    optim: OptimConfig
    steps: int
    log_every: int
    early_logs: tuple[int, ...] = ()  # extra logged steps, to time the early (global) association
    seeds: int = 3
    stats: str = "shakespeare"
    test_size: int = 512
    probe_size: int = 128
    rhos: tuple[float, ...] = (0.0, 0.1, 0.2)
    test_seed: int = 0  # the clean test set (alpha = 0) is the same for every run
    probe_seed: int = 1  # the noisy probe batch (alpha of the task)
    checkpoint_steps: tuple[int, ...] = ()
    assoc: AssocConfig = AssocConfig()

    def replace(self, **changes) -> "Preset":
        return dataclasses.replace(self, **changes)


PAPER = Preset(
    name="paper",
    model=SyntheticConfig(seq_len=256, d_model=256, mlp_ratio=4),
    task=TaskConfig(seq_len=256, n_triggers=1, alpha=0.5, noise_token=2),
    optim=OptimConfig(learning_rate=0.03, momentum=0.9, weight_decay=1e-4, batch_size=512),
    steps=5000,
    log_every=100,
    early_logs=tuple(range(10, 1000, 10)),  # every 10 steps through the first 1,000 (official: every 5)
    test_size=512,
    probe_size=128,
    checkpoint_steps=(1000, 5000),
)

QUICK = Preset(
    name="quick",
    model=SyntheticConfig(seq_len=64, d_model=64, mlp_ratio=4),
    task=TaskConfig(seq_len=64, n_triggers=1, alpha=0.5, noise_token=2),
    optim=OptimConfig(learning_rate=0.03, momentum=0.9, weight_decay=1e-4, batch_size=16),
    steps=1000,
    log_every=100,
    early_logs=(10, 20, 40, 60),
    test_size=128,
    probe_size=64,
)

TINY = Preset(
    name="tiny",
    model=SyntheticConfig(seq_len=16, d_model=16, mlp_ratio=1),
    task=TaskConfig(seq_len=16, n_triggers=1, alpha=0.5, noise_token=2),
    optim=OptimConfig(learning_rate=0.03, batch_size=8),
    steps=20,
    log_every=10,
    seeds=2,
    test_size=16,
    probe_size=16,
    rhos=(0.0, 0.5),
    assoc=AssocConfig(n_inputs=24, n_outputs=16, d=12, steps=60, log_steps=(1, 60), ranks=(0, 1, 12)),
)

PRESETS: dict[str, Preset] = {p.name: p for p in (QUICK, PAPER, TINY)}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]
