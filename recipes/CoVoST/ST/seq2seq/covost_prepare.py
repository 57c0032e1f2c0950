"""Prepare CoVoST 2 speech translation (Common Voice clips + CoVoST TSVs) as JSON manifests.

Reads, for the language pair ``<src>_<tgt>``:
- the Common Voice release folder of the source language: ``clips/*.mp3`` and ``validated.tsv``
  (used for ``client_id`` when the translation table lacks it);
- the CoVoST translation table, either ``covost_v2.<src>_<tgt>.tsv`` with a ``split`` column, or the
  per-split tables the official split script writes (``covost_v2.<src>_<tgt>.<split>.tsv`` or plain
  ``train.tsv`` / ``dev.tsv`` / ``test.tsv``).

Writes ``train.json``, ``dev.json``, ``test.json`` (``{id: {wav, duration, sentence, translation,
client_id}}``) into ``save_folder``. Missing or unreadable clips and rows with too few or too many
fields are reported (file and line) and skipped, and the summary says how many were kept. A clip
path that is absolute or leaves ``clips/`` is an error, and so is a clip id (the file name without
extension) listed twice or a split left empty. Tables may carry a BOM or CRLF line ends. Clips
shared by two splits are reported. All manifests of a run are written in one atomic step; a rerun
with the same options does nothing.

Example:
    python covost_prepare.py --cv_folder data/mini/CoVoST/cv/en --covost_folder data/mini/CoVoST \
        --save_folder results/prep --src en --tgt de
"""

from __future__ import annotations

import argparse
import csv
import logging
from pathlib import Path

from speechlobes.dataio.preparation import (
    PreparationReport,
    UniqueIds,
    begin_preparation,
    commit_manifests,
    inside,
    json_text,
    open_table,
    preparation_done,
    report_overlap,
    write_split_shards,
)

logger = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
REQUIRED_COLUMNS = ("path", "sentence", "translation")


def prepare_covost(
    cv_folder: str,
    covost_folder: str,
    save_folder: str,
    src: str = "en",
    tgt: str = "de",
    skip_prep: bool = False,
    shards_folder: str | None = None,
) -> dict[str, Path]:
    """Write one manifest per split and return ``{split: json_path}``; with ``shards_folder``
    each split also as WebDataset tar shards in ``<shards_folder>/<split>`` (for
    ``data_format: shards``; kept when up to date). ``skip_prep`` does nothing but return
    the expected paths."""
    cv, tables, save = Path(cv_folder), Path(covost_folder), Path(save_folder)
    outputs = {split: save / f"{split}.json" for split in SPLITS}
    options = {"cv_folder": str(cv), "covost_folder": str(tables), "pair": f"{src}_{tgt}"}
    if skip_prep:
        return outputs
    if preparation_done(save, options, [p.name for p in outputs.values()]):
        logger.info("CoVoST manifests in %s are up to date", save)
        write_split_shards(outputs.values(), shards_folder)
        return outputs
    begin_preparation(save)
    clients = read_validated_clients(cv / "validated.tsv")
    manifests = {}
    for split, rows in read_covost_splits(tables, src, tgt).items():
        manifests[split] = _manifest(rows, cv / "clips", clients, f"CoVoST {src}-{tgt} {split}")
    report_overlap(f"CoVoST {src}-{tgt}", manifests)
    texts = {outputs[split].name: json_text(manifest) for split, manifest in manifests.items()}
    commit_manifests(save, texts, options)
    for split, manifest in manifests.items():
        logger.info("CoVoST %s: %d utterances -> %s", split, len(manifest), outputs[split])
    write_split_shards(outputs.values(), shards_folder)
    return outputs


class Row(dict):
    """A table row, remembering where it came from (``source``: file and line)."""

    def __init__(self, values: dict[str, str], source: str, problem: str | None) -> None:
        super().__init__(values)
        self.source = source
        self.problem = problem


