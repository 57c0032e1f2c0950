"""Prepare AudioSet (the official CSVs plus a folder of downloaded clips) as JSON manifests.

Reads ``class_labels_indices.csv`` (``index,mid,display_name``) and any of the segment lists
``balanced_train_segments.csv``, ``unbalanced_train_segments.csv``, ``eval_segments.csv`` (comment
lines starting with ``#``, then ``YTID, start_seconds, end_seconds, "mid,mid"``). Clips are searched
(recursively) in ``clips_folder`` as wav/flac/mp3/ogg, named by YTID either bare (``<YTID>.wav``,
also ``Y<YTID>.wav``) or with time offsets (``<YTID>_<start>_<end>.flac``, seconds or milliseconds).

Writes ``train.json``, ``valid.json`` and ``test.json`` (``{id: {wav, duration, labels}}``, labels
as MIDs) and ``class_labels_indices.csv`` into ``save_folder``. Listed clips that are missing or
unreadable are reported and skipped, and the summary says how many were kept. A YTID listed twice
(in one list or in two training lists) and a row without exactly four fields are errors naming
file and line; a clip found twice under the clips folder is used once, with a warning naming both
files; YTIDs shared by training and test are reported; a split left empty is an error. Lists may
carry a BOM or CRLF line ends. Without a validation list, a seeded fraction of the training clips
becomes the validation set. All outputs of a run are written in one atomic step; a rerun with the
same options does nothing.

Example:
    python audioset_prepare.py --data_folder data/mini/AudioSet --save_folder results/prep
"""

from __future__ import annotations

import argparse
import csv
import logging
import random
import re
from pathlib import Path

from speechlobes.dataio.audioset import read_class_labels
from speechlobes.dataio.preparation import (
    PreparationError,
    PreparationReport,
    UniqueIds,
    begin_preparation,
    commit_manifests,
    json_text,
    open_table,
    preparation_done,
    report_overlap,
    write_split_shards,
)

logger = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg")
OFFSET_NAME = re.compile(r"^(?P<ytid>.+)_(?P<start>\d+(?:\.\d+)?)_(?P<end>\d+(?:\.\d+)?)$")
LABELS_FILE = "class_labels_indices.csv"


def prepare_audioset(
    data_folder: str,
    save_folder: str,
    clips_folder: str | None = None,
    train_csvs: list[str] = ("balanced_train_segments.csv",),
    test_csv: str = "eval_segments.csv",
    valid_csv: str | None = None,
    valid_ratio: float = 0.1,
    seed: int = 1234,
    skip_prep: bool = False,
    shards_folder: str | None = None,
) -> dict[str, Path]:
    """Write the train/valid/test manifests and return their paths (and the label table's).

    Arguments:
        data_folder: folder holding the official CSV files.
        save_folder: where the manifests go.
        clips_folder: where the audio clips are (default: ``data_folder``).
        train_csvs: segment lists that make the training set.
        test_csv: the segment list of the test set.
        valid_csv: a segment list for validation; None splits ``valid_ratio`` off training.
        seed: the seed of that split.
        skip_prep: do nothing but return the expected paths.
        shards_folder: also write train, valid and test as WebDataset tar shards in
            ``<shards_folder>/<split>`` (for ``data_format: shards``; kept when up to date).
    """
    data, save = Path(data_folder), Path(save_folder)
    outputs = {name: save / f"{name}.json" for name in ("train", "valid", "test")}
    outputs["labels"] = save / LABELS_FILE
    options = {
        "data_folder": str(data),
        "clips_folder": str(clips_folder or data),
        "train_csvs": list(train_csvs),
        "test_csv": test_csv,
        "valid_csv": valid_csv,
        "valid_ratio": valid_ratio,
        "seed": seed,
    }
    splits = [outputs[name] for name in ("train", "valid", "test")]
    if skip_prep:
        return outputs
    if preparation_done(save, options, [p.name for p in outputs.values()]):
        logger.info("AudioSet manifests in %s are up to date", save)
        write_split_shards(splits, shards_folder)
        return outputs
    begin_preparation(save)
    known_mids = set(read_class_labels(data / LABELS_FILE))
    clips = index_clips(Path(clips_folder or data))
    train, train_ids = {}, UniqueIds("AudioSet training YTID")
    for name in train_csvs:
        segments = read_segments(data / name)
        for number, (ytid, *_rest) in enumerate(segments, 1):
            train_ids.add(ytid, f"{data / name}, data row {number}")
        train.update(_manifest(data / name, segments, clips, known_mids))
    test = _manifest(data / test_csv, read_segments(data / test_csv), clips, known_mids)
    if valid_csv is not None:
        valid = _manifest(data / valid_csv, read_segments(data / valid_csv), clips, known_mids)
    else:
        train, valid = _split_off(train, valid_ratio, seed)
        if not train:
            raise PreparationError(
                f"AudioSet: {len(valid)} usable training clip(s): too few to split off a "
                f"validation set (valid_ratio={valid_ratio}); give valid_csv or more clips"
            )
    manifests = {"train": train, "valid": valid, "test": test}
    report_overlap("AudioSet", manifests)
    texts = {outputs[name].name: json_text(manifest) for name, manifest in manifests.items()}
    texts[LABELS_FILE] = (data / LABELS_FILE).read_text(encoding="utf-8-sig")
    commit_manifests(save, texts, options)
    for name, manifest in manifests.items():
        logger.info("AudioSet %s: %d clips -> %s", name, len(manifest), outputs[name])
    write_split_shards(splits, shards_folder)
    return outputs


