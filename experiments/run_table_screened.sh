#!/usr/bin/env bash
# Table 1 of one model, screened: per task, the first-order screen (laser_jax.screen) on the validation items ranks
# the whole grid (every layer x fc_in, fc_up, fc_out x the paper's seven rho: 630 variants for SmolLM2-135M, 378 for
# Gemma 3 270M), and the selection protocol sweeps only its 50 best predicted variants on validation, then the
# selected ones on test. Each task capped at its first 2,000 records: experiments/run_table.sh (the full-grid table
# this one is checked against) with --screen-top 50.
#
#   bash experiments/run_table_screened.sh [MODEL [TASKS]] [laser-jax table options]
#
# MODEL (default smollm2; gemma3-270m is the other packaged model) writes experiments/results/table_screened_<name>/
# ($OUT overrides), where <name> is gemma3 for gemma3-270m (the committed directory's name) and MODEL's last path
# part otherwise; TASKS (comma-separated, default every task) runs those only. The data root is $LASER_JAX_DATA,
# else ../shared/data (--data-root DIR among the options overrides both). Resumable: run it again to continue.
MODEL=${1:-smollm2}
case $MODEL in
  gemma3-270m) name=gemma3 ;;
  *) name=${MODEL##*/} ;;
esac
MODEL=$MODEL OUT=${OUT:-experiments/results/table_screened_$name} exec bash "$(dirname "$0")/run_table.sh" "${2:-}" --screen-top 50 "${@:3}"
