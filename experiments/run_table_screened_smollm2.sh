#!/usr/bin/env bash
# Table 1 for SmolLM2-135M, screened: per task, the first-order screen (laser_jax.screen) on the validation items ranks
# the whole grid (every layer x fc_in, fc_up, fc_out x the paper's seven rho: 630 variants), and the selection protocol
# sweeps only its 50 best predicted variants on validation, then the selected ones on test. Each task capped at its
# first 2,000 records: experiments/run_table.sh (the full-grid table this one is checked against) with --screen-top 50. Resumable: run it again to continue; a task list as $1 runs those only.
OUT=experiments/results/table_screened_smollm2 exec bash "$(dirname "$0")/run_table.sh" "${1:-}" --screen-top 50
