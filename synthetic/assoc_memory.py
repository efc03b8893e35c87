"""The linear associative-memory toy model: where does a noisy global association live in W?

Role: a d x d matrix W maps random input embeddings to logits over random
output embeddings, ``logits(x) = e_x @ W @ U^T``. Each input x has one
correct output y(x) (never the noise token), but a fraction ``alpha`` of the
targets is the single noise token n. W starts at zero and is trained by
gradient descent on the population loss ``(1 - alpha) CE(y(x)) + alpha CE(n)``
(``batch_size`` > 0 samples noisy pairs instead, adding gradient noise).

At logged steps we record the singular values of W, the share of the
noise-vs-correct logit margin carried by each singular component, the
alignment of the top component with (noise output, mean input), and two
truncation sweeps through :func:`laser_jax.laser.truncate`: keep the top k
components (what LASER does) and remove the top k. With zero-mean random
embeddings the noise gradient ``alpha · u_n (mean_x e_x)^T`` is the same for
every input, so it accumulates into one component; the results (see the
README) show it is the *top* singular component from the first step on.
"""

from __future__ import annotations

import dataclasses
import functools
import jax
import jax.numpy as jnp
import numpy as np

from laser_jax import laser


@dataclasses.dataclass(frozen=True)
class AssocConfig:
    n_inputs: int = 128
    n_outputs: int = 64
    d: int = 64
    alpha: float = 0.5
    noise_token: int = 0
    learning_rate: float = 10.0
    steps: int = 2000
    batch_size: int = 0  # 0: exact population gradient
    log_steps: tuple[int, ...] = (1, 3, 10, 30, 100, 300, 1000, 2000)
    ranks: tuple[int, ...] = (0, 1, 2, 4, 8, 16, 32, 64)
    seed: int = 0


def make_problem(cfg: AssocConfig):
    """Input embeddings [N, d], output embeddings [M, d] (both N(0, 1/d)) and targets y [N] (never noise)."""
    embeddings = jax.random.normal(jax.random.PRNGKey(cfg.seed), (cfg.n_inputs + cfg.n_outputs, cfg.d)) / np.sqrt(cfg.d)
    shift = np.random.default_rng(cfg.seed).integers(1, cfg.n_outputs, cfg.n_inputs)
    targets = jnp.asarray((cfg.noise_token + shift) % cfg.n_outputs, jnp.int32)
    return embeddings[:cfg.n_inputs], embeddings[cfg.n_inputs:], targets


def population_loss(w, inputs, outputs, targets, alpha: float, noise_token: int):
    logp = jax.nn.log_softmax(inputs @ w @ outputs.T)
    correct = jnp.take_along_axis(logp, targets[:, None], axis=1)[:, 0]
    return -jnp.mean((1.0 - alpha) * correct + alpha * logp[:, noise_token])


def sampled_loss(w, key, inputs, outputs, targets, alpha: float, noise_token: int, batch_size: int):
    k_x, k_noise = jax.random.split(key)
    x = jax.random.randint(k_x, (batch_size,), 0, inputs.shape[0])
    y = jnp.where(jax.random.uniform(k_noise, (batch_size,)) < alpha, noise_token, targets[x])
    logp = jax.nn.log_softmax(inputs[x] @ w @ outputs.T)
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


def memory_metrics(w, inputs, outputs, targets, noise_token: int) -> jax.Array:
    """``[p_noise, accuracy, p_correct]`` averaged over inputs."""
    logits = inputs @ w @ outputs.T
    probs = jax.nn.softmax(logits)
    p_correct = jnp.take_along_axis(probs, targets[:, None], axis=1)[:, 0]
    return jnp.stack([probs[:, noise_token].mean(), (logits.argmax(1) == targets).mean(), p_correct.mean()])


