"""Read audio files (WAV, FLAC, OGG, MP3 through libsndfile) into float32 tensors.

``read_audio`` returns ``(wav, sample_rate)``, unlike SpeechBrain's ``read_audio`` which
returns only the tensor: the rate travels with the samples so that a pipeline can check or
resample it. Integer PCM is scaled to [-1, 1); float files are returned as stored.

Every failure (missing, empty, truncated or corrupt file, non-finite samples, an unexpected
sample rate or one outside ``[MIN_RATE, MAX_RATE]`` when resampling) raises
:class:`AudioReadError`, which names the file. Truncation is caught for every container:
WAV (the data chunk is shorter than its header says), FLAC and MP3 with a Xing/Info header
(fewer samples decode than the header announces) and Ogg Vorbis/Opus (the last page is cut
or is not marked as the end of its stream). Memory: a mono read decodes in blocks, so it
needs the result plus one block, whatever the channel count.

:func:`read_resampled` reads a stretch of a file at another rate, decoding only that part
(plus the filter's reach), and returns the same samples as resampling the whole file and
slicing it: long recordings can be processed in bounded memory.

Example:
    >>> import tempfile, numpy as np, soundfile as sf
    >>> path = tempfile.mkdtemp() + "/tone.wav"
    >>> sf.write(path, np.zeros(1600, dtype="float32"), 16000)
    >>> wav, sr = read_audio({"file": path, "start": 100, "stop": 500})
    >>> wav.shape, sr
    (torch.Size([400]), 16000)
    >>> audio_info(path).duration
    0.1
    >>> read_resampled(path, 8000, start=10, stop=20).shape  # samples 10..19 at 8 kHz
    torch.Size([10])
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass
from typing import Any

import soundfile as sf
import torch

from speechlobes.processing.resample import MAX_RATE, MIN_RATE, resample, resample_reach

__all__ = [
    "AudioInfo",
    "AudioReadError",
    "audio_info",
    "read_audio",
    "read_resampled",
    "resample",
    "resampled_length",
]

BLOCK_FRAMES = 1 << 18  # frames decoded at a time
OGG_PAGE_HEADER = struct.Struct("<4sBBqIIIB")  # capture, version, flags, granule, ..., segments
OGG_END_OF_STREAM = 0x04


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
    info = _checked_info(path)
    stop = info.num_frames if stop is None else stop
    if not 0 <= start < stop <= info.num_frames:
        raise AudioReadError(
            f"{path}: segment [{start}, {stop}) lies outside the file's {info.num_frames} samples"
        )
    if channels is not None and (
        max(channels) >= info.num_channels or min(channels) < -info.num_channels
    ):
        raise AudioReadError(
            f"{path}: channels {channels} requested, the file has {info.num_channels}"
        )
    wav = _decode(path, start, stop, channels, mono)
    sample_rate = info.sample_rate
    if resample_to is not None:
        # resample works on time-last tensors; multichannel audio is (time, channels).
        wav = _resampled(path, wav.movedim(0, -1), sample_rate, resample_to).movedim(-1, 0)
        sample_rate = resample_to
    elif expected_sample_rate is not None and sample_rate != expected_sample_rate:
        raise AudioReadError(
            f"{path}: sample rate is {sample_rate} Hz, expected {expected_sample_rate} Hz; "
            "resample the data or pass resample_to"
        )
    return wav.to(dtype).contiguous(), sample_rate


def resampled_length(path: str | os.PathLike, sample_rate: int) -> int:
    """How many samples :func:`read_audio` with ``resample_to=sample_rate`` returns."""
    info = audio_info(path)
    return math.ceil(info.num_frames * sample_rate / info.sample_rate)


def read_resampled(
    path: str | os.PathLike, sample_rate: int, start: int = 0, stop: int | None = None
) -> torch.Tensor:
    """Mono samples ``[start, stop)`` of the file resampled to ``sample_rate``: the slice of
    ``read_audio(path, resample_to=sample_rate)[0]``, decoding only the file's samples within
    the resampling filter's reach of it (agreement to float rounding).

    Example: ``read_resampled("talk.flac", 16000, 60 * 16000, 90 * 16000)`` (minute 1 to 1.5).
    """
    path = os.fspath(path)
    info = _checked_info(path)
    total = math.ceil(info.num_frames * sample_rate / info.sample_rate)
    stop = total if stop is None else stop
    if not 0 <= start < stop <= total:
        raise AudioReadError(
            f"{path}: segment [{start}, {stop}) lies outside the file's {total} samples "
            f"at {sample_rate} Hz"
        )
    if sample_rate == info.sample_rate:
        return _decode(path, start, stop, None, mono=True)
    _check_rate(path, info.sample_rate)
    gcd = math.gcd(info.sample_rate, sample_rate)
    orig, new = info.sample_rate // gcd, sample_rate // gcd
    # Cut the file at multiples of ``orig`` samples (= multiples of ``new`` output samples),
    # so that every output keeps its filter phase, with the filter's reach on both sides.
    reach_blocks = math.ceil(resample_reach(info.sample_rate, sample_rate) / orig) + 1
    first_block = max(0, start // new - reach_blocks)
    last_block = min(math.ceil(info.num_frames / orig), math.ceil(stop / new) + reach_blocks)
    first_frame, last_frame = first_block * orig, min(info.num_frames, last_block * orig)
    wav = _decode(path, first_frame, last_frame, None, mono=True)
    offset = first_block * new
    return resample(wav, info.sample_rate, sample_rate)[start - offset : stop - offset]


def _checked_info(path: str) -> AudioInfo:
    info = audio_info(path)
    if info.num_frames == 0:
        raise AudioReadError(f"{path}: the file holds no samples")
    _check_not_truncated(path, info)
    return info


def _decode(
    path: str, start: int, stop: int, channels: list[int] | None, mono: bool
) -> torch.Tensor:
    """Frames ``[start, stop)``: (time,) averaged over the channels when ``mono``, else
    (time, channels); decoded ``BLOCK_FRAMES`` at a time."""
    blocks, position = [], start
    try:
        with sf.SoundFile(path) as audio_file:
            audio_file.seek(start)
            while position < stop:
                count = min(BLOCK_FRAMES, stop - position)
                block = torch.from_numpy(audio_file.read(count, dtype="float32", always_2d=True))
                if block.shape[0] != count:
                    raise AudioReadError(
                        f"{path}: truncated or corrupt: expected {stop - start} samples from "
                        f"{start}, decoded {position - start + block.shape[0]}"
                    )
                if not torch.isfinite(block).all():
                    raise AudioReadError(f"{path}: holds NaN or infinite samples")
                block = block[:, channels] if channels is not None else block
                blocks.append(block.mean(dim=1) if mono else block)
                position += count
    except (sf.SoundFileError, RuntimeError) as error:
        raise AudioReadError(f"{path}: cannot decode audio ({error})") from error
    return blocks[0] if len(blocks) == 1 else torch.cat(blocks)


def _check_rate(path: str, sample_rate: int) -> None:
    """Refuse, naming the file, a rate that cannot be resampled (see ``resample``)."""
    if not MIN_RATE <= sample_rate <= MAX_RATE:
        raise AudioReadError(
            f"{path}: sample rate {sample_rate} Hz is outside the range that can be resampled "
            f"([{MIN_RATE}, {MAX_RATE}] Hz); convert the file first"
        )


def _resampled(path: str, wav: torch.Tensor, orig_sr: int, new_sr: int) -> torch.Tensor:
    if orig_sr != new_sr:
        _check_rate(path, orig_sr)
    return resample(wav, orig_sr, new_sr)


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
    """Refuse files that libsndfile would decode short without complaint."""
    if info.format in ("WAV", "WAVEX"):
        _check_wav_data_chunk(path)
    elif info.format == "OGG":
        _check_ogg_pages(path)


def _check_wav_data_chunk(path: str) -> None:
    """A WAV whose data chunk is shorter than its header declares is cut."""
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


def _check_ogg_pages(path: str) -> None:
    """Walk the Ogg pages (headers only): each must be whole, and each logical stream must
    end with a page flagged end-of-stream; a cut file fails one or the other."""
    size, open_streams, offset = os.path.getsize(path), set(), 0
    with open(path, "rb") as ogg_file:
        while offset < size:
            ogg_file.seek(offset)
            header = ogg_file.read(OGG_PAGE_HEADER.size)
            if len(header) < OGG_PAGE_HEADER.size:
                raise AudioReadError(f"{path}: truncated Ogg file: cut inside a page header")
            capture, _, flags, _, serial, _, _, segments = OGG_PAGE_HEADER.unpack(header)
            if capture != b"OggS":
                raise AudioReadError(f"{path}: corrupt Ogg file: no page at byte {offset}")
            lacing = ogg_file.read(segments)
            offset += OGG_PAGE_HEADER.size + segments + sum(lacing)
            if len(lacing) < segments or offset > size:
                raise AudioReadError(f"{path}: truncated Ogg file: its last page is cut short")
            if flags & OGG_END_OF_STREAM:
                open_streams.discard(serial)
            else:
                open_streams.add(serial)
    if open_streams:
        raise AudioReadError(
            f"{path}: truncated Ogg file: the stream ends without its end-of-stream page"
        )
