"""Sharded sweeps give one device's numbers: 8 virtual CPU devices in a subprocess.

The subprocess (``XLA_FLAGS=--xla_force_host_platform_device_count=8``) runs
the same sweep on a one-device mesh and on a 2 x 4 ``(variants, examples)``
mesh, and prints the largest differences. It compiles at XLA's lowest backend
optimisation level: both runs share it, and compiling is most of its time.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.models.hf_tiny import save_tiny_family

SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    from jax.sharding import Mesh
    from laser_jax import load_model
    from laser_jax.examples import Example
    from laser_jax.devices import default_mesh
    from laser_jax.laser import expand_grid
    from laser_jax.sweep import SweepOptions, sweep

    assert jax.device_count() == 8 and dict(default_mesh().shape) == {"examples": 8}, jax.devices()
    model = load_model(sys.argv[1], tokenizer=False)
    rng = np.random.default_rng(0)
    examples = [Example(tuple(int(t) for t in rng.integers(0, 97, 5 + i % 3)), (int(rng.integers(0, 97)), 3),
                        choice_ids=((4,), (6, 7)), label=i % 2, probe_ids=(1, 2)) for i in range(12)]
    grid = expand_grid([1], ["fc_in"], [0.0, 0.2, 0.5])  # 3 variants: one call padded to 4 on 2 variant shards
    options = SweepOptions(top_k=3, batch_size=32)
    devices = np.array(jax.devices())
    runs = {"one": sweep(model, examples, grid, options=options.replace(mesh=Mesh(devices[:1], ("examples",)))),
            "2x4": sweep(model, examples, grid, options=options.replace(mesh=Mesh(devices.reshape(2, 4), ("variants", "examples"))))}
    gaps, same = [], True
    for a, b in zip(runs["one"], runs["2x4"]):
        assert a.key == b.key
        for field in ("answer_nll", "answer_first_logprob", "choice_logprobs", "probe_logprobs"):
            gaps.append(float(np.nanmax(np.abs(getattr(a.scores, field) - getattr(b.scores, field)))))
        same &= bool((a.scores.top1 == b.scores.top1).all() and (a.scores.choice_correct == b.scores.choice_correct).all())
    report = {"rows": len(runs["2x4"]), "max_gap": max(gaps), "same_accuracies": same}
    print(json.dumps(report))
""")


def test_sharded_sweeps_match_one_device(tmp_path):
    save_tiny_family("gpt2", tmp_path / "gpt2")
    flags = "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0"
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "gpt2")], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["rows"] == 4 and report["same_accuracies"]
    assert report["max_gap"] <= 1e-5, report
