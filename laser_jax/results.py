"""A resumable on-disk store for sweep results: ``run.json``, ``results.csv`` and per-example scores.

Layout of a run directory::

    DIR/run.json            the exact arguments, library/JAX versions, device
    DIR/results.csv         one row per (variant, split), sorted; the base rows have tau=none
    DIR/scores/<variant>.csv  per-example scores of one variant (the working copy, git-ignored)
    DIR/scores.npz          every variant's per-example scores in one compressed file (committed)

Every file is written whole to a temporary name, fsynced and ``os.replace``\\ d,
so a run killed at any instant (even SIGKILL) leaves only complete files. A
variant counts as done once its rows are in ``results.csv`` (its scores file is
written first). Started again with the same arguments, a run skips the done
variants; rows are kept sorted by variant, so the final ``results.csv`` is the
same whatever the interruptions. Closing a run packs ``scores/`` into
``scores.npz`` (:func:`pack_scores`), the form that travels with the run:
readers (:func:`score_columns`) take a variant's ``scores/`` file when it is
there and ``scores.npz`` otherwise. Started with different arguments in the same
directory, it refuses with a one-line :class:`RunMismatchError`. In a
multi-process run, process 0 holds the store and the others a
:class:`FollowerStore` that shares its rows and writes nothing.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import platform
import shlex
import time
from pathlib import Path
from typing import Callable, Iterable, Mapping, Optional, Sequence

import numpy as np

from laser_jax.devices import broadcast_json
from laser_jax.errors import DataError, DeviceError, LaserJaxError
from laser_jax.ground import Clock, write_text_atomic
from laser_jax.laser import Intervention
from laser_jax.selection import VALIDATION, validation_split
from laser_jax.sweep import ExampleScores

RUN_FILE = "run.json"
RESULTS_FILE = "results.csv"
LOCK_FILE = ".lock"
SCORES_DIR = "scores"
SCORES_FILE = "scores.npz"
BASE_TAU = "none"
REQUIRED_COLUMNS = ("layer", "tau", "rho", "k", "split", "n", "accuracy", "loss")
SPLIT_ORDER = ("all", "val", "test")


class RunMismatchError(LaserJaxError):
    """An output directory that holds a different run's arguments."""


# ----------------------------------------------------------------------------- atomic files


def command_line(argv: Sequence[str]) -> str:
    """A run's ``argv`` (as ``run.json`` keeps it) as one shell command that runs it again."""
    return shlex.join(argv)


