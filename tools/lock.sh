#!/usr/bin/env bash
# Recompiles requirements.lock from setup.py (extras dev + data) and the hand pins in
# constraints.txt, with pip-tools in a throw-away venv. See CONTRIBUTING.md, "Refreshing the lock".
set -euo pipefail
cd "$(dirname "$0")/.."
tools_venv=$(mktemp -d)
trap 'rm -rf "$tools_venv"' EXIT
python3 -m venv "$tools_venv"
"$tools_venv/bin/python" -m pip install -q pip-tools
"$tools_venv/bin/pip-compile" -q --allow-unsafe --strip-extras --no-emit-index-url \
    --no-emit-find-links --extra dev --extra data -o requirements.lock setup.py constraints.txt
# The CPU wheel's local label (+cpu) would refuse a CUDA build of the same release.
sed -i -E 's/^(torch==[0-9.]+)\+[a-z0-9]+$/\1/' requirements.lock
echo "requirements.lock: $(grep -c '==' requirements.lock) pinned packages"
