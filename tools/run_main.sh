#!/usr/bin/env bash
# The main job: set-up, then the LibriSpeech Conformer-CTC recipe on the generated mini corpus
# (generated on first use: eSpeak NG speech of real English in the LibriSpeech layout, plus our
# own held-out everyday sentences), trained and evaluated on 2 CPU cores: progress bars while
# training and testing, and a table of test-clean / test-other / heldout CER and WER at the end.
# Results: recipes/LibriSpeech/ASR/CTC/results/conformer_small/1986/ (train_log.txt,
# wer_<test set>.txt / cer_<test set>.txt with alignments, save/ with checkpoints and the LM).
# Rerunning resumes from the last checkpoint; extra arguments reach train.py (e.g. --debug).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/bootstrap.sh
# Two processes (torchrun, DDP) of one thread each on a machine of two cores or more: this small
# Conformer keeps a core busy per process far better than two threads keep two cores busy in one
# process (2 cores: 97 against 62 seconds of speech per second of training). One core: one
# process with twice the batch (563 batches per epoch instead of 587). Waiting OpenMP threads
# sleep instead of spinning: with a busy core, spinning made runs several times slower (README,
# "Guarantees").
cores=$(nproc)
procs=$(( cores >= 2 ? 2 : 1 ))
single=()
if [ "$procs" -eq 1 ]; then single=(--max_batch_length=48 --total_steps=3378); fi
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}" OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(( cores / procs ))}"
cd recipes/LibriSpeech/ASR/CTC
exec ../../../../.venv/bin/torchrun --standalone --nproc_per_node="$procs" \
    train.py hparams/conformer_small.yaml "${single[@]}" "$@"
