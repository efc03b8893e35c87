#!/usr/bin/env bash
# Table 1 through the selection protocol (every layer x the family's MLP matrices x the paper's seven rho on
# validation, the selected variants on test) on every dataset in the data root ($LASER_JAX_DATA, else ../shared/data;
# --data-root DIR among the further arguments overrides both), each task capped at its first $LIMIT (default 2,000)
# records (CounterFact's validation file has 1,919 cases, so it runs whole). $MODEL (default smollm2; gemma3-270m is
# the other packaged model) names the model, $OUT (default experiments/results/table_$MODEL) the table directory, $1
# (a comma-separated task list) the tasks; further arguments go to laser-jax table (--screen-top 50, --rhos mp, ...).
# Without racing, so that SmolLM2's full-grid CounterFact row is also the check against the exhaustive run
# (experiments/results/counterfact_smollm2: fc_up L28 rho=0.2, 216 of 3,071 on test) and its per-example validation
# scores feed experiments/racing_replay.py. Resumable: run it again to continue. run_table_screened.sh, run_table_mp.sh
# and run_ioi.sh call it.
set -u
cd "$(dirname "$0")/.."
source .venv/bin/activate
MODEL=${MODEL:-smollm2}
OUT=${OUT:-experiments/results/table_$MODEL}
LIMIT=${LIMIT:-2000}
DATA_ROOT=${LASER_JAX_DATA:-../shared/data}
mkdir -p "$OUT"
# Each task's run plans its batch shapes once (laser_jax.sweep.SweepPlan), so it compiles a fixed handful of XLA
# programs whatever its grid, and `laser-jax table` drops them between tasks: the process's memory maps stay bounded
# (before the plan, a screened run compiled programs per (layer, tau) group and look, and SmolLM2's HotpotQA aborted
# at 56k maps, past Linux's default vm.max_map_count). Resuming is safe: the same command continues where it stopped.
TASKS=${1:-counterfact,known1000,fever,bigbench_wikidata,hotpotqa,bigbench_epistemic,truthfulqa}
echo "=== start $(date -u +%FT%TZ) model=$MODEL tasks=$TASKS"
laser-jax table --model "$MODEL" --tasks "$TASKS" --data-root "$DATA_ROOT" --limit "$LIMIT" --out "$OUT" --quiet "${@:2}"
rc=$?
echo "=== end $(date -u +%FT%TZ) rc=$rc"
