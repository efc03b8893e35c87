#!/usr/bin/env bash
# The Marchenko-Pastur ranks (laser_jax.rmt) as a grid: every layer x fc_in, fc_up, fc_out of SmolLM2-135M, each matrix
# cut to its own MP rank (90 variants), through the selection protocol on counterfact-val.json (validation: the first
# 767 items; the selected variants on the other 3,071). To compare with the rho grid's choice (fc_up L28 rho=0.2,
# 216 of 3,071 on test; experiments/results/counterfact_smollm2.md). Resumable: run it again to continue.
OUT=experiments/results/mp_table_smollm2 exec bash "$(dirname "$0")/run_table.sh" counterfact --rhos mp
