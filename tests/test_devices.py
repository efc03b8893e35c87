"""Past one device: multi-process CLI sweeps, a ``model`` mesh axis, ``--precision``, and their errors.

The multi-device cases run in subprocesses with virtual CPU devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=N``) at XLA's lowest
backend optimisation level (compiling is most of their time); the
multi-process case starts two real ``laser-jax sweep`` processes joined by
``jax.distributed`` on localhost (gloo collectives on CPU).
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from laser_jax.cli import main
from laser_jax.results import RESULTS_FILE, read_csv
from tests.test_cli import N_VARIANTS, setup, sweep_argv, variant_count  # noqa: F401  (the tiny GPT-2 and CounterFact fixture)

REPO = Path(__file__).resolve().parents[1]


def cpu_env(devices: int) -> dict:
    flags = f"--xla_force_host_platform_device_count={devices} --xla_backend_optimization_level=0"
    return dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))


def cli(args, devices: int = 1, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "laser_jax.cli", *args], cwd=REPO, env=cpu_env(devices),
                          capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def assert_same_results(a: Path, b: Path, tolerance: float = 1e-5) -> None:
    """Same rows in the same order, identical accuracies and counts, other numbers equal up to float rounding."""
    rows_a, rows_b = read_csv(a / RESULTS_FILE), read_csv(b / RESULTS_FILE)
    assert len(rows_a) == len(rows_b) > 0
    for row_a, row_b in zip(rows_a, rows_b):
        assert row_a.keys() == row_b.keys()
        for column, value in row_a.items():
            other = row_b[column]
            if isinstance(value, float) and column not in ("accuracy", "rho"):
                assert math.isclose(value, other, rel_tol=tolerance, abs_tol=tolerance), (column, row_a, row_b)
            else:
                assert value == other, (column, row_a, row_b)


# ----------------------------------------------------------------------------- many processes


def start_two_processes(setup, outs, env=None) -> list[subprocess.Popen]:  # noqa: F811
    """``laser-jax sweep`` as processes 0 and 1 of one run (4 CPU devices each), writing to ``outs[i]``."""
    port = free_port()
    return [subprocess.Popen([sys.executable, "-m", "laser_jax.cli", *sweep_argv(setup, outs[i]),
                              "--coordinator", f"localhost:{port}", "--num-processes", "2", "--process-id", str(i),
                              "--coordinator-timeout", "120"],
                             cwd=REPO, env={**cpu_env(4), **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for i in range(2)]


@pytest.mark.slow
def test_two_processes_killed_resumed_equal_one(setup, tmp_path):  # noqa: F811
    """Two processes x 4 CPU devices through jax.distributed, SIGKILLed midway and started again: the rows of a
    1-process run, identical accuracies; only process 0 writes."""
    single = cli(sweep_argv(setup, tmp_path / "single"))
    assert single.returncode == 0, single.stderr[-3000:]
    outs = [tmp_path / "multi", tmp_path / "multi_follower"]  # process 1 gets its own --out: it must stay unwritten
    killed = start_two_processes(setup, outs)
    deadline = time.monotonic() + 400
    while variant_count(outs[0]) < 3 and all(p.poll() is None for p in killed) and time.monotonic() < deadline:
        time.sleep(0.001)
    for process in killed:
        process.kill()
        process.communicate()
    done_at_kill = variant_count(outs[0])
    assert 3 <= done_at_kill < N_VARIANTS, [p.returncode for p in killed]

    resumed = start_two_processes(setup, outs)
    finished = [process.communicate(timeout=600) for process in resumed]
    for process, (_, err) in zip(resumed, finished):
        assert process.returncode == 0, err[-3000:]
        assert f"{done_at_kill} of {N_VARIANTS} variants already done" in err  # process 0 told process 1
    assert_same_results(tmp_path / "single", outs[0])
    assert not outs[1].exists()
    assert len(list((outs[0] / "scores").iterdir())) == N_VARIANTS
    assert "--num-processes" in json.loads((outs[0] / "run.json").read_text())["argv"]
    assert f"{2 * N_VARIANTS} rows in" in finished[1][0]  # the follower saw every row


def test_unreachable_coordinator_times_out_with_a_message(setup, tmp_path):  # noqa: F811
    done = cli(sweep_argv(setup, tmp_path / "out") + ["--coordinator", f"localhost:{free_port()}",
                                                      "--num-processes", "2", "--process-id", "1",
                                                      "--coordinator-timeout", "3"], timeout=120)
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("laser-jax: error: could not reach the coordinator localhost:") and "within 3 s" in last, done.stderr[-2000:]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra, message", [
    (["--coordinator", "localhost:1234", "--num-processes", "2", "--process-id", "2"], "--process-id 2 is outside 0..1"),
    (["--coordinator", "localhost:1234", "--num-processes", "2"], "--process-id missing"),
    (["--coordinator", "localhost", "--num-processes", "2", "--process-id", "0"], "is not HOST:PORT"),
    (["--mesh", "model=3"], "--mesh model=3 needs a multiple of 3 devices, but there are 1"),
    (["--mesh", "examples=2"], "--mesh examples=2 needs 2 devices, but there are 1"),
    (["--mesh", "heads=2"], "unknown mesh axis 'heads'"),
    (["--mesh", "model:2"], "bad --mesh 'model:2'"),
])
def test_device_errors_are_one_line(setup, tmp_path, capsys, extra, message):  # noqa: F811
    assert main(sweep_argv(setup, tmp_path / "out") + extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("laser-jax: error: ") and message in err[0], err
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- a model axis

SHARDED_SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    from laser_jax import laser, load_model
    from laser_jax.devices import build_mesh, bytes_per_device
    from laser_jax.examples import Example
    from laser_jax.devices import Placement
    from laser_jax.laser import expand_grid
    from laser_jax.sweep import SweepOptions, sweep

    model = load_model(sys.argv[1], tokenizer=False)
    rng = np.random.default_rng(0)
    examples = [Example(tuple(int(t) for t in rng.integers(0, 97, 5 + i % 3)), (int(rng.integers(0, 97)), 3),
                        choice_ids=((4,), (6, 7)), label=i % 2, probe_ids=(1, 2)) for i in range(12)]
    grid = expand_grid([1], ["fc_in", "fc_out", "q_proj"], [0.0, 0.2, 0.5])
    options = SweepOptions(top_k=3, batch_size=32)
    one = sweep(model, examples, grid, options=options.replace(mesh=build_mesh({}, jax.devices()[:1])))
    mesh = build_mesh({"variants": 2, "model": 4})
    sharded = sweep(model, examples, grid, options=options.replace(mesh=mesh))
    gaps, same = [], True
    for a, b in zip(one, sharded):
        assert a.key == b.key
        for field in ("answer_nll", "answer_first_logprob", "choice_logprobs", "probe_logprobs"):
            gaps.append(float(np.nanmax(np.abs(getattr(a.scores, field) - getattr(b.scores, field)))))
        same &= bool((a.scores.top1 == b.scores.top1).all() and (a.scores.choice_correct == b.scores.choice_correct).all())
    blocks = Placement(mesh).put_params(model.params)["blocks"]
    held = {str(device): n for device, n in bytes_per_device(blocks).items()}
    total = sum(leaf.nbytes for leaf in jax.tree.leaves(model.params["blocks"]))
    placed = {path[1]: value for (_, path), value in laser.FACTOR_CACHE._entries.items() if path[-1] == mesh}
    factors = {tau: {name: list(getattr(value, name).sharding.spec) for name in ("u", "vt")} for tau, value in placed.items()}
    factor_bytes = bytes_per_device(list(placed.values()))
    print(f"block parameters: {total} bytes; per device: {held}", file=sys.stderr)
    print(json.dumps({"rows": len(sharded), "max_gap": max(gaps), "same_accuracies": same, "total": total,
                      "held": held, "factors": factors, "factor_bytes": sorted(factor_bytes.values())}))
""")


