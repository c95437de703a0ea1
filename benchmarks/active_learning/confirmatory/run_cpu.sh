#!/usr/bin/env bash
# The confirmatory CPU runs of PROTOCOL.md, one at a time in the protocol's order (entropy 100, random 100, entropy
# 101, ...), each through run_preset.sh with COMMIT=1 (it commits each finished run, path-limited). Finished runs
# are skipped, so a later session continues with the same command. A run folder that exists but is not finished
# was interrupted or failed: before running it again this script appends a line to its restarts.txt (committed with
# the run; the summary lists it), and run_preset.sh resumes it from its state/ with the same seed.
#
#   CODE=/work/confirmatory-code nohup bash benchmarks/active_learning/confirmatory/run_cpu.sh \
#     >> /work/notes/confirmatory_cpu.log 2>&1 &
#
# CODE: a worktree of the protocol's commit (the package the runs use). Run this script from the main checkout: the
# commits go to the checkout that holds the run_preset.sh it calls. DRY_RUN=1 prints the runs still to do.
set -euo pipefail
cd "$(dirname "$0")/../../.."
CODE="${CODE:?set CODE to a worktree of the protocol commit}"
SEEDS="100 101 102 103 104"
ARMS="sp_entropy_classbal sp_random"
OUT_ROOT=benchmarks/active_learning/confirmatory
RUNS="$OUT_ROOT/superpixel_8/cpu_inverse_sqrt_frequency"
SIMULATE_OPTIONS="--precision fp32 --final-epochs 40 --final-min-steps 1500"

finished() {  # $1: run folder; every round and the final labels' training are in its results.json
  [ -f "$1/results.json" ] && python3 -c 'import json, sys
r = json.load(open(sys.argv[1] + "/results.json"))
sys.exit(0 if len(r["rows"]) >= r["config"]["rounds"] and "final" in r else 1)' "$1"
}

for seed in $SEEDS; do
  for arm in $ARMS; do
    dir="$RUNS/$arm/seed_$seed"
    if finished "$dir"; then continue; fi
    if [ "${DRY_RUN:-0}" = 1 ]; then echo "to run: $arm seed $seed"; continue; fi
    if [ -d "$dir" ]; then
      rounds_kept=$(find "$dir/state" -maxdepth 1 -name 'round_*.json' 2> /dev/null | wc -l)
      echo "$(date -u +%FT%TZ) rerun with the same seed after an interruption or failure; $rounds_kept round(s) kept" \
        "in state/, $([ -f "$dir/results.json" ] && echo "results.json present" || echo "no results.json")" \
        >> "$dir/restarts.txt"
    fi
    echo "$(date -u +%FT%TZ) starting $arm seed $seed"
    env OUT_ROOT="$OUT_ROOT" SUPERPIXEL_SIZE=8 BUDGET=2300 CLASS_WEIGHTING=inverse_sqrt_frequency COMMIT=1 \
      CODE="$CODE" SEEDS="$seed" PARALLEL=1 THREADS=1 ONLY="$arm" SIMULATE_OPTIONS="$SIMULATE_OPTIONS" \
      bash benchmarks/active_learning/run_preset.sh
    if finished "$dir"; then
      echo "$(date -u +%FT%TZ) finished $arm seed $seed"
    else
      echo "$(date -u +%FT%TZ) $arm seed $seed did not finish (see $dir/run.log); stopping here" >&2
      exit 1
    fi
  done
done
[ "${DRY_RUN:-0}" = 1 ] || echo "$(date -u +%FT%TZ) all confirmatory CPU runs finished"
