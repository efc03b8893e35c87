"""``benchmarks/gpu_check.sh --small``: the one-shot GPU check runs on CPU and ends with its summary line."""

import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_runs_small_on_cpu():
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_backend_optimization_level=0", STEP_LIMITS="300 300 300")
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--small"], cwd="/", env=env,
                          capture_output=True, text=True, timeout=900)
    summary = done.stdout.strip().splitlines()[-1]
    print(summary)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    pattern = (r"gpu_check \(small\): parity: (\d+) passed.*; sweep_vs_reference: ours [\d.]+ s, reference [\d.]+ s, "
               r"speedup: [\d.]+; "
               r"gptj grid: 54 variants in [\d.]+ s: ([\d.]+) variants/s .*MFU ([\d.]+)% of the measured bf16 matmul rate; "
               r"total \d+ s$")
    match = re.fullmatch(pattern, summary)
    assert match, summary
    assert int(match.group(1)) >= 4 and float(match.group(2)) > 0 and float(match.group(3)) > 0