def read_tsv(path: Path, required: tuple[str, ...] = ()) -> list[Row]:
    """Rows of a tab-separated table as Common Voice and CoVoST write them (no quoting). A row
    with too few or too many fields is kept with ``problem`` set, for the caller to report."""
    with open_table(path) as stream:
        reader = csv.DictReader(stream, delimiter="\t", quoting=csv.QUOTE_NONE)
        columns = reader.fieldnames or []
        missing = [column for column in required if column not in columns]
        if missing:
            raise ValueError(f"{path}: columns {missing} missing; found {columns}")
        rows = []
        for row in reader:
            problem = None
            if None in row:
                problem = f"{len(columns) + len(row[None])} fields, the header has {len(columns)}"
            elif any(value is None for value in row.values()):
                given = sum(value is not None for value in row.values())
                problem = f"{given} fields, the header has {len(columns)}"
            values = {key: value for key, value in row.items() if key is not None}
            rows.append(Row(values, f"{path}, line {reader.line_num}", problem))
        return rows


def read_validated_clients(path: Path) -> dict[str, str]:
    """``{clip path: client_id}`` from Common Voice's ``validated.tsv`` (empty if absent)."""
    if not path.is_file():
        logger.warning("%s not found: client ids come from the CoVoST table only", path)
        return {}
    rows = read_tsv(path, ("client_id", "path"))
    return {row["path"]: row["client_id"] for row in rows if row.problem is None}


def read_covost_splits(folder: Path, src: str, tgt: str) -> dict[str, list[Row]]:
    """The rows of each split, from the combined table or from per-split tables."""
    combined = folder / f"covost_v2.{src}_{tgt}.tsv"
    if combined.is_file():
        rows = read_tsv(combined, (*REQUIRED_COLUMNS, "split"))
        whole = [row for row in rows if row.problem is None]
        splits = {split: [row for row in whole if row["split"] == split] for split in SPLITS}
        for row in rows:  # a malformed row is reported in its split (train if unknown)
            if row.problem is not None:
                splits[row.get("split") if row.get("split") in SPLITS else "train"].append(row)
        others = sorted({row["split"] for row in whole} - set(SPLITS))
        if others:
            logger.warning("%s: ignoring rows of splits %s", combined, others)
        return splits
    splits = {}
    for split in SPLITS:
        candidates = [folder / f"covost_v2.{src}_{tgt}.{split}.tsv", folder / f"{split}.tsv"]
        found = next((path for path in candidates if path.is_file()), None)
        if found is None:
            raise FileNotFoundError(
                f"{folder}: neither {combined.name} nor any of {[p.name for p in candidates]}"
            )
        splits[split] = read_tsv(found, REQUIRED_COLUMNS)
    return splits


def _manifest(rows: list[Row], clips: Path, clients: dict[str, str], name: str) -> dict:
    report, ids = PreparationReport(name), UniqueIds(f"{name}: clip")
    manifest = {}
    for row in rows:
        if row.problem is not None:
            report.skip_malformed(row.source, row.problem)
            continue
        clip = inside(clips, row["path"], row.source)
        clip_id = Path(row["path"]).stem
        ids.add(clip_id, row.source)
        duration = report.probe(clip_id, clip)
        if duration is None:
            continue
        manifest[clip_id] = {
            "wav": str(clip),
            "duration": round(duration, 4),
            "sentence": row["sentence"],
            "translation": row["translation"],
            "client_id": row.get("client_id") or clients.get(row["path"], ""),
        }
    report.log_summary()
    report.check_not_empty()
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--cv_folder", required=True, help="Common Voice folder of the source language"
    )
    parser.add_argument("--covost_folder", required=True, help="folder of the CoVoST TSV files")
    parser.add_argument("--save_folder", required=True)
    parser.add_argument("--src", default="en")
    parser.add_argument("--tgt", default="de")
    parser.add_argument("--shards_folder", help="also write WebDataset tar shards here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    prepare_covost(
        args.cv_folder,
        args.covost_folder,
        args.save_folder,
        args.src,
        args.tgt,
        shards_folder=args.shards_folder,
    )


if __name__ == "__main__":
    main()
