"""LASER across training checkpoints: does rank reduction help more (or less) as a model trains?

Role: a protocol on top of the sweep engine (``laser-jax dynamics``). For each
checkpoint of one series (hub revisions such as Pythia's ``step1000``, local
Hugging Face directories, laser-jax Orbax checkpoints, e.g. the ``synthetic``
trainer's ``models/seed0/step_N``) and one set of examples it records:

- the base metrics on the paper's validation (first 20%) and test parts;
- the best variant of the grid (:func:`laser_jax.selection.select_best`) and
  its metrics;
- the mean P(answer) and P(generic probe tokens) before and after, on the test
  part (:func:`laser_jax.tasks.analysis.generic_token_table`);
- every variant's metrics on validation, test and all examples
  (:func:`laser_jax.results.sweep_rows`, plus ``p_answer``), and those of any
  ``track``\\ ed variants (drawn as curves, never selected).

Output directory::

    DIR/run.json                  the arguments (a different run is refused), versions, device
    DIR/checkpoints/<label>.json  one record per checkpoint, written atomically when it is done
    DIR/dynamics.json, dynamics.csv, dynamics.png   the series, rewritten after each checkpoint

A killed run started again with the same arguments skips the checkpoints whose
record exists. All checkpoints of a series must have one architecture (family
and config); a mismatch is a one-line :class:`~laser_jax.errors.ConfigError`,
raised before any scoring when the local checkpoints' config files show it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence, Union

import numpy as np

from laser_jax.errors import ConfigError, DataError
from laser_jax.examples import Example
from laser_jax.laser import Intervention, check_intervention, expand_grid, rank_for, matrices_of
from laser_jax.ground import write_text_atomic
from laser_jax.results import ResultsStore, sweep_rows
from laser_jax.selection import VALIDATION_FRACTION, select_best, validation_split
from laser_jax.sweep import SweepOptions, SweepResult, sweep
from laser_jax.tasks.analysis import generic_token_table

RECORDS_DIR = "checkpoints"
SUMMARY_JSON = "dynamics.json"
SUMMARY_CSV = "dynamics.csv"
FIGURE = "dynamics.png"
TRACK_COLORS = ("tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")
CSV_COLUMNS = ("label", "step", "n_test", "base_accuracy", "base_loss", "best_variant", "best_layer", "best_tau",
               "best_rho", "best_accuracy", "best_loss", "gain", "p_answer_before", "p_answer_after",
               "p_generic_before", "p_generic_after")


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """One point of a series: a ``label`` (unique, file-name safe), where to load it from, and its step."""

    label: str
    source: str
    revision: Optional[str] = None
    step: Optional[int] = None


def step_of(name: str) -> Optional[int]:
    """The training step in a name such as ``step1000``, ``step_000100`` or ``ckpt-step-5`` (the last match)."""
    found = re.findall(r"step[_-]?(\d+)", name)
    return int(found[-1]) if found else None


def hub_series(model: str, revisions: Iterable[str]) -> list[Checkpoint]:
    """The revisions (e.g. ``step1000,step2000``) of one hub model."""
    revisions = [r.strip() for r in revisions if r.strip()]
    if not revisions:
        raise DataError("no revisions given")
    if len(set(revisions)) != len(revisions):
        raise DataError(f"revisions repeat: {', '.join(revisions)}")
    return _ordered([Checkpoint(_safe(r), model, r, step_of(r)) for r in revisions])


def local_series(paths: Iterable) -> list[Checkpoint]:
    """Local checkpoint directories, recorded as given; labelled by their names (by their paths when names repeat)."""
    given = [str(p) for p in paths]
    if not given:
        raise DataError("no checkpoints given")
    resolved = [Path(p).expanduser().resolve() for p in given]
    for path in resolved:
        if not path.exists():
            raise DataError(f"checkpoint {path} does not exist")
    if len(set(resolved)) != len(resolved):
        raise DataError("a checkpoint is listed twice")
    names = [p.name for p in resolved]
    if len(set(names)) != len(names):
        common = Path(*Path.commonpath([str(p) for p in resolved]).split("/")) if len(resolved) > 1 else resolved[0].parent
        names = ["_".join(p.relative_to(common).parts) for p in resolved]
    return _ordered([Checkpoint(_safe(n), source, None, step_of(n)) for n, source in zip(names, given)])


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "checkpoint"


def _ordered(series: list[Checkpoint]) -> list[Checkpoint]:
    """By step when every checkpoint has one, else in the given order."""
    if all(c.step is not None for c in series):
        steps = [c.step for c in series]
        if len(set(steps)) != len(steps):
            raise DataError(f"two checkpoints share a step: {', '.join(c.label for c in series)}")
        return sorted(series, key=lambda c: c.step)
    return series


# ----------------------------------------------------------------------------- one checkpoint


def architecture(model) -> dict:
    """What must agree along a series: the family and every config field."""
    return _architecture(model.family, model.config)


def _architecture(family, cfg) -> dict:
    fields = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else {"config": repr(cfg)}
    return {"family": family.name, "config": json.loads(json.dumps(fields, default=str))}


def declared_architecture(checkpoint: Checkpoint) -> Optional[dict]:
    """The architecture a local checkpoint declares (its laser-jax manifest or config.json), without reading
    weights; None for hub checkpoints and directories without either file."""
    from laser_jax.checkpoint import MANIFEST, read_manifest
    from laser_jax.models import family_for_model_type, get_family

    path = Path(checkpoint.source)
    try:
        if (path / MANIFEST).is_file():
            manifest = read_manifest(path)
            family, config = get_family(manifest["family"]), manifest["hf_config"]
        elif (path / "config.json").is_file():
            config = json.loads((path / "config.json").read_text())
            family = family_for_model_type(config.get("model_type", "?"))
        else:
            return None
        return _architecture(family, family.from_hf_config(config))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable here: loading the checkpoint reports it in one line


def check_same_architecture(label: str, arch: dict, first_label: str, first: dict) -> None:
    if arch == first:
        return
    if arch["family"] != first["family"]:
        what = f"family {arch['family']!r}, not {first['family']!r}"
    else:
        name = next(k for k in sorted(set(arch["config"]) | set(first["config"]))
                    if arch["config"].get(k) != first["config"].get(k))
        what = f"{name}={arch['config'].get(name)!r}, not {first['config'].get(name)!r}"
    raise ConfigError(f"checkpoint {label} has {what} as {first_label}: a series must share one architecture")


def variant_rows(row, model, splits: dict) -> list[dict]:
    """:func:`laser_jax.results.sweep_rows` of one sweep row, with ``p_answer`` (mean P of the answer's first token)."""
    step = row.intervention
    k = None if step is None else rank_for(step.rho, model.params["blocks"][matrices_of(model.family, step.tau)[0]].shape)
    rows = sweep_rows(row, splits, k)
    for out, indices in zip(rows, splits.values()):
        out["p_answer"] = float(np.mean(np.exp(row.scores.answer_first_logprob[indices])))
    return rows


def score_checkpoint(model, examples: Sequence[Example], grid: Sequence[Intervention],
                     track: Sequence[Intervention] = (), fraction: float = VALIDATION_FRACTION,
                     options: SweepOptions = SweepOptions()) -> dict:
    """The record of one checkpoint (see the module docstring)."""
    for step in (*grid, *track):
        check_intervention(model, step)
    result = sweep(model, examples, [*grid, *track], options=options)
    grid_keys = {step.key for step in grid}
    selection = select_best(SweepResult(tuple(r for r in result if r.intervention is None or r.key in grid_keys),
                                        result.top_k), fraction)
    validation, test = validation_split(len(examples), fraction)
    splits = {"val": validation, "test": test, "all": np.arange(len(examples))}
    best = selection.best
    before, after = result.base.scores.subset(test), best.scores.subset(test)
    generic = None
    if before.probe_logprobs.size and not np.isnan(before.probe_logprobs).any():
        generic = generic_token_table(before.answer_first_logprob, before.probe_logprobs,
                                      after.answer_first_logprob, after.probe_logprobs).summary
    return {
        "n_examples": len(examples),
        "base": {"validation": selection.base_validation, "test": selection.base_test},
        "best": {"variant": best.key, "layer": best.intervention.layer, "tau": best.intervention.tau,
                 "rho": best.intervention.rho, "validation": selection.best_validation, "test": selection.best_test},
        "generic_test": generic,
        "p_answer_test": {"before": float(np.mean(np.exp(before.answer_first_logprob))),
                          "after": float(np.mean(np.exp(after.answer_first_logprob)))},
        "tracked": [step.key for step in track],
        "variants": {row.key: variant_rows(row, model, splits) for row in result},
    }


# ----------------------------------------------------------------------------- the series


ExamplesFor = Callable[[object], Sequence[Example]]


def run_dynamics(series: Sequence[Checkpoint], examples: Union[Sequence[Example], ExamplesFor], out_dir,
                 layers: Iterable[int], taus: Iterable[str], rhos: Iterable[float], *,
                 track: Sequence[Intervention] = (), fraction: float = VALIDATION_FRACTION, run_args: Optional[dict] = None,
                 info: Optional[dict] = None, load: Optional[Callable[[Checkpoint], object]] = None,
                 log: Callable[[str], None] = print, options: SweepOptions = SweepOptions()) -> list[dict]:
    """Score every checkpoint of ``series`` not yet done in ``out_dir``; returns all records in series order.

    ``examples``: a list, or a function of the loaded model (e.g. tokenising a
    task with the checkpoint's tokenizer). ``run_args`` (JSON) identify the run
    in ``run.json``: a directory holding other arguments is refused.
    ``load`` defaults to :func:`laser_jax.load_model`.
    """
    from laser_jax.loading import load_model

    layers, taus, rhos = list(layers), list(taus), list(rhos)
    grid = expand_grid(layers, taus, rhos)
    if not grid:
        raise DataError("the grid is empty: give layers, taus and rhos")
    labels = [c.label for c in series]
    if len(set(labels)) != len(labels):
        raise DataError(f"checkpoint labels repeat: {', '.join(labels)}")
    args = {"checkpoints": [dataclasses.asdict(c) for c in series], "layers": layers, "taus": taus, "rhos": rhos,
            "track": [s.key for s in track], "fraction": fraction, **(run_args or {})}
    declared = [(c.label, a) for c in series for a in [declared_architecture(c)] if a is not None]
    for label, arch in declared[1:]:  # refuse a mixed series before writing anything, where the files say enough
        check_same_architecture(label, arch, *declared[0])
    store = ResultsStore(out_dir, args, info=info)
    store.start()
    out = store.directory
    (out / RECORDS_DIR).mkdir(exist_ok=True)
    load = load or (lambda c: load_model(c.source, revision=c.revision))
    try:
        records = {c.label: read_record(out, c.label) for c in series}
        first = next(((label, r["architecture"]) for label, r in records.items() if r is not None), None)
        if first is None and declared:
            first = declared[0]
        elif declared:
            check_same_architecture(*declared[0], *first)
        for index, checkpoint in enumerate(series):
            if records[checkpoint.label] is not None:
                continue
            log(f"[{index + 1}/{len(series)}] {checkpoint.label}: loading {checkpoint.source}"
                + (f" @ {checkpoint.revision}" if checkpoint.revision else ""))
            model = load(checkpoint)
            arch = architecture(model)
            if first is None:
                first = (checkpoint.label, arch)
            check_same_architecture(checkpoint.label, arch, *first)
            items = examples(model) if callable(examples) else examples
            record = score_checkpoint(model, items, grid, track, fraction, options)
            record = {"label": checkpoint.label, "step": checkpoint.step, "source": checkpoint.source,
                      "revision": checkpoint.revision, "architecture": arch, **record}
            text = json.dumps(record, indent=1)
            write_text_atomic(out / RECORDS_DIR / f"{checkpoint.label}.json", text + "\n")
            records[checkpoint.label] = json.loads(text)  # as a resumed run reads it back
            log(f"  {summary_line(record)}")
            write_summary(out, [records[c.label] for c in series if records[c.label] is not None])
        done = [records[c.label] for c in series]
        write_summary(out, done)
        return done
    finally:
        store.close()


def read_record(out: Path, label: str) -> Optional[dict]:
    path = Path(out) / RECORDS_DIR / f"{label}.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DataError(f"{path} is unreadable ({type(error).__name__}); delete it to score that checkpoint again") from error


def csv_row(record: dict) -> dict:
    base, best = record["base"]["test"], record["best"]["test"]
    generic = record["generic_test"] or {}
    return {"label": record["label"], "step": record["step"], "n_test": int(base["n_examples"]),
            "base_accuracy": base["accuracy"], "base_loss": base["answer_nll"], "best_variant": record["best"]["variant"],
            "best_layer": record["best"]["layer"], "best_tau": record["best"]["tau"], "best_rho": record["best"]["rho"],
            "best_accuracy": best["accuracy"], "best_loss": best["answer_nll"], "gain": best["accuracy"] - base["accuracy"],
            "p_answer_before": record["p_answer_test"]["before"], "p_answer_after": record["p_answer_test"]["after"],
            "p_generic_before": generic.get("p_generic_before"), "p_generic_after": generic.get("p_generic_after")}


def summary_line(record: dict) -> str:
    row = csv_row(record)
    text = (f"test accuracy {row['base_accuracy']:.4f} -> {row['best_accuracy']:.4f} with {row['best_variant']}; "
            f"P(answer) {row['p_answer_before']:.4f} -> {row['p_answer_after']:.4f}")
    if row["p_generic_before"] is not None:
        text += f"; P(generic) {row['p_generic_before']:.4f} -> {row['p_generic_after']:.4f}"
    return text


def write_summary(out: Path, records: Sequence[dict]) -> None:
    """``dynamics.json`` (the summary rows and each record's tracked variants), ``dynamics.csv`` and the figure."""
    from laser_jax.results import to_csv

    rows = [csv_row(r) for r in records]
    tracked = {r["label"]: {key: r["variants"][key] for key in r["tracked"]} for r in records}
    write_text_atomic(out / SUMMARY_JSON, json.dumps({"rows": rows, "tracked": tracked}, indent=1) + "\n")
    write_text_atomic(out / SUMMARY_CSV, to_csv(rows, CSV_COLUMNS))
    if records:
        plot(records, out / FIGURE)


# ----------------------------------------------------------------------------- the figure


def _split_value(record: dict, key: str, split: str, column: str) -> float:
    row = next(r for r in record["variants"][key] if r["split"] == split)
    value = row.get(column)
    return math.nan if value is None else float(value)


def plot(records: Sequence[dict], path) -> Path:
    """Test accuracy, P(answer) and P(generic) over the series: base, best variant and tracked variants."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_step = all(r["step"] is not None for r in records)
    x = [r["step"] if by_step else i for i, r in enumerate(records)]
    has_generic = any(r["generic_test"] for r in records)
    panels = [("accuracy", "test accuracy"), ("p_answer", "mean P(answer), test")]
    if has_generic:
        panels.append(("p_generic", "mean P(generic tokens), test"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.0), squeeze=False)
    rows = [csv_row(r) for r in records]
    for ax, (column, title) in zip(axes[0], panels):
        base = [_split_value(r, "base", "test", column) for r in records]
        best = [row[f"best_{column}"] if column == "accuracy" else row[f"{column}_after"] for row in rows]
        ax.plot(x, base, "o-", color="black", label="base")
        ax.plot(x, best, "s-", color="tab:blue", label="best variant (selected on validation)")
        for key, color in zip(records[0]["tracked"], TRACK_COLORS):
            ax.plot(x, [_split_value(r, key, "test", column) for r in records], "^--", color=color, markersize=4,
                    linewidth=1, label=f"{key} (tracked)")
        ax.set_title(title)
        ax.set_xlabel("training step" if by_step else "checkpoint")
        if not by_step:
            ax.set_xticks(x, [r["label"] for r in records], rotation=45, ha="right", fontsize=7)
        ax.grid(alpha=0.3)
    previous = None
    for xi, row in zip(x, rows):  # name the best variant where it changes
        if row["best_variant"] != previous:
            axes[0][0].annotate(row["best_variant"], (xi, row["best_accuracy"]), fontsize=7, rotation=45,
                                xytext=(2, 6), textcoords="offset points", color="tab:blue")
        previous = row["best_variant"]
    axes[0][0].legend(fontsize=7, loc="best")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


__all__ = ["Checkpoint", "step_of", "hub_series", "local_series", "architecture", "declared_architecture", "check_same_architecture",
           "score_checkpoint", "run_dynamics", "read_record", "csv_row", "summary_line", "write_summary", "plot"]
