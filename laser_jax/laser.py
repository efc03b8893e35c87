"""LASER math: interventions ``(layer, τ, ρ)``, rank truncation by SVD, and :func:`apply`.

One LASER step replaces the ``(in, out)`` matrix ``W`` of type τ in block
``layer`` by its best rank-``k`` approximation, ``k = floor(ρ · min(in, out))``
(the official code's ``int(max_rank * rate)``). ρ = 0 gives the zero matrix,
ρ = 1 the original matrix, bit for bit.

The truncation is an exact SVD (float32, or float64 on request) computed once
per ``(model, layer, τ)`` and kept in a :class:`FactorCache`; a rank is then a
mask on the singular values, ``s * (arange(r) < k)``, so ``k`` may be a traced
value and a new ρ never recompiles (:func:`rank_mask`, :func:`truncate`). A
``randomized`` method reproduces the official ``torch.svd_lowrank(W, q=k,
niter=2)`` (Halko et al.) with an explicit JAX key, for parity with published
numbers only.

τ names are those of the paper (:data:`laser_jax.models.base.TAUS`) plus the
groups ``attn``, ``mlp`` and ``all``; a group is one joint step that truncates
every matrix of the group that the family has, at the same ρ.

**The removed part.** ``Intervention(..., keep="bottom")`` keeps instead the
components LASER drops, ``W − W_k`` (singular indices ``k <= i < r``); both
are a window ``[lo, hi)`` of the singular values (:func:`keep_window`,
:func:`window_mask`), so the sweep runs either with the same masked factors.
The complement of ρ = 1 is empty and refused.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import weakref
from typing import Callable, Iterable, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from laser_jax.errors import InterventionError
from laser_jax.models import base
from laser_jax.models.base import LowRank

TAU_GROUPS: dict[str, tuple[str, ...]] = {"attn": base.ATTENTION_TAUS, "mlp": base.MLP_TAUS, "all": base.TAUS}
TAU_NAMES: tuple[str, ...] = base.TAUS + tuple(TAU_GROUPS)
METHODS = ("exact", "randomized")
SVD_DTYPES = ("float32", "float64")
KEEPS = ("top", "bottom")
RANDOMIZED_POWER_ITERATIONS = 2


@dataclasses.dataclass(frozen=True)
class Intervention:
    """One LASER step: keep the fraction ``rho`` of the rank of matrix ``tau`` in block ``layer``.

    ``layer`` counts from 0; ``tau`` is a τ name or a group (``attn``, ``mlp``,
    ``all``). The layer range and whether the family has τ are checked by
    :func:`apply` and the sweep, which know the model. ``keep="bottom"`` keeps
    the removed part instead, ``W − W_k`` (the complement of the same ρ).
    """

    layer: int
    tau: str
    rho: float
    keep: str = "top"

    def __post_init__(self):
        if isinstance(self.layer, bool) or not isinstance(self.layer, (int, np.integer)):
            raise InterventionError(f"layer must be an integer, got {self.layer!r}")
        object.__setattr__(self, "layer", int(self.layer))
        if self.tau not in TAU_NAMES:
            raise InterventionError(f"unknown matrix type tau={self.tau!r}; known: {', '.join(TAU_NAMES)}")
        try:
            rho = float(self.rho)
        except (TypeError, ValueError):
            raise InterventionError(f"rho must be a number in [0, 1], got {self.rho!r}") from None
        if not 0.0 <= rho <= 1.0:  # also refuses nan
            raise InterventionError(f"rho={self.rho!r} is outside [0, 1] (rho is the fraction of the rank kept)")
        object.__setattr__(self, "rho", rho)
        if self.keep not in KEEPS:
            raise InterventionError(f"keep must be one of {', '.join(KEEPS)}, got {self.keep!r}")
        if self.keep == "bottom" and rho == 1.0:
            raise InterventionError(f"the removed part of rho=1 is empty (layer {self.layer} {self.tau}): "
                                    "keep='bottom' needs rho < 1")

    @property
    def key(self) -> str:
        """A stable string id, e.g. ``"8/fc_in/0.01"`` (``"8/fc_in/0.01/bottom"`` for the removed part);
        :meth:`from_key` inverts it."""
        key = f"{self.layer}/{self.tau}/{self.rho!r}"
        return key if self.keep == "top" else f"{key}/{self.keep}"

    @classmethod
    def from_key(cls, key: str) -> "Intervention":
        try:
            layer, tau, rho, *keep = key.split("/")
            if len(keep) > 1:
                raise ValueError
            return cls(int(layer), tau, float(rho), *keep)
        except ValueError:
            raise InterventionError(f"not an intervention key (layer/tau/rho[/bottom]): {key!r}") from None

    def complement(self) -> "Intervention":
        """The same (layer, τ, ρ) keeping the other side: the removed part of a LASER step, and back."""
        return dataclasses.replace(self, keep="bottom" if self.keep == "top" else "top")

    @property
    def reduction_percent(self) -> float:
        """The paper's x axis: 100 · (1 − ρ)."""
        return 100.0 * (1.0 - self.rho)


