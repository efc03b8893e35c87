"""The synthetic experiment end to end: train seeds together, log metrics and probes, summarize, plot.

Role: the entry points. :func:`run_experiment` is what ``laser-jax synthetic``
calls; :func:`main` runs that command (``python -m synthetic.run``). A run

1. builds the task (bigram statistics, the clean test set and a noisy probe batch),
2. trains every seed in one vmapped, jitted step, in chunks between logged steps,
3. at each logged step evaluates the full model and every truncation variant
   (:mod:`synthetic.probes`) on the clean test set, plus the probes,
4. optionally writes, at chosen steps, Orbax checkpoints of the training state
   (``checkpoints/step_N``, to resume from) and each seed's model as a laser-jax
   checkpoint (``models/seed<i>/step_N``, for ``laser_jax.load_model`` and
   ``laser-jax dynamics``, with the clean test set as ``examples.json``),
5. trains the associative-memory toy (:mod:`synthetic.assoc_memory`),
6. prints the before/after table and the dynamics, and with ``out_dir``
   writes ``metrics.json``, ``summary.json``, ``assoc_memory.json`` and PNG plots.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Optional, Sequence

import jax
import numpy as np

from laser_jax.examples import save_examples
from synthetic import assoc_memory, data, plots, probes, train
from synthetic.presets import Preset, get_preset

SUMMARY_ROWS = ("full", "layer1_ff_rho0", "layer2_ff_rho0")
SUMMARY_METRICS = ("accuracy", "p_noise", "p_correct")


@dataclasses.dataclass
class History:
    """Everything logged, as numpy: ``metrics`` [L, S, V, 4], ``probes`` [L, S, P], ``train_loss`` [L, S]."""

    steps: list
    variants: list
    metrics: list
    probes: list
    train_loss: list

    def series(self, variant: str, metric: str) -> np.ndarray:
        """[L, S] values of one metric of one variant."""
        return np.asarray(self.metrics)[:, :, self.variants.index(variant), probes.METRICS.index(metric)]

    def probe(self, name: str) -> np.ndarray:
        return np.asarray(self.probes)[:, :, probes.PROBES.index(name)]


def resolve(preset, *, seeds=None, alpha=None, stats=None, steps=None, log_every=None,
            checkpoint_steps=None) -> Preset:
    """The preset (a name or a :class:`Preset`) with the given overrides."""
    preset = get_preset(preset) if isinstance(preset, str) else preset
    task = preset.task if alpha is None else dataclasses.replace(preset.task, alpha=float(alpha))
    changes = {"seeds": seeds, "stats": stats, "steps": steps, "log_every": log_every,
               "checkpoint_steps": None if checkpoint_steps is None else tuple(checkpoint_steps)}
    return preset.replace(task=task, **{k: v for k, v in changes.items() if v is not None})


def setup(preset: Preset):
    """``(model config, bigram stats, sampler, clean test set, noisy probe set)`` for a preset."""
    stats = data.get_stats(preset.stats)
    cfg = dataclasses.replace(preset.model, vocab_size=stats.vocab_size, seq_len=preset.task.seq_len)
    sampler = data.make_sampler(stats, preset.task)
    testset = data.make_eval_set(preset.test_seed, sampler, preset.task, preset.test_size, alpha=0.0)
    probeset = data.make_eval_set(preset.probe_seed, sampler, preset.task, preset.probe_size, alpha=preset.task.alpha)
    return cfg, stats, sampler, testset, probeset


def log_points(preset: Preset, start: int) -> list[int]:
    """The steps where training pauses: logged steps, checkpoints and the end."""
    points = set(logged_steps(preset)) | set(preset.checkpoint_steps)
    return sorted(p for p in points if start <= p <= preset.steps)


def logged_steps(preset: Preset) -> list[int]:
    """Every ``log_every`` steps, the preset's early extra steps, and the last step."""
    points = set(range(0, preset.steps + 1, preset.log_every)) | set(preset.early_logs) | {preset.steps}
    return sorted(p for p in points if 0 <= p <= preset.steps)


