#!/usr/bin/env bash
# Recompute the per-example scores of a committed Table 1 run whose scores/ are gone (they were git-ignored before
# scores.npz existed), by running its recorded command again into a scratch copy:
#
#   bash experiments/rescore_table.sh TABLE_DIR TASKS [--test-only]
#
# For each task, experiments/rescore/<table name>/<task>/ gets the run's run.json and screen.csv (so the screen is not
# recomputed), and with --test-only also its validation rows and generation.json (only the test phase runs again:
# base and the tested variants, teacher-forced). `laser-jax table` then runs with the flags recorded in run.json, --out pointed at the scratch copy.
# experiments/rescore_check.py compares the recomputed rows with the committed ones and packs the scores into the
# committed run's scores.npz. Resumable: run it again to continue.
set -u
cd "$(dirname "$0")/.."
source .venv/bin/activate
TABLE=${1:?TABLE_DIR}
TASKS=${2:?TASKS}
MODE=${3:-}
SCRATCH=experiments/rescore/$(basename "$TABLE")
echo "=== start $(date -u +%FT%TZ) table=$TABLE tasks=$TASKS $MODE"
for task in ${TASKS//,/ }; do
  mkdir -p "$SCRATCH/$task"
  if [ ! -e "$SCRATCH/$task/run.json" ]; then
    cp "$TABLE/$task/run.json" "$SCRATCH/$task/"
    [ -e "$TABLE/$task/screen.csv" ] && cp "$TABLE/$task/screen.csv" "$SCRATCH/$task/"
    if [ "$MODE" = --test-only ]; then
      # a generation task's greedy-decoding check is kept: it writes no per-example scores
      [ -e "$TABLE/$task/generation.json" ] && cp "$TABLE/$task/generation.json" "$SCRATCH/$task/"
      python - "$TABLE/$task/results.csv" "$SCRATCH/$task/results.csv" <<'PY'
import sys
lines = open(sys.argv[1]).read().splitlines(keepends=True)
split = lines[0].rstrip("\n").split(",").index("split")
open(sys.argv[2], "w").writelines([lines[0]] + [l for l in lines[1:] if l.split(",")[split] == "val"])
PY
    fi
  fi
  # the recorded command, with --out replaced by the scratch table directory and --tasks by this task
  mapfile -t argv < <(python -c "
import json, sys
argv = json.load(open(sys.argv[1]))['argv']
argv[argv.index('--out') + 1] = sys.argv[2]
argv[argv.index('--tasks') + 1] = sys.argv[3]
print('\n'.join(argv))" "$TABLE/$task/run.json" "$SCRATCH" "$task")
  echo "== $task: ${argv[*]}"
  "${argv[@]}"
  echo "== $task rc=$?"
done
echo "=== end $(date -u +%FT%TZ)"
