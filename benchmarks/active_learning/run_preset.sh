#!/usr/bin/env bash
# The active-learning benchmark on CamVid (train = pool, val = evaluation) for one preset of `simulate` (PRESET:
# cpu, the default, gpu or gpu_retrain; PRESETS in ls_al_backend/simulation/config.py): every strategy and the
# fully supervised reference over SEEDS, then summary.json, summary.md and the plots from whatever runs are finished.
#
#   bash benchmarks/active_learning/run_preset.sh                # all runs not yet finished, then the summary
#   COMMIT=1 bash benchmarks/active_learning/run_preset.sh       # also commit each finished run on its own
#   SEEDS="0 1" PARALLEL=1 CAMVID=/path/to/camvid bash benchmarks/active_learning/run_preset.sh
#   SUMMARY_ONLY=1 bash benchmarks/active_learning/run_preset.sh # only regenerate the summary and plots
#   ONLY="reference sp_random" bash ...  # only these runs (names as in STRATEGIES, or reference), in SEEDS
#   CODE=/path/to/checkout bash ...  # run the package of another checkout (e.g. a frozen commit while you edit)
#   CLASS_WEIGHTING=inverse_frequency bash ...  # every run and the reference with class weights in the loss; results
#                                               # go to benchmarks/active_learning/cpu_inverse_frequency (or
#                                               # cpu_inverse_sqrt_frequency for CLASS_WEIGHTING=inverse_sqrt_frequency)
#   PRESET=gpu THREADS=3 PARALLEL=4 bash ...    # a GPU preset (results in gpu/, gpu_inverse_sqrt_frequency/, ...),
#                                               # 3 torch threads per run (scripts/gpu_check.sh runs it on a GPU)
#   LS_AL="python3 -m ls_al_backend.cli" bash ...  # another way to start the CLI (a machine without .venv)
#   OUT_ROOT=/tmp/smoke SIMULATE_OPTIONS="--pool-limit 4 --rounds 2" bash ...  # a smoke run elsewhere: options
#                                               # appended to every simulate call (not for committed results)
#   SIMULATE_OPTIONS="--final-epochs 50 --final-min-steps 2000" bash ...  # also train every run's final labels
#                                               # from ImageNet weights (results.json's "final"; recorded in config)
#   SUPERPIXEL_SIZE=8 BUDGET=2300 CLASS_WEIGHTING=inverse_sqrt_frequency ONLY="sp_random ..." bash ...
#                                               # another regime of the preset: superpixels of about 8x8 pixels in
#                                               # every region strategy and rounds of 2300 clicks; results in
#                                               # superpixel_8/cpu_inverse_sqrt_frequency/, whose summary takes the
#                                               # preset's reference (the reference does not depend on either)
#   ONLY="image_random_outline_480 sp_dominant_every_superpixel" bash ...  # runs of EXTRA_STRATEGIES (below) run
#                                               # only when ONLY names them
#   SEMI_SUPERVISED=mean_teacher SUPERPIXEL_SIZE=8 ... bash ...  # every run of the regime also learns from the
#                                               # whole pool as unlabelled images (simulate --semi-supervised);
#                                               # results in superpixel_8/cpu_inverse_sqrt_frequency_mean_teacher/,
#                                               # whose summary takes the supervised reference (it does not change)
#
# It runs in parts: a run whose results are complete (every round, or the reference's reference.json) is skipped,
# and an interrupted run resumes from its state/ folder (git-ignored: labelled units and the last model; COMMIT=1
# commits the last round's labelled units, state/round_<n>.json, so that a finished run's labels can be trained
# again by --final-epochs without its rounds). Each run
# writes benchmarks/active_learning/<preset>[_<weighting>]/<strategy>/seed_<n>/{config.json,results.json,rounds.csv,
# code_version.txt}. Runs go seed by seed (every strategy of seed 0 first), PARALLEL at a time with THREADS torch
# threads each (default 1).
set -euo pipefail
cd "$(dirname "$0")/../.."
CAMVID="${CAMVID:-../shared/datasets/camvid}"
LS_AL="${LS_AL:-.venv/bin/ls-al-backend}"
PRESET="${PRESET:-cpu}"
OUT_ROOT="${OUT_ROOT:-benchmarks/active_learning}"
SIMULATE_OPTIONS="${SIMULATE_OPTIONS:-}"
case "$PRESET" in
  cpu | gpu | gpu_retrain) ;;
  *) echo "PRESET must be cpu, gpu or gpu_retrain, got '$PRESET'" >&2; exit 2 ;;
