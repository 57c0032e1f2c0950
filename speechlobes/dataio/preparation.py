"""What every ``<dataset>_prepare.py`` does the same way: skip finished work, probe audio,
count what is missing or unreadable, and write manifests atomically.

Example:
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> options = {"splits": ["dev-clean"]}
    >>> preparation_done(folder, options, ["dev-clean.csv"])
    False
    >>> write_csv(f"{folder}/dev-clean.csv", [{"ID": "a", "duration": 1.0}], ["ID", "duration"])
    >>> mark_preparation_done(folder, options)
    >>> preparation_done(folder, options, ["dev-clean.csv"])
    True
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speechlobes.dataio.audio import AudioReadError, audio_info

logger = logging.getLogger(__name__)

OPTIONS_FILE = "prepare_options.json"


def preparation_done(
    save_folder: str | os.PathLike, options: dict[str, Any], outputs: Iterable[str]
) -> bool:
    """True when every output exists and the last finished run used the same ``options``."""
    folder = Path(save_folder)
    if not all((folder / name).is_file() for name in outputs):
        return False
    options_file = folder / OPTIONS_FILE
    if not options_file.is_file():
        return False
    return json.loads(options_file.read_text()) == json.loads(json.dumps(options))


def mark_preparation_done(save_folder: str | os.PathLike, options: dict[str, Any]) -> None:
    """Record ``options`` so that a rerun with the same options skips the work."""
    _write_atomic(Path(save_folder) / OPTIONS_FILE, json.dumps(options, indent=2, sort_keys=True))


@dataclass
class PreparationReport:
    """Counts the listed items that could not be used, logging each one and the totals."""

    dataset: str
    found: int = 0
    missing: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)

    def probe(self, item_id: str, path: str | os.PathLike | None) -> float | None:
        """Duration in seconds of ``path``, or None (logged and counted) if missing or unreadable."""
        if path is None or not os.path.isfile(path):
            logger.warning("%s: %s has no audio file (%s)", self.dataset, item_id, path)
            self.missing.append(item_id)
            return None
        try:
            info = audio_info(path)
        except AudioReadError as error:
            logger.warning("%s: skipping %s: %s", self.dataset, item_id, error)
            self.unreadable.append(item_id)
            return None
        if info.num_frames == 0:
            logger.warning("%s: skipping %s: %s is empty", self.dataset, item_id, path)
            self.unreadable.append(item_id)
            return None
        self.found += 1
        return info.duration

    def log_summary(self) -> None:
        """Log how many items were kept, missing and unreadable."""
        logger.info(
            "%s: %d items kept, %d missing, %d unreadable",
            self.dataset,
            self.found,
            len(self.missing),
            len(self.unreadable),
        )


def write_csv(
    path: str | os.PathLike, rows: Sequence[dict[str, Any]], fieldnames: list[str]
) -> None:
    """Write a CSV manifest atomically (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def write_json(path: str | os.PathLike, data: dict[str, Any]) -> None:
    """Write a JSON manifest ``{id: {field: value}}`` atomically."""
    _write_atomic(Path(path), json.dumps(data, indent=2, ensure_ascii=False))


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
