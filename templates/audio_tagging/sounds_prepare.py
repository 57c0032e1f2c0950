"""Synthesise a tiny tagging corpus: clips holding any subset of five kinds of sound.

This stands in for a real ``<dataset>_prepare.py`` (e.g. ``audioset_prepare.py``): it writes
``<split>/<id>.wav`` and ``<split>.json`` = ``{id: {"wav": path, "duration": s, "labels":
"chirp,clicks"}}``. Each class appears in a clip with probability ``presence`` (independently
of the others), at a random time, over faint background noise; a clip may hold no sound at
all, or several that overlap in time: the situation multi-label tagging is made for.
"""

import json
from pathlib import Path

import soundfile
import torch

SAMPLE_RATE = 16000


def make_sound(name: str, seconds: float, generator: torch.Generator) -> torch.Tensor:
    """One event of class ``name``. The classes differ in their *shape* on a spectrogram
    (a flat line, a rising line, a dashed line, vertical strokes, a filled block), not in
    their frequency, which is random: see the README for why that matters to BEATs."""
    t = torch.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    r = torch.rand(3, generator=generator)
    freq = 300 * 10 ** r[0]  # 300 Hz to 3 kHz, uniform on a log scale
    if name == "tone":
        return torch.sin(2 * torch.pi * freq * t)
    if name == "beeps":  # a tone switched on and off 6 to 10 times per second
        gate = torch.sin(2 * torch.pi * (6 + 4 * r[1]) * t) > 0
        return gate * torch.sin(2 * torch.pi * freq * t)
    if name == "chirp":  # frequency rising 8-fold, from `freq / 2` to `4 * freq`
        log_freq = torch.log(freq / 2) + torch.log(torch.tensor(8.0)) * t / seconds
        return torch.sin(2 * torch.pi * torch.cumsum(torch.exp(log_freq), 0) / SAMPLE_RATE)
    if name == "noise":
        return 0.5 * torch.randn(t.shape, generator=generator)
    if name == "clicks":  # short pulses, 8 to 15 per second
        period = int(SAMPLE_RATE / (8 + 7 * r[1]))
        pulses = (torch.arange(len(t)) % period < 16).float()
        return pulses * torch.randn(t.shape, generator=generator)
    raise ValueError(f"unknown sound class {name!r}")


def make_clip(classes: list[str], presence: float, generator: torch.Generator):
    """A 0.6 to 1.0 s clip and the list of classes it contains."""
    length = int((0.6 + 0.4 * torch.rand((), generator=generator).item()) * SAMPLE_RATE)
    clip = 0.001 * torch.randn(length, generator=generator)
    labels = []
    for name in classes:
        if torch.rand((), generator=generator).item() >= presence:
            continue
        seconds = 0.2 + 0.3 * torch.rand((), generator=generator).item()
        sound = make_sound(name, seconds, generator)[:length]
        start = int(torch.randint(0, length - len(sound) + 1, (), generator=generator))
        gain = 0.1 + 0.3 * torch.rand((), generator=generator).item()
        clip[start : start + len(sound)] += gain * sound
        labels.append(name)
    return clip, labels


def prepare_sounds(data_folder: str, sizes: dict[str, int], classes: list[str], presence: float):
    """Write the wavs and ``<split>.json`` of each split (skipped when already there)."""
    for position, (split, size) in enumerate(sizes.items()):
        generator = torch.Generator().manual_seed(position)  # one seed per split
        manifest_path = Path(data_folder, f"{split}.json")
        if manifest_path.exists():
            continue
        Path(data_folder, split).mkdir(parents=True, exist_ok=True)
        manifest = {}
        for index in range(size):
            clip, labels = make_clip(classes, presence, generator)
            path = Path(data_folder, split, f"{split}_{index}.wav")
            soundfile.write(path, clip.numpy(), SAMPLE_RATE)
            manifest[path.stem] = {
                "wav": str(path),
                "duration": len(clip) / SAMPLE_RATE,
                "labels": ",".join(labels),
            }
        manifest_path.write_text(json.dumps(manifest, indent=1))
