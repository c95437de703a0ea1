#!/usr/bin/env bash
# The scale benchmark: a fresh Label Studio 1.23.2 (SQLite, scripts/label_studio.sh), one project of TASKS tasks
# (CamVid train images at their own 480x360, repeated under distinct names), one scoring round per entry of WORKERS,
# then benchmarks/scale/<time>-<host>.json, README.md and summary.json (`ls-al-backend bench --only scale`).
#
#   bash benchmarks/scale/run.sh                  # 10000 tasks, rounds with 1, 2 and 2 workers
#   TASKS=1000 WORKERS=1,2,2 bash benchmarks/scale/run.sh
#   TASKS=10000 WORKERS=2 OUT=benchmarks/scale/10k-tasks bash benchmarks/scale/run.sh  # results in another folder
#
# Run it on a quiet machine: every other process shares the cores the workers measure.
set -euo pipefail
cd "$(dirname "$0")/../.."
TASKS="${TASKS:-10000}"
WORKERS="${WORKERS:-1,2,2}"
OUT="${OUT:-benchmarks/scale}"
CAMVID="${CAMVID:-../shared/datasets/camvid}"
PORT="${PORT:-18090}"
export LS_VENV="${LS_VENV:-.ls-venv}"
export LS_TOKEN="${LS_TOKEN:-ls-al-e2e-legacy-token-0123456789}"
LS_AL="${LS_AL:-.venv/bin/ls-al-backend}"
DATA="$(mktemp -d -t ls-al-scale-studio-XXXXXX)"
trap 'bash scripts/label_studio.sh stop "$DATA" || true; rm -rf "$DATA"' EXIT
bash scripts/label_studio.sh start "$DATA" "$PORT"
LABEL_STUDIO_URL="http://127.0.0.1:$PORT" LABEL_STUDIO_API_KEY="$LS_TOKEN" "$LS_AL" bench --data "$CAMVID/train" \
  --out "$OUT" --only scale --scale-tasks "$TASKS" --scale-workers "$WORKERS" \
  --label-studio-db "$DATA/label_studio.sqlite3" --images 50
