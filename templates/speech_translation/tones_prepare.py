"""Synthesise a tiny speech-translation corpus: spoken "source" sentences and their translations.

This stands in for a real ``<dataset>_prepare.py`` (e.g. ``covost_prepare.py``). It writes
``<split>/<id>.wav`` and ``<split>.json`` = ``{id: {"wav": path, "duration": s, "source":
"one four two", "translation": "zwei vier eins"}}``.

Speech: source word ``i`` is a tone of ``base_hz * 1.4**i`` Hz (duration, pitch and loudness
vary a little; short pauses between words; light noise). Translation: each word is looked up
in a dictionary and the word order is REVERSED, so the output cannot be written while reading
the input left to right: the decoder must attend back and forth over the whole utterance.
"""

import json
from pathlib import Path

import soundfile
import torch

SAMPLE_RATE = 8000  # telephone quality: plenty for tones up to 2.3 kHz, half the compute


def speak(words: list[int], generator: torch.Generator, base_hz: float = 400.0):
    """The waveform of a sentence given as source word indices: one tone per word."""

    def rand(low, high):
        return low + (high - low) * torch.rand((), generator=generator).item()

    pieces = [torch.zeros(int(rand(0.03, 0.1) * SAMPLE_RATE))]
    for word in words:
        t = torch.arange(int(rand(0.1, 0.14) * SAMPLE_RATE)) / SAMPLE_RATE
        freq = base_hz * 1.4**word * rand(0.97, 1.03)
        fade = torch.clamp(torch.minimum(t, t[-1] - t) / 0.01, max=1.0)  # no clicks at edges
        pieces.append(rand(0.2, 0.6) * fade * torch.sin(2 * torch.pi * freq * t))
        pieces.append(torch.zeros(int(rand(0.03, 0.08) * SAMPLE_RATE)))
    wav = torch.cat(pieces)
    return wav + 0.005 * torch.randn(wav.shape, generator=generator)


def prepare_tones(
    data_folder: str, sizes: dict[str, int], source_words: list[str], target_words: list[str]
):
    """Write the wavs and ``<split>.json`` of each split (skipped when already there)."""
    for position, (split, size) in enumerate(sizes.items()):
        generator = torch.Generator().manual_seed(position)  # one seed per split
        manifest_path = Path(data_folder, f"{split}.json")
        if manifest_path.exists():
            continue
        Path(data_folder, split).mkdir(parents=True, exist_ok=True)
        manifest = {}
        for index in range(size):
            length = int(torch.randint(2, 5, (), generator=generator))
            words = torch.randint(len(source_words), (length,), generator=generator).tolist()
            wav = speak(words, generator)
            path = Path(data_folder, split, f"{split}_{index}.wav")
            soundfile.write(path, wav.numpy(), SAMPLE_RATE)
            manifest[path.stem] = {
                "wav": str(path),
                "duration": len(wav) / SAMPLE_RATE,
                "source": " ".join(source_words[w] for w in words),
                "translation": " ".join(target_words[w] for w in reversed(words)),
            }
        manifest_path.write_text(json.dumps(manifest, indent=1))
