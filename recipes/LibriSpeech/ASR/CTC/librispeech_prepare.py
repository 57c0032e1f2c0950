"""Prepare LibriSpeech (the real layout, or the mini corpus in the same layout) as CSV manifests.

Layout read: ``<data_folder>/<split>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac`` with one
``<speaker>-<chapter>.trans.txt`` per chapter (``<utt id> <UPPER-CASE TRANSCRIPT>`` per line).
``data_folder`` may be the ``LibriSpeech`` folder itself or the folder that contains it.

Writes ``<save_folder>/<split>.csv`` with columns ``ID, duration, wav, spk_id, wrd``. Each
transcript line is paired with the audio file of its own chapter folder. Utterances listed in a
transcript without a readable audio file are reported and skipped, and the summary says how many
were kept; audio without a transcript line is reported too. An utterance id listed twice (in two
chapters, or twice in one) is an error naming both places; a split left with no utterance is an
error. Transcripts may carry a BOM or CRLF line ends. Ids shared by two splits are reported.
All manifests of a run are written in one atomic step; a rerun with the same options does nothing.

Example:
    python librispeech_prepare.py --data_folder data/mini/LibriSpeech --save_folder results/prep
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from speechlobes.dataio.preparation import (
    PreparationError,
    PreparationReport,
    UniqueIds,
    begin_preparation,
    commit_manifests,
    csv_text,
    preparation_done,
    read_lines,
    report_overlap,
    write_split_shards,
)

logger = logging.getLogger(__name__)

SPLITS = (
    "train-clean-100",
    "train-clean-360",
    "train-other-500",
    "dev-clean",
    "dev-other",
    "test-clean",
    "test-other",
)
FIELDS = ["ID", "duration", "wav", "spk_id", "wrd"]
AUDIO_EXTENSIONS = (".flac", ".wav")


def prepare_librispeech(
    data_folder: str,
    save_folder: str,
    tr_splits: list[str] = ("train-clean-100",),
    dev_splits: list[str] = ("dev-clean",),
    te_splits: list[str] = ("test-clean",),
    select_n_sentences: int | None = None,
    skip_prep: bool = False,
    shards_folder: str | None = None,
) -> dict[str, Path]:
    """Write one CSV manifest per split and return ``{split: csv_path}``.

    Arguments:
        data_folder: the ``LibriSpeech`` folder, or its parent.
        save_folder: where the manifests go.
        tr_splits, dev_splits, te_splits: split names (any of ``SPLITS``).
        select_n_sentences: keep only the first N utterances (sorted by ID) of each split.
        skip_prep: do nothing but return the expected paths.
        shards_folder: also write each split as WebDataset tar shards in
            ``<shards_folder>/<split>`` (for ``data_format: shards``; kept when up to date).
    """
    splits = [*tr_splits, *dev_splits, *te_splits]
    unknown = [split for split in splits if split not in SPLITS]
    if unknown:
        raise ValueError(f"unknown LibriSpeech split(s) {unknown}; known: {list(SPLITS)}")
    save = Path(save_folder)
    outputs = {split: save / f"{split}.csv" for split in splits}
    options = {"data_folder": str(data_folder), "splits": splits, "select_n": select_n_sentences}
    if skip_prep:
        return outputs
    if preparation_done(save, options, [p.name for p in outputs.values()]):
        logger.info("LibriSpeech manifests in %s are up to date", save)
        write_split_shards(outputs.values(), shards_folder)
        return outputs
    begin_preparation(save)
    root = _librispeech_root(Path(data_folder), splits)
    manifests = {split: _split_rows(root / split, select_n_sentences) for split in splits}
    report_overlap("LibriSpeech", {s: [row["ID"] for row in rows] for s, rows in manifests.items()})
    commit_manifests(
        save, {outputs[s].name: csv_text(rows, FIELDS) for s, rows in manifests.items()}, options
    )
    for split, rows in manifests.items():
        logger.info("LibriSpeech %s: %d utterances -> %s", split, len(rows), outputs[split])
    write_split_shards(outputs.values(), shards_folder)
    return outputs


def read_transcripts(split_folder: Path) -> dict[str, tuple[str, Path]]:
    """``{utterance id: (transcript, audio path without extension)}`` from every trans.txt;
    the audio lies in the transcript's own chapter folder."""
    transcripts, ids = {}, UniqueIds(f"LibriSpeech {split_folder.name}: utterance")
    for trans_file in sorted(split_folder.glob("*/*/*.trans.txt")):
        for number, line in enumerate(read_lines(trans_file), 1):
            if not line.strip():
                continue
            utt_id, _, words = line.strip().partition(" ")
            if not words.strip():
                raise PreparationError(f"{trans_file}:{number}: no transcript after id {utt_id!r}")
            ids.add(utt_id, f"{trans_file}:{number}")
            transcripts[utt_id] = (words.strip(), trans_file.parent / utt_id)
    return transcripts


def _split_rows(split_folder: Path, select_n: int | None) -> list[dict]:
    if not split_folder.is_dir():
        raise FileNotFoundError(f"{split_folder}: LibriSpeech split folder not found")
    transcripts = read_transcripts(split_folder)
    report = PreparationReport(f"LibriSpeech {split_folder.name}")
    listed = {stem for _, stem in transcripts.values()}
    for ext in AUDIO_EXTENSIONS:
        for orphan in sorted(split_folder.glob(f"*/*/*{ext}")):
            if orphan.with_suffix("") not in listed:
                logger.warning("LibriSpeech: %s has no transcript line; skipped", orphan)
    rows = []
    for utt_id in sorted(transcripts)[:select_n]:
        words, stem = transcripts[utt_id]
        wav = next(
            (stem.with_suffix(e) for e in AUDIO_EXTENSIONS if stem.with_suffix(e).is_file()),
            None,
        )
        duration = report.probe(utt_id, wav if wav is not None else stem.with_suffix(".flac"))
        if duration is None:
            continue
        rows.append(
            {
                "ID": utt_id,
                "duration": f"{duration:.4f}",
                "wav": str(wav),
                "spk_id": utt_id.split("-")[0],
                "wrd": words,
            }
        )
    report.log_summary()
    report.check_not_empty()
    return rows


def _librispeech_root(data_folder: Path, splits: list[str]) -> Path:
    for candidate in (data_folder, data_folder / "LibriSpeech"):
        if any((candidate / split).is_dir() for split in splits):
            return candidate
    raise FileNotFoundError(
        f"{data_folder}: none of the splits {splits} found here or in {data_folder / 'LibriSpeech'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_folder", required=True)
    parser.add_argument("--save_folder", required=True)
    parser.add_argument(
        "--splits", nargs="+", default=["train-clean-100", "dev-clean", "test-clean"]
    )
    parser.add_argument("--shards_folder", help="also write WebDataset tar shards here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    prepare_librispeech(
        args.data_folder, args.save_folder, args.splits, [], [], shards_folder=args.shards_folder
    )


if __name__ == "__main__":
    main()