@pytest.mark.slow
def test_model_axis_shards_parameters_and_matches_one_device(tmp_path, family="gpt2"):
    """A (variants=2, examples=1, model=4) mesh on 8 CPU devices: one device's rows, a quarter of the block
    parameters on each device, and the SVD factors split as their matrices."""
    from tests.models.hf_tiny import save_tiny_family

    save_tiny_family(family, tmp_path / family)
    done = subprocess.run([sys.executable, "-c", SHARDED_SCRIPT, str(tmp_path / family)], cwd=REPO, env=cpu_env(8),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    print(done.stderr.strip().splitlines()[-1])
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["rows"] == 10 and report["same_accuracies"]
    assert report["max_gap"] <= 1e-5, report
    assert len(report["held"]) == 8 and set(report["held"].values()) == {report["total"] // 4}, report
    # fc_in and q_proj are split by their outputs (vt), fc_out by its inputs (u)
    by_output, by_input = {"u": [None, None], "vt": [None, "model"]}, {"u": ["model", None], "vt": [None, None]}
    assert report["factors"] == {"fc_in": by_output, "q_proj": by_output, "fc_out": by_input}
    assert len(report["factor_bytes"]) == 8 and len(set(report["factor_bytes"])) == 1  # split evenly


@pytest.mark.slow
def test_cli_mesh_gives_the_same_results(setup, tmp_path):  # noqa: F811
    """``laser-jax sweep --mesh variants=2,model=4`` on 8 devices writes the results of the default mesh."""
    default = cli(sweep_argv(setup, tmp_path / "default"), devices=8)
    assert default.returncode == 0, default.stderr[-3000:]
    meshed = cli(sweep_argv(setup, tmp_path / "meshed") + ["--mesh", "variants=2,model=4"], devices=8)
    assert meshed.returncode == 0, meshed.stderr[-3000:]
    assert_same_results(tmp_path / "default", tmp_path / "meshed")


# ----------------------------------------------------------------------------- precision

PRECISION_SCRIPT = textwrap.dedent("""
    import sys
    import jax
    from laser_jax.cli import main

    argv, dumps = sys.argv[1:-1], sys.argv[-1]
    for precision in ("highest", "default"):
        jax.config.update("jax_dump_ir_to", f"{dumps}/{precision}")
        assert main(argv + ["--precision", precision, "--out", f"{dumps}/run_{precision}"]) == 0
""")


@pytest.mark.slow
def test_precision_reaches_every_matmul(setup, tmp_path):  # noqa: F811
    """Every dot_general the CLI's sweep compiles carries ``--precision`` (the StableHLO JAX dumps)."""
    argv = [a for a in sweep_argv(setup, tmp_path / "unused") if a not in ("--out", str(tmp_path / "unused"))]
    done = subprocess.run([sys.executable, "-c", PRECISION_SCRIPT, *argv, str(tmp_path)], cwd=REPO, env=cpu_env(1),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    for precision in ("highest", "default"):
        modules = [path.read_text() for path in (tmp_path / precision).glob("*.mlir")]
        dots = [line for text in modules for line in text.splitlines() if "stablehlo.dot_general" in line]
        named = {name for text in modules for name in re.findall(r"module @jit_(\w+)", text)}
        assert {"base_pass", "variant_readouts"} <= named, named
        assert len(dots) >= 10 and all(f"precision = [{precision.upper()}, {precision.upper()}]" in d for d in dots), dots[:3]
    assert_same_results(tmp_path / "run_highest", tmp_path / "run_default", tolerance=0)  # CPU: float32 either way


# ----------------------------------------------------------------------------- sizes from memory, specs


class FakeDevice:
    def __init__(self, stats, process_index=0):
        self.stats, self.process_index = stats, process_index

    def memory_stats(self):
        return self.stats


def test_memory_sizes_the_model_axis_and_the_variant_chunk():
    from laser_jax.devices import DEFAULT_ACTIVATION_BUDGET, activation_budget, device_memory, model_shards_for

    gpus = [FakeDevice({"bytes_limit": 80 << 30, "bytes_in_use": 20 << 30}), FakeDevice({"bytes_limit": 80 << 30})]
    assert device_memory(gpus, "limit") == 80 << 30 and device_memory(gpus, "free") == 60 << 30
    assert device_memory(gpus + [FakeDevice(None, process_index=1)], "free") == 60 << 30  # another host's device
    assert device_memory([FakeDevice(None)], "free") is None  # CPU
    assert activation_budget(None, 8) == DEFAULT_ACTIVATION_BUDGET
    assert activation_budget(60 << 30, 4) == 120 << 30
    assert model_shards_for(12 << 30, 80 << 30, 8) == 1  # GPT-J in bf16 fits one H100
    assert model_shards_for(140 << 30, 80 << 30, 8) == 4  # 35 GiB per device <= 40
    assert model_shards_for(140 << 30, 80 << 30, 2) == 2  # no more devices on this host
    assert model_shards_for(1 << 40, 16 << 30, 6) == 2


def test_block_param_spec_splits_heads_and_hidden_units():
    from jax.sharding import PartitionSpec as P

    from laser_jax.devices import block_param_spec

    assert block_param_spec("fc_in", (28, 4096, 16384), 4) == P(None, None, "model")
    assert block_param_spec("fc_out", (28, 16384, 4096), 4) == P(None, "model")
    assert block_param_spec("q_proj", (28, 4096, 4096), 8) == P(None, None, "model")
    assert block_param_spec("out_proj", (28, 4096, 4096), 8) == P(None, "model")
    assert block_param_spec("k_proj", (3, 32, 16), 32) == P(None, "model")  # GQA: 16 outputs, split the input
    assert block_param_spec("fc_in_bias", (28, 16384), 4) == P(None, "model")
    assert block_param_spec("ln_1_scale", (3, 30), 4) == P()
    assert block_param_spec("fc_in", (28, 4096, 16384), 1) == P()


def test_mesh_from_the_command_line():
    import jax

    from laser_jax.devices import build_mesh, parse_mesh

    assert parse_mesh("variants=2, model=4") == {"variants": 2, "model": 4}
    mesh = build_mesh(parse_mesh("model=1"))
    assert dict(mesh.shape) == {"variants": 1, "examples": jax.device_count(), "model": 1}


def test_cluster_detection_reads_the_launchers_environment():
    from laser_jax.devices import detected_cluster

    slurm = {"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "n[1-2]", "SLURM_NTASKS": "2", "SLURM_PROCID": "0",
             "SLURM_LOCALID": "0"}
    assert detected_cluster(slurm) == "Slurm"
    assert detected_cluster({k: v for k, v in slurm.items() if k != "SLURM_STEP_NODELIST"}) is None  # sbatch, no step
    assert detected_cluster({"OMPI_MCA_orte_hnp_uri": "1.0;tcp://10.0.0.1:34911"}) == "Open MPI"
    assert detected_cluster({"TPU_WORKER_HOSTNAMES": "t0,t1"}) == "Cloud TPU (GKE)"
    assert detected_cluster({"HOME": "/root", "PATH": "/bin"}) is None


def test_dispatch_compiles_each_new_program_ahead_on_the_pool_and_then_calls_in_order():
    """Placement.dispatch: calls of 3, 4, 3 and 5 elements need 3 programs, compiled side by side on the pool
    threads before the calls, which return in order; dispatching the same calls again compiles nothing."""
    import threading

    import jax
    import jax.monitoring

    from laser_jax.devices import Placement
    from laser_jax.ground import COMPILE_EVENT

    threads = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, seconds, **_: threads.append(threading.current_thread().name) if event == COMPILE_EVENT else None)
    program = jax.jit(lambda x, k: x * k + 1)
    calls = [(np.ones(n, np.float32), np.float32(k)) for k, n in enumerate([3, 4, 3, 5])]
    compiled: set = set()
    out = Placement(None).dispatch(program, calls, compiled)
    assert [o.tolist() for o in out] == [[1.0] * 3, [2.0] * 4, [3.0] * 3, [4.0] * 5]
    assert len(compiled) == 3 and len(threads) == 3 and all(t.startswith("laser-jax-compile") for t in threads), threads
    Placement(None).dispatch(program, calls, set())
    assert len(threads) == 3  # found compiled


def test_compiles_side_by_side_count_their_wall_seconds_once():
    """Two 10 s compiles ending together cover 10 s of wall; one ending 2 s later adds 2 s; one after a gap
    its own 3 s. And compile_totals counts JAX's compile events."""
    import jax.monitoring

    from laser_jax.ground import COMPILE_EVENT, CompileTime, compile_totals

    clock = CompileTime()
    for end, seconds in [(100.0, 10.0), (100.0, 10.0), (102.0, 10.0), (110.0, 3.0)]:
        clock.add(end, seconds)
    assert (clock.programs, clock.seconds) == (4, 15.0)
    programs, _ = compile_totals()
    jax.monitoring.record_event_duration_secs(COMPILE_EVENT, 0.5)
    assert compile_totals()[0] == programs + 1


def test_programs_compile_with_the_engine_options_where_the_backend_accepts_them(monkeypatch):
    """On CPU the engine's programs compile with CPU_COMPILER_OPTIONS (this XLA accepts them); options an XLA
    refuses are dropped, and none are used off CPU; a Program really hands its options to XLA (a refused one
    makes its first call fail) and computes what its function does."""
    import jax

    from laser_jax import devices

    assert devices.compiler_options() == devices.CPU_COMPILER_OPTIONS == {"xla_cpu_use_fusion_emitters": False}
    assert devices._accepted_options("cpu", (("xla_cpu_no_such_option", True),)) == ()
    assert devices._accepted_options("gpu", tuple(devices.CPU_COMPILER_OPTIONS.items())) == ()
    scale = devices.program(static_argnums=(1,))(lambda x, k: x * k)
    assert scale(np.arange(3, dtype=np.float32), 2).tolist() == [0.0, 2.0, 4.0]
    assert scale._cache_size() == 1
    monkeypatch.setattr(devices, "compiler_options", lambda: {"xla_cpu_no_such_option": True})
    refused = devices.program()(lambda x: x + 1)
    with pytest.raises(jax.errors.JaxRuntimeError, match="xla_cpu_no_such_option"):
        refused(np.float32(1))