def matrices_of(family: base.Family, tau: str) -> tuple[str, ...]:
    """The concrete τs a τ name or group stands for in ``family``.

    A group keeps the members the family has (``mlp`` on GPT-2 is ``fc_in,
    fc_out``); a concrete τ the family lacks (``fc_up`` on GPT-2) is an error.
    """
    if tau in TAU_GROUPS:
        return tuple(t for t in TAU_GROUPS[tau] if t in family.taus)
    base.check_tau(family, tau)
    return (tau,)


def check_intervention(model, step: Intervention) -> tuple[str, ...]:
    """Validate ``step`` against ``model``; return the concrete τs it changes."""
    base.check_layer(model.params, step.layer)
    return matrices_of(model.family, step.tau)


def rank_for(rho: float, shape) -> int:
    """``k = floor(ρ · min(m, n))`` for a matrix (or stack) whose last two axes are ``(m, n)``."""
    return int(min(int(shape[-2]), int(shape[-1])) * float(rho))


def keep_window(step: Intervention, shape) -> tuple[int, int]:
    """The singular indices ``[lo, hi)`` that ``step`` keeps of a matrix of ``shape``: ``(0, k)`` for the
    top ``k`` (LASER), ``(k, r)`` for the removed part."""
    k, full = rank_for(step.rho, shape), min(int(shape[-2]), int(shape[-1]))
    return (0, k) if step.keep == "top" else (k, full)


def rank_mask(s: jax.Array, k) -> jax.Array:
    """Singular values ``s`` [..., r] with all but the first ``k`` zeroed; ``k`` may be traced."""
    keep = jnp.arange(s.shape[-1]) < jnp.asarray(k)[..., None]
    return s * keep.astype(s.dtype)


def window_mask(s: jax.Array, window) -> jax.Array:
    """Singular values ``s`` [..., r] with all but indices ``lo <= i < hi`` zeroed; ``window`` [..., 2] may be traced."""
    window = jnp.asarray(window)
    index = jnp.arange(s.shape[-1])
    keep = (index >= window[..., :1]) & (index < window[..., 1:])
    return s * keep.astype(s.dtype)


def truncate_factors(factors: LowRank, k) -> LowRank:
    """The rank-``k`` truncation of an SVD as a full-width :class:`LowRank` with masked ``s``."""
    return LowRank(factors.u, rank_mask(factors.s, k), factors.vt)


def window_factors(factors: LowRank, window) -> LowRank:
    """The components ``lo <= i < hi`` of an SVD as a full-width :class:`LowRank` with masked ``s``."""
    return LowRank(factors.u, window_mask(factors.s, window), factors.vt)


def _finite(factors: LowRank) -> jax.Array:
    return jnp.isfinite(factors.u).all() & jnp.isfinite(factors.s).all() & jnp.isfinite(factors.vt).all()


def thin_svd(matrix: jax.Array) -> LowRank:
    """Thin float32 SVD (jittable). A wide matrix is factored as its transpose: LAPACK's
    divide and conquer is several times faster on the tall orientation on CPU."""
    matrix = matrix.astype(jnp.float32)
    if matrix.shape[-2] >= matrix.shape[-1]:
        return LowRank(*jnp.linalg.svd(matrix, full_matrices=False))
    u, s, vt = jnp.linalg.svd(jnp.swapaxes(matrix, -1, -2), full_matrices=False)
    return LowRank(jnp.swapaxes(vt, -1, -2), s, jnp.swapaxes(u, -1, -2))


