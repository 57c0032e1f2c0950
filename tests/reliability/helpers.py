"""Helpers of the reliability tests: test audio, and a small CTC experiment folder made as the
LibriSpeech recipe makes it."""

from pathlib import Path

import numpy as np
import soundfile as sf

import tools.ctc_experiment

SENTENCES = ["THE CAT SAT ON THE MAT", "A DOG RAN HOME", "WE SING AND PLAY", "QUIZ BOX JUMP"]


def write_tone(path: Path, seconds: float, rate: int = 16000, fmt=None, subtype=None) -> Path:
    """A 300 Hz tone with a little noise (so no two windows are identical)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    generator = np.random.default_rng(len(str(path)))
    t = np.arange(int(round(seconds * rate))) / rate
    wav = 0.3 * np.sin(2 * np.pi * 300 * t) + 0.02 * generator.standard_normal(len(t))
    sf.write(path, wav.astype(np.float32), rate, format=fmt, subtype=subtype)
    return path


def make_ctc_experiment(folder: Path) -> Path:
    """A small CTC experiment folder (random weights) made as the recipe makes one."""
    overrides = {"d_model": 32, "encoder": {"num_layers": 1, "num_heads": 2, "ffn_size": 64}}
    return tools.ctc_experiment.make_ctc_experiment(folder, SENTENCES, overrides)
