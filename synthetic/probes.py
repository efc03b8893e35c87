"""Test metrics, LASER truncation variants and mechanistic probes, jitted and vmapped over seeds.

Role: everything measured at a logged step.

- :func:`repeat_metrics`: at repeat-trigger positions of the clean test set,
  the loss, argmax accuracy, mean p(noise) and mean p(correct).
- Variants: each is one :class:`laser_jax.laser.Intervention` (``layer, tau,
  rho``; ``tau="mlp"`` truncates both FF matrices). Truncation uses
  :func:`laser_jax.laser.truncate` and :func:`laser_jax.laser.rank_for`, the
  same code that :func:`laser_jax.laser.apply` runs on pretrained models; the
  SVD of a matrix is shared by all its ρ (``vmap`` over k). Blocks before the
  truncated one are run once and shared by its variants.
- :func:`probe_values` (on a fixed *noisy* batch, since the clean test set has
  no noise tokens to attend to): the FF "trigger → noise" logit margin of
  each layer (official ``mlp2_trigger_margin_from_noise``: the trigger's token
  embedding through that FF and the output matrix, noise logit minus the best
  other logit); layer 1's mean attention to the previous token, at all
  positions and at the positions right after a trigger (the keys layer 2
  must find); layer 2's
  attention mass, at repeat triggers, on the tokens that follow earlier
  triggers, split into noise tokens and correct (output) tokens.
"""

from __future__ import annotations

import functools
from typing import Optional, Sequence

import jax
import jax.numpy as jnp

from laser_jax import laser
from laser_jax.models import base
from synthetic import data
from synthetic.model import SyntheticConfig, attention_probs, family

METRICS = ("loss", "accuracy", "p_noise", "p_correct")
PROBES = ("ff1_margin", "ff2_margin", "attn1_prev_token", "attn1_prev_token_after_trigger", "attn2_to_noise",
          "attn2_to_correct")
DEFAULT_RHOS = (0.0, 0.1, 0.2)
SWEEP_TAUS = ("fc_in", "fc_out", "v_proj", "out_proj")


def variant_name(step: laser.Intervention) -> str:
    """``layer2_fc_in_rho0.1``; the FF group is ``ff``: ``layer2_ff_rho0`` (layers named from 1)."""
    tau = "ff" if step.tau == "mlp" else step.tau
    return f"layer{step.layer + 1}_{tau}_rho{step.rho:g}"


def default_variants(cfg: SyntheticConfig, rhos: Sequence[float] = DEFAULT_RHOS) -> tuple[laser.Intervention, ...]:
    """Each FF matrix and W_V, W_O of every layer at each ρ, and each layer's whole FF at ρ = 0."""
    steps = [laser.Intervention(layer, tau, rho) for layer in range(cfg.n_layers)
             for tau in SWEEP_TAUS if tau in cfg.taus for rho in rhos]
    if cfg.has_ff:
        steps += [laser.Intervention(layer, "mlp", 0.0) for layer in range(cfg.n_layers) if cfg.ff[layer] != "none"]
    return tuple(steps)


