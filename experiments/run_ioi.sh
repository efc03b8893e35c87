#!/usr/bin/env bash
# IOI (laser_jax.tasks.ioi: "When Mary and John went to the store, John gave a drink to" -> " Mary" against " John")
# through the selection protocol on both packaged real models: 500 generated items (seed 0), 100 validation and 400
# test. By default screened like their Table 1 runs (the first-order screen ranks the whole grid, every layer x the MLP
# matrices x the paper's seven rho, on the validation items, and its 50 best predicted variants are swept), into
# experiments/results/ioi_<model>/; GRID=full sweeps the whole grid instead, into experiments/results/ioi_full_<model>/.
# Each writes table.md and ioi/report.md (P(indirect object) and P(subject) of the base and the selected variant on
# test). Resumable; $1 picks the models (default: smollm2 gemma3-270m).
set -u
cd "$(dirname "$0")/.."
source .venv/bin/activate
GRID=${GRID:-screened}
for MODEL in ${1:-smollm2 gemma3-270m}; do
    if [ "$GRID" = full ]; then out=experiments/results/ioi_full_$MODEL; extra=(); else out=experiments/results/ioi_$MODEL; extra=(--screen-top 50); fi
    mkdir -p "$out"
    MODEL=$MODEL OUT=$out LIMIT=500 bash experiments/run_table.sh ioi "${extra[@]}" >> "$out/table.log" 2>&1
    laser-jax report "$out/ioi" >> "$out/table.log" 2>&1
done
