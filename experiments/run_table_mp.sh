#!/usr/bin/env bash
# The Marchenko-Pastur ranks (laser_jax.rmt) as a grid: every layer x fc_in, fc_up, fc_out of MODEL (default
# smollm2: 30 layers, 90 variants), each matrix cut to its own MP rank, through the selection protocol on
# counterfact-val.json (validation: the first 767 items; the selected variants on the other 3,071), into
# experiments/results/mp_table_MODEL ($OUT overrides). To compare with the rho grid's choice (SmolLM2: fc_up L28
# rho=0.2, 216 of 3,071 on test; experiments/results/counterfact_smollm2.md) through experiments/mp_vs_grid.py.
#
#   bash experiments/run_table_mp.sh [MODEL] [laser-jax table options]
#
# The data root is $LASER_JAX_DATA, else ../shared/data (--data-root DIR among the options overrides both).
# Resumable: run it again to continue.
MODEL=${1:-smollm2}
MODEL=$MODEL OUT=${OUT:-experiments/results/mp_table_${MODEL##*/}} exec bash "$(dirname "$0")/run_table.sh" counterfact --rhos mp "${@:2}"
