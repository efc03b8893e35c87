#!/usr/bin/env bash
# The exhaustive CounterFact LASER sweep of one model, late layers first: one resumable CLI run directory per pair of
# layers (the engine sweeps a run's layers in increasing order and each run pays one model load + one base forward),
# every pair x fc_in, fc_up, fc_out x the paper's seven rho, into experiments/results/counterfact_MODEL/L<pair>
# ($OUT overrides the folder).
#
#   bash experiments/run_counterfact.sh [--data-root DIR] [MODEL [PAIRS...]]
#
# MODEL: smollm2 (default; 30 layers) or gemma3-270m (18), or any model source when PAIRS are given. PAIRS (e.g.
# `16-17 14-15`) runs only those; default every pair of the model's layers, from the last. The data file is
# counterfact/counterfact-val.json under --data-root, else $LASER_JAX_DATA, else ../shared/data. Rerun the script to
# resume.
set -u
cd "$(dirname "$0")/.."
source .venv/bin/activate
DATA_ROOT=${LASER_JAX_DATA:-../shared/data}
if [ "${1:-}" = --data-root ]; then DATA_ROOT=$2; shift 2; fi
MODEL=${1:-smollm2}
OUT=${OUT:-experiments/results/counterfact_${MODEL##*/}}
DATA=$DATA_ROOT/counterfact/counterfact-val.json
PAIRS=("${@:2}")
if [ ${#PAIRS[@]} -eq 0 ]; then
  case $MODEL in
    smollm2) n_layers=30 ;;
    gemma3-270m) n_layers=18 ;;
    *) echo "usage: bash experiments/run_counterfact.sh MODEL PAIRS... (the layer pairs of $MODEL, e.g. 10-11 8-9)" >&2; exit 2 ;;
  esac
  for ((first = n_layers - 2; first >= 0; first -= 2)); do PAIRS+=("$first-$((first + 1))"); done
fi
mkdir -p "$OUT"
for LAYERS in "${PAIRS[@]}"; do
  echo "=== layers $LAYERS start $(date -u +%FT%TZ)"
  laser-jax sweep --model "$MODEL" --task counterfact --data "$DATA" \
    --layers "$LAYERS" --taus fc_in,fc_up,fc_out --rhos 0.9,0.8,0.6,0.2,0.1,0.05,0.01 \
    --out "$OUT/L$LAYERS"
  rc=$?
  echo "=== layers $LAYERS end $(date -u +%FT%TZ) rc=$rc"
done