@jax.jit
def _exact_svd_f32(matrix):
    factors = thin_svd(matrix)
    return factors, _finite(factors)


@jax.jit
def reconstruct(factors: LowRank, k) -> jax.Array:
    """The dense rank-``k`` approximation ``(u * masked s) @ vt`` (jitted, ``k`` traced)."""
    return (factors.u * rank_mask(factors.s, k)[..., None, :]) @ factors.vt


@jax.jit
def reconstruct_window(factors: LowRank, window) -> jax.Array:
    """The dense sum of the components ``lo <= i < hi`` (jitted, ``window`` traced)."""
    return (factors.u * window_mask(factors.s, window)[..., None, :]) @ factors.vt


@jax.jit
def _replace_with_window(stack, layer, factors: LowRank, window):
    """``stack`` with ``stack[layer]`` replaced by its components in ``window`` (layer and window traced)."""
    return jax.lax.dynamic_update_index_in_dim(stack, reconstruct_window(factors, window).astype(stack.dtype), layer, 0)


def truncate(matrix: jax.Array, k) -> jax.Array:
    """Best rank-``k`` approximation of ``matrix`` by exact float32 SVD (jittable; ``k`` may be traced)."""
    return reconstruct(thin_svd(matrix), k).astype(matrix.dtype)


def exact_svd(matrix, svd_dtype: str = "float32", where: str = "matrix") -> LowRank:
    """Thin SVD ``(u [m, r], s [r], vt [r, n])`` in float32 factors.

    ``svd_dtype="float32"``: LAPACK's divide and conquer in float32 (on the
    device). ``"float64"``: :func:`svd_float64` on the host (JAX's x64 mode is
    usually off), factors rounded to float32; more accurate, and faster on CPU.
    Non-finite output raises a one-line :class:`InterventionError` naming ``where``.
    """
    if svd_dtype not in SVD_DTYPES:
        raise InterventionError(f"svd_dtype must be one of {', '.join(SVD_DTYPES)}, got {svd_dtype!r}")
    if isinstance(matrix, LowRank):
        matrix = matrix.dense()
    if svd_dtype == "float64":
        u, s, vt = svd_float64(np.asarray(matrix, np.float64))
        finite = all(np.isfinite(a).all() for a in (u, s, vt))
        factors = LowRank(*(jnp.asarray(a, jnp.float32) for a in (u, s, vt)))
    else:
        factors, finite = _exact_svd_f32(jnp.asarray(matrix))
    return check_finite(factors, finite, where)


GRAM_CONDITION_LIMIT = 1e6