esac
CLASS_WEIGHTING="${CLASS_WEIGHTING:-none}"
case "$CLASS_WEIGHTING" in
  none) SETTING="$PRESET" ;;
  inverse_frequency | inverse_sqrt_frequency) SETTING="${PRESET}_$CLASS_WEIGHTING" ;;
  *) echo "CLASS_WEIGHTING must be none, inverse_frequency or inverse_sqrt_frequency, got '$CLASS_WEIGHTING'" >&2
     exit 2 ;;
esac
SEMI_SUPERVISED="${SEMI_SUPERVISED:-none}"
case "$SEMI_SUPERVISED" in
  none) TRAINING="" ;;
  mean_teacher) TRAINING="_mean_teacher" ;;
  *) echo "SEMI_SUPERVISED must be none or mean_teacher, got '$SEMI_SUPERVISED'" >&2; exit 2 ;;
esac
SUPERPIXEL_SIZE="${SUPERPIXEL_SIZE:-}"  # empty: the preset's superpixels
BUDGET="${BUDGET:-}"                    # clicks a round, round 0 included; empty: the preset's
for number in "$SUPERPIXEL_SIZE" "$BUDGET"; do
  if [[ -n "$number" && ! "$number" =~ ^[1-9][0-9]*$ ]]; then
    echo "SUPERPIXEL_SIZE and BUDGET must be positive whole numbers, got '$number'" >&2
    exit 2
  fi
done
# The fully supervised reference depends on none of SUPERPIXEL_SIZE, BUDGET and SEMI_SUPERVISED (every pool pixel is
# labelled, so there is nothing unlabelled to learn from).
REFERENCE_OUT="$OUT_ROOT/$SETTING"
OUT="$OUT_ROOT/${SUPERPIXEL_SIZE:+superpixel_$SUPERPIXEL_SIZE/}$SETTING$TRAINING"
PARALLEL="${PARALLEL:-2}"
THREADS="${THREADS:-1}"
SEEDS="${SEEDS:-0 1 2}"
COMMIT="${COMMIT:-0}"
ONLY="${ONLY:-}"
CODE="${CODE:-.}"
export PYTHONPATH="$(cd "$CODE" && pwd)${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"

# name | query mode | acquisition (JSON) | more simulate options. Random baselines carry "random" in their names.
# image_random_long goes on for 10 rounds: whole images cost few editor actions per click, so only a longer run
# spans the editor actions the region strategies spend in 5 rounds (the summary compares at equal actions).
# image_entropy takes whole images in the model's order (the simulation's default task_order is "score"; the
# server's dense mode serves them in random order by default).
STRATEGIES=(
  "image_random|dense_brush|{\"heuristic\": \"random\"}|"
  "image_random_long|dense_brush|{\"heuristic\": \"random\"}|--rounds 10"
  "image_entropy|dense_brush|{\"heuristic\": \"predictive_entropy\"}|"
  "sp_random|superpixel_dominant|{\"heuristic\": \"random\"}|"
  "sp_entropy_classbal|superpixel_dominant|{\"heuristic\": \"predictive_entropy\", \"class_balance\": \"classbal\"}|"
  "sp_balent|superpixel_dominant|{\"heuristic\": \"balanced_entropy\"}|"
  "mc_entropy_pixbal|superpixel_multiclass|{\"heuristic\": \"predictive_entropy\", \"class_balance\": \"pixbal\"}|"
  "mc_random|superpixel_multiclass|{\"heuristic\": \"random\"}|"
  "px_balent_pixelpick|sparse_points|{\"heuristic\": \"balanced_entropy\", \"pixel_selection\": \"pixelpick\"}|"
)
# Run only when ONLY names them. image_entropy_classbal: whole images in the order of the scores the server puts on
# tasks. sp_entropy_classbal_power: the same regions drawn by power sampling (Kirsch et al., temperature 1) instead
# of the top ones. image_random_outline_480: whole images whose outlines are priced at 480x360, the size Label
# Studio shows, while training stays at the preset's resolution: another cost rule, so the summary reads it apart
# (outline_480/). sp_dominant_every_superpixel: the ceiling of one-click answers, every superpixel of the pool
# answered in one round, then 40 epochs from ImageNet weights on those labels. mc_every_superpixel: the same for
# multi-class answers (one click per class ticked), trained with MulActSeg's two stages.
# sp_random_<n>_clicks_once: n random superpixels answered in one round, then trained like the ceiling: what a
# budget of random regions gives a converged model (11,500, 24,000 and 48,000 clicks are 4.8%, 10% and 20% of the
# 8x8 regions; 11,500 is what the 8x8 rounds spend). mc_random_11500_clicks_once: the same for multi-class answers,
# trained with MulActSeg's two stages (the converged stand-in for mc_random).
EXTRA_STRATEGIES=(
  "image_entropy_classbal|dense_brush|{\"heuristic\": \"predictive_entropy\", \"class_balance\": \"classbal\"}|"
  "sp_entropy_classbal_power|superpixel_dominant|{\"heuristic\": \"predictive_entropy\", \"class_balance\": \"classbal\", \"sampling\": \"power\"}|"
  "image_random_outline_480|dense_brush|{\"heuristic\": \"random\"}|--outline-resolution 480"
  "sp_dominant_every_superpixel|superpixel_dominant|{\"heuristic\": \"random\"}|--rounds 1 --initial-budget 1000000 --final-epochs 40 --final-min-steps 1500"
  "mc_every_superpixel|superpixel_multiclass|{\"heuristic\": \"random\"}|--rounds 1 --initial-budget 1000000 --final-epochs 40 --final-min-steps 1500"
  "sp_random_11500_clicks_once|superpixel_dominant|{\"heuristic\": \"random\"}|--rounds 1 --initial-budget 11500 --final-epochs 40 --final-min-steps 1500"
  "sp_random_24000_clicks_once|superpixel_dominant|{\"heuristic\": \"random\"}|--rounds 1 --initial-budget 24000 --final-epochs 40 --final-min-steps 1500"
  "sp_random_48000_clicks_once|superpixel_dominant|{\"heuristic\": \"random\"}|--rounds 1 --initial-budget 48000 --final-epochs 40 --final-min-steps 1500"
  "mc_random_11500_clicks_once|superpixel_multiclass|{\"heuristic\": \"random\"}|--rounds 1 --initial-budget 11500 --final-epochs 40 --final-min-steps 1500"
)

