#!/usr/bin/env bash
# The Marchenko-Pastur ranks (laser_jax.rmt) as a grid: every layer x fc_in, fc_up, fc_out of SmolLM2-135M, each matrix
# cut to its own MP rank (90 variants), through the selection protocol on counterfact-val.json (validation: the first
# 767 items; the selected variants on the other 3,071). To compare with the rho grid's choice (fc_up L28 rho=0.2,
# 216 of 3,071 on test; experiments/results/counterfact_smollm2.md). Resumable: run it again to continue.
set -u
cd "$(dirname "$0")/.."
source .venv/bin/activate
echo "=== start $(date -u +%FT%TZ)"
laser-jax sweep --model smollm2 --task counterfact --data ../shared/data/counterfact/counterfact-val.json \
    --taus fc_in,fc_up,fc_out --rhos mp --mode selection --out experiments/results/mp_selection_smollm2 --quiet
rc=$?
echo "=== end $(date -u +%FT%TZ) rc=$rc"