def svd_float64(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thin float64 SVD on the host, through the eigendecomposition of the smaller Gram matrix.

    With ``A`` the matrix oriented short side first, ``A Aᵀ = U diag(s²) Uᵀ``
    and ``Vᵀ = Uᵀ A / s``. In float64 the singular values' error is about
    ``n·ε₆₄·s₁²/sᵢ``, far below float32 SVD's ``ε₃₂·s₁`` while ``s₁/sᵢ`` is
    under 1e6, and it is about three times faster than LAPACK's float32
    divide and conquer on CPU. Worse-conditioned (e.g. already truncated)
    matrices use LAPACK's float64 SVD, so the factors stay orthonormal.
    """
    wide = matrix.shape[0] < matrix.shape[1]
    short_first = matrix if wide else matrix.T
    eigenvalues, u = np.linalg.eigh(short_first @ short_first.T)
    s = np.sqrt(np.maximum(eigenvalues[::-1], 0.0))
    if s[-1] * GRAM_CONDITION_LIMIT < s[0] or not s[0] > 0:
        u, s, vt = np.linalg.svd(short_first, full_matrices=False)
    else:
        u = u[:, ::-1]
        vt = (u.T @ short_first) / s[:, None]
    return (u, s, vt) if wide else (vt.T, s, u.T)


@functools.partial(jax.jit, static_argnames=("k", "power_iterations"))
def _halko(matrix, key, k: int, power_iterations: int):
    tall = matrix.shape[0] >= matrix.shape[1]
    a = matrix.astype(jnp.float32) if tall else matrix.astype(jnp.float32).T
    q = jnp.linalg.qr(a @ jax.random.normal(key, (a.shape[1], k), jnp.float32))[0]
    for _ in range(power_iterations):
        q = jnp.linalg.qr(a.T @ q)[0]
        q = jnp.linalg.qr(a @ q)[0]
    ub, s, vt = jnp.linalg.svd(q.T @ a, full_matrices=False)
    u = q @ ub
    factors = LowRank(u, s, vt) if tall else LowRank(vt.T, s, u.T)
    return factors, _finite(factors)


def randomized_svd(matrix, k: int, key: jax.Array, where: str = "matrix",
                   power_iterations: int = RANDOMIZED_POWER_ITERATIONS) -> LowRank:
    """Rank-``k`` factors by Halko's randomized range finder, as ``torch.svd_lowrank(W, q=k, niter=2)``.

    Like torch, a wide matrix is transposed first; the Gaussian test matrix
    comes from ``key`` (the official code uses torch's global RNG, unseeded).
    """
    if isinstance(matrix, LowRank):
        matrix = matrix.dense()
    m, n = matrix.shape
    if k == 0:
        return LowRank(jnp.zeros((m, 0), jnp.float32), jnp.zeros((0,), jnp.float32), jnp.zeros((0, n), jnp.float32))
    return check_finite(*_halko(jnp.asarray(matrix), key, int(k), power_iterations), where)


def check_finite(factors: LowRank, finite, where: str) -> LowRank:
    """``factors``, or a one-line :class:`InterventionError` when the SVD produced NaN or inf."""
    if not bool(finite):
        raise InterventionError(f"SVD of {where} returned non-finite values (are the weights finite?)")
    return factors


def matrix_key(key: jax.Array, layer: int, tau: str) -> jax.Array:
    """The key of one matrix's randomized SVD, derived from the user's key."""
    return jax.random.fold_in(jax.random.fold_in(key, layer), base.TAUS.index(tau))


class FactorCache:
    """LRU cache of SVD factors keyed by model identity and parameter path, with a byte budget.

    Entries of a model are dropped when the model is garbage collected. A
    model is keyed by identity: :func:`apply` returns a new model, so factors
    are never shared between a model and its edited copy.
    """

    def __init__(self, max_bytes: int = 4 << 30):
        self.max_bytes = max_bytes
        self._entries: collections.OrderedDict = collections.OrderedDict()
        self._sizes: dict = {}
        self._watched: set[int] = set()

    def get(self, model, path: tuple, compute: Callable[[], LowRank]) -> LowRank:
        key = (id(model), path)
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        value = compute()
        if id(model) not in self._watched:
            self._watched.add(id(model))
            weakref.finalize(model, self.forget, id(model))
        self._entries[key] = value
        self._sizes[key] = sum(leaf.nbytes for leaf in jax.tree.leaves(value))
        while len(self._entries) > 1 and self.nbytes > self.max_bytes:
            oldest, _ = self._entries.popitem(last=False)
            del self._sizes[oldest]
        return value

    @property
    def nbytes(self) -> int:
        return sum(self._sizes.values())

    def __len__(self) -> int:
        return len(self._entries)

    def forget(self, model_id: int) -> None:
        for key in [key for key in self._entries if key[0] == model_id]:
            del self._entries[key], self._sizes[key]
        self._watched.discard(model_id)

    def clear(self) -> None:
        self._entries.clear()
        self._sizes.clear()


FACTOR_CACHE = FactorCache()


def factors_for(model, layer: int, tau: str, *, method: str = "exact", k: Optional[int] = None,
                key: Optional[jax.Array] = None, svd_dtype: str = "float32",
                cache: Optional[FactorCache] = FACTOR_CACHE) -> LowRank:
    """SVD factors of matrix τ in block ``layer`` of ``model``, cached.

    ``exact``: the full thin SVD (truncate it with :func:`truncate_factors`).
    ``randomized``: rank-``k`` Halko factors from ``matrix_key(key, layer, tau)``.
    """
    where = f"layer {layer} {tau}"
    if method == "exact":
        path = (layer, tau, "exact", svd_dtype)
        compute = lambda: exact_svd(model.matrix(layer, tau), svd_dtype, where)  # noqa: E731
    elif method == "randomized":
        if key is None:
            raise InterventionError("method='randomized' needs an explicit key (jax.random.key(seed))")
        path = (layer, tau, "randomized", int(k), tuple(np.asarray(jax.random.key_data(key)).ravel().tolist()))
        compute = lambda: randomized_svd(model.matrix(layer, tau), int(k), matrix_key(key, layer, tau), where)  # noqa: E731
    else:
        raise InterventionError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    return compute() if cache is None else cache.get(model, path, compute)


def planned_windows(model, steps: Iterable[Intervention]) -> dict[str, dict[int, tuple[int, int]]]:
    """``{tau: {layer: (lo, hi)}}``, the kept singular indices per matrix, validated.

    Truncating a rank-k1 truncation to k2 is the rank-min(k1, k2) truncation of
    the original, so LASER steps on the same matrix compose by taking the
    minimum. The removed part of a matrix is not a truncation of the original
    one, so a ``keep="bottom"`` step must be the only step on its matrix.
    """
    windows: dict[str, dict[int, tuple[int, int]]] = {}
    for step in steps:
        for tau in check_intervention(model, step):
            window = keep_window(step, model.params["blocks"][tau].shape)
            layers = windows.setdefault(tau, {})
            if step.layer in layers:
                if step.keep == "bottom" or layers[step.layer][0] > 0:
                    raise InterventionError(f"layer {step.layer} {tau}: a keep='bottom' step (the removed part) "
                                            "cannot be combined with another step on the same matrix")
                window = (0, min(window[1], layers[step.layer][1]))
            layers[step.layer] = window
    return windows


def planned_ranks(model, steps: Iterable[Intervention]) -> dict[str, dict[int, int]]:
    """``{tau: {layer: k}}`` for a set of LASER (top-k) steps, validated; repeated matrices keep the smallest k."""
    ranks: dict[str, dict[int, int]] = {}
    for tau, layer_windows in planned_windows(model, steps).items():
        for layer, (lo, hi) in layer_windows.items():
            if lo > 0:
                raise InterventionError(f"layer {layer} {tau}: the removed part (keep='bottom') is not a rank-k truncation")
            ranks.setdefault(tau, {})[layer] = hi
    return ranks


def apply(model, interventions: Union[Intervention, Iterable[Intervention]], *, factored: bool = False,
          method: str = "exact", key: Optional[jax.Array] = None, svd_dtype: str = "float32",
          cache: Optional[FactorCache] = FACTOR_CACHE):
    """A new :class:`~laser_jax.model.Model` with the LASER steps applied; ``model`` is untouched.

    Steps compose; every step is validated before any work (one-line
    :class:`InterventionError`). A step with k = full rank keeps the original
    matrix exactly.

    ``factored=True`` stores τ's whole ``[n_layers, in, out]`` stack as a
    :class:`LowRank` stack (``u [L, in, r]``, ``s [L, r]``, ``vt [L, r, out]``,
    static ``r`` = the largest k, smaller ranks zero-padded) when every layer of
    τ is truncated or the stack already is factored; otherwise that τ stays
    dense, because a stack is one array.
    """
    steps = [interventions] if isinstance(interventions, Intervention) else list(interventions)
    windows = planned_windows(model, steps)
    if method == "randomized" and any(lo > 0 for layers in windows.values() for lo, _ in layers.values()):
        raise InterventionError("keep='bottom' (the removed part) needs method='exact': randomized factors hold the top k only")
    params = model.params
    for tau, layer_windows in windows.items():
        stack = params["blocks"][tau]
        if factored and (isinstance(stack, LowRank) or len(layer_windows) == model.n_layers):
            per_layer = [kept_factors(model, layer, tau, layer_windows[layer], method, key, svd_dtype, cache)
                         if layer in layer_windows else base.get_matrix(model.family, params, layer, tau)
                         for layer in range(model.n_layers)]
            params = base.set_matrix_stack(params, tau, stack_factors(per_layer, stack.dtype))
            continue
        dense = stack.dense() if isinstance(stack, LowRank) else stack
        full_rank = min(dense.shape[-2:])
        for layer, (lo, hi) in sorted(layer_windows.items()):
            if (lo, hi) != (0, full_rank) or isinstance(stack, LowRank):
                factors = factors_for(model, layer, tau, method=method, k=hi, key=key, svd_dtype=svd_dtype, cache=cache)
                dense = _replace_with_window(dense, layer, factors, jnp.array([lo, hi]))
        params = base.set_matrix_stack(params, tau, dense)
    return model.replace(params=params)


def truncated_factors(model, layer: int, tau: str, k: int, method: str = "exact", key: Optional[jax.Array] = None,
                      svd_dtype: str = "float32", cache: Optional[FactorCache] = FACTOR_CACHE) -> LowRank:
    """The rank-``k`` truncation of one matrix as factors of static width ``k``."""
    return kept_factors(model, layer, tau, (0, k), method, key, svd_dtype, cache)


def kept_factors(model, layer: int, tau: str, window: tuple[int, int], method: str = "exact",
                 key: Optional[jax.Array] = None, svd_dtype: str = "float32",
                 cache: Optional[FactorCache] = FACTOR_CACHE) -> LowRank:
    """The components ``lo <= i < hi`` of one matrix's SVD as factors of static width ``hi − lo``."""
    lo, hi = window
    if method == "randomized":
        return factors_for(model, layer, tau, method=method, k=hi, key=key, cache=cache)
    factors = factors_for(model, layer, tau, svd_dtype=svd_dtype, cache=cache)
    return LowRank(factors.u[:, lo:hi], factors.s[lo:hi], factors.vt[lo:hi])


def stack_factors(per_layer: list, dtype) -> LowRank:
    """Stack per-layer factors (or dense matrices, factored exactly) into one LowRank, zero-padding ranks."""
    factors = [m if isinstance(m, LowRank) else exact_svd(m) for m in per_layer]
    width = max(f.s.shape[-1] for f in factors)
    padded = [pad_rank(f, width) for f in factors]
    return LowRank(*(jnp.stack([getattr(f, name) for f in padded]).astype(dtype) for name in ("u", "s", "vt")))


def pad_rank(factors: LowRank, width: int, rows: Optional[int] = None, cols: Optional[int] = None) -> LowRank:
    """The same matrix with its factors zero-padded to rank ``width`` (and, when given, to a larger matrix of
    ``rows`` × ``cols``, the original in its top-left corner)."""
    (m, k), n = factors.u.shape, factors.vt.shape[-1]
    down, right, extra = (rows or m) - m, (cols or n) - n, width - k
    return LowRank(jnp.pad(factors.u, ((0, down), (0, extra))), jnp.pad(factors.s, (0, extra)),
                   jnp.pad(factors.vt, ((0, extra), (0, right))))


def expand_grid(layers: Iterable[int], taus: Iterable[str], rhos: Iterable[float]) -> list[Intervention]:
    """The grid layers × τs × ρs as interventions, in that nesting order."""
    return [Intervention(int(layer), tau, float(rho)) for layer in layers for tau in taus for rho in rhos]


__all__ = [
    "TAU_GROUPS", "TAU_NAMES", "METHODS", "SVD_DTYPES", "KEEPS", "Intervention", "matrices_of", "check_intervention",
    "rank_for", "keep_window", "rank_mask", "window_mask", "truncate_factors", "window_factors", "thin_svd",
    "reconstruct", "reconstruct_window", "truncate", "exact_svd", "svd_float64", "randomized_svd", "check_finite",
    "matrix_key", "FactorCache", "FACTOR_CACHE", "factors_for", "truncated_factors", "kept_factors",
    "planned_windows", "planned_ranks", "apply", "stack_factors", "pad_rank", "expand_grid",
]
