#!/usr/bin/env bash
# Table 1 for Gemma 3 270M (base, Q4_K_M), screened as experiments/run_table_screened_smollm2.sh: per task, the
# first-order screen on the validation items ranks the whole grid (18 layers x fc_in, fc_up, fc_out x the paper's
# seven rho: 378 variants) and the selection protocol sweeps its 50 best on validation, then the selected ones on
# test; the same tasks and the same 2,000-record cap as SmolLM2's table. Resumable; a task list as $1 runs those only.
MODEL=gemma3-270m OUT=experiments/results/table_screened_gemma3 exec bash "$(dirname "$0")/run_table.sh" "${1:-}" --screen-top 50
