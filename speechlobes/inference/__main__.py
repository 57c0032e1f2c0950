"""Command line of the inference interfaces.

python -m speechlobes.inference transcribe EXPERIMENT_FOLDER audio.flac [more.flac ...]
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m speechlobes.inference", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    transcribe = commands.add_parser("transcribe", help="speech recognition (CTC experiment)")
    transcribe.add_argument("experiment")
    transcribe.add_argument("audio", nargs="+")
    args = parser.parse_args(argv)
    if args.command == "transcribe":
        from speechlobes.inference.transcriber import Transcriber

        asr = Transcriber.from_experiment(args.experiment)
        for path in args.audio:
            print(f"{path}\t{asr.transcribe_file(path)}")


if __name__ == "__main__":
    main(sys.argv[1:])
