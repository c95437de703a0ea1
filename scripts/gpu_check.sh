#!/usr/bin/env bash
# What only a CUDA machine can show, in one call that ends by itself after DEADLINE_S seconds:
#   1. `ls-al-backend bench --only precision,training,mc` on the GPU, first, alone on the machine;
#   2. the CUDA tests (float16 AMP with a gradient scaler; tests/model/test_cuda.py) and the suites that run on CUDA
#      under DEVICE=auto (model, backend, simulation, acquisition), beside 3;
#   3. the GPU preset of the active-learning benchmark (benchmarks/active_learning/run_preset.sh, PRESET=gpu or
#      gpu_retrain) for the time that is left: every finished round is in its results.json, so a run cut short still
#      reports its rounds.
# Everything it writes goes to $OUT: machine.txt, bench.log and bench/ (the bench JSON), pytest_cuda.log,
# pytest_on_cuda.log, gpu_preset.log and gpu_runs.tar.gz (the run folders with their labels, state/round_*.json, and without
# checkpoints, so that the labels can be trained again on a CPU with `simulate --final-epochs`).
#
#   OUT=/tmp/gpu CAMVID=.camvid DEADLINE_S=560 bash scripts/gpu_check.sh
#
# On a machine whose python3 has torch and torchvision but not the project's other packages, install those first
# (WHEELS=.whl: a folder of wheels installed with --no-deps into /tmp/site). Settings: PRESET, ONLY, SEEDS, PARALLEL,
# THREADS, CLASS_WEIGHTING and CODE_COMMIT go to run_preset.sh; BENCH=0 or TESTS=0 skip steps 1 or 2; PACK=1 leaves
# one archive, gpu_check.tar.gz, in place of the files.
set -uo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
OUT="${OUT:?set OUT to the folder for the results}"
CAMVID="${CAMVID:-../shared/datasets/camvid}"
DEADLINE_S="${DEADLINE_S:-560}"
PYTHON="${PYTHON:-python3}"
if ! [[ "$DEADLINE_S" =~ ^[0-9]+$ ]] || [ "$DEADLINE_S" -lt 60 ]; then
  echo "DEADLINE_S must be a whole number of seconds, at least 60, got '$DEADLINE_S'" >&2
  exit 2
fi
mkdir -p "$OUT"

if [ -n "${WHEELS:-}" ]; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$WHEELS"/*.whl || exit 1
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" CAMVID_DIR="$CAMVID" PYTHONUNBUFFERED=1
{ nvidia-smi || true; "$PYTHON" -c 'import torch, segmentation_models_pytorch as smp
print("torch", torch.__version__, "smp", smp.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")'; } 2>&1 | tee "$OUT/machine.txt"

remaining() { echo $((DEADLINE_S - (SECONDS - started))); }

if [ "${BENCH:-1}" = 1 ]; then  # alone on the machine, so its timings hold
  timeout 120 "$PYTHON" -m ls_al_backend.cli bench --data "$CAMVID/val" --out "$OUT/bench" \
    --only precision,training,mc > "$OUT/bench.log" 2>&1
  echo "bench exit $? after $((SECONDS - started)) s"
fi

# 3 in the background, for what is left of the deadline (less 25 s to pack up); 2 beside it.
preset_s=$(($(remaining) - 25))
[ "$preset_s" -gt 0 ] || { echo "no time left for the GPU preset (DEADLINE_S=$DEADLINE_S)" >&2; preset_s=1; }
(
  PRESET="${PRESET:-gpu}" LS_AL="$PYTHON -m ls_al_backend.cli" CAMVID="$CAMVID" \
    timeout --signal=INT --kill-after=20 "$preset_s" \
    bash benchmarks/active_learning/run_preset.sh
) > "$OUT/gpu_preset.log" 2>&1 &
preset=$!

if [ "${TESTS:-1}" = 1 ]; then
  OMP_NUM_THREADS=2 timeout 120 "$PYTHON" -m pytest -q -p no:cacheprovider -rA tests/model/test_cuda.py \
    > "$OUT/pytest_cuda.log" 2>&1
  echo "CUDA tests exit $? after $((SECONDS - started)) s: $(tail -n 1 "$OUT/pytest_cuda.log")"
  OMP_NUM_THREADS=1 timeout "$(($(remaining) / 2))" "$PYTHON" -m pytest -q -p no:cacheprovider -n 4 --dist loadfile \
    tests/model tests/test_backend.py tests/simulation tests/acquisition --deselect tests/model/test_cuda.py \
    > "$OUT/pytest_on_cuda.log" 2>&1
  echo "suites on CUDA exit $? after $((SECONDS - started)) s: $(tail -n 1 "$OUT/pytest_on_cuda.log")"
fi

wait "$preset"
echo "GPU preset exit $? after $((SECONDS - started)) s"
tail -n 30 "$OUT/gpu_preset.log"
tar -czf "$OUT/gpu_runs.tar.gz" --exclude='*.pt' "${OUT_ROOT:-benchmarks/active_learning}"/gpu*
if [ "${PACK:-0}" = 1 ]; then  # one archive in place of the files (the device tool brings back at most 8)
  tar -czf /tmp/gpu_check.tar.gz -C "$OUT" --exclude=gpu_check.log . && find "$OUT" -mindepth 1 ! -name gpu_check.log -delete
  mv /tmp/gpu_check.tar.gz "$OUT/"
fi
ls -la "$OUT"
