"""A tiny corpus for shard and streaming tests: noise utterances of varied lengths in FLAC and
WAV, listed in a LibriSpeech-style CSV manifest (``$data_root`` paths)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 16000


def write_corpus(folder: Path, count: int, seed: int = 0, speaker: str = "spk") -> Path:
    """``count`` utterances of 0.05-0.5 s under ``folder/audio``; returns the CSV manifest."""
    rng = np.random.default_rng(seed)
    audio = folder / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    rows = []
    for number in range(count):
        samples = int(rng.integers(RATE // 20, RATE // 2))
        wav = (rng.standard_normal(samples) * 3000).astype(np.int16)
        name = f"{number:04d}.{'flac' if number % 3 else 'wav'}"
        sf.write(audio / name, wav, RATE)
        rows.append(
            {
                "ID": f"{speaker}{number % 4}-utt{number:04d}",
                "duration": samples / RATE,
                "wav": f"$data_root/audio/{name}",
                "spk_id": f"{speaker}{number % 4}",
                "wrd": " ".join(rng.choice(["A", "B", "C"], size=3)),
            }
        )
    manifest = folder / "train.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest
