"""What every ``<dataset>_prepare.py`` does the same way: skip finished work, read tables
(BOM and CRLF tolerated), refuse duplicate ids and paths leaving the dataset, probe audio,
say exactly what was kept, and write all the manifests of a run as one atomic step.

A run is atomic as a whole: :func:`begin_preparation` removes the done-marker first, the
manifests are built in memory, and :func:`commit_manifests` stages every file, renames them
all, and writes the done-marker last. A run that fails anywhere leaves no marker, so the next
run redoes the work rather than trusting a mix of old and new files.

Example:
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> options = {"splits": ["dev-clean"]}
    >>> preparation_done(folder, options, ["dev-clean.csv"])
    False
    >>> begin_preparation(folder)
    >>> text = csv_text([{"ID": "a", "duration": 1.0}], ["ID", "duration"])
    >>> commit_manifests(folder, {"dev-clean.csv": text}, options)
    >>> preparation_done(folder, options, ["dev-clean.csv"])
    True
"""

from __future__ import annotations

import csv
import io
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
TABLE_ENCODING = "utf-8-sig"  # UTF-8, with or without a byte-order mark


class PreparationError(ValueError):
    """The dataset cannot be prepared as it is; the message names the file, row and problem."""


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
    try:
        recorded = json.loads(options_file.read_text(encoding="utf-8"))
    except ValueError:
        return False
    return recorded == json.loads(json.dumps(options))


def begin_preparation(save_folder: str | os.PathLike) -> None:
    """Forget the last finished run (its done-marker), before anything else is written."""
    (Path(save_folder) / OPTIONS_FILE).unlink(missing_ok=True)


def commit_manifests(
    save_folder: str | os.PathLike, manifests: dict[str, str], options: dict[str, Any]
) -> None:
    """Write ``{file name: text}`` into ``save_folder`` as one step, then the done-marker.

    Every file is written and fsynced under a temporary name first; only then are they all
    renamed into place, and the marker recording ``options`` comes last.
    """
    folder = Path(save_folder)
    folder.mkdir(parents=True, exist_ok=True)
    staged = []
    try:
        for name, text in manifests.items():
            staged.append((_stage(folder / name, text), folder / name))
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, final in staged:
        os.replace(tmp, final)
    os.replace(
        _stage(folder / OPTIONS_FILE, json.dumps(options, indent=2, sort_keys=True)),
        folder / OPTIONS_FILE,
    )