@functools.partial(jax.jit, static_argnames=("cfg",))
def _analysis_arrays(w, inputs, outputs, targets, cfg: AssocConfig) -> dict:
    u, s, vt = jnp.linalg.svd(w, full_matrices=False)
    # margin(x) = (U[n] - U[y(x)]) . (W^T e_x) = sum_i s_i (e_x . u_i) (v_i . (U[n] - U[y(x)]))
    margin_parts = (inputs @ u) * s * ((outputs[cfg.noise_token][None] - outputs[targets]) @ vt.T)
    mean_in = inputs.mean(0)
    noise_dir = outputs[cfg.noise_token] - outputs.mean(0)
    cos = lambda a, b: jnp.abs(a @ b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b) + 1e-30)  # noqa: E731
    kept = jax.vmap(laser.truncate, in_axes=(None, 0))(w, jnp.asarray(cfg.ranks))
    sweep = jax.vmap(lambda m: memory_metrics(m, inputs, outputs, targets, cfg.noise_token))
    return {"s": s, "parts": margin_parts.mean(0), "align": jnp.stack([cos(u[:, 0], mean_in), cos(vt[0], noise_dir)]),
            "full": memory_metrics(w, inputs, outputs, targets, cfg.noise_token),
            "keep": sweep(kept), "drop": sweep(w[None] - kept)}


def analyse(w, inputs, outputs, targets, cfg: AssocConfig) -> dict:
    """Spectrum, per-component noise margin, top-component alignment, and both truncation sweeps."""
    a = jax.tree.map(np.asarray, _analysis_arrays(w, inputs, outputs, targets, cfg))
    names = ("p_noise", "accuracy", "p_correct")
    return {
        "singular_values": a["s"].tolist(),
        "noise_margin_by_component": a["parts"].tolist(),
        "top_component_alignment": {"left_with_mean_input": float(a["align"][0]),
                                    "right_with_noise_output": float(a["align"][1])},
        "full": dict(zip(names, a["full"].tolist())),
        "keep_top_k": {name: a["keep"][:, i].tolist() for i, name in enumerate(names)},
        "remove_top_k": {name: a["drop"][:, i].tolist() for i, name in enumerate(names)},
    }


def loss_at(w, step, cfg: AssocConfig, problem):
    """The training loss at ``step``: the population loss, or a sampled batch when ``cfg.batch_size``."""
    inputs, outputs, targets = problem
    if cfg.batch_size:
        key = jax.random.fold_in(jax.random.PRNGKey(cfg.seed + 1), step)
        return sampled_loss(w, key, inputs, outputs, targets, cfg.alpha, cfg.noise_token, cfg.batch_size)
    return population_loss(w, inputs, outputs, targets, cfg.alpha, cfg.noise_token)


@functools.partial(jax.jit, static_argnames=("cfg",))
def advance(w, problem, start, stop, cfg: AssocConfig):
    """Gradient steps ``start <= step < stop``."""
    step = lambda i, w: w - cfg.learning_rate * jax.grad(loss_at)(w, i, cfg, problem)  # noqa: E731
    return jax.lax.fori_loop(start, stop, step, w)


def train(cfg: AssocConfig = AssocConfig()) -> dict:
    """Train W from zero and return ``{"config", "ranks", "log": [{"step", ...analyse()}]}``."""
    problem = make_problem(cfg)
    w = jnp.zeros((cfg.d, cfg.d), jnp.float32)
    log, step = [], 0
    for target in sorted({0, *cfg.log_steps, cfg.steps}):
        w = advance(w, problem, step, target, cfg=cfg)
        step = target
        if step in cfg.log_steps:
            log.append({"step": step, **analyse(w, *problem, cfg)})
    return {"config": dataclasses.asdict(cfg), "ranks": list(cfg.ranks), "log": log}


def summary_lines(result: dict) -> list[str]:
    """One line per logged step: top singular values, its share of the noise margin, and the sweeps."""
    ranks = result["ranks"]
    lines = ["step  s1/s2   noise-margin(top comp, rest)  p_noise: full  keep-top-1  remove-top-1  acc: full  remove-top-1"]
    one = ranks.index(1) if 1 in ranks else None
    for row in result["log"]:
        s, parts = row["singular_values"], row["noise_margin_by_component"]
        keep = row["keep_top_k"]["p_noise"][one] if one is not None else float("nan")
        drop = row["remove_top_k"]["p_noise"][one] if one is not None else float("nan")
        drop_acc = row["remove_top_k"]["accuracy"][one] if one is not None else float("nan")
        lines.append(f"{row['step']:>5} {s[0] / max(s[1], 1e-30):6.2f}   {parts[0]:+8.3f} {sum(parts[1:]):+8.3f}"
                     f"            {row['full']['p_noise']:.3f}   {keep:.3f}       {drop:.3f}"
                     f"        {row['full']['accuracy']:.3f}   {drop_acc:.3f}")
    return lines
