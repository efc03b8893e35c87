"""Ranks from random-matrix theory: the Marchenko-Pastur (MP) edge of each weight matrix, and the rank above it.

Model a matrix ``W`` (``m × n``, ``m <= n`` after transposing) as signal plus
i.i.d. noise of scale σ. The singular values of pure noise fill the MP bulk,
whose upper edge is ``σ (√n + √m)``; singular values above the edge carry
signal. Per matrix this module reports:

- **σ̂**, the noise scale, by the median estimator of Gavish & Donoho ("The
  optimal hard threshold for singular values is 4/√3", IEEE Trans. Inf. Theory
  2014): ``σ̂ = s_med / √(n · μ_β)``, where ``s_med`` is the median singular value
  and ``μ_β`` the median of the MP law of aspect ratio ``β = m / n``. The median
  is robust to a minority of signal components (they sit above the bulk and
  barely move it) and needs no tuning. We use it rather than laserRMT's
  ``IQR(s) / 1.349``, which treats the singular values as Gaussian samples: that
  is not their distribution, and it omits the ``√n`` scale, so its threshold is
  not the MP edge. The estimator assumes that most singular values are noise;
  for trained weights, whose spectra decay smoothly, the "noise" it finds is the
  bulk of the spectrum, so read the rank as "components that stand out of the
  bulk", not as a proof of noise;
- **the MP edge** ``σ̂ (√n + √m)`` and **the MP rank**, the number of singular
  values above it (its fraction of the full rank is the ρ that ``--rhos mp``
  uses for that matrix: :func:`mp_rho`, :func:`mp_interventions`);
- **the signal-to-noise ratio** ``Σ_{s > edge} s² / Σ_{s <= edge} s²``: the
  energy (squared Frobenius norm) above the edge over the energy in the bulk.
  A low SNR means a matrix that is mostly bulk, the kind LASER cuts.

The SVDs come from :mod:`laser_jax.laser`'s factor cache, as the sweep's.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Iterable, Optional

import numpy as np
from scipy import integrate, optimize

from laser_jax.errors import InterventionError
from laser_jax.laser import (FACTOR_CACHE, FactorCache, Intervention, TAU_GROUPS, check_intervention, factors_for,
                             rank_for)

MP = "mp"  # the ρ value that means "the MP rank of each matrix"


@functools.lru_cache(maxsize=None)
def mp_median(beta: float) -> float:
    """The median of the Marchenko-Pastur law with aspect ratio ``0 < β <= 1`` and unit variance
    (eigenvalues of ``X Xᵀ / n`` for ``X`` of shape ``m × n``, ``β = m / n``)."""
    if not 0.0 < beta <= 1.0:
        raise ValueError(f"aspect ratio must be in (0, 1], got {beta}")
    lower, upper = (1 - math.sqrt(beta)) ** 2, (1 + math.sqrt(beta)) ** 2

    def density(x):
        return math.sqrt(max((upper - x) * (x - lower), 0.0)) / (2 * math.pi * beta * x)

    def mass_below(x):
        return integrate.quad(density, lower, x, limit=200)[0]

    return optimize.brentq(lambda x: mass_below(x) - 0.5, lower, upper, xtol=1e-12)


@dataclasses.dataclass(frozen=True)
class Spectrum:
    """The MP analysis of one matrix (``shape`` is its ``(in, out)``)."""

    layer: int
    tau: str
    shape: tuple[int, int]
    sigma: float
    edge: float
    rank: int
    signal_energy: float  # Σ s² above the edge
    bulk_energy: float  # Σ s² at or below it
    top: float  # the largest singular value

    @property
    def full_rank(self) -> int:
        return min(self.shape)

    @property
    def snr(self) -> float:
        return snr(self.signal_energy, self.bulk_energy)

    @property
    def rho(self) -> float:
        """The ρ whose LASER rank is the MP rank (see :func:`mp_rho`)."""
        return mp_rho(self.rank, self.shape)

    def row(self) -> dict:
        return {"layer": self.layer, "tau": self.tau, "in": self.shape[0], "out": self.shape[1], "sigma": self.sigma,
                "edge": self.edge, "mp_rank": self.rank, "full_rank": self.full_rank, "mp_rho": self.rho,
                "snr": self.snr, "top_over_edge": self.top / self.edge}


CSV_COLUMNS = ("layer", "tau", "in", "out", "sigma", "edge", "mp_rank", "full_rank", "mp_rho", "snr", "top_over_edge")


def snr(signal_energy: float, bulk_energy: float) -> float:
    return signal_energy / bulk_energy if bulk_energy > 0 else math.inf


def analyse(singular_values, shape) -> tuple[float, float, int, float, float]:
    """``(σ̂, edge, rank, signal energy, bulk energy)`` of a matrix of ``shape`` with these singular values
    (all of them)."""
    s = np.sort(np.asarray(singular_values, np.float64))[::-1]
    short, long = sorted(int(d) for d in shape)
    if len(s) != short:
        raise InterventionError(f"{len(s)} singular values for a {shape[0]}x{shape[1]} matrix (expected {short})")
    sigma = float(np.median(s)) / math.sqrt(long * mp_median(short / long))
    edge = sigma * (math.sqrt(long) + math.sqrt(short))
    above = s > edge
    return sigma, edge, int(above.sum()), float(np.square(s[above]).sum()), float(np.square(s[~above]).sum())


def mp_rho(rank: int, shape) -> float:
    """The smallest ρ with ``floor(ρ · min(m, n)) == rank`` (``rank / min(m, n)``, nudged up past float rounding)."""
    full = min(int(shape[-2]), int(shape[-1]))
    rho = rank / full
    while rank_for(rho, shape) < rank:
        rho = float(np.nextafter(rho, 2.0))
    return rho


def matrix_spectrum(model, layer: int, tau: str, svd_dtype: str = "float32",
                    cache: Optional[FactorCache] = FACTOR_CACHE) -> Spectrum:
    """The MP analysis of matrix τ in block ``layer``."""
    (tau,) = _single_matrix(model, Intervention(layer, tau, 1.0))
    factors = factors_for(model, layer, tau, svd_dtype=svd_dtype, cache=cache)
    shape = tuple(int(d) for d in model.params["blocks"][tau].shape[-2:])
    return Spectrum(layer, tau, shape, *analyse(np.asarray(factors.s), shape), float(np.max(np.asarray(factors.s))))


def spectra(model, layers: Iterable[int], taus: Iterable[str], svd_dtype: str = "float32",
            cache: Optional[FactorCache] = FACTOR_CACHE) -> list[Spectrum]:
    """:func:`matrix_spectrum` of every (layer, τ), in that nesting order."""
    layers, taus = list(layers), list(taus)
    for layer in layers:  # every matrix is checked before any SVD
        for tau in taus:
            _single_matrix(model, Intervention(layer, tau, 1.0))
    return [matrix_spectrum(model, layer, tau, svd_dtype, cache) for layer in layers for tau in taus]


def mp_intervention(model, layer: int, tau: str, keep: str = "top", svd_dtype: str = "float32",
                    cache: Optional[FactorCache] = FACTOR_CACHE) -> Intervention:
    """The LASER step that keeps the MP rank of one matrix (``keep="bottom"``: its bulk)."""
    return Intervention(layer, tau, matrix_spectrum(model, layer, tau, svd_dtype, cache).rho, keep)


def mp_interventions(model, layers: Iterable[int], taus: Iterable[str], keep: str = "top", svd_dtype: str = "float32",
                     cache: Optional[FactorCache] = FACTOR_CACHE) -> list[Intervention]:
    """The grid ``layers × taus`` at ``ρ = mp``: each matrix cut to its own MP rank."""
    return [Intervention(s.layer, s.tau, s.rho, keep) for s in spectra(model, layers, taus, svd_dtype, cache)]


@dataclasses.dataclass(frozen=True)
class MPEdit:
    """A step whose ρ is "the MP rank of the matrix", resolved against a model by :func:`resolve`."""

    layer: int
    tau: str
    keep: str = "top"


def resolve(model, step) -> Intervention:
    """An :class:`Intervention` as it is; an :class:`MPEdit` with its matrix's MP ρ."""
    if isinstance(step, MPEdit):
        return mp_intervention(model, step.layer, step.tau, step.keep)
    return step


