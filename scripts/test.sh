#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh machine, then runs it (ruff + pytest).
# Arguments are passed to pytest, e.g. `bash scripts/test.sh tests/labeling -x`.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -e ".[test]"

# The job-queue tests talk to a real Redis on 127.0.0.1:6379.
if ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
    command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server; }
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
    for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null && break; sleep 0.1; done
fi

# End-to-end tests drive a real Label Studio, installed in its own venv (it pins older rq/redis).
if [ -f scripts/label_studio.sh ]; then
    bash scripts/label_studio.sh install
    export LS_AL_E2E=1
fi

# The browser e2e test drives Debian's headless Chromium through Debian's chromedriver (nothing downloaded at run time).
if [ "${LS_AL_E2E:-}" = 1 ] && ! { [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; }; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
fi

.venv/bin/ruff check .
# The documentation site (mkdocs.yml): a broken link, or a nav entry without its page, fails. build/ is git-ignored.
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet --site-dir build/site
.venv/bin/python -m pytest "$@"
