#!/usr/bin/env bash
# Creates .venv (if missing) and installs exactly the locked versions (requirements.lock), then
# speechlobes itself in editable mode. Idempotent: reinstalls only when setup.py or the lock changed.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
stamp=.venv/.speechlobes-installed
if [ ! -f "$stamp" ] || [ setup.py -nt "$stamp" ] || [ requirements.lock -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q "$(grep -E '^pip==' requirements.lock)"
    .venv/bin/python -m pip install -q -r requirements.lock
    .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
    touch "$stamp"
fi