def train_and_log(preset: Preset, out_dir: Optional[Path] = None, resume_from=None, progress: bool = True):
    """Train all seeds; returns ``(final states, History, model config)``."""
    cfg, _, sampler, testset, probeset = setup(preset)
    steps = probes.default_variants(cfg, preset.rhos)
    states = train.init_states(cfg, preset.optim, list(range(preset.seeds)))
    if resume_from is not None:
        states = train.restore_checkpoint(resume_from, states)
    start = int(np.asarray(states.step).reshape(-1)[0])
    history = History([], ["full"] + [probes.variant_name(s) for s in steps], [], [], [])
    trigger = sampler.triggers[0]
    evaluate = lambda st: probes.evaluate_seeds(st.params, testset, probeset, trigger, cfg=cfg, steps=steps,  # noqa: E731
                                                noise_token=preset.task.noise_token)
    if preset.checkpoint_steps and out_dir is not None:  # what laser-jax dynamics scores the saved models on
        save_examples(Path(out_dir) / "examples.json", data.eval_examples(testset, preset.task.noise_token))
    bar = _progress(preset.steps, start, progress)
    loss = np.full(preset.seeds, np.nan)
    logged = set(logged_steps(preset))
    current = start
    for point in log_points(preset, start):
        if point > current:
            states, chunk_loss = train.train_steps(states, sampler, point - current, cfg=cfg, task=preset.task,
                                                   optim=preset.optim)
            loss = np.asarray(chunk_loss)
            bar.update(point - current)
            current = point
        if point in logged:
            metrics, probe_values = jax.device_get(evaluate(states))
            history.steps.append(point)
            history.metrics.append(metrics)
            history.probes.append(probe_values)
            history.train_loss.append(loss)
            full = metrics[:, 0].mean(0)
            bar.set_postfix(loss=f"{loss.mean():.3f}", p_noise=f"{full[2]:.2f}", acc=f"{full[1]:.2f}")
        if point in preset.checkpoint_steps and out_dir is not None:
            train.save_checkpoint(Path(out_dir) / "checkpoints" / f"step_{point:06d}", states)
            train.save_models(Path(out_dir) / "models", cfg, states)
    bar.close()
    return states, history, cfg


def _progress(total: int, start: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, disable=not enabled, desc="training", unit="step", leave=False)


def first_step(steps: Sequence[int], values: np.ndarray, threshold: float) -> Optional[int]:
    """The first logged step where ``values`` (mean over seeds) exceeds ``threshold``; None if never."""
    above = np.flatnonzero(np.asarray(values) > threshold)
    return int(steps[above[0]]) if above.size else None


def summarize(history: History, alpha: float) -> dict:
    """Final means over seeds for :data:`SUMMARY_ROWS`, and the dynamics."""
    summary = {}
    for row in SUMMARY_ROWS:
        if row in history.variants:
            summary[row] = {m: float(history.series(row, m)[-1].mean()) for m in SUMMARY_METRICS}
    steps = history.steps
    dynamics = {
        "p_noise_threshold": 0.8 * alpha,
        "first_step_p_noise_above_0.8_alpha": first_step(steps, history.series("full", "p_noise").mean(1), 0.8 * alpha),
    }
    if "layer2_ff_rho0" in history.variants:
        acc = history.series("layer2_ff_rho0", "accuracy")
        dynamics["first_step_layer2_ff_rho0_accuracy_above_0.9"] = first_step(steps, acc.mean(1), 0.9)
        dynamics["per_seed_first_step_layer2_ff_rho0_accuracy_above_0.9"] = [
            first_step(steps, acc[:, s], 0.9) for s in range(acc.shape[1])]
    dynamics["per_seed_first_step_p_noise_above_0.8_alpha"] = [
        first_step(steps, history.series("full", "p_noise")[:, s], 0.8 * alpha)
        for s in range(len(history.metrics[0]))]
    dynamics["first_step_attn1_prev_token_after_trigger_above_0.5"] = first_step(
        steps, history.probe("attn1_prev_token_after_trigger").mean(1), 0.5)
    dynamics["first_step_attn2_to_correct_above_0.5"] = first_step(
        steps, history.probe("attn2_to_correct").mean(1), 0.5)
    noise_first = dynamics["first_step_p_noise_above_0.8_alpha"]
    icl_first = dynamics.get("first_step_layer2_ff_rho0_accuracy_above_0.9")
    dynamics["global_association_learned_first"] = (
        None if noise_first is None or icl_first is None else bool(noise_first < icl_first))
    summary["dynamics"] = dynamics
    return summary


def checks(summary: dict, alpha: float) -> dict:
    """The expected outcome, as booleans (None when a row is missing)."""
    full, ff1, ff2 = (summary.get(r) for r in SUMMARY_ROWS)
    cleared = lambda row: row["accuracy"] >= 0.95 and row["p_noise"] <= 0.05  # noqa: E731
    return {
        "full_p_noise_near_alpha": None if full is None else bool(abs(full["p_noise"] - alpha) <= 0.1),
        "layer2_ff_rho0_removes_noise": None if ff2 is None else bool(cleared(ff2)),
        "layer1_ff_rho0_does_not": None if ff1 is None else bool(not cleared(ff1)),
    }