def read_segments(path: Path) -> list[tuple[str, float, float, list[str]]]:
    """``(YTID, start, end, [mid, ...])`` rows of an official segment list; a YTID listed
    twice, or a row without 4 fields, is an error naming the file and the line."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: AudioSet segment list not found")
    segments, ids = [], UniqueIds(f"{path}: YTID")
    with open_table(path) as stream:
        lines = (
            (number, line)
            for number, line in enumerate(stream, 1)
            if line.strip() and not line.startswith("#")
        )
        for number, line in lines:
            row = next(csv.reader([line], skipinitialspace=True))
            if len(row) != 4:
                raise PreparationError(
                    f"{path}, line {number}: {len(row)} fields, expected 4 (YTID, start, end, "
                    f'"labels"): {line.strip()!r}'
                )
            ytid, start, end, labels = row
            ids.add(ytid, f"line {number}")
            try:
                segments.append((ytid, float(start), float(end), labels.split(",")))
            except ValueError as error:
                raise PreparationError(
                    f"{path}, line {number}: {error}: {line.strip()!r}"
                ) from error
    return segments


def index_clips(folder: Path) -> dict[str, Path]:
    """``{YTID: path}`` for every audio file under ``folder``, whichever naming scheme it uses;
    a YTID with several files keeps the first in sorted order (a warning names both)."""
    clips = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() not in AUDIO_EXTENSIONS:
            continue
        match = OFFSET_NAME.match(path.stem)
        ytid = match["ytid"] if match else path.stem
        if ytid in clips:
            logger.warning(
                "AudioSet: %r has two clips, %s and %s: using the first", ytid, clips[ytid], path
            )
            continue
        clips[ytid] = path
    return clips


def _find_clip(clips: dict[str, Path], ytid: str) -> Path | None:
    return clips.get(ytid) or clips.get(f"Y{ytid}")


def _manifest(
    segments_csv: Path, segments: list, clips: dict[str, Path], known_mids: set[str]
) -> dict:
    report = PreparationReport(f"AudioSet {segments_csv.name}")
    manifest = {}
    for ytid, start, end, labels in segments:
        unknown = [mid for mid in labels if mid not in known_mids]
        if unknown:
            raise PreparationError(
                f"{segments_csv}: {ytid!r} has labels {unknown} not in {LABELS_FILE}"
            )
        clip = _find_clip(clips, ytid)
        duration = report.probe(ytid, clip)
        if duration is not None:
            manifest[ytid] = {
                "wav": str(clip),
                "duration": round(duration, 4),
                "start": start,
                "end": end,
                "labels": labels,
            }
    report.log_summary()
    report.check_not_empty()
    return manifest


def _split_off(manifest: dict, ratio: float, seed: int) -> tuple[dict, dict]:
    ids = sorted(manifest)
    random.Random(seed).shuffle(ids)
    n_valid = max(1, round(ratio * len(ids))) if ids else 0
    valid_ids = set(ids[:n_valid])
    train = {key: value for key, value in manifest.items() if key not in valid_ids}
    valid = {key: value for key, value in manifest.items() if key in valid_ids}
    return train, valid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_folder", required=True)
    parser.add_argument("--save_folder", required=True)
    parser.add_argument("--clips_folder", default=None)
    parser.add_argument("--shards_folder", help="also write WebDataset tar shards here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    prepare_audioset(
        args.data_folder, args.save_folder, args.clips_folder, shards_folder=args.shards_folder
    )


if __name__ == "__main__":
    main()
