"""Marchenko-Pastur ranks: the MP median, planted low-rank-plus-noise recovery, ρ = mp in apply, the sweep and the CLI."""

import numpy as np
import pytest

from laser_jax.cli import main, parse_edit, parse_rhos
from laser_jax.errors import InterventionError
from laser_jax.laser import Intervention, apply, rank_for
from laser_jax.results import read_csv
from laser_jax.rmt import MPEdit, analyse, layer_snr, matrix_spectrum, mp_interventions, mp_median, mp_rho, spectra
from tests.test_cli import setup, sweep_argv  # noqa: F401 (the tiny GPT-2 + CounterFact fixture)


def planted(m, n, rank, sigma, seed, strength=(1.5, 6.0)):
    """Noise of scale sigma plus ``rank`` components with singular values ``strength`` × the MP edge."""
    rng = np.random.default_rng(seed)
    edge = sigma * (np.sqrt(m) + np.sqrt(n))
    u = np.linalg.qr(rng.normal(size=(m, rank)))[0]
    v = np.linalg.qr(rng.normal(size=(n, rank)))[0]
    return rng.normal(scale=sigma, size=(m, n)) + (u * np.linspace(*strength, rank) * edge) @ v.T


def test_mp_median_matches_gavish_donoho_and_monte_carlo():
    assert mp_median(1.0) == pytest.approx(0.6528, abs=1e-4)  # Gavish & Donoho (2014), the square case
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 1600))
    eigenvalues = np.linalg.eigvalsh(x @ x.T / 1600)
    assert mp_median(0.25) == pytest.approx(np.median(eigenvalues), rel=5e-3)


@pytest.mark.parametrize("m, n, rank, seed", [(300, 800, 7, 0), (800, 300, 12, 1), (500, 500, 3, 2), (576, 1536, 20, 3)])
def test_mp_recovers_the_planted_rank_and_noise_scale(m, n, rank, seed):
    matrix = planted(m, n, rank, sigma=0.02, seed=seed)
    s = np.linalg.svd(matrix, compute_uv=False)
    sigma, edge, found, signal, bulk = analyse(s, matrix.shape)
    assert found == rank
    assert sigma == pytest.approx(0.02, rel=0.05)
    assert edge == pytest.approx(0.02 * (np.sqrt(m) + np.sqrt(n)), rel=0.05)
    assert signal == pytest.approx(np.square(s[:rank]).sum()) and bulk == pytest.approx(np.square(s[rank:]).sum())


def test_pure_noise_has_its_largest_singular_value_at_the_edge():
    """The edge is where the noise spectrum ends: the top noise singular value sits on it (within its finite-size
    fluctuation, so at most one noise value may cross the estimated edge)."""
    noise = np.random.default_rng(4).normal(scale=3.0, size=(400, 900))
    s = np.linalg.svd(noise, compute_uv=False)
    sigma, edge, found, _, _ = analyse(s, noise.shape)
    assert sigma == pytest.approx(3.0, rel=0.02) and s[0] == pytest.approx(edge, rel=0.02)
    assert found <= 1 and s[1] < edge


@pytest.mark.parametrize("shape", [(32, 128), (576, 1536), (7, 3)])
def test_mp_rho_gives_back_the_rank(shape):
    for rank in range(min(shape) + 1):
        rho = mp_rho(rank, shape)
        assert rank_for(rho, shape) == rank and 0.0 <= rho <= 1.0


@pytest.fixture(scope="module")
def model_with_planted_matrix(setup):  # noqa: F811
    from laser_jax import load_model

    model = load_model(setup / "model")
    shape = model.matrix(1, "fc_in").shape
    return model.with_matrix(1, "fc_in", planted(*shape, rank=4, sigma=0.05, seed=5, strength=(3.0, 8.0)).astype(np.float32))