def format_table(summary: dict, preset: Preset) -> str:
    alpha = preset.task.alpha
    lines = [f"synthetic task, preset {preset.name!r}: {preset.seeds} seeds trained together, alpha = {alpha:g}, "
             f"{preset.steps} steps",
             "clean test set, repeat-trigger positions, mean over seeds:",
             f"{'model':<18}{'accuracy':>10}{'p_noise':>10}{'p_correct':>11}"]
    for row in SUMMARY_ROWS:
        if row in summary:
            values = summary[row]
            lines.append(f"{row:<18}{values['accuracy']:>10.3f}{values['p_noise']:>10.3f}{values['p_correct']:>11.3f}")
    for name, ok in checks(summary, alpha).items():
        lines.append(f"check {name}: {'n/a' if ok is None else ('yes' if ok else 'NO')}")
    dyn = summary["dynamics"]
    lines.append(f"dynamics: p_noise > {dyn['p_noise_threshold']:g} first at step "
                 f"{dyn['first_step_p_noise_above_0.8_alpha']}; accuracy after truncating layer 2's FF (rho=0) > 0.9 "
                 f"first at step {dyn.get('first_step_layer2_ff_rho0_accuracy_above_0.9')}; global association "
                 f"learned first: {dyn['global_association_learned_first']}")
    if "wall_seconds" in summary:
        lines.append(f"wall time: {summary['wall_seconds']:.1f} s")
    return "\n".join(lines)


def history_json(history: History, preset: Preset, stats_source: str) -> dict:
    """All logged values: each series as its mean over seeds and per seed."""

    def series(values: np.ndarray) -> dict:
        values = np.asarray(values, np.float64)
        return {"mean": _clean(values.mean(axis=1)), "per_seed": _clean(values)}

    return {
        "preset": preset.name,
        "config": _jsonable(dataclasses.asdict(preset)),
        "stats": stats_source,
        "steps": list(history.steps),
        "train_loss": series(np.asarray(history.train_loss)),
        "variants": history.variants,
        "metrics": {v: {m: series(history.series(v, m)) for m in probes.METRICS} for v in history.variants},
        "probes": {p: series(history.probe(p)) for p in probes.PROBES},
    }


def _clean(array: np.ndarray):
    """Lists with NaN as None (strict JSON)."""
    return [_clean(a) for a in array] if np.ndim(array) else (None if not math.isfinite(float(array)) else float(array))


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def run_experiment(preset="quick", out_dir=None, *, seeds: Optional[int] = None, alpha: Optional[float] = None,
                   stats: Optional[str] = None, steps: Optional[int] = None, log_every: Optional[int] = None,
                   checkpoint_steps: Optional[Sequence[int]] = None, resume_from=None, assoc: bool = True,
                   make_plots: bool = True, progress: bool = True, verbose: bool = True) -> dict:
    """Run the synthetic experiment; returns ``{"summary", "history", "assoc_memory", "preset"}``.

    ``out_dir`` (optional) receives ``metrics.json``, ``summary.json``,
    ``assoc_memory.json``, the PNG plots and any checkpoints.
    """
    started = time.perf_counter()
    preset = resolve(preset, seeds=seeds, alpha=alpha, stats=stats, steps=steps, log_every=log_every,
                     checkpoint_steps=checkpoint_steps)
    out = None if out_dir is None else Path(out_dir)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    if verbose:
        print(f"synthetic: preset {preset.name!r}, {preset.seeds} seeds, alpha={preset.task.alpha:g}, "
              f"d={preset.model.d_model}, T={preset.task.seq_len}, batch={preset.optim.batch_size}, "
              f"{preset.steps} steps, stats={preset.stats}")
    _, history, _ = train_and_log(preset, out, resume_from, progress)
    assoc_result = assoc_memory.train(preset.assoc) if assoc else None
    summary = summarize(history, preset.task.alpha)
    summary["checks"] = checks(summary, preset.task.alpha)
    summary["wall_seconds"] = time.perf_counter() - started
    if out is not None:
        (out / "metrics.json").write_text(json.dumps({**history_json(history, preset, preset.stats),
                                                      "summary": summary}, indent=1))
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
        if assoc_result is not None:
            (out / "assoc_memory.json").write_text(json.dumps(assoc_result, indent=1))
        if make_plots:
            plots.write_all(out, history, preset, assoc_result)
        summary["wall_seconds"] = time.perf_counter() - started
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
    if verbose:
        first, last = history.metrics[0][:, 0].mean(0), history.metrics[-1][:, 0].mean(0)
        print(f"before training: accuracy {first[1]:.3f}, p_noise {first[2]:.3f}; "
              f"after: accuracy {last[1]:.3f}, p_noise {last[2]:.3f}")
        print(format_table(summary, preset))
        if assoc_result is not None:
            print("associative memory (W d x d; top singular component vs the rest):")
            print("\n".join(assoc_memory.summary_lines(assoc_result)))
        if out is not None:
            print(f"wrote {out}/summary.json, metrics.json and plots")
    return {"summary": summary, "history": history, "assoc_memory": assoc_result, "preset": preset}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m synthetic.run [options]``: the same command, options and parser as ``laser-jax synthetic``."""
    import sys

    from laser_jax.cli import main as laser_jax_main

    return laser_jax_main(["synthetic", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
