"""The ``speechlobes`` command (also ``python -m speechlobes.inference``).

    speechlobes transcribe EXPERIMENT_OR_HF_CTC_FOLDER INPUT [INPUT ...] [--beam-size 8]
    speechlobes tag EXPERIMENT_FOLDER_OR_BEATS_CKPT INPUT [...] [--top-k 5]
        [--labels class_labels_indices.csv]
    speechlobes translate EXPERIMENT_FOLDER_OR_HF_FOLDER INPUT [...]
    speechlobes --version

An INPUT is an audio file, a folder (every audio file under it), a manifest (SpeechBrain's CSV
with ``ID`` and ``wav`` columns, ``$data_root`` replaced by ``--data-root``; or JSON) or a
text list of paths (``.txt``, ``.lst``); see :mod:`speechlobes.inference.listing`.

Files go through the model in length-sorted batches of ``--batch-size`` (default 8; results
come back in input order and equal one-by-one results), under ``--precision`` fp32 (default),
bf16 or fp16 (autocast; fp16 on GPUs only; bf16 on a CPU without bf16 units may be slower).

Without ``--output``, transcriptions and translations print one ``path<TAB>text`` line per
file; tags print one ``path<TAB>score<TAB>mid<TAB>display_name`` line per tag, best first.
With ``--output rows.csv`` (or ``.jsonl``, or ``--format``) one row per input is written:
``id, path, duration, text`` (``labels`` for tags) and ``error``, in input order
(:mod:`speechlobes.inference.report`). A file that cannot be processed (unreadable, too short,
too long) gets one ``path: reason`` line on stderr (and its error column) and the other files
go on; the exit status is then 1. A progress bar runs on stderr (``--no-progress``), and the
last line on stderr counts the files and gives the real-time factor (processing time over audio
duration) and files per second. A model, manifest or output that cannot be used is one line on
stderr and exit status 2. An experiment folder's YAML builds only speechlobes, torch.nn/optim
and harmless standard-library objects unless ``--trust-code`` is given.

CPU threads: a passive OpenMP wait policy and as many threads as idle cores, unless
``OMP_WAIT_POLICY`` / ``OMP_NUM_THREADS`` or ``--threads`` say otherwise (see
:mod:`speechlobes.utils.threads`).
"""

from __future__ import annotations

import argparse
import enum
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speechlobes.inference.report import RowWriter, Summary, output_format
from speechlobes.version import __version__

# No torch import at module level: threads are configured before torch loads OpenMP.


class ModelKind(enum.Enum):
    """What a model argument points at; :func:`identify_model` decides."""

    EXPERIMENT = "an experiment folder (hyperparams.yaml and checkpoints)"
    HF_FOLDER = "a Hugging Face model folder (config.json and weights)"
    CHECKPOINT_FILE = "a checkpoint file"


def identify_model(path: str | Path) -> ModelKind:
    """The kind of model at ``path``: the one place the command decides it.

    Example:
        >>> import tempfile
        >>> identify_model(tempfile.mkdtemp())
        Traceback (most recent call last):
        ...
        ValueError: ...: a folder, but neither an experiment folder (no hyperparams.yaml) nor a
        Hugging Face model folder (no config.json)
    """
    from speechlobes.inference.experiment import HPARAMS_FILE

    path = Path(path)
    if path.is_dir():
        if (path / HPARAMS_FILE).is_file():
            return ModelKind.EXPERIMENT
        if (path / "config.json").is_file():
            return ModelKind.HF_FOLDER
        raise ValueError(
            f"{path}: a folder, but neither an experiment folder (no {HPARAMS_FILE}) nor a "
            "Hugging Face model folder (no config.json)"
        )
    if path.is_file():
        return ModelKind.CHECKPOINT_FILE
    raise FileNotFoundError(f"{path}: no such model file or folder")


# ----------------------------------------------------------------------------- the commands
def _transcriber(kind: ModelKind, args: argparse.Namespace):
    from speechlobes.inference.hf_folders import is_hf_ctc_folder
    from speechlobes.inference.transcriber import Transcriber

    options = {
        "chunk_seconds": args.chunk_seconds,
        "context_seconds": args.context_seconds,
        "segment_seconds": args.segment_seconds or None,
        "precision": args.precision,
    }
    if kind is ModelKind.HF_FOLDER:
        if not is_hf_ctc_folder(args.model):
            raise ValueError(f"{args.model}: its config.json names no *ForCTC architecture")
        return Transcriber.from_pretrained(
            args.model, beam_size=args.beam_size or 1, device=args.device, **options
        )
    if args.beam_size is not None:
        raise ValueError("--beam-size is for HF CTC folders; an experiment's YAML sets its search")
    return Transcriber.from_experiment(
        args.model, device=args.device, trust_code=args.trust_code, **options
    )


