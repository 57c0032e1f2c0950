"""Synthesise a tiny "speech" corpus: each letter is a tone, words are separated by silence.

This stands in for a real ``<dataset>_prepare.py`` (e.g. ``librispeech_prepare.py``), which
reads a corpus from disk and writes manifests. Here we first *create* the audio, then write
the same kind of manifest: ``<split>.json`` = ``{id: {"wav": path, "duration": s, "text": ...}}``.

Letter ``i`` of the alphabet is a tone of ``base_hz * 1.35**i`` Hz; its duration, pitch and
loudness vary a little from one utterance to the next, and noise is added, so the model must
learn to recognise letters, not memorise waveforms.
"""

import json
from pathlib import Path

import soundfile
import torch

SAMPLE_RATE = 16000


def tone(freq: float, seconds: float, gain: float) -> torch.Tensor:
    """A sine with 10 ms fades, so that two equal letters in a row stay two tones."""
    t = torch.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    fade = torch.clamp(torch.minimum(t, t[-1] - t) / 0.01, max=1.0)
    return gain * fade * torch.sin(2 * torch.pi * freq * t)


def speak(text: str, alphabet: str, generator: torch.Generator, base_hz: float = 300.0):
    """The waveform of ``text``: one tone per letter, a pause between words, light noise."""

    def uniform(low, high):
        return low + (high - low) * torch.rand((), generator=generator).item()

    pieces = [torch.zeros(int(uniform(0.05, 0.15) * SAMPLE_RATE))]
    for word in text.split():
        for letter in word:
            freq = base_hz * 1.35 ** alphabet.index(letter) * uniform(0.97, 1.03)
            pieces.append(tone(freq, uniform(0.09, 0.13), uniform(0.2, 0.6)))
        pieces.append(torch.zeros(int(uniform(0.08, 0.15) * SAMPLE_RATE)))
    wav = torch.cat(pieces)
    return wav + 0.01 * torch.randn(wav.shape, generator=generator)


def random_text(alphabet: str, generator: torch.Generator) -> str:
    """One to three words of one to four letters."""
    words = []
    for _ in range(torch.randint(1, 4, (), generator=generator)):
        length = int(torch.randint(1, 5, (), generator=generator))
        letters = torch.randint(len(alphabet), (length,), generator=generator)
        words.append("".join(alphabet[i] for i in letters))
    return " ".join(words)


def prepare_tones(data_folder: str, sizes: dict[str, int], alphabet: str, seed: int = 0):
    """Write ``<split>/<id>.wav`` and ``<split>.json`` for each split (skipped if present)."""
    for position, (split, size) in enumerate(sizes.items()):
        generator = torch.Generator().manual_seed(1000 * seed + position)  # one per split
        manifest_path = Path(data_folder, f"{split}.json")
        if manifest_path.exists():  # prepared by an earlier (or interrupted and resumed) run
            continue
        Path(data_folder, split).mkdir(parents=True, exist_ok=True)
        manifest = {}
        for index in range(size):
            text = random_text(alphabet, generator)
            wav = speak(text, alphabet, generator)
            path = Path(data_folder, split, f"{split}_{index}.wav")
            soundfile.write(path, wav.numpy(), SAMPLE_RATE)
            manifest[path.stem] = {
                "wav": str(path),
                "duration": len(wav) / SAMPLE_RATE,
                "text": text,
            }
        manifest_path.write_text(json.dumps(manifest, indent=1))
