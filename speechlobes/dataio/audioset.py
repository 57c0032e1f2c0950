"""AudioSet's official label table, read the same way by the recipe and the inference tagger.

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "class_labels_indices.csv"
    >>> _ = path.write_text('index,mid,display_name\\n1,/m/0chx_,"White noise"\\n'
    ...                     '0,/m/09x0r,"Speech"\\n')
    >>> read_class_labels(path)
    {'/m/09x0r': 'Speech', '/m/0chx_': 'White noise'}
"""

from __future__ import annotations

import csv
from pathlib import Path


def read_class_labels(path: str | Path) -> dict[str, str]:
    """``{mid: display_name}`` in index order from an AudioSet ``class_labels_indices.csv``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: AudioSet label table (index,mid,display_name) not found")
    with open(path, newline="", encoding="utf-8-sig") as stream:  # BOM or not
        reader = csv.DictReader(stream)
        missing = {"index", "mid", "display_name"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(
                f"{path}: columns {sorted(missing)} missing; found {reader.fieldnames}"
            )
        rows = sorted(reader, key=lambda row: int(row["index"]))
    return {row["mid"]: row["display_name"] for row in rows}
