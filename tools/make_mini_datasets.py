"""Make small, learnable, deterministic stand-ins for LibriSpeech, AudioSet and CoVoST 2, in
the real datasets' layouts, offline (speech from eSpeak NG through ``espeakng-loader``).

    python tools/make_mini_datasets.py --output data/mini
    python tools/make_mini_datasets.py --output data/mini --datasets covost \\
        --sizes covost.train=300 covost.dev=40 --num-workers 2

Writes ``<output>/LibriSpeech``, ``<output>/AudioSet`` and ``<output>/CoVoST`` (see
each module in tools/mini_data for the layout). The same seed and sizes give byte-identical
files whatever the number of workers; a dataset already made with the same parameters is
skipped.

Example:
    >>> parse_sizes(["librispeech.train_utterances=50", "audioset.missing_fraction=0.1"])
    {'librispeech': {'train_utterances': 50}, 'audioset': {'missing_fraction': 0.1}}
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.mini_data.audioset import AudioSetSizes, make_audioset
from tools.mini_data.covost import CovostSizes, make_covost
from tools.mini_data.librispeech import LibriSpeechSizes, make_librispeech

__all__ = [
    "AudioSetSizes",
    "CovostSizes",
    "LibriSpeechSizes",
    "main",
    "make_audioset",
    "make_covost",
    "make_librispeech",
    "parse_sizes",
]

DATASETS = {
    "librispeech": (make_librispeech, LibriSpeechSizes),
    "audioset": (make_audioset, AudioSetSizes),
    "covost": (make_covost, CovostSizes),
}


def parse_sizes(items: list[str]) -> dict[str, dict[str, int | float]]:
    """``dataset.field=value`` items into per-dataset overrides of the size dataclasses."""
    overrides: dict[str, dict[str, int | float]] = {}
    for item in items:
        key, _, value = item.partition("=")
        dataset, _, field_name = key.partition(".")
        if dataset not in DATASETS or not value:
            raise ValueError(
                f"--sizes {item!r}: expected DATASET.FIELD=VALUE, DATASET in {list(DATASETS)}"
            )
        fields = {f.name: f for f in dataclasses.fields(DATASETS[dataset][1])}
        if field_name not in fields:
            raise ValueError(
                f"--sizes {item!r}: {dataset} has no size {field_name!r}; "
                f"sizes are {sorted(fields)}"
            )
        cast = float if fields[field_name].type in ("float", float) else int
        overrides.setdefault(dataset, {})[field_name] = cast(value)
    return overrides


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--output", type=Path, required=True, help="folder to write the datasets in"
    )
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--sizes",
        nargs="*",
        default=[],
        metavar="DATASET.FIELD=VALUE",
        help="override sizes, e.g. librispeech.train_utterances=200 covost.test=50",
    )
    parser.add_argument("--num-workers", type=int, default=2, help="processes speaking in parallel")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        overrides = parse_sizes(args.sizes)
    except ValueError as error:
        parser.error(str(error))
    for name in args.datasets:
        make, sizes_class = DATASETS[name]
        sizes = sizes_class(**overrides.get(name, {}))
        started = time.perf_counter()
        root = make(args.output, seed=args.seed, sizes=sizes, num_workers=args.num_workers)
        print(f"{name}: {root} ({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
