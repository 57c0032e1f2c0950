#!/usr/bin/env bash
# The main job: set-up, then the LibriSpeech Conformer-CTC recipe on the generated mini corpus
# (generated on first use: eSpeak NG speech in the real LibriSpeech layout), trained and
# evaluated on 2 CPU cores. Results: recipes/LibriSpeech/ASR/CTC/results/conformer_small/1986/
# (train_log.txt, wer_test.txt / cer_test.txt with alignments, save/ checkpoints).
# Rerunning resumes from the last checkpoint; extra arguments reach train.py (e.g. --debug).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/bootstrap.sh
# Waiting OpenMP threads sleep instead of spinning: with a busy core, spinning made runs
# several times slower (README, "Guarantees").
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
cd recipes/LibriSpeech/ASR/CTC
../../../../.venv/bin/python train.py hparams/conformer_small.yaml "$@"