def _single_matrix(model, step: Intervention) -> tuple[str, ...]:
    if step.tau in TAU_GROUPS:
        raise InterventionError(f"rho=mp needs one matrix type, not the group {step.tau!r} "
                                "(its matrices have different MP ranks): list them, e.g. fc_in,fc_out")
    return check_intervention(model, step)


def layer_snr(rows: Iterable[Spectrum]) -> dict[int, float]:
    """Per layer, the SNR of its listed matrices pooled: their energy above the edges over their bulk energy."""
    signal: dict[int, float] = {}
    bulk: dict[int, float] = {}
    for s in rows:
        signal[s.layer] = signal.get(s.layer, 0.0) + s.signal_energy
        bulk[s.layer] = bulk.get(s.layer, 0.0) + s.bulk_energy
    return {layer: snr(signal[layer], bulk[layer]) for layer in signal}


def format_table(rows: Iterable[Spectrum]) -> str:
    """A fixed-width table, one line per matrix, in the order given."""
    lines = [f"{'layer':>5} {'tau':<8} {'shape':>11} {'sigma':>9} {'edge':>8} {'mp_rank':>7} {'mp_rho':>7} {'snr':>8}"]
    for s in rows:
        lines.append(f"{s.layer:>5} {s.tau:<8} {s.shape[0]:>5}x{s.shape[1]:<5} {s.sigma:>9.5f} {s.edge:>8.4f} "
                     f"{s.rank:>7} {s.rho:>7.4f} {s.snr:>8.4f}")
    return "\n".join(lines)


__all__ = ["MP", "mp_median", "Spectrum", "CSV_COLUMNS", "analyse", "mp_rho", "matrix_spectrum", "spectra",
           "mp_intervention", "mp_interventions", "MPEdit", "resolve", "layer_snr", "format_table"]
