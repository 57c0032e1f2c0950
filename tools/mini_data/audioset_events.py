"""The sound classes of the mini AudioSet, with their real AudioSet ontology ids, and a
synthesizer for each (all float32 at 16 kHz, peak-normalised to 1).

Example:
    >>> import numpy as np
    >>> event = synthesize_event("Chirp tone", np.random.default_rng(0))
    >>> event.dtype.name, 0.4 * 16000 <= len(event) <= 3.0 * 16000
    ('float32', True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tools.mini_data.tts import SAMPLE_RATE


@dataclass(frozen=True)
class SoundClass:
    """One AudioSet class: its ontology id (MID) and display name as in class_labels_indices.csv.

    Example:
        >>> SOUND_CLASSES[0]
        SoundClass(mid='/m/09x0r', display_name='Speech')
    """

    mid: str
    display_name: str


SOUND_CLASSES = (
    SoundClass("/m/09x0r", "Speech"),
    SoundClass("/m/01v_m0", "Sine wave"),
    SoundClass("/m/0hdsk", "Chirp tone"),
    SoundClass("/m/02fs_r", "Beep, bleep"),
    SoundClass("/m/0chx_", "White noise"),
    SoundClass("/m/0cj0r", "Pink noise"),
    SoundClass("/m/07qc9xj", "Clicking"),
    SoundClass("/m/06xkwv", "Mains hum"),
)
SPEECH = "Speech"


def _fade(signal: np.ndarray, seconds: float = 0.01) -> np.ndarray:
    ramp = np.linspace(0.0, 1.0, min(int(seconds * SAMPLE_RATE), len(signal) // 2))
    signal[: len(ramp)] *= ramp
    signal[len(signal) - len(ramp) :] *= ramp[::-1]
    return signal


def _time(seconds: float) -> np.ndarray:
    return np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE


def _sine_wave(rng: np.random.Generator) -> np.ndarray:
    t = _time(rng.uniform(1.5, 5.0))
    return _fade(np.sin(2 * np.pi * rng.uniform(200, 2000) * t + rng.uniform(0, 2 * np.pi)))


def _chirp_tone(rng: np.random.Generator) -> np.ndarray:
    duration = rng.uniform(0.4, 3.0)
    start, end = np.exp(rng.uniform(np.log(250), np.log(6000), size=2))
    t = _time(duration)
    frequency = start * (end / start) ** (t / duration)
    return _fade(np.sin(2 * np.pi * np.cumsum(frequency) / SAMPLE_RATE))


def _beeps(rng: np.random.Generator) -> np.ndarray:
    frequency = rng.uniform(700, 3000)
    pieces = []
    for _ in range(rng.integers(2, 7)):
        pieces.append(_fade(np.sin(2 * np.pi * frequency * _time(rng.uniform(0.08, 0.25))), 0.005))
        pieces.append(np.zeros(int(rng.uniform(0.1, 0.4) * SAMPLE_RATE)))
    return np.concatenate(pieces[:-1])


def _white_noise(rng: np.random.Generator) -> np.ndarray:
    return _fade(rng.standard_normal(int(rng.uniform(1.0, 4.0) * SAMPLE_RATE)), 0.05)


def _pink_noise(rng: np.random.Generator) -> np.ndarray:
    white = rng.standard_normal(int(rng.uniform(1.0, 4.0) * SAMPLE_RATE))
    spectrum = np.fft.rfft(white)
    frequencies = np.fft.rfftfreq(len(white), 1 / SAMPLE_RATE)
    spectrum /= np.sqrt(np.maximum(frequencies, 20.0))
    return _fade(np.fft.irfft(spectrum, len(white)), 0.05)


def _clicking(rng: np.random.Generator) -> np.ndarray:
    duration = rng.uniform(0.8, 3.0)
    signal = np.zeros(int(duration * SAMPLE_RATE))
    click_length = int(0.004 * SAMPLE_RATE)
    click = rng.standard_normal(click_length) * np.exp(-np.arange(click_length) / 10.0)
    position = 0.0
    while position + 0.01 < duration:
        start = int(position * SAMPLE_RATE)
        signal[start : start + len(click)] += click[: len(signal) - start]
        position += rng.uniform(0.03, 0.3)
    return signal


def _mains_hum(rng: np.random.Generator) -> np.ndarray:
    fundamental = rng.choice([50.0, 60.0])
    t = _time(rng.uniform(2.0, 8.0))
    harmonics = sum(
        rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * k * fundamental * t + rng.uniform(0, 6))
        for k in range(1, 8)
    )
    return _fade(harmonics, 0.1)


_SYNTHESIZERS = {
    "Sine wave": _sine_wave,
    "Chirp tone": _chirp_tone,
    "Beep, bleep": _beeps,
    "White noise": _white_noise,
    "Pink noise": _pink_noise,
    "Clicking": _clicking,
    "Mains hum": _mains_hum,
}


def synthesize_event(display_name: str, rng: np.random.Generator) -> np.ndarray:
    """One event of a non-speech class (speech comes from eSpeak NG, see audioset.py)."""
    if display_name not in _SYNTHESIZERS:
        raise ValueError(f"no synthesizer for {display_name!r}; have {sorted(_SYNTHESIZERS)}")
    event = _SYNTHESIZERS[display_name](rng)
    return (event / np.abs(event).max()).astype(np.float32)
