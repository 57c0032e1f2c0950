"""Audio going into the inference interfaces: too-short files refused by name, the model's
smallest input and frame stride found by probing it, and long files cut into chunks.

The interfaces read audio with :func:`~speechlobes.dataio.audio.read_resampled`, so a long
file is decoded a chunk at a time and memory does not grow with its length.

Example:
    >>> conv = torch.nn.Conv1d(1, 1, kernel_size=400, stride=160)
    >>> run = lambda wav: conv(wav[:, None])[:, 0]  # (batch, time) -> (batch, frames)
    >>> smallest_input(run, limit=16000)
    400
    >>> frame_stride(run, probe=16000)
    FrameStride(samples=160, frames=1)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch

from speechlobes.dataio.audio import AudioReadError

Run = Callable[[torch.Tensor], torch.Tensor]


class InputTooShortError(AudioReadError):
    """A file is shorter than the model can take; the message names it and the minimum."""


class InputTooLongError(AudioReadError):
    """A file is longer than an interface takes in one pass; the message names it and the limit."""


def _works(run: Run, num_samples: int) -> bool:
    """Whether ``run`` takes ``num_samples`` of silence and gives a non-empty output."""
    try:
        with torch.no_grad():
            return run(torch.zeros(1, num_samples)).numel() > 0
    except (RuntimeError, ValueError, IndexError):
        return False


def smallest_input(run: Run, limit: int) -> int:
    """The fewest samples ``run`` accepts (binary search up to ``limit``, assuming a longer
    input works whenever a shorter one does); ``limit`` if even that fails."""
    if _works(run, 1):
        return 1
    low, high = 1, limit  # run fails at low; works at high (or high is the limit)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if _works(run, middle) else (middle, high)
    return high


class FrameStride(NamedTuple):
    """A model's output grows by ``frames`` frames every ``samples`` input samples (the
    smallest such whole group: a CTC head with two outputs per encoder frame has 2)."""

    samples: int
    frames: int


def frame_stride(run: Run, probe: int, max_frames: int = 4) -> FrameStride | None:
    """The frame stride of a (batch, time) -> (batch, frames, ...) model, or None if its frame
    count does not grow by a whole group of at most ``max_frames`` frames every so many
    samples."""
    with torch.no_grad():
        first = run(torch.zeros(1, probe)).shape[1]
        second = run(torch.zeros(1, 2 * probe)).shape[1]
    if second <= first:
        return None
    for frames in range(1, max_frames + 1):
        samples = round(probe * frames / (second - first))
        with torch.no_grad():  # the estimate must hold exactly over whole groups
            check = run(torch.zeros(1, probe + 7 * samples)).shape[1]
        if check == first + 7 * frames:
            return FrameStride(samples, frames)
    return None


def check_long_enough(path: str, num_samples: int, minimum: int, sample_rate: int) -> None:
    """Raise :class:`InputTooShortError` when ``num_samples`` is below ``minimum``."""
    if num_samples < minimum:
        raise InputTooShortError(
            f"{path}: {num_samples} samples ({num_samples / sample_rate * 1000:.1f} ms) at "
            f"{sample_rate} Hz; the model needs at least {minimum} samples "
            f"({minimum / sample_rate * 1000:.1f} ms)"
        )


@dataclass(frozen=True)
class Chunk:
    """One piece of a long input: samples ``[start, stop)`` go into the model, and its output
    frames ``[keep_from, keep_to)`` (``keep_to`` None: to the end) are kept. The kept frames of
    the chunks of one ``segment`` are joined; segments are decoded apart."""

    start: int
    stop: int
    keep_from: int
    keep_to: int | None
    segment: int = 0


def plan_chunks(
    num_samples: int, stride: FrameStride, chunk_strides: int, context_strides: int
) -> list[Chunk]:
    """Cut ``num_samples`` into chunks of ``chunk_strides`` kept strides, each read with
    ``context_strides`` more on both sides; boundaries fall on whole strides, so the kept
    frames tile the output of the whole input exactly.

    Example:
        >>> for chunk in plan_chunks(1000, FrameStride(10, 1), chunk_strides=40, context_strides=5):
        ...     print(chunk)
        Chunk(start=0, stop=450, keep_from=0, keep_to=40, segment=0)
        Chunk(start=350, stop=850, keep_from=5, keep_to=45, segment=0)
        Chunk(start=750, stop=1000, keep_from=5, keep_to=None, segment=0)
    """
    step, frames = stride
    chunks, first = [], 0  # in strides
    while first * step < num_samples:
        start = max(0, (first - context_strides) * step)
        stop = min(num_samples, (first + chunk_strides + context_strides) * step)
        offset = (first - start // step) * frames
        last = stop == num_samples
        keep_to = None if last else offset + chunk_strides * frames
        chunks.append(Chunk(start, stop, offset, keep_to))
        if last:
            break
        first += chunk_strides
    return chunks


def chunk_strides_for(seconds: float, sample_rate: int, stride: FrameStride) -> int:
    """How many strides make ``seconds`` (at least one)."""
    return max(1, math.floor(seconds * sample_rate / stride.samples))
