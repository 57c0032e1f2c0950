"""Command line of the inference interfaces.

python -m speechlobes.inference transcribe EXPERIMENT_OR_HF_CTC_FOLDER audio.flac [more.flac ...]
    [--beam-size 8]
python -m speechlobes.inference tag EXPERIMENT_FOLDER_OR_BEATS_CKPT audio.wav [...] [--top-k 5]
    [--labels class_labels_indices.csv]
python -m speechlobes.inference translate EXPERIMENT_FOLDER_OR_HF_FOLDER audio.wav [...]

Transcriptions and translations print one ``path<TAB>text`` line per file; tags print one
``path<TAB>score<TAB>mid<TAB>display_name`` line per tag, best first.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m speechlobes.inference",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--device", default="cpu", help="where the model runs, e.g. cuda")
    commands = parser.add_subparsers(dest="command", required=True)
    transcribe = commands.add_parser(
        "transcribe", parents=[common], help="speech recognition (CTC experiment or HF CTC folder)"
    )
    transcribe.add_argument("experiment", help="an experiment folder or an HF *ForCTC folder")
    transcribe.add_argument("audio", nargs="+")
    transcribe.add_argument(
        "--beam-size", type=int, help="HF CTC folders: CTC prefix beam search (default: greedy)"
    )
    tag = commands.add_parser(
        "tag", parents=[common], help="audio tagging (AudioSet experiment or BEATs checkpoint)"
    )
    tag.add_argument("model", help="an experiment folder or a fine-tuned BEATs checkpoint (.pt)")
    tag.add_argument("audio", nargs="+")
    tag.add_argument("--top-k", type=int, default=5)
    tag.add_argument("--labels", help="class_labels_indices.csv (for a BEATs checkpoint)")
    translate = commands.add_parser(
        "translate", parents=[common], help="speech translation (CoVoST or HF folder)"
    )
    translate.add_argument(
        "model",
        help="an experiment folder or an HF SpeechEncoderDecoder folder (with its tokenizer)",
    )
    translate.add_argument("audio", nargs="+")
    args = parser.parse_args(argv)
    if args.command == "transcribe":
        run_transcribe(args)
    elif args.command == "tag":
        run_tag(args)
    else:
        run_translate(args)


def run_transcribe(args: argparse.Namespace) -> None:
    from speechlobes.inference.experiment import is_experiment_folder
    from speechlobes.inference.hf_folders import CTCFolderTranscriber, is_hf_ctc_folder
    from speechlobes.inference.transcriber import Transcriber

    if is_hf_ctc_folder(args.experiment):
        asr = CTCFolderTranscriber.from_pretrained(
            args.experiment,
            beam_size=1 if args.beam_size is None else args.beam_size,
            device=args.device,
        )
    elif not is_experiment_folder(args.experiment):
        sys.exit(
            f"{args.experiment}: neither an experiment folder (hyperparams.yaml) nor a Hugging "
            "Face CTC folder (config.json of a *ForCTC model)"
        )
    elif args.beam_size is not None:
        sys.exit("--beam-size is for HF CTC folders; an experiment's YAML sets its test_search")
    else:
        asr = Transcriber.from_experiment(args.experiment, device=args.device)
    for path in args.audio:
        print(f"{path}\t{asr.transcribe_file(path)}")


def run_tag(args: argparse.Namespace) -> None:
    from speechlobes.inference.experiment import is_experiment_folder
    from speechlobes.inference.tagger import Tagger

    if is_experiment_folder(args.model):
        tagger = Tagger.from_experiment(args.model, device=args.device)
    elif Path(args.model).is_dir():
        sys.exit(f"{args.model}: not an experiment folder (no hyperparams.yaml) nor a checkpoint")
    else:
        tagger = Tagger.from_beats_checkpoint(args.model, args.labels, device=args.device)
    for path in args.audio:
        for mid, name, score in tagger.tag_file(path, args.top_k):
            print(f"{path}\t{score:.4f}\t{mid}\t{name}")


def run_translate(args: argparse.Namespace) -> None:
    from speechlobes.inference.experiment import is_experiment_folder
    from speechlobes.inference.translator import Translator

    if is_experiment_folder(args.model):
        translator = Translator.from_experiment(args.model, device=args.device)
    else:
        translator = Translator.from_pretrained(args.model, device=args.device)
    for path in args.audio:
        print(f"{path}\t{translator.translate_file(path)}")


if __name__ == "__main__":
    main(sys.argv[1:])
