#!/usr/bin/env bash
# Table 1 for SmolLM2-135M: the selection protocol (every layer x fc_in, fc_up, fc_out x the paper's seven rho on
# validation, the selected variants on test) on every dataset in ../shared/data, each task capped at its first 2,000
# records (CounterFact's validation file has 1,919 cases, so it runs whole). Resumable: run it again to continue.
set -u
cd "$(dirname "$0")/.."
source .venv/bin/activate
OUT=experiments/results/table_smollm2
mkdir -p "$OUT"
TASKS=${1:-counterfact,known1000,fever,bigbench_wikidata,hotpotqa,bigbench_epistemic,truthfulqa}
echo "=== start $(date -u +%FT%TZ) tasks=$TASKS"
laser-jax table --model smollm2 --tasks "$TASKS" --data-root ../shared/data --limit 2000 --out "$OUT" --quiet
echo "=== end $(date -u +%FT%TZ) rc=$?"