finished() {  # $1: run folder; true when every configured round (or the reference) is in its results, and the
              # final labels' training where the run or SIMULATE_OPTIONS asks for one (--final-epochs: a finished
              # run resumes for it)
  [ -f "$1/reference.json" ] && return 0
  [ -f "$1/results.json" ] || return 1
  python3 -c 'import json, sys
r = json.load(open(sys.argv[1] + "/results.json"))
final_wanted = r["config"].get("final_epochs") or "--final-epochs" in sys.argv[2].split()
sys.exit(0 if len(r["rows"]) >= r["config"]["rounds"] and (not final_wanted or "final" in r) else 1)' \
    "$1" "$SIMULATE_OPTIONS"
}

commit_run() {  # $1: message, then the paths (a file in a git-ignored state/ folder is added all the same); retried
                # while another git command holds the index
  [ "$COMMIT" = 1 ] || return 0
  local message="$1" path
  shift
  local plain=() kept_state=()
  for path in "$@"; do
    if [[ "$path" == */state/* ]]; then kept_state+=("$path"); else plain+=("$path"); fi
  done
  for _ in 1 2 3 4 5; do
    if git add -- ${plain[@]+"${plain[@]}"} && { [ ${#kept_state[@]} = 0 ] || git add -f -- "${kept_state[@]}"; }; then
      git diff --cached --quiet -- "$@" && return 0  # the same bytes as committed: nothing to commit
      git commit -q -m "$message" -- "$@" && return 0
    fi
    sleep 5
  done
  echo "could not commit $*" >&2
}

run_one() {  # "<name>|<mode>|<acquisition>|<options>|<seed>" or "reference|<seed>"
  local name mode acquisition options seed dir
  IFS='|' read -r name mode acquisition options seed <<< "$1"
  if [ "$name" = reference ]; then
    seed="$mode"
    dir="$REFERENCE_OUT/reference/seed_$seed"
  else
    dir="$OUT/$name/seed_$seed"
  fi
  if finished "$dir"; then echo "$name seed $seed: already finished"; return 0; fi
  mkdir -p "$dir"
  if [ -n "${CODE_COMMIT:-}" ]; then  # a copy of the checkout without its .git (the GPU machine)
    echo "commit $CODE_COMMIT (CODE_COMMIT: a copy of the checkout without .git)" > "$dir/code_version.txt"
  else
    echo "commit $(git -C "$CODE" rev-parse HEAD)," \
      "$(git -C "$CODE" status --porcelain -- ls_al_backend | wc -l) uncommitted file(s) in ls_al_backend" \
      > "$dir/code_version.txt"
  fi
  if command -v nvidia-smi > /dev/null; then
    echo "gpu: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -n 1)" >> "$dir/code_version.txt"
  fi
  echo "cpu: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)," \
    "native bf16 flags: $(grep -o -w -E 'amx_bf16|avx512_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')" \
    >> "$dir/code_version.txt"
  local common=(simulate --preset "$PRESET" --pool "$CAMVID/train" --eval "$CAMVID/val" --out "$dir" --seed "$seed"
    --class-weighting "$CLASS_WEIGHTING")
  # shellcheck disable=SC2206  # the options are words
  common+=($SIMULATE_OPTIONS)
  local started=$SECONDS
  if [ "$name" = reference ]; then
    common+=(--reference-only)
  else
    if [ -n "$BUDGET" ]; then common+=(--budget "$BUDGET" --initial-budget "$BUDGET"); fi
    if [ "$SEMI_SUPERVISED" != none ]; then common+=(--semi-supervised "$SEMI_SUPERVISED"); fi
    if [ -n "$SUPERPIXEL_SIZE" ] && [[ "$mode" == superpixel_* ]]; then
      acquisition="${acquisition%\}}, \"superpixel_size\": $SUPERPIXEL_SIZE}"
    fi
    # shellcheck disable=SC2206  # the options are words
    common+=(--name "$name" --mode "$mode" --acquisition "$acquisition" $options)
  fi
  # shellcheck disable=SC2086  # LS_AL may be a command with arguments
  if ! OMP_NUM_THREADS="$THREADS" $LS_AL "${common[@]}" > "$dir/run.log" 2>&1 || ! finished "$dir"; then
    echo "$name seed $seed FAILED after $((SECONDS - started)) s (see $dir/run.log)" >&2
    return 0  # the other runs go on; this one resumes on the next call
  fi
  echo "$name seed $seed done in $((SECONDS - started)) s: $(tail -n 1 "$dir/run.log")"
  # the last round's labelled units go in too: what training the final labels again needs (--final-epochs), without
  # the rounds; the checkpoints stay out
  local labels=("$dir"/state/round_*.json) kept=()
  if [ -f "${labels[-1]}" ]; then kept=("${labels[-1]}"); fi
  commit_run "Active-learning benchmark ($OUT): $name, seed $seed" "$dir" ${kept[@]+"${kept[@]}"}
}
export -f finished commit_run run_one
export CAMVID LS_AL OUT REFERENCE_OUT COMMIT CODE CODE_COMMIT CLASS_WEIGHTING PRESET THREADS SIMULATE_OPTIONS \
  SUPERPIXEL_SIZE BUDGET SEMI_SUPERVISED

if [ "${SUMMARY_ONLY:-0}" != 1 ]; then
  for seed in $SEEDS; do
    echo "reference|$seed"
    for strategy in "${STRATEGIES[@]}"; do echo "$strategy|$seed"; done
    for strategy in "${EXTRA_STRATEGIES[@]}"; do echo "extra|$strategy|$seed"; done
  done | while IFS= read -r run; do  # keep the runs ONLY names (without ONLY: all but the extra ones)
    name="${run#extra|}"
    name="${name%%|*}"
    if [[ " $ONLY " == *" $name "* ]] || { [ -z "$ONLY" ] && [[ "$run" != extra\|* ]]; }; then echo "${run#extra|}"; fi
  done | xargs -d '\n' -P "$PARALLEL" -I{} bash -c 'run_one "$1"' _ {}
fi

summarise() {  # $1: the summary's folder, then the run folders; summary.json, summary.md and the learning curves
               # (mean and one std over seeds), written by this checkout's package
  local folder="$1"
  shift
  mkdir -p "$folder"
  # shellcheck disable=SC2086  # LS_AL may be a command with arguments
  env -u PYTHONPATH $LS_AL simulate --pool "$CAMVID/train" --eval "$CAMVID/val" --out "$folder" --plot "$@"
  commit_run "Active-learning benchmark ($folder): summary and plots" \
    "$folder"/summary.json "$folder"/summary.md "$folder"/learning_curves*.png
}
# Whole images priced by another rule (<name>_outline_<n>) are summarised apart, in outline_<n>/, beside the
# region runs (whose clicks do not depend on it) and the reference; every other finished run goes in the main summary.
runs=()
for dir in "$OUT"/*/seed_*/; do [[ "$dir" == *_outline_*/seed_* ]] || runs+=("$dir"); done
references=()
if [ "$REFERENCE_OUT" != "$OUT" ]; then
  for dir in "$REFERENCE_OUT"/reference/seed_*/; do [ -d "$dir" ] && references+=("$dir"); done
fi
summarise "$OUT" "${runs[@]}" ${references[@]+"${references[@]}"}
for variant in "$OUT"/*_outline_*/; do
  [ -d "$variant" ] || continue
  variant="${variant%/}"
  regions=()
  for dir in "$OUT"/*/seed_*/; do [[ "$dir" == "$OUT"/image_* ]] || regions+=("$dir"); done
  summarise "$OUT/outline_${variant##*_outline_}" ${regions[@]+"${regions[@]}"} "$variant"/seed_*/ \
    ${references[@]+"${references[@]}"}
done
