"""Prepare CoVoST 2 speech translation (Common Voice clips + CoVoST TSVs) as JSON manifests.

Reads, for the language pair ``<src>_<tgt>``:
- the Common Voice release folder of the source language: ``clips/*.mp3`` and ``validated.tsv``
  (used for ``client_id`` when the translation table lacks it);
- the CoVoST translation table, either ``covost_v2.<src>_<tgt>.tsv`` with a ``split`` column, or the
  per-split tables the official split script writes (``covost_v2.<src>_<tgt>.<split>.tsv`` or plain
  ``train.tsv`` / ``dev.tsv`` / ``test.tsv``).

Writes ``train.json``, ``dev.json``, ``test.json`` (``{id: {wav, duration, sentence, translation,
client_id}}``) into ``save_folder``. Missing or unreadable clips are reported and skipped. A rerun
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
    mark_preparation_done,
    preparation_done,
    write_json,
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
) -> dict[str, Path]:
    """Write one manifest per split and return ``{split: json_path}``."""
    cv, tables, save = Path(cv_folder), Path(covost_folder), Path(save_folder)
    outputs = {split: save / f"{split}.json" for split in SPLITS}
    options = {"cv_folder": str(cv), "covost_folder": str(tables), "pair": f"{src}_{tgt}"}
    if skip_prep or preparation_done(save, options, [p.name for p in outputs.values()]):
        logger.info("CoVoST manifests in %s are up to date", save)
        return outputs
    clients = read_validated_clients(cv / "validated.tsv")
    for split, rows in read_covost_splits(tables, src, tgt).items():
        manifest = _manifest(rows, cv / "clips", clients, f"CoVoST {src}-{tgt} {split}")
        write_json(outputs[split], manifest)
        logger.info("CoVoST %s: %d utterances -> %s", split, len(manifest), outputs[split])
    mark_preparation_done(save, options)
    return outputs


def read_tsv(path: Path, required: tuple[str, ...] = ()) -> list[dict[str, str]]:
    """Rows of a tab-separated table as Common Voice and CoVoST write them (no quoting)."""
    with open(path, newline="", encoding="utf-8") as stream:
        reader = csv.DictReader(stream, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = [column for column in required if column not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: columns {missing} missing; found {reader.fieldnames}")
        return list(reader)


def read_validated_clients(path: Path) -> dict[str, str]:
    """``{clip path: client_id}`` from Common Voice's ``validated.tsv`` (empty if absent)."""
    if not path.is_file():
        logger.warning("%s not found: client ids come from the CoVoST table only", path)
        return {}
    return {row["path"]: row["client_id"] for row in read_tsv(path, ("client_id", "path"))}


def read_covost_splits(folder: Path, src: str, tgt: str) -> dict[str, list[dict[str, str]]]:
    """The rows of each split, from the combined table or from per-split tables."""
    combined = folder / f"covost_v2.{src}_{tgt}.tsv"
    if combined.is_file():
        rows = read_tsv(combined, (*REQUIRED_COLUMNS, "split"))
        splits = {split: [row for row in rows if row["split"] == split] for split in SPLITS}
        others = sorted({row["split"] for row in rows} - set(SPLITS))
        if others:
            logger.info("%s: ignoring rows of splits %s", combined, others)
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


def _manifest(rows: list[dict[str, str]], clips: Path, clients: dict[str, str], name: str) -> dict:
    report = PreparationReport(name)
    manifest = {}
    for row in rows:
        clip = clips / row["path"]
        duration = report.probe(row["path"], clip)
        if duration is None:
            continue
        manifest[Path(row["path"]).stem] = {
            "wav": str(clip),
            "duration": round(duration, 4),
            "sentence": row["sentence"],
            "translation": row["translation"],
            "client_id": row.get("client_id") or clients.get(row["path"], ""),
        }
    report.log_summary()
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
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    prepare_covost(args.cv_folder, args.covost_folder, args.save_folder, args.src, args.tgt)


if __name__ == "__main__":
    main()
