#!/usr/bin/env bash
# The CounterFact LASER sweep of SmolLM2-135M, late layers first: one resumable CLI run
# directory per pair of layers (the engine sweeps a run's layers in increasing order and
# each run pays one model load + one base forward). Rerun this script to resume; pass pairs
# (e.g. `16-17 14-15`) to run only those.
set -u
cd "$(dirname "$0")/.."
source .venv/bin/activate
GGUF=$(python -c 'from laser_jax.gguf import smollm2_path; print(smollm2_path())')
OUT=experiments/results/counterfact_smollm2
mkdir -p "$OUT"
PAIRS=("$@")
[ ${#PAIRS[@]} -gt 0 ] || PAIRS=(28-29 26-27 24-25 22-23 20-21 18-19 16-17 14-15 12-13 10-11 8-9 6-7 4-5 2-3 0-1)
for LAYERS in "${PAIRS[@]}"; do
  echo "=== layers $LAYERS start $(date -u +%FT%TZ)"
  laser-jax sweep --model "$GGUF" --task counterfact --data ../shared/data/counterfact/counterfact-val.json \
    --layers "$LAYERS" --taus fc_in,fc_up,fc_out --rhos 0.9,0.8,0.6,0.2,0.1,0.05,0.01 \
    --out "$OUT/L$LAYERS"
  rc=$?
  echo "=== layers $LAYERS end $(date -u +%FT%TZ) rc=$rc"
done