def _tagger(kind: ModelKind, args: argparse.Namespace):
    from speechlobes.inference.tagger import Tagger

    if kind is ModelKind.EXPERIMENT:
        return Tagger.from_experiment(
            args.model, device=args.device, trust_code=args.trust_code, precision=args.precision
        )
    return Tagger.from_beats_checkpoint(
        args.model, args.labels, device=args.device, precision=args.precision
    )


def _translator(kind: ModelKind, args: argparse.Namespace):
    from speechlobes.inference.translator import Translator

    options = {"max_seconds": args.max_seconds, "precision": args.precision}
    if kind is ModelKind.EXPERIMENT:
        return Translator.from_experiment(
            args.model, device=args.device, trust_code=args.trust_code, **options
        )
    return Translator.from_pretrained(args.model, device=args.device, **options)


def _text_fields(model, value: str, args: argparse.Namespace) -> dict[str, Any]:
    return {"text": value}


def _text_lines(path: str, fields: dict[str, Any]) -> list[str]:
    return [f"{path}\t{fields['text']}"]


def _tag_fields(tagger, scores, args: argparse.Namespace) -> dict[str, Any]:
    tags = tagger.top(scores, args.top_k)
    return {"labels": [{"mid": m, "name": n, "score": round(s, 4)} for m, n, s in tags]}


def _tag_lines(path: str, fields: dict[str, Any]) -> list[str]:
    return [f"{path}\t{t['score']:.4f}\t{t['mid']}\t{t['name']}" for t in fields["labels"]]


@dataclass(frozen=True)
class Command:
    """A sub-command: the model kinds it takes and how to load each, the past-tense verb of
    its summary, its result columns, and how a result becomes those fields and stdout lines."""

    loaders: dict[ModelKind, Callable[[ModelKind, argparse.Namespace], Any]]
    verb: str
    columns: list[str]
    fields: Callable[[Any, Any, argparse.Namespace], dict[str, Any]]
    lines: Callable[[str, dict[str, Any]], list[str]]


COMMANDS: dict[str, Command] = {
    "transcribe": Command(
        {ModelKind.EXPERIMENT: _transcriber, ModelKind.HF_FOLDER: _transcriber},
        "transcribed",
        ["text"],
        _text_fields,
        _text_lines,
    ),
    "tag": Command(
        {ModelKind.EXPERIMENT: _tagger, ModelKind.CHECKPOINT_FILE: _tagger},
        "tagged",
        ["labels"],
        _tag_fields,
        _tag_lines,
    ),
    "translate": Command(
        {ModelKind.EXPERIMENT: _translator, ModelKind.HF_FOLDER: _translator},
        "translated",
        ["text"],
        _text_fields,
        _text_lines,
    ),
}


# ----------------------------------------------------------------------------- arguments
def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


INPUTS_HELP = (
    "audio files, folders of them, manifests (.csv with ID and wav columns, .json) or lists "
    "of paths (.txt, .lst)"
)


def build_parser(prog: str = "speechlobes") -> argparse.ArgumentParser:
    """The command line's parser (sub-commands transcribe, tag, translate)."""
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"speechlobes {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--device", default="cpu", help="where the model runs, e.g. cuda")
    common.add_argument(
        "--threads", type=_positive_int, help="CPU threads (default: the idle cores)"
    )
    common.add_argument(
        "--trust-code",
        action="store_true",
        help="build anything an experiment's YAML asks for (only for folders you trust)",
    )
    common.add_argument(
        "-o", "--output", help="write one row per input to this file (.csv or .jsonl; see --format)"
    )
    common.add_argument(
        "--format", choices=["csv", "jsonl"], help="of --output (default: its suffix)"
    )
    common.add_argument(
        "--batch-size",
        type=_positive_int,
        default=8,
        help="files (or chunks) per forward, sorted by length (default 8; 1: one by one)",
    )
    common.add_argument(
        "--jobs",
        type=_non_negative_int,
        default=0,
        help="processes decoding finished files while the model runs (default 0: none)",
    )
    common.add_argument(
        "--precision",
        choices=["fp32", "bf16", "fp16"],
        default="fp32",
        help="autocast dtype of the model (fp16: GPUs only)",
    )
    common.add_argument(
        "--audio-column", default="wav", help="the audio path column of manifests (default wav)"
    )
    common.add_argument(
        "--data-root", help="what $data_root in a manifest stands for (default: its folder)"
    )
    common.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    commands = parser.add_subparsers(dest="command", required=True)
    transcribe = commands.add_parser(
        "transcribe", parents=[common], help="speech recognition (CTC experiment or HF CTC folder)"
    )
    transcribe.add_argument(
        "model", metavar="experiment", help="a CTC experiment folder or an HF *ForCTC folder"
    )
    transcribe.add_argument("audio", nargs="+", help=INPUTS_HELP)
    transcribe.add_argument(
        "--beam-size",
        type=_positive_int,
        help="HF CTC folders: CTC prefix beam search of this width (default: greedy)",
    )
    transcribe.add_argument(
        "--chunk-seconds", type=_positive_float, default=30.0, help="chunk length of long files"
    )
    transcribe.add_argument(
        "--context-seconds",
        type=_non_negative_float,
        default=5.0,
        help="audio read on each side of a chunk",
    )
    transcribe.add_argument(
        "--segment-seconds",
        type=_non_negative_float,
        default=8.0,
        help="files longer than this are cut at pauses into segments of at most this length "
        "where pauses allow, each decoded on its own (default 8; 0: not cut)",
    )
    tag = commands.add_parser(
        "tag", parents=[common], help="audio tagging (AudioSet experiment or BEATs checkpoint)"
    )
    tag.add_argument("model", help="an experiment folder or a fine-tuned BEATs checkpoint (.pt)")
    tag.add_argument("audio", nargs="+", help=INPUTS_HELP)
    tag.add_argument("--top-k", type=_positive_int, default=5, help="tags per file (>= 1)")
    tag.add_argument("--labels", help="class_labels_indices.csv (for a BEATs checkpoint)")
    translate = commands.add_parser(
        "translate", parents=[common], help="speech translation (CoVoST or HF folder)"
    )
    translate.add_argument(
        "model", help="an experiment folder or an HF SpeechEncoderDecoder folder"
    )
    translate.add_argument("audio", nargs="+", help=INPUTS_HELP)
    translate.add_argument(
        "--max-seconds", type=_positive_float, default=60.0, help="longest file translated"
    )
    return parser


