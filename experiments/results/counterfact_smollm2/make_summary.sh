#!/usr/bin/env bash
# Regenerate experiments/results/counterfact_smollm2.{md,csv} from the run directories (no model is run).
cd "$(dirname "$0")/../../.."
source .venv/bin/activate
R=experiments/results/counterfact_smollm2
DIRS=$(for d in $(ls -d $R/L*-* | sort -t L -k2 -n -r); do [ -f "$d/results.csv" ] && echo "$d"; done)
python experiments/counterfact_summary.py $DIRS --csv experiments/results/counterfact_smollm2.csv \
  --out experiments/results/counterfact_smollm2.md --timing "$(cat $R/notes_timing.md)" \
  --note "$(cat $R/notes_checks.md)" \
  --note "Made by \`experiments/run_counterfact.sh smollm2\` (the sweeps, resumable) and \`$R/make_summary.sh\` (this file). The CSV is the union of the run directories' results.csv rows."
