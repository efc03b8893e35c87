#!/usr/bin/env bash
# One-shot GPU check: at most 8 minutes on one GPU, three steps, one summary line at the end.
#
#   bash benchmarks/gpu_check.sh           # on a GPU machine, from any directory
#   bash benchmarks/gpu_check.sh --small   # the same steps at CPU-sized shapes (what the tests run)
#
# 1. the parity tests (tests/models/test_parity.py: every family against transformers at float32), with
#    every matmul at "highest" precision, as `laser-jax sweep` runs float32 models by default;
#    --small: the float32 logits test of each family only;
# 2. benchmarks/sweep_vs_reference.py (GPT-2-small shape against the official PyTorch algorithm);
#    --small: at its small shape;
# 3. benchmarks/gptj_grid.py: a GPT-J-6B-shaped grid with random bf16 weights (fc_in and fc_out,
#    28 layers x 9 rho, 512 prompts of 12 tokens): variants/s and MFU; --small: its CPU shape.
#
# Each step has its own time limit (STEP_LIMITS seconds, overridable by the environment); a failed or
# timed-out step is reported in the summary, and the script exits 1 if any step failed.
set -uo pipefail
cd "$(dirname "$0")/.."
small=""
case "${1:-}" in
  --small) small="--small" ;;
  "") ;;
  *) echo "usage: bash benchmarks/gpu_check.sh [--small]" >&2; exit 2 ;;
esac
read -r parity_limit reference_limit grid_limit <<< "${STEP_LIMITS:-120 120 220}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
start=$SECONDS
failed=0

step() {  # step NAME LIMIT COMMAND...: run with a time limit, output to the terminal and to $logs/NAME
  local name=$1 limit=$2
  shift 2
  echo "== $name (at most ${limit} s): $*"
  timeout "$limit" "$@" 2>&1 | tee "$logs/$name"
  local status=${PIPESTATUS[0]}
  if [ "$status" -ne 0 ]; then
    failed=1
    echo "FAILED" > "$logs/$name.status"
    [ "$status" -eq 124 ] && echo "TIMED OUT after $limit s" > "$logs/$name.status"
  fi
}

python -c 'import jax; print("gpu_check: jax", jax.__version__, "on", jax.device_count(), "x", jax.devices()[0].device_kind)'

parity_filter=()
[ -n "$small" ] && parity_filter=(-k "test_logits_match_transformers")
JAX_DEFAULT_MATMUL_PRECISION=highest step parity "$parity_limit" \
  python -m pytest -q -p no:cacheprovider tests/models/test_parity.py "${parity_filter[@]}"
step sweep_vs_reference "$reference_limit" python benchmarks/sweep_vs_reference.py $small
step gptj_grid "$grid_limit" python benchmarks/gptj_grid.py $small

outcome() {  # outcome NAME PATTERN: the step's failure, else the last line matching PATTERN
  if [ -f "$logs/$1.status" ]; then cat "$logs/$1.status"; else grep -E "$2" "$logs/$1" | tail -1; fi
}
parity=$(outcome parity "passed|failed")
reference=$(outcome sweep_vs_reference "speedup|^ours")
grid=$(outcome gptj_grid "^gptj_grid: .*variants/s")
if [[ $reference == *"speedup:"* ]]; then reference=${reference#*sweep_vs_reference: }; else reference=${reference%%;*}; fi
echo "gpu_check${small:+ (small)}: parity: ${parity}; sweep_vs_reference: ${reference}; gptj grid: ${grid#gptj_grid: }; total $((SECONDS - start)) s"
exit $failed
