"""Save and restore a (reduced) model with Orbax, dense or factored, bit-exactly.

A checkpoint is a directory::

    DIR/laser_jax.json   manifest: family, HF config, edits, storage form, leaf shapes
    DIR/params/          Orbax (StandardCheckpointer) tree of parameter arrays
    DIR/tokenizer/       the tokenizer's save_pretrained files, when the model has one

``storage="dense"`` stores every parameter as it is. ``storage="factored"``
stores each truncated matrix only as its factors ``u (in, k), s (k,), vt (k, out)``
under ``factors/<tau>/<layer>`` and drops that layer from the dense stack of τ;
restoring puts ``LowRank(u, s, vt)`` back through :func:`base.set_matrix`, the
same densification that built the reduced model, so the restored parameters
equal the saved model's bit for bit.

The directory is written under a temporary sibling and renamed into place, so a
killed save never leaves a half-written checkpoint at ``DIR``. Anything that
cannot be read back (no manifest, a partial or corrupt Orbax tree, arrays of
the wrong shape) is a one-line :class:`~laser_jax.errors.SourceError`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Iterable, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from laser_jax.errors import ConfigError, InterventionError, LaserJaxError, SourceError
from laser_jax.model import Model
from laser_jax.models import base, get_family
from laser_jax.models.convert import get_path, leaf_paths, set_path
from laser_jax.ground import write_text_atomic

MANIFEST = "laser_jax.json"
FORMAT = "laser-jax-checkpoint"
FORMAT_VERSION = 1
STORAGE_FORMS = ("dense", "factored")


# ----------------------------------------------------------------------------- directories


@contextlib.contextmanager
def staged_directory(target, *, marker: str):
    """Yield a fresh temporary sibling of ``target``; on success, rename it to ``target``.

    An existing ``target`` is replaced only when it is empty or holds ``marker``
    (i.e. it is an earlier output of the same kind); anything else is refused,
    so a typo cannot delete a user's directory. On failure the staging directory
    is removed and ``target`` is untouched.
    """
    target = Path(target).expanduser().resolve()
    if target.exists():
        if not target.is_dir():
            raise SourceError(f"output {target} exists and is not a directory")
        if any(target.iterdir()) and not (target / marker).exists():
            raise SourceError(f"output directory {target} is not empty and holds no {marker}; refusing to overwrite it")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if target.exists():
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, target)


# ----------------------------------------------------------------------------- trees


def _flatten(tree: dict) -> dict[str, object]:
    """``{"blocks/fc_in": array, ...}``: leaves by the path names of :mod:`laser_jax.models.convert`."""
    return {path: get_path(tree, path) for path in leaf_paths(tree)}


def _unflatten(flat: Mapping[str, object]) -> dict:
    tree: dict = {}
    for path, value in flat.items():
        set_path(tree, path, value)
    return tree


def dense_params(params: dict) -> dict:
    """``params`` with every :class:`LowRank` stack multiplied out."""
    blocks = {tau: stack.dense() if isinstance(stack, base.LowRank) else stack for tau, stack in params["blocks"].items()}
    return {**params, "blocks": blocks}


def _edit_record(edit) -> dict:
    if isinstance(edit, Mapping):
        record = dict(edit)
    else:
        record = {"layer": edit.layer, "tau": edit.tau, "rho": edit.rho, "keep": edit.keep}
    return {"layer": int(record["layer"]), "tau": str(record["tau"]), "rho": float(record["rho"]),
            **({"k": int(record["k"])} if record.get("k") is not None else {}),
            **({"keep": str(record["keep"])} if record.get("keep", "top") != "top" else {})}


# ----------------------------------------------------------------------------- factors


def edit_factors(model: Model, interventions: Iterable) -> dict[tuple[int, str], base.LowRank]:
    """``{(layer, tau): LowRank}``: the rank-k factors (``laser.truncated_factors``) of every matrix
    that ``laser.apply(model, interventions)`` truncates.

    Matrices kept at full rank (unchanged) or cut to rank 0 (zero; Orbax
    stores no empty arrays) are left out: they stay dense.
    """
    from laser_jax import laser

    out = {}
    for tau, layer_ranks in laser.planned_ranks(model, list(interventions)).items():
        full_rank = min(model.params["blocks"][tau].shape[-2:])
        for layer, k in sorted(layer_ranks.items()):
            if 0 < k < full_rank:
                out[(layer, tau)] = laser.truncated_factors(model, layer, tau, k)
    return out


def with_factors(model: Model, factors: Mapping[tuple[int, str], base.LowRank]) -> Model:
    """``model`` with each ``(layer, tau)`` matrix replaced by its factors multiplied out.

    This is the model a factored checkpoint stores, bit for bit (restore
    multiplies the factors out the same way). It equals ``laser.apply`` with
    the same edits up to float rounding: apply reconstructs from full-width
    factors with masked singular values, a different summation.
    """
    params = dense_params(model.params)
    blocks = dict(params["blocks"])
    for tau in dict.fromkeys(t for _, t in factors):
        base.check_tau(model.family, tau)
        stack = np.array(blocks[tau])
        for (layer, t), low in factors.items():
            if t == tau:
                base.check_layer(params, layer)
                stack[layer] = _densify(low, stack.dtype)
        blocks[tau] = jnp.asarray(stack)
    return model.replace(params={**params, "blocks": blocks})


# ----------------------------------------------------------------------------- save


def save(
    directory,
    model: Model,
    *,
    edits: Iterable = (),
    factors: Optional[Mapping[tuple[int, str], base.LowRank]] = None,
) -> Path:
    """Write ``model`` to ``directory`` (Orbax); return the resolved path.

    ``edits`` (``Intervention``\\ s or ``{"layer", "tau", "rho"[, "k"]}`` dicts)
    are recorded in the manifest. With ``factors`` — ``{(layer, tau): LowRank}``
    holding unbatched ``u, s, vt`` — the checkpoint is factored: those matrices
    are stored only as factors. Each must reproduce the model's matrix exactly,
    i.e. save ``with_factors(model, factors)`` (e.g. with
    ``factors = edit_factors(model, steps)``).
    """
    import orbax.checkpoint as ocp

    family, cfg = model.family, model.config
    if family.to_hf_config is None:
        raise ConfigError(f"family {family.name!r} has no to_hf_config; it cannot be checkpointed")
    params = dense_params(model.params)
    tree: dict = {"embed": params["embed"], "final": params["final"], "blocks": dict(params["blocks"])}
    factored = []
    if factors:
        by_tau: dict[str, list[int]] = {}
        for (layer, tau), low in sorted(factors.items(), key=lambda item: (item[0][1], item[0][0])):
            if not np.array_equal(np.asarray(base.get_matrix(family, params, layer, tau)), _densify(low, params["blocks"][tau].dtype)):
                raise InterventionError(f"factors of layer {layer} {tau} do not reproduce the model's matrix; save with_factors(model, factors)")
            tree.setdefault("factors", {}).setdefault(tau, {})[str(layer)] = {"u": low.u, "s": low.s, "vt": low.vt}
            by_tau.setdefault(tau, []).append(layer)
            factored.append({"layer": int(layer), "tau": tau, "k": int(low.s.shape[-1]), "dtype": str(params["blocks"][tau].dtype)})
        for tau, layers in by_tau.items():
            kept = np.delete(np.asarray(params["blocks"][tau]), layers, axis=0)
            if kept.shape[0]:
                tree["blocks"][tau] = kept
            else:
                del tree["blocks"][tau]
    flat = _flatten(tree)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "family": family.name,
        "hf_config": family.to_hf_config(cfg),
        "storage": "factored" if factored else "dense",
        "edits": [_edit_record(edit) for edit in edits],
        "factored": factored,
        "leaves": {path: {"shape": list(leaf.shape), "dtype": str(leaf.dtype)} for path, leaf in sorted(flat.items())},
        "tokenizer": model.tokenizer is not None,
        "source": model.source,
    }
    with staged_directory(directory, marker=MANIFEST) as staging:
        with _quiet_absl(), ocp.StandardCheckpointer() as checkpointer:
            checkpointer.save(staging / "params", tree)
            checkpointer.wait_until_finished()
        if model.tokenizer is not None:
            model.tokenizer.save_pretrained(str(staging / "tokenizer"))
        write_text_atomic(staging / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")  # last: its presence marks a complete checkpoint
    return Path(directory).expanduser().resolve()


@contextlib.contextmanager
def _quiet_absl():
    """Silence Orbax's absl INFO/WARNING chatter for the duration of one operation."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


