"""Benchmark (not a test): our LASER sweep against the official algorithm in PyTorch.

Same randomly initialised GPT-2-small-shaped checkpoint (12 layers, d=768,
vocab 50257) and the same 64 prompts x 16 tokens, one answer token each; grid
layers 8-11 x fc_in x rho in {0.9, 0.5, 0.25, 0.1, 0.05, 0.01}, plus the base.

(a) reference, as the official code: per variant, deepcopy the transformers
    model, ``torch.svd_lowrank(W, q=k, niter=2)`` on ``mlp.c_fc`` (Conv1D weight,
    stored (in, out)), rebuild the dense matrix, full forward (head at all 16
    positions), score the answer at the last position; torch uses every core.
(b) ours: :func:`laser_jax.sweep.sweep`, compiled once beforehand (compile time
    reported apart); the timed run starts from an empty SVD cache, so the SVDs
    are included.

Prints the machine's fp32 matmul rate (large jnp matmul), FLOP estimates per
row (useful FLOPs of our algorithm; the reference's full forward), both
times, both FLOP rates as fractions of the matmul rate, and a last line
ending in ``speedup: X``. Run: ``python benchmarks/sweep_vs_reference.py``
(``--svd-dtype float64``: the Gram-matrix float64 SVD; ``--no-rank-buckets``:
full-width masked factors; ``--skip-reference``: ours only; ``--small``: a
CPU-test-sized shape, 4 layers of d=96, vocab 1000, 16 prompts x 8 tokens,
layers 2-3; :data:`SMALL`). Note the load
(``uptime``): the machine may be shared.

The FLOP ratio gives the speedup at equal FLOP rates: about 8.8x here. What
a variant must compute after sharing (the blocks after its layer at all 16
positions, since the last block's keys need them; the last block's keys and
values; the head over the 50257-token vocabulary at the scored position) is
about 29 GFLOP per row on average against the reference's 254.
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch
import transformers

from laser_jax import load_model
from laser_jax.examples import Example
from laser_jax.laser import FACTOR_CACHE, expand_grid, factors_for, rank_for
from laser_jax.sweep import SweepOptions, sweep

LAYERS = (8, 9, 10, 11)
RHOS = (0.9, 0.5, 0.25, 0.1, 0.05, 0.01)
N_PROMPTS, PROMPT_LEN = 64, 16
D, D_MLP, N_LAYERS, VOCAB = 768, 3072, 12, 50257
SMALL = dict(LAYERS=(2, 3), N_PROMPTS=16, PROMPT_LEN=8, D=96, D_MLP=384, N_LAYERS=4, VOCAB=1000)  # --small


def matmul_rate(n: int = 3072, repeats: int = 5) -> float:
    """Best-of fp32 FLOP/s of an n x n jnp matmul on this machine."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    f = jax.jit(lambda x, y: x @ y)
    f(a, a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        f(a, a).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def block_flops(tokens: int, queries: int) -> float:
    """Matmul FLOPs of one GPT-2 block: K and V at ``tokens`` positions, the rest at ``queries``.

    Attention scores and their weighted sum count 2·T·d each per query.
    """
    per_query = 2 * D * D + 2 * D * D_MLP + 2 * PROMPT_LEN * D
    return 2 * (tokens * 2 * D * D + queries * per_query)


def head_flops(positions: int) -> float:
    return 2 * positions * D * VOCAB


def base_flops() -> float:
    """The base forward: every block at all tokens (the last one's queries at the scored positions), head there."""
    tokens, scored = N_PROMPTS * PROMPT_LEN, N_PROMPTS
    return block_flops(tokens, tokens) * (N_LAYERS - 1) + block_flops(tokens, scored) + head_flops(scored)


def useful_flops(layer: int, ranks) -> float:
    """Our algorithm's necessary FLOPs for the variants of one layer (fc_in at ranks ``ranks``).

    Shared: ``x @ u[:, :max k]`` once. Per variant: the rank-k second factor,
    fc_out, the blocks after the layer at all tokens, the last block's K and V at
    all tokens and the rest at the scored positions, the head at the scored
    positions. Not counted (our overheads): the layer's attention stage, which
    each call recomputes once, and the columns of a factor beyond its rank
    (masked at full width, or up to the rank's power-of-two bucket).
    """
    tokens, scored = N_PROMPTS * PROMPT_LEN, N_PROMPTS
    last = N_LAYERS - 1
    rows = scored if layer == last else tokens  # the last block runs at the scored positions only
    flops = 2 * rows * D * max(ranks)
    for k in ranks:
        flops += 2 * rows * (k * D_MLP + D_MLP * D) + head_flops(scored)
        if layer < last:
            flops += block_flops(tokens, tokens) * (last - layer - 1) + block_flops(tokens, scored)
    return flops


def reference_flops_per_row() -> float:
    """The official algorithm: a full forward, head at every position."""
    tokens = N_PROMPTS * PROMPT_LEN
    return block_flops(tokens, tokens) * N_LAYERS + head_flops(tokens)


def build_checkpoint(directory: str):
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=VOCAB, n_positions=1024, n_embd=D, n_layer=N_LAYERS, n_head=12)
    model = transformers.GPT2LMHeadModel(config).eval()
    model.save_pretrained(directory)
    return model


