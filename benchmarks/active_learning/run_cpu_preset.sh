#!/usr/bin/env bash
# The committed CPU-preset active-learning runs on CamVid (train = pool, val = evaluation) and their plot.
#
#   bash benchmarks/active_learning/run_cpu_preset.sh            # all runs, PARALLEL=2 at a time, 1 thread each
#   CAMVID=/path/to/camvid PARALLEL=1 bash benchmarks/active_learning/run_cpu_preset.sh
#
# Each run writes benchmarks/active_learning/cpu/<name>/{config.json,results.json,rounds.csv}; its state/ folder
# (labelled units and the last model) is git-ignored and lets an interrupted run resume where it stopped.
set -euo pipefail
cd "$(dirname "$0")/../.."
CAMVID="${CAMVID:-../shared/datasets/camvid}"
LS_AL="${LS_AL:-.venv/bin/ls-al-backend}"
OUT=benchmarks/active_learning/cpu
PARALLEL="${PARALLEL:-2}"
mkdir -p "$OUT"

# name | query mode | acquisition (JSON) [| extra options]; longest first so the parallel slots stay busy.
RUNS=(
  "sp_entropy_mean_teacher|superpixel_dominant|{\"heuristic\": \"predictive_entropy\"}|--semi-supervised mean_teacher"
  "sp_pixbal|superpixel_dominant|{\"heuristic\": \"predictive_entropy\", \"class_balance\": \"pixbal\"}"
  "sp_balent|superpixel_dominant|{\"heuristic\": \"balanced_entropy\"}"
  "px_balent|pixels|{\"heuristic\": \"balanced_entropy\", \"pixel_selection\": \"pixelpick\"}"
  "sp_entropy|superpixel_dominant|{\"heuristic\": \"predictive_entropy\"}"
  "sp_bald|superpixel_dominant|{\"heuristic\": \"bald\"}"
  "sp_mc_variance|superpixel_dominant|{\"heuristic\": \"mc_variance\"}"
  "sp_random|superpixel_dominant|{\"heuristic\": \"random\"}"
  "image_random|image|{\"heuristic\": \"random\"}"
)

run_one() {
  local name mode acquisition extra
  IFS='|' read -r name mode acquisition extra <<< "$1"
  # shellcheck disable=SC2086  # extra holds separate options
  OMP_NUM_THREADS=1 "$LS_AL" simulate --preset cpu --pool "$CAMVID/train" --eval "$CAMVID/val" \
    --out "$OUT/$name" --name "$name" --mode "$mode" --acquisition "$acquisition" $extra > "$OUT/$name.log" 2>&1
  echo "$name done: $(tail -n 1 "$OUT/$name.log")"
}
reference() {
  OMP_NUM_THREADS=1 "$LS_AL" simulate --preset cpu --pool "$CAMVID/train" --eval "$CAMVID/val" \
    --out "$OUT/reference" --reference-only > "$OUT/reference.log" 2>&1
  echo "reference done: $(tail -n 1 "$OUT/reference.log")"
}
export -f run_one reference
export CAMVID LS_AL OUT

{ printf '%s\n' "${RUNS[@]}"; echo "reference"; } |
  xargs -d '\n' -P "$PARALLEL" -I{} bash -c 'if [ "$1" = reference ]; then reference; else run_one "$1"; fi' _ {}

# learning curves of the acquisition strategies, and the mean-teacher comparison on its own
mapfile -t STRATEGIES < <(ls "$OUT"/*/results.json | grep -v mean_teacher)
"$LS_AL" simulate --pool "$CAMVID/train" --eval "$CAMVID/val" --out "$OUT" \
  --plot "${STRATEGIES[@]}" "$OUT/reference/reference.json"
"$LS_AL" simulate --pool "$CAMVID/train" --eval "$CAMVID/val" --out "$OUT/semi_supervised" \
  --plot "$OUT"/{sp_random,sp_entropy,sp_entropy_mean_teacher}/results.json "$OUT/reference/reference.json"
