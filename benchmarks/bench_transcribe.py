"""Transcribing a test split: one file at a time in fp32 (what the command line did before
batching) beside length-sorted batches, same model, same files, same run.

The model is a CTC experiment folder: ``--experiment`` (a trained one), else the LibriSpeech
recipe's default Conformer-CTC (4 x 144, its beam search and character n-gram LM) made on the
fly with random weights (``tools/ctc_experiment.py``; it costs what a trained one does, its
text means nothing). The audio is ``--audio`` (a folder, manifest or list), else a mini
LibriSpeech test-clean of ``--utterances`` utterances generated with ``tools/mini_data``
(eSpeak NG voices never heard in training; a few seconds each).

Printed: seconds, real-time factor and files/s of each setting, the speed-up over the first
row, and how far each setting's text is from it (CER in points, and the CER of each against
the references when the split has them). When the search has a token floor
(``min_token_log_prob``, the recipe's default since issue 19), the first row is the command
as it was before: one file at a time, fp32, every one of a frame's ``top_k`` tokens tried, no
LM score remembered. Every run starts with the LM's score cache empty, as a new command does.

The LibriSpeech recipe decodes with a CTC prefix beam search and an n-gram LM, in Python: it
costs about as much as the model's forward, and batching speeds up only the forward, so the
batched run also decodes finished files in ``--jobs`` processes while the model goes on
(``--greedy`` measures the model's part alone).

Usage: python benchmarks/bench_transcribe.py [--batch-size 16] [--jobs 4] [--precision bf16]
    [--threads 1] [--greedy] [--experiment EXP] [--audio FOLDER_OR_MANIFEST]
"""

from __future__ import annotations

import argparse
import copy
import functools
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def mini_test_split(folder: Path, utterances: int) -> tuple[Path, list[str]]:
    """A small mini LibriSpeech (its test-clean holds ``utterances``); (test-clean, the
    training-side sentences for the tokenizer and LM)."""
    from tools.mini_data.librispeech import LibriSpeechSizes, make_librispeech

    sizes = LibriSpeechSizes(
        train_utterances=64,
        dev_utterances=8,
        test_utterances=utterances,
        test_other_utterances=8,
        train_speakers=8,
        lm_sentences=3000,
    )
    root = make_librispeech(folder, seed=0, sizes=sizes, num_workers=2)
    sentences = (root / "librispeech-lm-norm.txt").read_text(encoding="utf-8").splitlines()
    return root / "test-clean", sentences


def references(split: Path) -> dict[str, str]:
    """{utterance id: text} of LibriSpeech ``*.trans.txt`` files under ``split``."""
    texts = {}
    for transcript in split.rglob("*.trans.txt"):
        for line in transcript.read_text(encoding="utf-8").splitlines():
            utterance, _, text = line.partition(" ")
            texts[utterance] = text
    return texts


def cer(hypotheses: list[str], targets: list[str]) -> float:
    """Character error rate (percent) of ``hypotheses`` against ``targets``."""
    from speechlobes.metrics.error_rate import edit_distance

    edits = sum(
        edit_distance(list(t), list(h)).num_edits for h, t in zip(hypotheses, targets, strict=True)
    )
    return 100.0 * edits / max(1, sum(len(t) for t in targets))


def as_before(search):
    """The prefix beam search as the command ran it before issue 19's changes: every one of a
    frame's ``top_k`` tokens tried (no ``min_token_log_prob``), no LM score remembered."""
    before = copy.copy(search)
    before.min_token_log_prob = None
    if hasattr(search.lm, "cache_size"):
        before.lm = copy.copy(search.lm)
        before.lm.cache_size = 0
    return before


