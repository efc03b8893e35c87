#!/usr/bin/env bash
# Table 1 for SmolLM2-135M: the selection protocol (every layer x fc_in, fc_up, fc_out x the paper's seven rho on
# validation, the selected variants on test) on every dataset in ../shared/data, each task capped at its first 2,000
# records (CounterFact's validation file has 1,919 cases, so it runs whole). Without racing, so that the CounterFact row
# is also the check against the exhaustive run (experiments/results/counterfact_smollm2: fc_up L28 rho=0.2, 216 of
# 3,071 on test) and its per-example validation scores feed experiments/racing_replay.py.
# Resumable: run it again to continue; a task list as $1 runs those only; further arguments go to laser-jax table,
# and $OUT, if set, names the table directory (experiments/run_table_screened_smollm2.sh uses both).
set -u
cd "$(dirname "$0")/.."
source .venv/bin/activate
OUT=${OUT:-experiments/results/table_smollm2}
mkdir -p "$OUT"
TASKS=${1:-counterfact,known1000,fever,bigbench_wikidata,hotpotqa,bigbench_epistemic,truthfulqa}
echo "=== start $(date -u +%FT%TZ) tasks=$TASKS"
laser-jax table --model smollm2 --tasks "$TASKS" --data-root ../shared/data --limit 2000 --out "$OUT" --quiet "${@:2}"
rc=$?
echo "=== end $(date -u +%FT%TZ) rc=$rc"
