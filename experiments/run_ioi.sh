#!/usr/bin/env bash
# IOI (laser_jax.tasks.ioi: "When Mary and John went to the store, John gave a drink to" -> " Mary" against " John")
# through the selection protocol on both packaged real models, screened like their Table 1 runs: the first-order
# screen ranks the whole grid (every layer x the MLP matrices x the paper's seven rho) on the validation items and
# the 50 best predicted variants are swept; then the base and the selected variants on test. 500 generated items
# (seed 0): 100 validation, 400 test. Writes experiments/results/ioi_<model>/ (table.md and ioi/report.md, which gives
# P(indirect object) and P(subject) of the base and the selected variant). Resumable; $1 picks one model.
set -u
cd "$(dirname "$0")/.."
source .venv/bin/activate
for MODEL in ${1:-smollm2 gemma3-270m}; do
    out=experiments/results/ioi_$MODEL
    mkdir -p "$out"
    MODEL=$MODEL OUT=$out LIMIT=500 bash experiments/run_table.sh ioi --screen-top 50 >> "$out/table.log" 2>&1
    laser-jax report "$out/ioi" >> "$out/table.log" 2>&1
done
