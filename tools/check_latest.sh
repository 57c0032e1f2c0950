#!/usr/bin/env bash
# Drift check, outside CI: installs the NEWEST releases that setup.py allows (torch stays at the
# tested 2.13.0 CPU build) into a throw-away venv, runs the suite there with the oracle-release
# gate off (SPEECHLOBES_ORACLE_DRIFT=1) and without tests/unit/test_lock.py, and lists which
# packages moved and which tests drift.
# Usage: bash tools/check_latest.sh [report file, default drift-report.txt] [pytest args...]
set -uo pipefail
cd "$(dirname "$0")/.."
report=$(realpath -m "${1:-drift-report.txt}")
shift || true
venv=$(mktemp -d)
trap 'rm -rf "$venv"' EXIT
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q "torch==$(sed -nE 's/^torch==([0-9.]+)$/\1/p' requirements.lock)"
"$venv/bin/python" -m pip install -q --upgrade -e ".[dev,data]"
{
    echo "# Drift check $(date -u +%Y-%m-%d) (newest allowed releases vs requirements.lock)"
    echo
    echo "## Releases that differ from the lock"
    "$venv/bin/python" -m pip freeze --exclude-editable | sort >"$venv/latest.txt"
    "$venv/bin/python" - requirements.lock "$venv/latest.txt" <<'PY'
import re, sys
def pins(path):
    out = {}
    for line in open(path):
        m = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line.strip())
        if m:
            out[re.sub(r"[-_.]+", "-", m[1]).lower()] = m[2]
    return out
lock, latest = pins(sys.argv[1]), pins(sys.argv[2])
moved = [f"- {n}: {lock[n]} -> {latest[n]}" for n in sorted(lock) if n in latest and latest[n].split("+")[0] != lock[n]]
new = [f"- {n}: new, {latest[n]}" for n in sorted(set(latest) - set(lock))]
print("\n".join(moved + new) or "(none)")
PY
    echo
    echo "## Tests that fail with the newest releases"
} >"$report"
SPEECHLOBES_ORACLE_DRIFT=1 OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" \
    "$venv/bin/python" -m pytest tests -q -p no:cacheprovider -rf \
    --ignore=tests/unit/test_lock.py "$@" >"$venv/pytest.txt" 2>&1
status=$?
grep -E '^(FAILED|ERROR) ' "$venv/pytest.txt" >>"$report" || echo "(none)" >>"$report"
{
    echo
    echo "pytest: $(tail -n 1 "$venv/pytest.txt")"
} >>"$report"
cat "$report"
exit "$status"
