"""PNG figures of a synthetic run (matplotlib, Agg backend).

Role: turn a :class:`synthetic.run.History` (and the associative-memory
result) into the paper-style figures:

- ``dynamics.png``: p(noise), accuracy, and accuracy after each layer-2
  truncation against training steps; mean over seeds with the min-max band;
- ``probes.png``: FF trigger->noise margins and the attention probes;
- ``heatmap.png``: final accuracy and p(noise) for ρ x truncated matrix;
- ``assoc_memory.png``: the toy memory's spectrum over training, the noise
  margin carried by each singular component, and its truncation sweeps.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from synthetic import probes  # noqa: E402

MATRIX_ORDER = tuple(f"layer{layer}_{tau}" for layer in (1, 2) for tau in probes.SWEEP_TAUS)


def _band(ax, steps, values, label, **style):
    values = np.asarray(values, np.float64)
    line, = ax.plot(steps, np.nanmean(values, 1), label=label, **style)
    if values.shape[1] > 1:
        ax.fill_between(steps, np.nanmin(values, 1), np.nanmax(values, 1), color=line.get_color(), alpha=0.15)


def plot_dynamics(history, preset, path: Path) -> None:
    steps = history.steps
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    shown = [("full", "full model", {}), ("layer1_ff_rho0", "layer 1 FF removed (rho=0)", {"ls": "--"}),
             ("layer2_ff_rho0", "layer 2 FF removed (rho=0)", {"ls": "-."})]
    for metric, ax in zip(("p_noise", "accuracy"), axes[:2]):
        for name, label, style in shown:
            if name in history.variants:
                _band(ax, steps, history.series(name, metric), label, **style)
        ax.set_title(f"{metric} at repeat triggers (clean test)")
    axes[0].axhline(preset.task.alpha, color="grey", lw=0.8, ls=":", label="alpha")
    for name in history.variants:
        if name.startswith("layer2_fc") and not name.endswith("rho1"):
            _band(axes[2], steps, history.series(name, "accuracy"), name.replace("layer2_", "L2 "))
    axes[2].set_title("accuracy after truncating a layer-2 FF matrix")
    for ax in axes:
        ax.set_xlabel("training step")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=7)
    fig.suptitle(f"synthetic '{preset.name}': {preset.seeds} seeds, alpha={preset.task.alpha:g}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_probes(history, preset, path: Path) -> None:
    steps = history.steps
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name in ("ff1_margin", "ff2_margin"):
        _band(axes[0], steps, history.probe(name), name.replace("_", " "))
    axes[0].axhline(0, color="grey", lw=0.8)
    axes[0].set_title("FF trigger -> noise logit margin")
    for name in ("attn1_prev_token", "attn1_prev_token_after_trigger", "attn2_to_noise", "attn2_to_correct"):
        _band(axes[1], steps, history.probe(name), name.replace("_", " "))
    axes[1].set_title("attention probes (noisy probe batch)")
    axes[1].set_ylim(-0.02, 1.02)
    for ax in axes:
        ax.set_xlabel("training step")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_heatmap(history, preset, path: Path) -> None:
    matrices = [m for m in MATRIX_ORDER if any(v.startswith(m + "_rho") for v in history.variants)]
    rhos = list(preset.rhos)
    fig, axes = plt.subplots(2, 1, figsize=(2.5 + 1.0 * len(matrices), 6))
    for metric, ax, cmap in (("accuracy", axes[0], "viridis"), ("p_noise", axes[1], "magma")):
        grid = np.full((len(rhos), len(matrices)), np.nan)
        for i, rho in enumerate(rhos):
            for j, matrix in enumerate(matrices):
                name = f"{matrix}_rho{rho:g}"
                if name in history.variants:
                    grid[i, j] = history.series(name, metric)[-1].mean()
        image = ax.imshow(grid, cmap=cmap, vmin=0, vmax=1, aspect="auto")
        for (i, j), value in np.ndenumerate(grid):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if value < 0.5 else "black")
        ax.set_xticks(range(len(matrices)), [m.replace("layer", "L").replace("_", " ") for m in matrices],
                      rotation=30, fontsize=8)
        ax.set_yticks(range(len(rhos)), [f"rho={r:g}" for r in rhos])
        ax.set_title(f"{metric} after truncation (step {history.steps[-1]})")
        fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_assoc_memory(result: dict, path: Path) -> None:
    log, ranks = result["log"], result["ranks"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    colors = plt.cm.viridis(np.linspace(0, 1, len(log)))
    for row, color in zip(log, colors):
        axes[0].semilogy(np.arange(1, len(row["singular_values"]) + 1), row["singular_values"], color=color,
                         label=f"step {row['step']}")
        axes[1].plot(np.arange(1, len(row["singular_values"]) + 1), row["noise_margin_by_component"], color=color)
    axes[0].set_title("singular values of W")
    axes[0].set_xlabel("component")
    axes[0].legend(fontsize=7)
    axes[1].axhline(0, color="grey", lw=0.8)
    axes[1].set_title("noise-minus-correct logit margin carried by each component")
    axes[1].set_xlabel("component")
    final = log[-1]
    for key, style in (("keep_top_k", "-"), ("remove_top_k", "--")):
        axes[2].plot(ranks, final[key]["p_noise"], style, marker="o", label=f"p_noise, {key.replace('_', ' ')}")
        axes[2].plot(ranks, final[key]["accuracy"], style, marker="s", label=f"accuracy, {key.replace('_', ' ')}")
    axes[2].set_xscale("symlog", linthresh=1)
    axes[2].set_xlabel("k")
    axes[2].set_title(f"truncation sweep at step {final['step']}")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_all(out_dir, history, preset, assoc_result=None) -> list[Path]:
    out_dir = Path(out_dir)
    paths = []
    for name, fn in (("dynamics.png", plot_dynamics), ("probes.png", plot_probes), ("heatmap.png", plot_heatmap)):
        fn(history, preset, out_dir / name)
        paths.append(out_dir / name)
    if assoc_result is not None:
        plot_assoc_memory(assoc_result, out_dir / "assoc_memory.png")
        paths.append(out_dir / "assoc_memory.png")
    return paths
