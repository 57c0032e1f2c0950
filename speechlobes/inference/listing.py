"""What the command line reads: audio files, folders of them and manifests, as (id, path) items.

An input argument is

- a folder: every audio file under it (``AUDIO_SUFFIXES``, any depth, sorted), its id the path
  inside the folder without the suffix (``spk1/chapter2/utt3``);
- a CSV manifest (``.csv``): SpeechBrain's layout, an ``ID`` column and an audio column
  (``wav`` by default, ``--audio-column``); ``$data_root`` in a field is replaced by
  ``--data-root`` (default: the manifest's folder);
- a JSON manifest (``.json``): ``{id: {"wav": path, ...}}``, ``{data_root}`` replaced likewise;
- a text list (``.txt``, ``.lst``, ``.list``): one audio path per line (blank lines and lines
  starting with ``#`` skipped), its id the file name without the suffix;
- anything else: one audio file (checked only when it is read, so a missing or broken file
  becomes that file's error, not the batch's).

Relative paths inside a manifest or list are relative to the working directory, as in
SpeechBrain. A manifest that cannot be read is a :class:`ListingError` naming it.

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "list.txt").write_text("# two files\\na/x.flac\\n\\nb/y.wav\\n")
    >>> [(item.id, item.path) for item in collect_inputs([str(folder / "list.txt")])]
    [('x', 'a/x.flac'), ('y', 'b/y.wav')]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from speechlobes.dataio.dataset import load_data_csv, load_data_json

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".oga", ".aiff", ".aif", ".au")
LIST_SUFFIXES = (".txt", ".lst", ".list")


class ListingError(ValueError):
    """An input argument (a manifest, a list) cannot be read; the message names it."""


@dataclass(frozen=True)
class InputItem:
    """One audio file to process: its id (from a manifest, else from its name) and path."""

    id: str
    path: str


def collect_inputs(
    arguments: list[str], audio_column: str = "wav", data_root: str | None = None
) -> list[InputItem]:
    """The items of every argument, in order (see the module docstring)."""
    items: list[InputItem] = []
    for argument in arguments:
        path = Path(argument)
        suffix = path.suffix.lower()
        if path.is_dir():
            items += folder_items(path)
        elif suffix in (".csv", ".json"):
            items += manifest_items(path, audio_column, data_root)
        elif suffix in LIST_SUFFIXES:
            items += list_items(path)
        else:
            items.append(InputItem(path.stem, argument))
    return items


def folder_items(folder: Path) -> list[InputItem]:
    """Every audio file under ``folder``, sorted by path."""
    files = sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()
    )
    if not files:
        raise ListingError(f"{folder}: a folder without audio files ({', '.join(AUDIO_SUFFIXES)})")
    return [InputItem(str(p.relative_to(folder).with_suffix("")), str(p)) for p in files]


def manifest_items(manifest: Path, audio_column: str, data_root: str | None) -> list[InputItem]:
    """The (ID, audio column) pairs of a SpeechBrain CSV or JSON manifest."""
    root = {"data_root": data_root if data_root is not None else str(manifest.parent)}
    try:
        if manifest.suffix.lower() == ".csv":
            data = load_data_csv(manifest, root)
        else:
            data = load_data_json(manifest, root)
    except FileNotFoundError as error:
        raise ListingError(f"{manifest}: no such manifest") from error
    except (KeyError, ValueError, UnicodeDecodeError) as error:
        raise ListingError(f"{manifest}: not a readable manifest ({error})") from error
    items = []
    for item_id, fields in data.items():
        if audio_column not in fields:
            raise ListingError(
                f"{manifest}: entry {item_id!r} has no {audio_column!r} field (fields: "
                f"{sorted(fields)}); name the audio column with --audio-column"
            )
        if not isinstance(fields[audio_column], str):
            raise ListingError(f"{manifest}: entry {item_id!r}: {audio_column!r} is not a path")
        items.append(InputItem(str(item_id), fields[audio_column]))
    return items


def list_items(text_list: Path) -> list[InputItem]:
    """One item per non-blank, non-comment line of a text file of paths."""
    try:
        lines = text_list.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ListingError(f"{text_list}: cannot read the list of audio files ({error})") from error
    paths = [line.strip() for line in lines]
    return [InputItem(Path(p).stem, p) for p in paths if p and not p.startswith("#")]