def _stage(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8", newline="") as stream:
        stream.write(text)
        stream.flush()
        os.fsync(stream.fileno())
    return tmp


def write_split_shards(
    manifests: Iterable[str | os.PathLike], shards_folder: str | os.PathLike | None
) -> None:
    """With a ``shards_folder`` (the prep scripts' option), write each manifest's WebDataset
    tar shards into ``<shards_folder>/<manifest name without suffix>``
    (:func:`speechlobes.dataio.shards.write_manifest_shards`: kept when up to date with the
    manifest); nothing without one."""
    if shards_folder is None:
        return
    from speechlobes.dataio.shards import write_manifest_shards

    for name, index in write_manifest_shards(manifests, shards_folder).items():
        logger.info("%s: %d shards in %s", name, len(index.shards), Path(shards_folder) / name)


def csv_text(rows: Sequence[dict[str, Any]], fieldnames: list[str]) -> str:
    """A CSV manifest (header, then one line per row) as text."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fieldnames, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def json_text(data: dict[str, Any]) -> str:
    """A JSON manifest ``{id: {field: value}}`` as text."""
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def open_table(path: str | os.PathLike):
    """Open a text table for ``csv`` reading: UTF-8 with or without BOM, any line ending."""
    return open(path, newline="", encoding=TABLE_ENCODING)


def read_lines(path: str | os.PathLike) -> list[str]:
    """The lines of a text file (UTF-8 with or without BOM, LF or CRLF), without line ends."""
    return Path(path).read_text(encoding=TABLE_ENCODING).splitlines()


def inside(root: str | os.PathLike, relative: str, where: str) -> Path:
    """``root / relative``, refusing an absolute path or one that leaves ``root``.

    Example:
        >>> inside("/data/clips", "../secret.mp3", "train.tsv, line 3")
        Traceback (most recent call last):
        ...
        speechlobes.dataio.preparation.PreparationError: train.tsv, line 3: path '../secret.mp3'
        leaves /data/clips; paths must be relative and inside it
    """
    root = Path(root)
    candidate = Path(relative)
    resolved = (root / candidate).resolve()
    if candidate.is_absolute() or not resolved.is_relative_to(root.resolve()):
        raise PreparationError(
            f"{where}: path {relative!r} leaves {root}; paths must be relative and inside it"
        )
    return root / candidate


class UniqueIds:
    """Remembers where each id came from; a second sighting is an error naming both places.

    Example:
        >>> ids = UniqueIds("utterance")
        >>> ids.add("84-1-0001", "a.trans.txt:1")
        >>> ids.add("84-1-0001", "b.trans.txt:7")
        Traceback (most recent call last):
        ...
        speechlobes.dataio.preparation.PreparationError: utterance id '84-1-0001' appears twice:
        a.trans.txt:1 and b.trans.txt:7; ids must be unique
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self.sources: dict[str, str] = {}

    def add(self, item_id: str, source: str) -> None:
        if item_id in self.sources:
            raise PreparationError(
                f"{self.what} id {item_id!r} appears twice: {self.sources[item_id]} and "
                f"{source}; ids must be unique"
            )
        self.sources[item_id] = source


def report_overlap(dataset: str, splits: dict[str, Iterable[str]]) -> dict[tuple[str, str], list]:
    """Warn about ids found in more than one split (e.g. a test clip also in training);
    returns ``{(split_a, split_b): sorted shared ids}`` for the pairs that share any."""
    names = list(splits)
    sets = {name: set(ids) for name, ids in splits.items()}
    shared = {}
    for index, first in enumerate(names):
        for second in names[index + 1 :]:
            common = sorted(sets[first] & sets[second])
            if common:
                shared[(first, second)] = common
                logger.warning(
                    "%s: %d ids are in both %s and %s, e.g. %s",
                    dataset,
                    len(common),
                    first,
                    second,
                    ", ".join(map(repr, common[:5])),
                )
    return shared


@dataclass
class PreparationReport:
    """Counts what was listed, kept and left out (and why), logging each item left out.

    :meth:`summary` says exactly what was kept; :meth:`check_not_empty` makes an empty split
    an error rather than a header-only manifest.
    """

    dataset: str
    found: int = 0
    missing: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)

    def probe(self, item_id: str, path: str | os.PathLike | None) -> float | None:
        """Duration in seconds of ``path``, or None (logged and counted) if missing or
        unreadable.
        """
        if path is None or not os.path.isfile(path):
            logger.warning("%s: %r has no audio file (%s)", self.dataset, item_id, path)
            self.missing.append(item_id)
            return None
        try:
            info = audio_info(path)
        except AudioReadError as error:
            logger.warning("%s: skipping %r: %s", self.dataset, item_id, error)
            self.unreadable.append(item_id)
            return None
        if info.num_frames == 0:
            logger.warning("%s: skipping %r: %s holds no samples", self.dataset, item_id, path)
            self.unreadable.append(item_id)
            return None
        self.found += 1
        return info.duration

    def skip_malformed(self, where: str, problem: str) -> None:
        """Count and log a table row that cannot be used (``where``: file and line)."""
        logger.warning("%s: skipping %s: %s", self.dataset, where, problem)
        self.malformed.append(where)

    def summary(self) -> str:
        """``"<dataset>: kept K of N: m missing, u unreadable, r malformed rows"``."""
        left_out = [
            f"{len(items)} {what}"
            for what, items in (
                ("missing audio", self.missing),
                ("unreadable", self.unreadable),
                ("malformed rows", self.malformed),
            )
            if items
        ]
        text = f"{self.dataset}: kept {self.found} of {self.listed}"
        return text + (f" (left out: {', '.join(left_out)})" if left_out else "")

    def log_summary(self) -> None:
        """Log :meth:`summary`, as a warning when anything was left out."""
        level = logging.WARNING if self.found < self.listed else logging.INFO
        logger.log(level, "%s", self.summary())

    @property
    def listed(self) -> int:
        """How many items the tables listed."""
        return self.found + len(self.missing) + len(self.unreadable) + len(self.malformed)

    def check_not_empty(self) -> None:
        """Raise :class:`PreparationError` when nothing was kept."""
        if self.found == 0:
            raise PreparationError(
                f"{self.summary()}: nothing usable, so no manifest is written; check the paths "
                "and the audio files"
            )