def test_model_spectra_and_rho_mp_cut_each_matrix_to_its_mp_rank(model_with_planted_matrix):
    model = model_with_planted_matrix
    spectrum = matrix_spectrum(model, 1, "fc_in")
    assert spectrum.rank == 4 and spectrum.full_rank == min(model.matrix(1, "fc_in").shape)
    steps = mp_interventions(model, [0, 1], ["fc_in", "fc_out"])
    rows = spectra(model, [0, 1], ["fc_in", "fc_out"])
    assert [(s.layer, s.tau) for s in steps] == [(0, "fc_in"), (0, "fc_out"), (1, "fc_in"), (1, "fc_out")]
    for step, row in zip(steps, rows):
        assert rank_for(step.rho, model.params["blocks"][step.tau].shape) == row.rank
    reduced = np.asarray(apply(model, steps[2]).matrix(1, "fc_in"), np.float64)
    assert np.linalg.matrix_rank(reduced, tol=1e-3) == 4
    pooled = layer_snr(rows)
    by_matrix = {(s.layer, s.tau): s for s in rows}
    a, b = by_matrix[(1, "fc_in")], by_matrix[(1, "fc_out")]
    assert pooled[1] == pytest.approx((a.signal_energy + b.signal_energy) / (a.bulk_energy + b.bulk_energy))
    with pytest.raises(InterventionError, match="one matrix type"):
        mp_interventions(model, [1], ["mlp"])


def test_parse_rhos_and_edits_with_mp_and_the_removed_part():
    assert parse_rhos("mp") == ["mp"] and parse_rhos("0.5,0.1,0.5") == [0.5, 0.1]
    with pytest.raises(InterventionError, match="cannot be mixed"):
        parse_rhos("mp,0.1")
    assert parse_edit("fc_in:27:mp") == MPEdit(27, "fc_in")
    assert parse_edit("fc_in:27:mp:bottom") == MPEdit(27, "fc_in", "bottom")
    assert parse_edit("fc_in:27:0.01:bottom") == Intervention(27, "fc_in", 0.01, "bottom")
    assert parse_edit("fc_in:27:0.01") == Intervention(27, "fc_in", 0.01)


def test_cli_rmt_table_and_csv_sorted_by_snr(setup, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "rmt.csv"
    assert main(["rmt", "--model", str(setup / "model"), "--layers", "0-1", "--taus", "fc_in,q_proj", "--out", str(out)]) == 0
    rows = read_csv(out)
    assert len(rows) == 4 and [r["snr"] for r in rows] == sorted(r["snr"] for r in rows)
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split()[:3] == ["layer", "tau", "shape"] and len(printed) == 1 + 4 + 1


def test_cli_sweep_and_apply_with_rho_mp(setup, tmp_path, capsys):  # noqa: F811
    from laser_jax import load_model

    argv = sweep_argv(setup, tmp_path / "sweep")
    argv[argv.index("--rhos") + 1] = "mp"
    assert main(argv) == 0
    model = load_model(setup / "model")
    expected = {(s.layer, s.tau, s.rank) for s in spectra(model, [0, 1, 2], ["fc_in", "fc_out"])}  # test_cli's GRID
    rows = [r for r in read_csv(tmp_path / "sweep" / "results.csv") if r["tau"] != "none" and r["split"] == "val"]
    assert {(r["layer"], r["tau"], r["k"]) for r in rows} == expected
    assert main(["apply", "--model", str(setup / "model"), "--edit", "fc_in:1:mp", "--out", str(tmp_path / "ckpt")]) == 0
    restored = load_model(tmp_path / "ckpt")
    (k,) = [rank for layer, tau, rank in expected if layer == 1 and tau == "fc_in"]
    assert np.linalg.matrix_rank(np.asarray(restored.matrix(1, "fc_in"), np.float64), tol=1e-4) == k
    capsys.readouterr()
    assert main(["apply", "--model", str(setup / "model"), "--edit", "mlp:1:mp", "--out", str(tmp_path / "bad")]) == 2
    assert "one matrix type" in capsys.readouterr().err
