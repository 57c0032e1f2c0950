"""Read audio files (WAV, FLAC, OGG, MP3 through libsndfile) into float32 tensors.

``read_audio`` returns ``(wav, sample_rate)``, unlike SpeechBrain's ``read_audio`` which
returns only the tensor: the rate travels with the samples so that a pipeline can check or
resample it. Integer PCM is scaled to [-1, 1); float files are returned as stored.

Every failure (missing, empty, truncated or corrupt file, non-finite samples, an unexpected
sample rate) raises :class:`AudioReadError`, which names the file.

Example:
    >>> import tempfile, numpy as np, soundfile as sf
    >>> path = tempfile.mkdtemp() + "/tone.wav"
    >>> sf.write(path, np.zeros(1600, dtype="float32"), 16000)
    >>> wav, sr = read_audio({"file": path, "start": 100, "stop": 500})
    >>> wav.shape, sr
    (torch.Size([400]), 16000)
    >>> audio_info(path).duration
    0.1
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Any

import soundfile as sf
import torch

from speechlobes.processing.resample import resample

__all__ = ["AudioInfo", "AudioReadError", "audio_info", "read_audio", "resample"]


class AudioReadError(ValueError):
    """An audio file could not be read correctly; the message names the file and the fault."""


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says, read without decoding the samples."""

    sample_rate: int
    num_frames: int
    num_channels: int
    format: str
    subtype: str

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.num_frames / self.sample_rate


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Sample rate, frames, channels and format of ``path``, without decoding the samples."""
    path = os.fspath(path)
    _check_file(path)
    try:
        info = sf.info(path)
    except sf.SoundFileError as error:
        raise AudioReadError(f"{path}: cannot read audio header ({error})") from error
    return AudioInfo(info.samplerate, info.frames, info.channels, info.format, info.subtype)


def read_audio(
    path_or_spec: str | os.PathLike | dict[str, Any],
    mono: bool = True,
    channels: list[int] | None = None,
    dtype: torch.dtype = torch.float32,
    expected_sample_rate: int | None = None,
    resample_to: int | None = None,
) -> tuple[torch.Tensor, int]:
    """Read a file, or a segment of it, into a tensor.

    Arguments:
        path_or_spec: a path, or a SpeechBrain-style dict ``{"file": path, "start": s,
            "stop": e}`` with sample indices (``stop`` exclusive, either may be left out);
            only that segment is decoded.
        mono: average the (selected) channels into one; the result is then (time,).
            Otherwise the result is (time, channels), SpeechBrain's multichannel layout.
        channels: indices of the channels to keep (before averaging), all when None.
        dtype: floating dtype of the result.
        expected_sample_rate: the rate the caller expects; a file at another rate is an
            error unless ``resample_to`` is set.
        resample_to: resample to this rate (the returned rate is then ``resample_to``).

    Returns:
        ``(wav, sample_rate)``.
    """
    path, start, stop = _parse_spec(path_or_spec)
    info = audio_info(path)
    if info.num_frames == 0:
        raise AudioReadError(f"{path}: the file holds no samples")
    _check_not_truncated(path, info)
    stop = info.num_frames if stop is None else stop
    if not 0 <= start < stop <= info.num_frames:
        raise AudioReadError(
            f"{path}: segment [{start}, {stop}) lies outside the file's {info.num_frames} samples"
        )
    try:
        with sf.SoundFile(path) as audio_file:
            audio_file.seek(start)
            samples = audio_file.read(stop - start, dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError) as error:
        raise AudioReadError(f"{path}: cannot decode audio ({error})") from error
    if samples.shape[0] != stop - start:
        raise AudioReadError(
            f"{path}: truncated or corrupt: expected {stop - start} samples from {start}, "
            f"decoded {samples.shape[0]}"
        )
    wav = torch.from_numpy(samples)
    if not torch.isfinite(wav).all():
        raise AudioReadError(f"{path}: holds NaN or infinite samples")
    if channels is not None:
        if max(channels) >= info.num_channels or min(channels) < -info.num_channels:
            raise AudioReadError(
                f"{path}: channels {channels} requested, the file has {info.num_channels}"
            )
        wav = wav[:, channels]
    wav = wav.mean(dim=1) if mono else wav
    sample_rate = info.sample_rate
    if resample_to is not None:
        # resample works on time-last tensors; multichannel audio is (time, channels).
        wav = resample(wav.movedim(0, -1), sample_rate, resample_to).movedim(-1, 0)
        sample_rate = resample_to
    elif expected_sample_rate is not None and sample_rate != expected_sample_rate:
        raise AudioReadError(
            f"{path}: sample rate is {sample_rate} Hz, expected {expected_sample_rate} Hz; "
            "resample the data or pass resample_to"
        )
    return wav.to(dtype).contiguous(), sample_rate


def _parse_spec(path_or_spec: str | os.PathLike | dict[str, Any]) -> tuple[str, int, int | None]:
    if isinstance(path_or_spec, dict):
        if "file" not in path_or_spec:
            raise AudioReadError(f"audio spec {path_or_spec} has no 'file' key")
        start = int(path_or_spec.get("start", 0))
        stop = path_or_spec.get("stop")
        return os.fspath(path_or_spec["file"]), start, None if stop is None else int(stop)
    return os.fspath(path_or_spec), 0, None


def _check_file(path: str) -> None:
    if not os.path.isfile(path):
        raise AudioReadError(f"{path}: file not found")
    if os.path.getsize(path) == 0:
        raise AudioReadError(f"{path}: the file is empty (0 bytes)")


def _check_not_truncated(path: str, info: AudioInfo) -> None:
    """libsndfile reads a WAV whose data chunk was cut short; we refuse it."""
    if info.format != "WAV" and info.format != "WAVEX":
        return
    with open(path, "rb") as wav_file:
        header = wav_file.read(12)
        if header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return
        while chunk := wav_file.read(8):
            if len(chunk) < 8:
                return
            chunk_id, declared = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if chunk_id == b"data":
                available = os.path.getsize(path) - wav_file.tell()
                if declared not in (0, 0xFFFFFFFF) and declared > available:
                    raise AudioReadError(
                        f"{path}: truncated WAV: the header declares {declared} data bytes, "
                        f"the file holds {available}"
                    )
                return
            wav_file.seek(declared + declared % 2, os.SEEK_CUR)