def repeat_metrics(logits, targets, valid, noise_token: int) -> jax.Array:
    """``[loss, accuracy, p_noise, p_correct]`` averaged over the valid (repeat) positions."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    logp_target = jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    weights = valid.astype(jnp.float32)
    values = (-logp_target, (jnp.argmax(logits, -1) == targets).astype(jnp.float32),
              jnp.exp(logp[..., noise_token]), jnp.exp(logp_target))
    return jnp.stack([jnp.sum(v * weights) / jnp.maximum(jnp.sum(weights), 1.0) for v in values])


def truncated_blocks(cfg: SyntheticConfig, params, steps: Sequence[laser.Intervention]) -> list[dict]:
    """For each step, the parameters of its block with the step applied (SVDs shared across ρ)."""
    fam = family(cfg)
    wanted: dict[tuple[int, str], set[float]] = {}
    for step in steps:
        for tau in laser.matrices_of(fam, step.tau):
            wanted.setdefault((step.layer, tau), set()).add(step.rho)
    cache = {}
    for (layer, tau), rhos in wanted.items():
        matrix = params["blocks"][tau][layer]
        rhos = sorted(rhos)
        ranks = jnp.asarray([laser.rank_for(rho, matrix.shape) for rho in rhos])
        truncated = jax.vmap(laser.truncate, in_axes=(None, 0))(matrix, ranks)
        cache.update({(layer, tau, rho): truncated[i] for i, rho in enumerate(rhos)})
    out = []
    for step in steps:
        block = dict(base.layer_params(params, step.layer))
        for tau in laser.matrices_of(fam, step.tau):
            block[tau] = cache[(step.layer, tau, step.rho)]
        out.append(block)
    return out


def evaluate(cfg: SyntheticConfig, params, evalset: data.EvalSet, steps: Sequence[laser.Intervention],
             noise_token: int, blocks: Optional[list] = None) -> jax.Array:
    """Metrics [1 + len(steps), 4] of one seed: the full model, then each truncated variant.

    ``blocks``: the output of :func:`truncated_blocks` when already computed.
    """
    fam = family(cfg)
    ids = evalset.batch.inputs
    ctx = base.make_context(ids)
    last = cfg.n_layers - 1
    hidden = [fam.embed(params, cfg, ids, ctx)]  # hidden[l] enters block l under the full model
    for layer in range(last):
        hidden.append(base.block(fam, cfg, base.layer_params(params, layer), hidden[-1], ctx))

    def tail(start: int, first_block: dict) -> jax.Array:
        h = hidden[start]
        for layer in range(start, cfg.n_layers):
            p = first_block if layer == start else base.layer_params(params, layer)
            h = base.block(fam, cfg, p, h, ctx, evalset.select if layer == last else None)
        return repeat_metrics(fam.head(params, cfg, h), evalset.targets, evalset.valid, noise_token)

    rows = [tail(last, base.layer_params(params, last))[None]]
    blocks = truncated_blocks(cfg, params, steps) if blocks is None else blocks
    order = []
    for layer in range(cfg.n_layers):
        members = [i for i, step in enumerate(steps) if step.layer == layer]
        if members:
            stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *[blocks[i] for i in members])
            rows.append(jax.lax.map(functools.partial(tail, layer), stacked))
            order += members
    table = jnp.concatenate(rows)
    inverse = [0] + [1 + order.index(i) for i in range(len(steps))]
    return table[jnp.asarray(inverse)]


def ff_margin(cfg: SyntheticConfig, params, layer: int, trigger, noise_token: int) -> jax.Array:
    """Noise logit minus the best other logit for the trigger's embedding through one FF."""
    x = params["embed"]["tok"][trigger]
    logits = base.linear(family(cfg).mlp(base.layer_params(params, layer), cfg, x), params["final"]["out"])
    others = jnp.max(jnp.where(jnp.arange(logits.shape[-1]) == noise_token, -jnp.inf, logits))
    return logits[noise_token] - others


def probe_values(cfg: SyntheticConfig, params, probeset: data.EvalSet, trigger, noise_token: int) -> jax.Array:
    """The :data:`PROBES` of one seed (see the module docstring)."""
    fam = family(cfg)
    batch = probeset.batch
    ctx = base.make_context(batch.inputs)
    h = fam.embed(params, cfg, batch.inputs, ctx)
    last = cfg.n_layers - 1
    margins = [ff_margin(cfg, params, layer, trigger, noise_token) if cfg.ff[layer] != "none" else jnp.nan
               for layer in (0, last)]
    probs1 = attention_probs(base.layer_params(params, 0), cfg, h, ctx).mean(axis=2)  # [B, T, T]
    prev = jnp.diagonal(probs1, offset=-1, axis1=1, axis2=2)  # [B, T - 1]: query t, key t - 1
    after = (batch.counts[:, :-1] >= 1).astype(prev.dtype)
    prev_after_trigger = jnp.sum(prev * after) / jnp.maximum(jnp.sum(after), 1.0)
    h = base.run_blocks(fam, cfg, params, h, ctx, 0, last)
    probs2 = attention_probs(base.layer_params(params, last), cfg, h, ctx, probeset.select).mean(axis=2)  # [B, A, T]
    after_trigger = jnp.pad(batch.counts[:, :-1] >= 1, ((0, 0), (1, 0)))  # key j follows a trigger at j - 1
    is_noise = batch.inputs == noise_token
    weights = probeset.valid.astype(jnp.float32)

    def mass(keys):
        per_query = jnp.einsum("bat,bt->ba", probs2, keys.astype(probs2.dtype))
        return jnp.sum(per_query * weights) / jnp.maximum(jnp.sum(weights), 1.0)

    return jnp.stack([*margins, prev.mean(), prev_after_trigger, mass(after_trigger & is_noise),
                      mass(after_trigger & ~is_noise)])


@functools.partial(jax.jit, static_argnames=("cfg", "steps", "noise_token"))
def evaluate_seeds(params, evalset: data.EvalSet, probeset: data.EvalSet, trigger, *, cfg: SyntheticConfig,
                   steps: tuple[laser.Intervention, ...], noise_token: int) -> tuple[jax.Array, jax.Array]:
    """Metrics [S, 1 + len(steps), 4] and probes [S, len(PROBES)] for seed-stacked params.

    The SVDs run one seed at a time (``lax.map``), the forward passes are
    vmapped over seeds. A vmapped SVD would be a *batched* LAPACK call, which
    jaxlib 0.10 on CPU splits over the XLA thread pool and waits for from
    inside that pool: with several such calls in one program on a small
    machine every worker waits and the program deadlocks. Unbatched SVDs run inline.
    """
    blocks = jax.lax.map(lambda p: truncated_blocks(cfg, p, steps), params)

    def one(p, b):
        return evaluate(cfg, p, evalset, steps, noise_token, b), probe_values(cfg, p, probeset, trigger, noise_token)

    return jax.vmap(one)(params, blocks)
