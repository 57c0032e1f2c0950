"""Shared by the inference tests: HF CTC folders made from the fixtures, test tones, and a
recorder of what a transcriber decodes."""

import shutil
from pathlib import Path

import numpy as np
import soundfile

FIXTURES = Path(__file__).resolve().parent / "fixtures"
PROCESSOR_FILES = ("vocab.json", "tokenizer_config.json", "processor_config.json")


def hf_ctc_folder(destination: Path, fixture: str) -> Path:
    """The transformers-made checkpoint ``fixture`` (random weights, 32 outputs) with the
    transformers-saved CTC processor of 32 characters, copied to ``destination``."""
    shutil.copytree(
        FIXTURES / "hf" / fixture, destination, ignore=lambda *_: ["cases.pt", "legacy_bin"]
    )
    for name in PROCESSOR_FILES:
        shutil.copy(FIXTURES / "hf_processors" / "ctc_v5" / name, destination)
    return destination


def write_flac(path: Path, seconds: float, seed: int) -> Path:
    """A tone (its pitch set by ``seed``) with a little noise, 16 kHz FLAC."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * 16000)) / 16000
    wav = 0.3 * np.sin(2 * np.pi * (150 + 300 * seed) * t) + 0.05 * rng.normal(size=t.size)
    soundfile.write(path, wav, 16000, subtype="PCM_16")
    return path


def record_decoded(asr) -> list[dict]:
    """Record, run after run, the log-probabilities each file is decoded from: call
    ``runs.append({})`` before a run; its dict maps each path to its (frames, units), the
    frames of its segments in a row."""
    import torch

    from speechlobes.inference.transcriber import join_frames

    runs, finish = [], asr.finish

    def recording(path, chunks, outputs):
        runs[-1][path] = torch.cat(join_frames(chunks, outputs))
        return finish(path, chunks, outputs)

    asr.finish = recording
    return runs
