"""The ``speechlobes`` command (also ``python -m speechlobes.inference``).

    speechlobes transcribe EXPERIMENT_OR_HF_CTC_FOLDER audio.flac [more.flac ...] [--beam-size 8]
    speechlobes tag EXPERIMENT_FOLDER_OR_BEATS_CKPT audio.wav [...] [--top-k 5]
        [--labels class_labels_indices.csv]
    speechlobes translate EXPERIMENT_FOLDER_OR_HF_FOLDER audio.wav [...]
    speechlobes --version

Transcriptions and translations print one ``path<TAB>text`` line per file; tags print one
``path<TAB>score<TAB>mid<TAB>display_name`` line per tag, best first. A file that cannot be
processed (unreadable, too short, too long) gets one ``path: reason`` line on stderr and the
other files go on; the exit status is then 1. A model that cannot be loaded is one line on
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
from collections.abc import Callable, Iterable
from pathlib import Path

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
        ValueError: ...: a folder, but neither an experiment folder (no hyperparams.yaml) nor a Hugging Face model folder (no config.json)
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
    from speechlobes.inference.hf_folders import CTCFolderTranscriber, is_hf_ctc_folder
    from speechlobes.inference.transcriber import Transcriber

    if kind is ModelKind.HF_FOLDER:
        if not is_hf_ctc_folder(args.model):
            raise ValueError(f"{args.model}: its config.json names no *ForCTC architecture")
        return CTCFolderTranscriber.from_pretrained(
            args.model, beam_size=args.beam_size or 1, device=args.device
        )
    if args.beam_size is not None:
        raise ValueError("--beam-size is for HF CTC folders; an experiment's YAML sets its search")
    return Transcriber.from_experiment(
        args.model,
        device=args.device,
        trust_code=args.trust_code,
        chunk_seconds=args.chunk_seconds,
        context_seconds=args.context_seconds,
    )


def _tagger(kind: ModelKind, args: argparse.Namespace):
    from speechlobes.inference.tagger import Tagger

    if kind is ModelKind.EXPERIMENT:
        return Tagger.from_experiment(args.model, device=args.device, trust_code=args.trust_code)
    return Tagger.from_beats_checkpoint(args.model, args.labels, device=args.device)


def _translator(kind: ModelKind, args: argparse.Namespace):
    from speechlobes.inference.translator import Translator

    if kind is ModelKind.EXPERIMENT:
        translator = Translator.from_experiment(
            args.model, device=args.device, trust_code=args.trust_code
        )
    else:
        translator = Translator.from_pretrained(args.model, device=args.device)
    translator.max_seconds = args.max_seconds
    return translator


def _transcript_lines(transcriber, path: str, args: argparse.Namespace) -> list[str]:
    return [f"{path}\t{transcriber.transcribe_file(path)}"]


def _tag_lines(tagger, path: str, args: argparse.Namespace) -> list[str]:
    tags = tagger.tag_file(path, args.top_k)
    return [f"{path}\t{score:.4f}\t{mid}\t{name}" for mid, name, score in tags]


def _translation_lines(translator, path: str, args: argparse.Namespace) -> list[str]:
    return [f"{path}\t{translator.translate_file(path)}"]


Loader = Callable[[ModelKind, argparse.Namespace], object]
Printer = Callable[[object, str, argparse.Namespace], list[str]]
# Per command: the model kinds it takes, how to load one, and the lines a file gives.
COMMANDS: dict[str, tuple[dict[ModelKind, Loader], Printer]] = {
    "transcribe": (
        {ModelKind.EXPERIMENT: _transcriber, ModelKind.HF_FOLDER: _transcriber},
        _transcript_lines,
    ),
    "tag": (
        {ModelKind.EXPERIMENT: _tagger, ModelKind.CHECKPOINT_FILE: _tagger},
        _tag_lines,
    ),
    "translate": (
        {ModelKind.EXPERIMENT: _translator, ModelKind.HF_FOLDER: _translator},
        _translation_lines,
    ),
}


# ----------------------------------------------------------------------------- arguments
def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
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
    commands = parser.add_subparsers(dest="command", required=True)
    transcribe = commands.add_parser(
        "transcribe", parents=[common], help="speech recognition (CTC experiment or HF CTC folder)"
    )
    transcribe.add_argument(
        "model", metavar="experiment", help="a CTC experiment folder or an HF *ForCTC folder"
    )
    transcribe.add_argument("audio", nargs="+")
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
    tag = commands.add_parser(
        "tag", parents=[common], help="audio tagging (AudioSet experiment or BEATs checkpoint)"
    )
    tag.add_argument("model", help="an experiment folder or a fine-tuned BEATs checkpoint (.pt)")
    tag.add_argument("audio", nargs="+")
    tag.add_argument("--top-k", type=_positive_int, default=5, help="tags per file (>= 1)")
    tag.add_argument("--labels", help="class_labels_indices.csv (for a BEATs checkpoint)")
    translate = commands.add_parser(
        "translate", parents=[common], help="speech translation (CoVoST or HF folder)"
    )
    translate.add_argument(
        "model", help="an experiment folder or an HF SpeechEncoderDecoder folder"
    )
    translate.add_argument("audio", nargs="+")
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
    loaders, lines_of = COMMANDS[args.command]
    try:
        _check_device(args.device)
        kind = identify_model(args.model)
        if kind not in loaders:
            accepted = " or ".join(k.value for k in loaders)
            raise ValueError(f"{args.model}: {kind.value}; {args.command} takes {accepted}")
        model = loaders[kind](kind, args)
    except Exception as error:  # one line, no traceback: the message names the file
        print(f"{prog} {args.command}: {error}".replace("\n", " "), file=sys.stderr)
        return 2
    failures = process_files(args.audio, lambda path: lines_of(model, path, args))
    return 1 if failures else 0


def process_files(paths: Iterable[str], lines_of: Callable[[str], list[str]]) -> int:
    """Print each file's lines as it is done; a failing file gets one ``path: reason`` line
    on stderr and the next file goes on. Returns the number of files that failed."""
    failures = 0
    for path in paths:
        try:
            lines = lines_of(path)
        except Exception as error:  # any one file must not stop the others
            reason = str(error) if str(path) in str(error) else f"{path}: {error}"
            print(reason.replace("\n", " "), file=sys.stderr, flush=True)
            failures += 1
            continue
        print("\n".join(lines), flush=True)
    return failures


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