def reference_sweep(torch_model, ids: np.ndarray, answers: np.ndarray) -> dict:
    """The official algorithm, one deepcopy + svd_lowrank + full forward per variant."""
    torch.set_num_threads(os.cpu_count())
    input_ids = torch.tensor(ids)
    rows = {}

    def score(model):
        with torch.no_grad():
            logits = model(input_ids=input_ids).logits[:, -1].float()
        logprobs = torch.log_softmax(logits, -1)
        answer_logprob = logprobs[torch.arange(len(answers)), torch.tensor(answers)]
        return {"top1": logits.argmax(-1).numpy() == answers, "logprob": answer_logprob.numpy()}

    rows["base"] = score(torch_model)
    for layer in LAYERS:
        for rho in RHOS:
            model = copy.deepcopy(torch_model)
            weight = model.transformer.h[layer].mlp.c_fc.weight  # Conv1D: (in, out)
            k = int(min(weight.shape) * rho)
            u, s, v = torch.svd_lowrank(weight.data, q=k, niter=2)
            with torch.no_grad():
                weight.copy_(u @ torch.diag(s) @ v.T)
            rows[f"{layer}/fc_in/{rho!r}"] = score(model)
    return rows


def svd_seconds(model, svd_dtype: str) -> float:
    """Time of the exact SVDs the sweep needs (fresh cache)."""
    FACTOR_CACHE.clear()
    start = time.perf_counter()
    for layer in LAYERS:
        jax.block_until_ready(factors_for(model, layer, "fc_in", svd_dtype=svd_dtype))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-rank-buckets", dest="rank_buckets", action="store_false",
                        help="full-width masked factors for every variant (default: power-of-two widths)")
    parser.add_argument("--svd-dtype", choices=("float32", "float64"), default="float32",
                        help="exact SVD: float32 LAPACK (default) or float64 through the Gram matrix")
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--small", action="store_true", help="the CPU-test-sized shape SMALL instead of GPT-2 small")
    args = parser.parse_args()
    if args.small:
        globals().update(SMALL)  # the shape constants every function here reads
    rng = np.random.default_rng(0)
    ids = rng.integers(0, VOCAB, (N_PROMPTS, PROMPT_LEN))
    answers = rng.integers(0, VOCAB, N_PROMPTS)
    examples = [Example(tuple(map(int, p)), (int(a),)) for p, a in zip(ids, answers)]
    with tempfile.TemporaryDirectory() as directory:
        torch_model = build_checkpoint(directory)
        model = load_model(directory, tokenizer=False)

    load_before = os.getloadavg()[0]
    rate = matmul_rate()
    grid = expand_grid(LAYERS, ("fc_in",), RHOS)
    options = SweepOptions(top_k=1, rank_buckets=args.rank_buckets, svd_dtype=args.svd_dtype)
    start = time.perf_counter()
    sweep(model, examples, grid, options=options)
    first = time.perf_counter() - start
    FACTOR_CACHE.clear()
    start = time.perf_counter()
    ours = sweep(model, examples, grid, options=options)  # compiled; the SVDs are recomputed
    ours_s = time.perf_counter() - start
    svd_s = svd_seconds(model, args.svd_dtype)

    ranks = [rank_for(rho, (D, D_MLP)) for rho in RHOS]
    rows = len(LAYERS) * len(RHOS) + 1
    useful = base_flops() + sum(useful_flops(layer, ranks) for layer in LAYERS)
    reference_flops = reference_flops_per_row() * rows
    print(f"load: {load_before:.2f} (1-min average) on {os.cpu_count()} cores; jax {jax.__version__}, torch {torch.__version__}")
    print(f"machine fp32 matmul rate: {rate / 1e9:.1f} GFLOP/s (jnp 3072^3, best of 5)")
    print(f"FLOPs per row: ours {useful / rows / 1e9:.1f} GFLOP useful (mean over {rows} rows, base forward included), "
          f"reference {reference_flops / rows / 1e9:.1f} GFLOP (full forward, head at all {PROMPT_LEN} positions); "
          f"ratio {reference_flops / useful:.1f}x = the speedup at equal FLOP rates")
    print(f"ours (svd_dtype={args.svd_dtype}, rank_buckets={args.rank_buckets}): {ours_s:.2f} s for {rows} rows "
          f"(exact SVDs {svd_s:.2f} s of it); compile {first - ours_s:.1f} s apart; "
          f"useful FLOP rate {useful / ours_s / 1e9:.1f} GFLOP/s = {useful / ours_s / rate:.0%} of the matmul rate "
          f"({useful / (ours_s - svd_s) / rate:.0%} without the SVDs)")
    if args.skip_reference:
        return
    start = time.perf_counter()
    reference = reference_sweep(torch_model, ids, answers)
    reference_s = time.perf_counter() - start
    base_gap = np.abs(ours.base.scores.answer_first_logprob - reference["base"]["logprob"]).max()
    agree = np.mean([np.mean(ours.row(key).scores.top1 == row["top1"]) for key, row in reference.items()])
    reference_rate = reference_flops / reference_s
    print(f"reference: {reference_s:.2f} s ({reference_s / rows:.2f} s per row, {reference_rate / 1e9:.1f} GFLOP/s "
          f"= {reference_rate / rate:.0%} of the matmul rate, torch {torch.get_num_threads()} threads); "
          f"base answer log-prob max |ours - torch| {base_gap:.1e}; top-1 agreement {agree:.1%} (exact vs randomized SVD)")
    print(f"load after: {os.getloadavg()[0]:.2f}; sweep_vs_reference: ours {ours_s:.2f} s, reference {reference_s:.2f} s, "
          f"speedup: {reference_s / ours_s:.1f}")


if __name__ == "__main__":
    main()
