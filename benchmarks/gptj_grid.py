"""A GPT-J-6B-shaped LASER grid with random bf16 weights: variants/s and MFU on this machine.

The grid is ``fc_in`` and ``fc_out`` of every layer × 9 ρ (28 × 2 × 9 = 504
variants, plus the base) on 512 random prompts of 12 tokens with one answer
token each, swept by :func:`laser_jax.sweep.sweep` on the default mesh (every
device) at ``--precision`` (default: JAX's default, i.e. bf16 matmuls). The
weights are drawn on the device (N(0, 0.02), norms 1, biases 0), so no
checkpoint is read. ``--small`` is the same grid at a CPU-sized shape
(d = 64, 3 layers, vocabulary 512, 32 prompts), which is what the tests run.

A warm-up sweep (the first and last layer, both τ) compiles every function;
the exact SVDs of the other layers are then timed (and the time scaled to
every layer), and the timed sweep runs the whole grid from the cached
factors: variants/s without and with the SVDs. MFU is the model FLOPs of the rows
(blocks from the edited layer on at every real token, the head at the scored
position; the base a full forward) over the time, against the device's dense
peak when known (H100/H200/A100 in bf16), else against the best rate of a
large matmul measured here. The last line is the summary.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from laser_jax.examples import Example
from laser_jax.laser import FactorCache, expand_grid, factors_for
from laser_jax.model import Model
from laser_jax.models import get_family
from laser_jax.models.convert import set_path, transpose
from laser_jax.models.gptj import PRESETS
from laser_jax.devices import default_mesh
from laser_jax.sweep import SweepOptions, sweep

RHOS = (0.9, 0.8, 0.6, 0.4, 0.2, 0.1, 0.05, 0.01, 0.005)
TAUS = ("fc_in", "fc_out")
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12}  # dense bf16 FLOP/s of the SXM parts
SMALL = dict(vocab_size=512, n_positions=64, d_model=64, n_layers=3, n_heads=4, d_mlp=256, rotary_dim=8)


def random_params(cfg, dtype, seed: int = 0) -> dict:
    """GPT-J parameters of ``cfg`` drawn on the default device (one compiled call), laid out by the family's
    conversion table."""
    leaves = []  # (path, shape, kind)
    for rule in get_family("gptj").hf_rules(cfg):
        shape = tuple(rule.shape(cfg))
        shape = shape[::-1] if rule.to_ours is transpose else shape
        (path,) = rule.ours
        kind = "ones" if path.endswith("_scale") else "zeros" if len(shape) == 1 else "normal"
        leaves.append((path, (cfg.n_layers, *shape) if rule.per_layer else shape, kind))

    @jax.jit
    def draw(key):
        tree: dict = {}
        for index, (path, shape, kind) in enumerate(leaves):
            if kind == "normal":
                leaf = 0.02 * jax.random.normal(jax.random.fold_in(key, index), shape, dtype)
            else:
                leaf = (jnp.ones if kind == "ones" else jnp.zeros)(shape, dtype)
            set_path(tree, path, leaf)
        return tree

    return draw(jax.random.key(seed))


def block_flops_per_token(cfg, context: float) -> float:
    """Matmul FLOPs of one block per token: q, k, v, out, fc_in, fc_out, and attention over ``context`` keys."""
    return 2 * (4 * cfg.d_model ** 2 + 2 * cfg.d_model * cfg.d_mlp) + 4 * context * cfg.d_model


def grid_flops(cfg, n_tokens: int, n_scored: int, context: float, layers) -> float:
    """Model FLOPs of the base row plus one row per (layer, τ, ρ) of the grid."""
    block = block_flops_per_token(cfg, context) * n_tokens
    head = 2 * cfg.d_model * cfg.vocab_size * n_scored
    base = cfg.n_layers * block + head
    return base + sum(len(TAUS) * len(RHOS) * ((cfg.n_layers - layer) * block + head) for layer in layers)


def matmul_rate(dtype, n: int, repeats: int = 5) -> float:
    """Best FLOP/s of an n x n x n matmul in ``dtype`` on the default device."""
    a = jnp.ones((n, n), dtype)
    product = jax.jit(lambda x: x @ x)
    product(a).block_until_ready()
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        product(a).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="a CPU-sized shape of the same grid")
    parser.add_argument("--prompts", type=int, help="number of prompts (default 512; 32 with --small)")
    parser.add_argument("--precision", choices=("default", "high", "highest"), default="default",
                        help="matmul precision (default: default, bf16 matmuls)")
    args = parser.parse_args()
    cfg = dataclasses.replace(PRESETS["gpt-j-6b"], **(SMALL if args.small else {}))
    n_prompts = args.prompts or (32 if args.small else 512)
    prompt_len = 12
    device = jax.devices()[0]
    print(f"gptj_grid: {'small ' if args.small else ''}GPT-J shape d={cfg.d_model} layers={cfg.n_layers} "
          f"d_mlp={cfg.d_mlp} vocab={cfg.vocab_size}, bf16, {n_prompts} prompts x {prompt_len} tokens, "
          f"{jax.device_count()} x {device.device_kind}", flush=True)

    start = time.perf_counter()
    model = Model(family=get_family("gptj"), config=cfg, params=random_params(cfg, jnp.bfloat16))
    jax.block_until_ready(model.params)
    n_params = sum(leaf.size for leaf in jax.tree.leaves(model.params))
    print(f"random weights: {n_params / 1e9:.2f} B parameters in {time.perf_counter() - start:.1f} s", flush=True)
    rng = np.random.default_rng(0)
    examples = [Example(tuple(int(t) for t in rng.integers(0, cfg.vocab_size, prompt_len)),
                        (int(rng.integers(0, cfg.vocab_size)),)) for _ in range(n_prompts)]
    layers = list(range(cfg.n_layers))
    cache = FactorCache(max_bytes=1 << 40)  # every (layer, tau)'s factors stay (18 GB at GPT-J's shape)
    options = SweepOptions(top_k=1, batch_size=min(n_prompts, 512), mesh=default_mesh(model), cache=cache,
                           prefix_budget_bytes=8 << 30)

    with jax.default_matmul_precision(args.precision):
        start = time.perf_counter()
        sweep(model, examples, expand_grid([layers[0], layers[-1]], TAUS, RHOS), options=options)  # compiles every function
        warm_s = time.perf_counter() - start
        start = time.perf_counter()
        jax.block_until_ready([factors_for(model, layer, tau, cache=cache) for layer in layers[1:-1] for tau in TAUS])
        svd_s = (time.perf_counter() - start) * len(layers) / max(1, len(layers) - 2)  # estimated for every layer
        start = time.perf_counter()
        result = sweep(model, examples, expand_grid(layers, TAUS, RHOS), options=options)  # the SVDs are cached
        sweep_s = time.perf_counter() - start

    n_variants = len(result) - 1
    flops = grid_flops(cfg, n_prompts * prompt_len, n_prompts, (prompt_len + 1) / 2, layers)
    rate = flops / sweep_s
    peak_name = next((name for name in PEAK_BF16 if name in device.device_kind), None)
    if peak_name is not None and args.precision == "default":
        peak, against = PEAK_BF16[peak_name] * jax.device_count(), f"{peak_name} dense bf16 peak"
    else:
        peak = matmul_rate(jnp.bfloat16, 1024 if args.small else 8192) * jax.device_count()
        against = "measured bf16 matmul rate"
    accuracy = result.base.metrics["top1_accuracy"]
    print(f"warm-up (compiles; layers {layers[0]} and {layers[-1]}) {warm_s:.1f} s; exact SVDs {svd_s:.1f} s for "
          f"{len(layers) * len(TAUS)} matrices (estimated from {(len(layers) - 2) * len(TAUS)}); grid {sweep_s:.1f} s "
          f"for {n_variants} variants + base; model FLOPs {flops / 1e12:.1f} TFLOP = {rate / 1e12:.2f} TFLOP/s; "
          f"peak {peak / 1e12:.1f} TFLOP/s ({against}); base top-1 {accuracy:.3f} (random weights)", flush=True)
    print(f"gptj_grid: {n_variants} variants in {sweep_s:.1f} s: {n_variants / sweep_s:.2f} variants/s "
          f"({n_variants / (sweep_s + svd_s):.2f} with the SVDs), MFU {rate / peak:.1%} of the {against}")


if __name__ == "__main__":
    main()