def timed_run(asr, paths: list[str], batch_size: int, jobs: int) -> tuple[float, list]:
    """One pass over ``paths``, starting, as a new command would, with no LM score remembered."""
    if hasattr(getattr(asr.search, "lm", None), "clear_cache"):
        asr.search.lm.clear_cache()
    start = time.perf_counter()
    results = asr.transcribe_files(paths, batch_size=batch_size, jobs=jobs)
    return time.perf_counter() - start, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiment", help="a CTC experiment folder (default: made here)")
    parser.add_argument("--audio", help="folder, manifest or list (default: mini test-clean)")
    parser.add_argument("--work", help="folder for the generated data and model (reused)")
    parser.add_argument("--utterances", type=int, default=48, help="of the generated split")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--jobs",
        type=int,
        default=max(0, min(8, (os.cpu_count() or 1) - 1)),
        help="decoding processes of the batched run (default: the cores but one, at most 8)",
    )
    parser.add_argument("--greedy", action="store_true", help="greedy CTC, not the YAML's search")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2, help="runs per setting (best kept)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.set_num_threads(args.threads)
    from speechlobes.decoders.ctc import ctc_greedy_decode
    from speechlobes.inference.batching import cpu_has_bf16_units
    from speechlobes.inference.listing import collect_inputs
    from speechlobes.inference.transcriber import Transcriber
    from tools.ctc_experiment import make_ctc_experiment

    work = Path(args.work or tempfile.mkdtemp(prefix="bench_transcribe_"))
    if args.audio is None:
        split, sentences = mini_test_split(work / "mini", args.utterances)
        audio = str(split)
    else:
        audio, sentences = args.audio, None
    if args.experiment is None:
        experiment = work / "experiment"
        if not experiment.is_dir():
            sentences = sentences or ["THE CAT SAT ON THE MAT", "A DOG RAN HOME"]
            make_ctc_experiment(experiment, sentences)
    else:
        experiment = args.experiment
    items = collect_inputs([audio])
    paths = [item.path for item in items]
    refs = references(Path(audio)) if Path(audio).is_dir() else {}
    asr = Transcriber.from_experiment(experiment, device=args.device)
    if args.greedy:
        asr.search = functools.partial(ctc_greedy_decode, blank_id=0)
    asr.transcribe_file(paths[0])  # warm up; probes the model once
    batched = f"batches of {args.batch_size}, {args.jobs} jobs"
    search = asr.search
    settings = [
        ("one by one, fp32", 1, 0, "fp32", search),
        (f"{batched}, fp32", args.batch_size, args.jobs, "fp32", search),
    ]
    if getattr(search, "min_token_log_prob", None) is not None:
        settings.insert(0, ("before: 1 by 1, all top-k", 1, 0, "fp32", as_before(search)))
    if args.precision != "fp32":
        settings.append(
            (f"{batched}, {args.precision}", args.batch_size, args.jobs, args.precision, search)
        )
    cpu = "with bf16 units" if cpu_has_bf16_units() else "without bf16 units"
    print(
        f"{len(paths)} files from {audio}; model {experiment}; {args.device} ({cpu}), "
        f"{args.threads} thread(s)"
    )
    measured = {}
    for name, batch_size, jobs, precision, setting_search in settings:
        asr.precision, asr.search = precision, setting_search
        best, results = min(
            (timed_run(asr, paths, batch_size, jobs) for _ in range(args.repeats)),
            key=lambda r: r[0],
        )
        failed = [r.error for r in results if r.error]
        if failed:
            raise SystemExit(f"{name}: {len(failed)} files failed, e.g. {failed[0]}")
        measured[name] = (best, [r.value for r in results], sum(r.duration for r in results))
    base_seconds, base_texts, audio_seconds = measured[settings[0][0]]
    search = "greedy" if args.greedy else type(search).__name__
    print(f"{audio_seconds:.1f} s of audio; search: {search}")
    print(
        f"{'setting':<28} {'seconds':>8} {'RTF':>7} {'files/s':>8} {'speed-up':>9} "
        f"{'CER vs row 1':>14} {'CER vs refs':>12}"
    )
    for name, (seconds, texts, _) in measured.items():
        against_refs = ""
        if refs:
            targets = [refs.get(item.id.split("/")[-1], "") for item in items]
            against_refs = f"{cer(texts, targets):.2f}"
        print(
            f"{name:<28} {seconds:8.2f} {seconds / audio_seconds:7.4f} "
            f"{len(paths) / seconds:8.2f} {base_seconds / seconds:8.2f}x "
            f"{cer(texts, base_texts):14.2f} {against_refs:>12}"
        )


if __name__ == "__main__":
    main()