# ----------------------------------------------------------------------------- restore


def read_manifest(directory) -> dict:
    """The parsed, checked ``laser_jax.json`` of a checkpoint directory."""
    path = Path(directory).expanduser()
    file = path / MANIFEST
    if not file.exists():
        raise SourceError(f"{path} is not a laser-jax checkpoint (no {MANIFEST})")
    try:
        manifest = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SourceError(f"corrupt checkpoint {path}: {MANIFEST} is unreadable ({type(error).__name__})") from error
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise SourceError(f"corrupt checkpoint {path}: {MANIFEST} is not a laser-jax manifest")
    missing = [key for key in ("format_version", "family", "hf_config", "storage", "edits", "factored", "leaves") if key not in manifest]
    if missing:
        raise SourceError(f"corrupt checkpoint {path}: {MANIFEST} lacks {', '.join(missing)}")
    if manifest["format_version"] > FORMAT_VERSION:
        raise SourceError(f"checkpoint {path} has format version {manifest['format_version']}; this laser-jax reads up to {FORMAT_VERSION}")
    if manifest["storage"] not in STORAGE_FORMS:
        raise SourceError(f"corrupt checkpoint {path}: unknown storage form {manifest['storage']!r}")
    return manifest


def _read_tree(path: Path, manifest: dict) -> dict:
    """The Orbax tree, checked leaf by leaf against the manifest."""
    import orbax.checkpoint as ocp

    params_dir = path / "params"
    if not (params_dir / "_CHECKPOINT_METADATA").exists():
        raise SourceError(f"partial checkpoint {path}: params/ is missing or was not finalised")
    try:
        with _quiet_absl(), ocp.StandardCheckpointer() as checkpointer:
            tree = checkpointer.restore(params_dir)
    except Exception as error:  # Orbax and TensorStore raise many types; the user needs one line
        first = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        raise SourceError(f"corrupt checkpoint {path}: Orbax could not restore params/ ({type(error).__name__}: {first})") from error
    flat = _flatten(tree)
    expected = manifest["leaves"]
    if set(flat) != set(expected):
        diff = sorted(set(flat) ^ set(expected))
        raise SourceError(f"corrupt checkpoint {path}: params/ and {MANIFEST} disagree on leaf {diff[0]!r}")
    for name, leaf in flat.items():
        want = expected[name]
        if list(leaf.shape) != want["shape"] or str(leaf.dtype) != want["dtype"]:
            raise SourceError(f"corrupt checkpoint {path}: {name} is {leaf.dtype}{list(leaf.shape)}, expected {want['dtype']}{want['shape']}")
    return {name: jnp.asarray(leaf) for name, leaf in flat.items()}