def main(argv: list[str] | None = None, prog: str = "speechlobes") -> int:
    """Run the command line; returns (and, as a console script, exits with) its status."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    from speechlobes.utils.threads import configure_threads

    configure_threads(args.threads)
    command = COMMANDS[args.command]
    try:
        from speechlobes.inference.batching import check_precision
        from speechlobes.inference.listing import collect_inputs

        items = collect_inputs(args.audio, args.audio_column, args.data_root)
        kind_of_output = output_format(args.output, args.format) if args.output else None
        _check_device(args.device)
        check_precision(args.device, args.precision)
        kind = identify_model(args.model)
        if kind not in command.loaders:
            accepted = " or ".join(k.value for k in command.loaders)
            raise ValueError(f"{args.model}: {kind.value}; {args.command} takes {accepted}")
        model = command.loaders[kind](kind, args)
    except Exception as error:  # one line, no traceback: the message names the file
        print(f"{prog} {args.command}: {error}".replace("\n", " "), file=sys.stderr)
        return 2
    if args.output is None:
        summary = run_files(model, items, command, args, None)
    else:
        with open(args.output, "w", newline="", encoding="utf-8") as stream:
            writer = RowWriter(stream, kind_of_output, command.columns)
            summary = run_files(model, items, command, args, writer)
    print(summary.line(command.verb), file=sys.stderr, flush=True)
    return 1 if summary.failed else 0


def run_files(model, items, command: Command, args: argparse.Namespace, writer) -> Summary:
    """Process the items in batches; print each result (or, with ``writer``, write its row)
    as its window is done and each failure as one ``path: reason`` line on stderr."""
    from speechlobes.progress import progress

    summary = Summary(files=len(items))
    start = time.perf_counter()
    results = model.process([item.path for item in items], args.batch_size, args.jobs)
    bar = progress(results, args.command, total=len(items), enabled=not args.no_progress)
    for item, result in zip(items, bar, strict=True):
        fields = {}
        if result.error is None:
            try:
                fields = command.fields(model, result.value, args)
            except Exception as error:  # any one file must not stop the others
                result.error = f"{result.path}: {error}".replace("\n", " ")
        if result.error is None:
            summary.audio_seconds += result.duration
        else:
            summary.failed += 1
            _print_above_bar(result.error, sys.stderr)
        if writer is not None:
            row = {"id": item.id, "path": item.path, "duration": result.duration}
            writer.write({**row, **fields, "error": result.error})
        elif result.error is None:
            _print_above_bar("\n".join(command.lines(item.path, fields)), sys.stdout)
        if writer is not None:
            writer.flush()
    summary.seconds = time.perf_counter() - start
    return summary


def _print_above_bar(text: str, stream) -> None:
    from tqdm import tqdm

    tqdm.write(text, file=stream)
    stream.flush()


def _check_device(device: str) -> None:
    import torch

    try:
        parsed = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"--device {device!r}: {error}") from error
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device!r}: CUDA is not available here; use --device cpu")


def console_main() -> None:
    """Entry point of the ``speechlobes`` console script."""
    sys.exit(main())