def format_value(value) -> str:
    """One CSV cell: empty for None/NaN, shortest round-trip text for floats."""
    if value is None:
        return ""
    if isinstance(value, (bool, int, np.integer, np.bool_)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return "" if math.isnan(value) else repr(float(value))
    return str(value)


def to_csv(rows: Sequence[Mapping], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([format_value(row.get(column)) for column in columns])
    return buffer.getvalue()


def parse_cell(text: str):
    """The inverse of :func:`format_value` for numbers: int, float, None or the string."""
    if text == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def read_csv(path) -> list[dict]:
    """Rows of a CSV file with numeric cells parsed."""
    with open(path, newline="") as handle:
        return [{key: parse_cell(value) for key, value in row.items()} for row in csv.DictReader(handle)]


# ----------------------------------------------------------------------------- variants


def variant_key(row: Mapping) -> tuple:
    """``(tau, layer, rho)`` of a row; the base model is ``("none", None, None)``."""
    if row["tau"] == BASE_TAU:
        return (BASE_TAU, None, None)
    return (str(row["tau"]), int(row["layer"]), float(row["rho"]))


def variant_record(key: tuple) -> dict:
    """The ``{"layer", "tau", "rho"}`` record that names variant ``key`` in a run's JSON files."""
    tau, layer, rho = key
    return {"layer": layer, "tau": tau, "rho": rho}


def variant_name(key: tuple) -> str:
    """A file-name-safe name of a variant: ``base`` or ``fc_in-L27-rho0.01``."""
    tau, layer, rho = key
    return "base" if tau == BASE_TAU else f"{tau}-L{layer}-rho{rho!r}"


def sort_key(row: Mapping) -> tuple:
    """Base first, then by τ, layer, decreasing ρ (increasing reduction), then split."""
    tau, layer, rho = variant_key(row)
    split = SPLIT_ORDER.index(row["split"]) if row.get("split") in SPLIT_ORDER else len(SPLIT_ORDER)
    if tau == BASE_TAU:
        return (0, "", -1, 0.0, split, str(row.get("split")))
    return (1, tau, layer, -rho, split, str(row.get("split")))


# ----------------------------------------------------------------------------- from sweep rows

SPLIT_MODES = ("all", "val+test")


def split_indices(n: int, mode: str, seed: Optional[int] = None) -> dict[str, np.ndarray]:
    """Example indices per split: ``all``, or ``val`` and ``test`` as :func:`laser_jax.selection.validation_split`
    (the first 20% in order, then the rest; with ``seed``, a seeded random 20%, then the rest)."""
    if mode == "all":
        if seed is not None:
            raise DataError("a split seed draws the validation part: it needs --split val+test")
        return {"all": np.arange(n)}
    if mode != "val+test":
        raise DataError(f"unknown split mode {mode!r}; use one of {', '.join(SPLIT_MODES)}")
    validation, test = validation_split(n, seed=seed)
    return {"val": validation, "test": test}


def intervention_key(key: tuple) -> str:
    """The sweep engine's key of a stored variant: ``"base"`` or ``Intervention.key``."""
    tau, layer, rho = key
    return "base" if tau == BASE_TAU else Intervention(layer, tau, rho).key


def resume_skip(done: set, grid) -> set[str]:
    """Sweep keys to skip when resuming: the base if done, and each (layer, τ) whose every ρ is done.

    A partly done (layer, τ) is computed again whole, so its variants run in
    the same vectorised groups as in an uninterrupted run and give the same bits.
    """
    done_keys = {intervention_key(key) for key in done}
    groups: dict[tuple, list[str]] = {}
    for step in grid:
        groups.setdefault((step.layer, step.tau), []).append(step.key)
    skip = {"base"} & done_keys
    for keys in groups.values():
        if all(key in done_keys for key in keys):
            skip.update(keys)
    return skip


def sweep_rows(row, splits: Mapping[str, np.ndarray], k: Optional[int], extra: Optional[Mapping] = None) -> list[dict]:
    """CSV rows of one :class:`~laser_jax.sweep.SweepRow`, one per split (``splits`` index ``row.scores``).

    ``accuracy`` is the engine's (choice accuracy for choice tasks, else top-1 of
    the answer's first token); ``loss`` the mean answer NLL per token;
    ``p_generic`` the mean summed probability of the probe tokens, when any;
    ``auc`` the ROC AUC of two-way choice tasks (see
    :meth:`~laser_jax.sweep.ExampleScores.choice_auc`). ``extra`` columns are
    added to every row as they are.
    """
    step = row.intervention
    out = []
    for split, indices in splits.items():
        scores = row.scores.subset(indices)
        metrics = scores.metrics()
        record = {"layer": None if step is None else step.layer, "tau": BASE_TAU if step is None else step.tau,
                  "rho": None if step is None else step.rho, "k": k, "split": split, "n": len(indices),
                  "accuracy": metrics["accuracy"], "loss": metrics["answer_nll"],
                  "top1_accuracy": metrics["top1_accuracy"], "topk_accuracy": metrics["topk_accuracy"]}
        probes = scores.probe_logprobs
        if probes.size and not np.isnan(probes).all():
            record["p_generic"] = float(np.mean(np.nansum(np.exp(probes), axis=1)))
        if not math.isnan(metrics["choice_auc"]):
            record["auc"] = metrics["choice_auc"]
        out.append({**record, **dict(extra or {})})
    return out


def example_columns(row, splits: Mapping[str, np.ndarray], index: Optional[Sequence[int]] = None) -> dict[str, list]:
    """Per-example score columns of one sweep row, with each example's split.

    ``splits`` index ``row.scores``; ``index`` gives each scored example's
    position in the whole data set (default: its position in ``row.scores``).
    """
    scores = row.scores
    n = len(scores)
    split_of = np.empty(n, dtype=object)
    for split, indices in splits.items():
        split_of[indices] = split
    correct = np.where(scores.has_choices, scores.choice_correct, scores.top1)
    columns = {"index": list(range(n)) if index is None else [int(i) for i in index], "split": list(split_of),
               "correct": correct.astype(int).tolist(),
               "top1": scores.top1.astype(int).tolist(), "topk": scores.topk.astype(int).tolist(),
               "answer_nll": scores.answer_nll.tolist(), "answer_first_logprob": scores.answer_first_logprob.tolist()}
    for j in range(scores.probe_logprobs.shape[1]):
        columns[f"probe{j}_logprob"] = scores.probe_logprobs[:, j].tolist()
    for c in range(scores.choice_logprobs.shape[1]):
        columns[f"choice{c}_logprob"] = scores.choice_logprobs[:, c].tolist()
    if scores.choice_logprobs.shape[1]:
        columns["label"] = scores.label.astype(int).tolist()  # the gold candidate (-1: none), for the AUC's interval
    return columns


# ----------------------------------------------------------------------------- the store


def environment() -> dict:
    """Library and JAX versions and the device, for ``run.json``."""
    import jax

    import laser_jax

    versions = {"laser_jax": laser_jax.__version__, "jax": jax.__version__, "python": platform.python_version()}
    for name in ("jaxlib", "flax", "transformers", "numpy"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            pass
    device = jax.devices()[0]
    return {"versions": versions, "device": f"{device.platform}: {device.device_kind} (x{jax.device_count()})"}


class ResultsStore:
    """The results of one run in ``directory``, resumable across restarts.

    ``args`` are the run's defining arguments (JSON-serialisable); an existing
    directory must hold the same ones. Opening only reads; :meth:`start` (or the
    first :meth:`record`) creates the files.
    """

    def __init__(self, directory, args: Mapping, *, info: Optional[Mapping] = None):
        self.directory = Path(directory).expanduser()
        self.args = json.loads(json.dumps(dict(args)))  # canonical JSON types
        self.info = dict(info or {})  # recorded in run.json (e.g. the command line), not compared
        self.extra_columns: tuple[str, ...] = ()
        self._rows: list[dict] = []
        self._lock = None
        self._open()

    @property
    def columns(self) -> tuple[str, ...]:
        return REQUIRED_COLUMNS + self.extra_columns

    def _open(self) -> None:
        run_file = self.directory / RUN_FILE
        if run_file.exists():
            try:
                previous = json.loads(run_file.read_text())["args"]
            except (OSError, ValueError, KeyError, TypeError) as error:
                raise RunMismatchError(f"{run_file} is unreadable ({type(error).__name__}); use a fresh --out directory") from error
            if previous.get("mode", "exhaustive") != self.args.get("mode", "exhaustive"):
                raise RunMismatchError(f"output directory {self.directory} holds a {previous.get('mode', 'exhaustive')} run, "
                                       f"not a {self.args.get('mode', 'exhaustive')} one; use another --out")
            if previous != self.args:
                diff = sorted(k for k in set(previous) | set(self.args) if previous.get(k) != self.args.get(k))
                name = diff[0]
                raise RunMismatchError(f"output directory {self.directory} holds a different run ({name}={previous.get(name)!r}, now {self.args.get(name)!r}); use another --out or the same arguments")
            for stale in [*self.directory.glob(".*.tmp-*"), *self.directory.glob(f"{SCORES_DIR}/.*.tmp-*")]:
                stale.unlink(missing_ok=True)  # a killed run's unfinished write
            results = self.directory / RESULTS_FILE
            if results.exists():
                self._rows = self._read_results(results)
            return
        if self.directory.exists() and any(p.name not in (SCORES_DIR, LOCK_FILE) for p in self.directory.iterdir()):
            raise RunMismatchError(f"output directory {self.directory} is not empty and holds no {RUN_FILE}; use a fresh --out directory")

    def start(self) -> None:
        """Create the directory and ``run.json`` (once) and take the directory's lock.

        Separate from opening, so a run that fails its argument checks leaves no
        directory behind. The lock (``flock`` on ``.lock``, released by the OS
        when the process ends, even by SIGKILL) refuses a second concurrent run.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._lock is None:
            import fcntl

            handle = open(self.directory / LOCK_FILE, "w")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                raise RunMismatchError(f"another laser-jax process is writing to {self.directory}") from None
            self._lock = handle
        run_file = self.directory / RUN_FILE
        if run_file.exists():
            return
        record = {"args": self.args, **self.info, **environment(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        write_text_atomic(run_file, json.dumps(record, indent=2, sort_keys=True) + "\n")

    def close(self) -> None:
        """Pack the scores into ``scores.npz`` (:func:`pack_scores`), then release the directory's lock (also
        released when the process ends). Only the store that took the lock writes."""
        if self._lock is not None:
            pack_scores(self.directory)
            self._lock.close()
            self._lock = None

    def _read_results(self, path: Path) -> list[dict]:
        with open(path, newline="") as handle:
            header = next(csv.reader(handle), None)
        if header is None or tuple(header[: len(REQUIRED_COLUMNS)]) != REQUIRED_COLUMNS:
            raise DataError(f"{path} is not a laser-jax results file (header {header})")
        self.extra_columns = tuple(header[len(REQUIRED_COLUMNS):]) or self.extra_columns
        return read_csv(path)

    @property
    def rows(self) -> list[dict]:
        return sorted(self._rows, key=sort_key)

    def done(self) -> set[tuple]:
        """Keys (:func:`variant_key`) of the variants already recorded."""
        return {variant_key(row) for row in self._rows}

    def done_in(self, split: str) -> set[tuple]:
        """Keys of the variants that have a row for ``split``."""
        return {variant_key(row) for row in self._rows if row["split"] == split}

    def record(self, rows: Iterable[Mapping], scores: Optional[Mapping[str, Sequence]] = None) -> None:
        """Store one variant: its per-example ``scores`` (columns), then its rows.

        All rows must belong to the same variant. They replace that variant's
        rows of the same splits (a selection run adds a variant's test row after
        its validation row); its scores file keeps the examples of other
        splits. The results file is rewritten atomically with every row so
        far, sorted.
        """
        self.start()
        rows = [dict(row) for row in rows]
        keys = {variant_key(row) for row in rows}
        if len(keys) != 1:
            raise ValueError(f"record() takes the rows of one variant, got {sorted(map(str, keys))}")
        (key,) = keys
        splits = {row["split"] for row in rows}
        for row in rows:
            missing = [c for c in REQUIRED_COLUMNS if c not in row]
            if missing:
                raise ValueError(f"result row lacks {missing}")
            new = [c for c in row if c not in self.columns]
            self.extra_columns += tuple(sorted(new))
        if scores is not None:
            (self.directory / SCORES_DIR).mkdir(exist_ok=True)
            names = list(scores)
            length = {len(scores[n]) for n in names}
            if len(length) > 1:
                raise ValueError(f"score columns have different lengths {sorted(length)}")
            table = [dict(zip(names, values)) for values in zip(*(scores[n] for n in names))]
            path = self.scores_path(key)
            if path.exists() and "split" in names:
                kept = [r for r in read_csv(path) if r.get("split") not in splits]
                table = sorted(kept + table, key=lambda r: r.get("index", 0))
                names += [c for c in (kept[0] if kept else {}) if c not in names]
            write_text_atomic(path, to_csv(table, names))
        self._rows = [row for row in self._rows if (variant_key(row), row["split"]) not in {(key, s) for s in splits}] + rows
        write_text_atomic(self.directory / RESULTS_FILE, to_csv(self.rows, self.columns))

    def scores_path(self, key: tuple) -> Path:
        return self.directory / SCORES_DIR / f"{variant_name(key)}.csv"


# ----------------------------------------------------------------------------- the store of another process


class FollowerStore:
    """The run directory of a multi-process run, as every process sees it: process 0 holds the real store
    (``make_store()``) and writes; the others get its rows and directory, and raise the errors it raises.

    The same calls in the same order on every process (open, :meth:`start`) keep them in step.
    """

    def __init__(self, make_store: Optional[Callable]):
        self.store, message = None, {}
        if make_store is not None:
            try:
                self.store = make_store()
                message = {"rows": self.store.rows, "directory": str(self.store.directory)}
            except LaserJaxError as error:
                message = {"error": str(error)}
                broadcast_json(message, True)
                raise
        message = broadcast_json(message, self.store is not None)
        if "error" in message:
            raise DeviceError(f"process 0: {message['error']}")
        self.directory = Path(message["directory"])
        self._rows = [dict(row) for row in message["rows"]]

    def done(self) -> set[tuple]:
        return {variant_key(row) for row in self._rows}

    def start(self) -> None:
        error = None
        if self.store is not None:
            try:
                self.store.start()
            except LaserJaxError as failure:
                error = failure
        message = broadcast_json(None if error is None else str(error), self.store is not None)
        if error is not None:
            raise error
        if message is not None:
            raise DeviceError(f"process 0: {message}")

    def record(self, rows, scores=None) -> None:
        rows = [dict(row) for row in rows]
        if self.store is not None:
            self.store.record(rows, scores=scores)
        replaced = {(variant_key(row), row["split"]) for row in rows}  # as ResultsStore.record: per variant and split
        self._rows = [row for row in self._rows if (variant_key(row), row["split"]) not in replaced] + rows

    @property
    def rows(self) -> list[dict]:
        return sorted(self._rows, key=sort_key)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


# ----------------------------------------------------------------------------- a run directory as a protocol recorder

LOOKS_DIR = "race"
TIMING_FILE = "timing.json"
GENERATION_FILE = "generation.json"  # a table run's greedy-decoding check of a generation task (the CLI writes it)


class StoreRecorder:
    """A :class:`laser_jax.protocol.Recorder` over a :class:`ResultsStore`.

    ``rank_of(intervention)`` gives the k written in the ``k`` column. Racing's
    looks are kept as ``race/look<j>.npz`` (the validation items the look
    scored and every score array of every variant on them), written atomically. Only a ``writer`` writes files
    (process 0 of a multi-process run, whose store alone writes rows).

    The seconds spent go to ``timing.json`` as rows and looks are stored (each
    :meth:`lap` adds the time since the last one to a phase), so a session
    that is killed still counts in the run's total.
    """

    def __init__(self, store: ResultsStore, rank_of, writer: bool = True):
        self.store, self.rank_of, self.writer = store, rank_of, writer
        self.clock = Clock()

    def done(self, split: str) -> dict[str, dict]:
        return {intervention_key(variant_key(row)): {"accuracy": _number(row.get("accuracy")),
                                                     "answer_nll": _number(row.get("loss")),
                                                     "n": row["n"], "raced": bool(row.get("raced"))}
                for row in self.store.rows if row["split"] == split}

    def record(self, split: str, row, index, raced: bool = False) -> None:
        k = None if row.intervention is None else self.rank_of(row.intervention)
        everything = {split: np.arange(len(row.scores))}
        self.store.record(sweep_rows(row, everything, k, {"raced": 1} if raced else None),
                          scores=example_columns(row, everything, index))
        self.lap(split)

    def look_path(self, look: int) -> Path:
        return self.store.directory / LOOKS_DIR / f"look{look}.npz"

    def load_look(self, look: int):
        path = self.look_path(look)
        if not path.exists():
            return None
        with np.load(path, allow_pickle=False) as data:
            keys = json.loads(str(data["keys"]))
            fields = [f.name for f in dataclasses.fields(ExampleScores)]
            items = data["items"] if "items" in data else None  # None: a look saved before riders, its own items
            return items, {key: ExampleScores(**{f: data[f"{i}.{f}"] for f in fields}) for i, key in enumerate(keys)}

    def save_look(self, look: int, items, scores) -> None:
        if not self.writer:
            return
        path = self.look_path(look)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"keys": np.array(json.dumps(list(scores))), "items": np.asarray(items, np.int64)}
        for i, value in enumerate(scores.values()):
            arrays.update({f"{i}.{f.name}": getattr(value, f.name) for f in dataclasses.fields(value)})
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
        self.lap(VALIDATION)  # racing's looks are all on the validation part

    def lap(self, phase: str) -> dict:
        """Add the wall/CPU seconds since the last lap (or since this recorder was made) to ``phase``; the totals."""
        return self.add_seconds({phase: self.clock.lap()})

    def add_seconds(self, seconds: Mapping[str, Mapping[str, float]]) -> dict:
        """Add this session's wall/CPU seconds per phase to ``timing.json`` (summed over resumed sessions)."""
        path = self.store.directory / TIMING_FILE
        total = json.loads(path.read_text()) if path.exists() else {}
        if not self.writer:
            return total
        for phase, values in seconds.items():
            phase_total = total.setdefault(phase, {})
            for name, value in values.items():  # counts (programs) stay integers, seconds are rounded to ms
                phase_total[name] = round(phase_total.get(name, 0) + value, 3)
        write_text_atomic(path, json.dumps(total, indent=2, sort_keys=True) + "\n")
        return total


def _number(value) -> float:
    return math.nan if value is None else float(value)


def load_results(directory) -> tuple[dict, list[dict]]:
    """``(run.json contents, results rows)`` of a finished or partial run directory, or of a results CSV file
    (e.g. the union of several runs' rows; its run record is then empty)."""
    directory = Path(directory).expanduser()
    if directory.is_file():
        with open(directory, newline="") as handle:
            header = next(csv.reader(handle), None)
        if header is None or tuple(header[: len(REQUIRED_COLUMNS)]) != REQUIRED_COLUMNS:
            raise DataError(f"{directory} is not a laser-jax results file (header {header})")
        return {}, sorted(read_csv(directory), key=sort_key)
    results = directory / RESULTS_FILE
    if not results.exists():
        raise DataError(f"{directory} holds no {RESULTS_FILE}; run `laser-jax sweep --out {directory}` first")
    run_file = directory / RUN_FILE
    run = json.loads(run_file.read_text()) if run_file.exists() else {}
    return run, sorted(read_csv(results), key=sort_key)


def _column_array(values: Sequence) -> np.ndarray:
    """One scores column as its smallest exact array: int8/int32 for integers, float32 when every value is a float32
    (the engine's scores are), else float64, with NaN for empty cells; text as a unicode array."""
    if any(isinstance(v, str) for v in values):
        return np.array([v if v is not None else "" for v in values], dtype=str)
    if all(isinstance(v, int) for v in values):
        array = np.array(values, dtype=np.int64)
        for kind in (np.int8, np.int32):
            if array.size == 0 or (np.iinfo(kind).min <= array.min() and array.max() <= np.iinfo(kind).max):
                return array.astype(kind)
        return array
    array = np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)
    with np.errstate(over="ignore"):  # a value beyond float32's range fails the check below: kept as float64
        single = array.astype(np.float32)
    return single if np.array_equal(single.astype(np.float64), array, equal_nan=True) else array


def pack_scores(directory) -> Optional[Path]:
    """Write every ``DIR/scores/<variant>.csv`` into one compressed ``DIR/scores.npz`` (atomically), and return its
    path; None when the run has no scores directory. Key ``<variant>/<column>`` holds one column of one variant's
    scores, in the file's row order (:func:`_column_array` keeps every value exact). A variant only in an older
    ``scores.npz`` (its CSV since deleted) is kept."""
    directory = Path(directory).expanduser()
    files = sorted((directory / SCORES_DIR).glob("*.csv"))
    if not files:
        return None
    path = directory / SCORES_FILE
    arrays = {}
    if path.exists():
        with np.load(path, allow_pickle=False) as old:
            arrays = {key: old[key] for key in old.files}
    for file in files:
        rows = read_csv(file)
        arrays = {key: value for key, value in arrays.items() if key.split("/", 1)[0] != file.stem}
        for column in (rows[0] if rows else {}):
            arrays[f"{file.stem}/{column}"] = _column_array([row.get(column) for row in rows])
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.npz")
    np.savez_compressed(tmp, **dict(sorted(arrays.items())))
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return path


def score_columns(directory, key: tuple) -> dict[str, np.ndarray]:
    """Per-example scores of one variant as columns (``index``, ``split``, ``correct``, ...): its
    ``scores/<variant>.csv`` when present, else its part of ``scores.npz``; empty when the run holds neither."""
    directory = Path(directory).expanduser()
    name = variant_name(key)
    path = directory / SCORES_DIR / f"{name}.csv"
    if path.exists():
        rows = read_csv(path)
        return {column: _column_array([row.get(column) for row in rows]) for column in (rows[0] if rows else {})}
    packed = directory / SCORES_FILE
    if not packed.exists():
        return {}
    with np.load(packed, allow_pickle=False) as data:
        return {file.split("/", 1)[1]: data[file] for file in data.files if file.split("/", 1)[0] == name}


def load_scores(directory, key: tuple) -> list[dict]:
    """Per-example scores of one variant as rows (:func:`score_columns`; empty when not stored)."""
    columns = score_columns(directory, key)
    if not columns:
        return []
    values = {name: [None if isinstance(v, float) and math.isnan(v) else v for v in array.tolist()]
              for name, array in columns.items()}
    return [dict(zip(values, row)) for row in zip(*values.values())]


__all__ = [
    "ResultsStore", "FollowerStore", "StoreRecorder", "RunMismatchError", "LOOKS_DIR", "TIMING_FILE", "load_results", "load_scores", "score_columns", "pack_scores", "SCORES_FILE", "variant_key", "variant_record", "variant_name", "sort_key", "GENERATION_FILE",
    "command_line", "environment", "split_indices", "resume_skip", "sweep_rows", "example_columns", "intervention_key", "REQUIRED_COLUMNS", "BASE_TAU", "RESULTS_FILE", "RUN_FILE", "SCORES_DIR",
]