def read_factors(directory) -> dict[tuple[int, str], base.LowRank]:
    """The stored factors of a factored checkpoint, ``{(layer, tau): LowRank}`` (empty when dense)."""
    path = Path(directory).expanduser()
    manifest = read_manifest(path)
    flat = _read_tree(path, manifest)
    return _factors(flat, manifest)


def _factors(flat: dict, manifest: dict) -> dict[tuple[int, str], base.LowRank]:
    out = {}
    for record in manifest["factored"]:
        prefix = f"factors/{record['tau']}/{record['layer']}/"
        out[(record["layer"], record["tau"])] = base.LowRank(flat[prefix + "u"], flat[prefix + "s"], flat[prefix + "vt"])
    return out


def _densify(low: base.LowRank, dtype) -> np.ndarray:
    """A factored matrix multiplied out exactly as :func:`base.set_matrix` (hence ``laser.apply``) does."""
    return np.asarray(low.dense().astype(dtype))


def restore(directory, *, tokenizer: bool = True) -> Model:
    """Load a checkpoint written by :func:`save`, dense or factored, exactly as saved."""
    path = Path(directory).expanduser()
    manifest = read_manifest(path)
    try:
        family = get_family(manifest["family"])
        cfg = family.from_hf_config(manifest["hf_config"])
        flat = _read_tree(path, manifest)
        params = _assemble(flat, manifest, cfg.n_layers)
    except (KeyError, TypeError, ValueError, IndexError, LaserJaxError) as error:
        if isinstance(error, SourceError):
            raise
        message = str(error).splitlines()[0] if str(error) else ""
        raise SourceError(f"corrupt checkpoint {path}: {type(error).__name__}: {message}") from error
    tok = None
    if tokenizer and manifest.get("tokenizer") and (path / "tokenizer").is_dir():
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(path / "tokenizer"))
    return Model(family=family, config=cfg, params=params, tokenizer=tok, source=str(path))


def _assemble(flat: dict, manifest: dict, n_layers: int) -> dict:
    """The parameter pytree: stored leaves, with each factored τ's full stack rebuilt once."""
    factors = _factors(flat, manifest)
    tree = _unflatten({name: leaf for name, leaf in flat.items() if not name.startswith("factors/")})
    for tau in dict.fromkeys(record["tau"] for record in manifest["factored"]):
        layers = sorted(layer for layer, t in factors if t == tau)
        dtype = jnp.dtype(next(r["dtype"] for r in manifest["factored"] if r["tau"] == tau))
        low = factors[(layers[0], tau)]
        full = np.empty((n_layers, low.u.shape[0], low.vt.shape[1]), dtype)
        dense_layers = [i for i in range(n_layers) if i not in layers]
        kept = tree["blocks"].get(tau)
        if (0 if kept is None else kept.shape[0]) != len(dense_layers):
            raise ValueError(f"{tau} has {0 if kept is None else kept.shape[0]} dense and {len(layers)} factored layers, not {n_layers}")
        if dense_layers:
            full[dense_layers] = np.asarray(kept)
        for layer in layers:
            full[layer] = _densify(factors[(layer, tau)], dtype)
        tree["blocks"][tau] = jnp.asarray(full)
    return tree


def checkpoint_size(directory) -> int:
    """Bytes on disk of a checkpoint directory (all files, recursively)."""
    return sum(f.stat().st_size for f in Path(directory).rglob("*") if f.is_file())


__all__ = ["save", "edit_factors", "with_factors", "restore", "read_manifest", "read_factors", "checkpoint_size", "staged_directory", "dense_params", "MANIFEST"]
