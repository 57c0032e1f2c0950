"""What the command line writes: one row per input (CSV or JSON Lines) and the closing summary.

Every row has ``id``, ``path``, ``duration`` (seconds, from the file's header; empty when the
header could not be read), the command's result columns and ``error`` (empty when the file
went through). In CSV a list (the tags of a file) is one cell of JSON. Rows are written in
input order as soon as their window of files is done, and the file is flushed, so an
interrupted run keeps what it finished.

Example:
    >>> import io
    >>> stream = io.StringIO()
    >>> writer = RowWriter(stream, "csv", ["text"])
    >>> writer.write({"id": "a", "path": "a.wav", "duration": 1.5, "text": "HI", "error": None})
    >>> stream.getvalue().splitlines()
    ['id,path,duration,text,error', 'a,a.wav,1.5,HI,']
    >>> Summary(files=10, failed=1, audio_seconds=30.0, seconds=3.0).line("transcribed")
    'transcribed 9 of 10 files (1 failed): 30.0 s of audio in 3.0 s, real-time factor 0.100,
    3.33 files/s'
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}


def output_format(path: str, given: str | None) -> str:
    """``given``, else the format ``path``'s suffix names (.csv, .jsonl/.json)."""
    if given is not None:
        return given
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(
            f"--output {path}: cannot tell the format from {suffix or 'no suffix'!r}; name the "
            "file .csv or .jsonl, or pass --format csv|jsonl"
        )
    return FORMATS[suffix]


class RowWriter:
    """Writes rows of ``id, path, duration, <columns>, error`` as CSV or JSON Lines.

    Args:
        stream: an open text stream.
        kind: ``csv`` or ``jsonl``.
        columns: the result columns between ``duration`` and ``error``.
    """

    def __init__(self, stream: TextIO, kind: str, columns: list[str]) -> None:
        self.stream = stream
        self.kind = kind
        self.fields = ["id", "path", "duration", *columns, "error"]
        if kind == "csv":
            self.csv = csv.DictWriter(stream, self.fields, lineterminator="\n")
            self.csv.writeheader()

    def write(self, row: dict[str, Any]) -> None:
        if self.kind == "csv":
            self.csv.writerow({k: _cell(row.get(k)) for k in self.fields})
        else:
            self.stream.write(json.dumps({k: row.get(k) for k in self.fields}, ensure_ascii=False))
            self.stream.write("\n")

    def flush(self) -> None:
        self.stream.flush()


def _cell(value: Any) -> Any:
    """A CSV cell: empty for None, JSON for lists and mappings (a tag list), else the value."""
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return value


@dataclass
class Summary:
    """Counts and times of a run: files, failures, seconds of audio and of processing."""

    files: int = 0
    failed: int = 0
    audio_seconds: float = 0.0
    seconds: float = 0.0

    @property
    def real_time_factor(self) -> float:
        """Processing time over audio duration (below 1: faster than real time)."""
        return self.seconds / self.audio_seconds if self.audio_seconds else float("nan")

    def line(self, verb: str) -> str:
        rate = self.files / self.seconds if self.seconds else float("nan")
        failed = f" ({self.failed} failed)" if self.failed else ""
        return (
            f"{verb} {self.files - self.failed} of {self.files} files{failed}: "
            f"{self.audio_seconds:.1f} s of audio in {self.seconds:.1f} s, real-time factor "
            f"{self.real_time_factor:.3f}, {rate:.2f} files/s"
        )
