#!/usr/bin/env bash
# The main job. For now: set-up, then the minimal template (a toy task trained end to end in
# seconds: data preparation, training with checkpoints, test of the best checkpoint).
# Results: results/minimal/<seed>/ (train_log.txt, train_log.jsonl, log.txt, save/).
# Rerunning resumes from the last checkpoint; extra arguments are passed on, e.g. --debug.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/bootstrap.sh
.venv/bin/python templates/minimal/train.py templates/minimal/train.yaml "$@"
