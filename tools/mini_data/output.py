"""Writing a generated dataset: completion markers, audio files, random identifiers.

A dataset folder is ours only if it holds a marker: ``.mini_dataset.json`` once complete (with
the parameters that made it), ``.mini_dataset.partial`` while being written. A folder without
either is never touched, so pointing the tool at real data cannot destroy it.

Example:
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp()) / "Demo"
    >>> start_dataset(root, {"seed": 0})
    True
    >>> finish_dataset(root, {"seed": 0}); start_dataset(root, {"seed": 0})
    False
"""

from __future__ import annotations

import json
import random
import shutil
import string
from pathlib import Path

import numpy as np
import soundfile

COMPLETE_MARKER = ".mini_dataset.json"
PARTIAL_MARKER = ".mini_dataset.partial"

_FORMATS = {
    ".flac": ("FLAC", "PCM_16"),
    ".wav": ("WAV", "PCM_16"),
    ".mp3": ("MP3", "MPEG_LAYER_III"),
}


def start_dataset(root: Path, parameters: dict) -> bool:
    """Make ``root`` ready for writing; False when it already holds this exact dataset."""
    complete = root / COMPLETE_MARKER
    if complete.exists() and json.loads(complete.read_text()) == parameters:
        return False
    if root.exists() and any(root.iterdir()):
        if not (complete.exists() or (root / PARTIAL_MARKER).exists()):
            raise FileExistsError(
                f"{root} exists and was not made by make_mini_datasets (no {COMPLETE_MARKER}): "
                "refusing to overwrite it; choose another --output or remove it yourself"
            )
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / PARTIAL_MARKER).write_text(json.dumps(parameters, sort_keys=True))
    return True


def finish_dataset(root: Path, parameters: dict) -> None:
    """Mark ``root`` complete (the marker records the parameters that made it)."""
    (root / COMPLETE_MARKER).write_text(json.dumps(parameters, indent=1, sort_keys=True) + "\n")
    (root / PARTIAL_MARKER).unlink()


def write_audio(path: Path, waveform: np.ndarray, sample_rate: int) -> None:
    """16-bit audio in the format named by the suffix (.flac, .wav, .mp3), clipped to [-1, 1]."""
    if path.suffix not in _FORMATS:
        raise ValueError(f"{path}: unsupported audio suffix; use one of {sorted(_FORMATS)}")
    file_format, subtype = _FORMATS[path.suffix]
    samples = np.round(np.clip(waveform, -1.0, 1.0) * 32767.0).astype(np.int16)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, samples, sample_rate, format=file_format, subtype=subtype)


def random_youtube_id(rng: random.Random) -> str:
    """An 11-character YouTube-like id (letters, digits, '-' and '_')."""
    alphabet = string.ascii_letters + string.digits + "-_"
    return "".join(rng.choice(alphabet) for _ in range(11))


def random_hex(rng: random.Random, length: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(length))
