"""Cutting a long recording at its pauses, so that each piece is about a sentence long.

A model trained on single utterances reads a long, many-sentence recording worse than the same
sentences one by one, even when it sees the recording whole. The transcriber therefore cuts a
long file where the speaker pauses and decodes each piece on its own, as it was trained.

A pause is a run of quiet frames (20 ms windows every 10 ms) of at least ``min_pause``
seconds: quiet means ``quiet_db`` below the file's loud level (the 95th percentile of the
frame energies) or digital silence. While a piece is longer than ``max_seconds`` it is cut at
its longest pause that leaves at least ``min_seconds`` on both sides, the pause dropped but for
``margin`` seconds on each side; a piece with no such pause stays whole (the transcriber then
reads it in chunks).

Example:
    >>> import torch
    >>> tone = torch.sin(torch.arange(16000 * 3) * 0.1)                # 3 s of "speech"
    >>> quiet = torch.zeros(8000)                                      # 0.5 s pause
    >>> wav = torch.cat([tone, quiet, tone, quiet, tone])
    >>> speech_segments(frame_energies_db(wav, 16000), 16000, len(wav), max_seconds=5.0)
    [(0, 51200), (52800, 107200), (108800, 160000)]
"""

from __future__ import annotations

import torch

from speechlobes.dataio.audio import read_resampled

FRAME_SECONDS, HOP_SECONDS = 0.02, 0.01


def frame_geometry(sample_rate: int) -> tuple[int, int]:
    """Samples per energy frame and per hop at ``sample_rate``."""
    return round(FRAME_SECONDS * sample_rate), round(HOP_SECONDS * sample_rate)


def frame_energies_db(wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Mean-square energy in dB of 20 ms frames every 10 ms of a mono ``wav``."""
    size, hop = frame_geometry(sample_rate)
    if wav.numel() < size:
        return torch.empty(0)
    frames = wav.float().unfold(0, size, hop)
    return 10 * torch.log10(frames.square().mean(-1) + 1e-10)


def file_energies_db(
    path: str, sample_rate: int, num_samples: int, block_seconds: int = 60
) -> torch.Tensor:
    """:func:`frame_energies_db` of a file of ``num_samples`` (at ``sample_rate``), read
    ``block_seconds`` at a time so that memory does not grow with its length."""
    size, hop = frame_geometry(sample_rate)
    block = block_seconds * sample_rate // hop * hop  # blocks start on a frame
    return torch.cat(
        [
            frame_energies_db(
                read_resampled(
                    path, sample_rate, start, min(num_samples, start + block + size - hop)
                ),
                sample_rate,
            )
            for start in range(0, num_samples, block)
        ]
    )


def pauses(energies_db: torch.Tensor, min_frames: int, quiet_db: float) -> list[tuple[int, int]]:
    """``[first, stop)`` frame runs of at least ``min_frames`` quiet frames."""
    if energies_db.numel() == 0:
        return []
    loud = torch.quantile(energies_db, 0.95).item()
    quiet = (energies_db < loud - quiet_db) | (energies_db <= -99.0)
    edges = torch.diff(quiet.int(), prepend=torch.tensor([0]), append=torch.tensor([0]))
    starts = (edges == 1).nonzero().flatten().tolist()
    stops = (edges == -1).nonzero().flatten().tolist()
    return [(a, b) for a, b in zip(starts, stops, strict=True) if b - a >= min_frames]


def speech_segments(
    energies_db: torch.Tensor,
    sample_rate: int,
    num_samples: int,
    max_seconds: float = 8.0,
    min_seconds: float = 1.0,
    min_pause: float = 0.25,
    quiet_db: float = 35.0,
    margin: float = 0.2,
) -> list[tuple[int, int]]:
    """``[start, stop)`` sample spans of a recording of ``num_samples`` with frame
    ``energies_db`` (:func:`frame_energies_db`): cut at its pauses until each is at most
    ``max_seconds`` long where pauses allow (see the module docstring). A cut drops the pause
    but ``margin`` seconds of it on each side."""
    size, hop = frame_geometry(sample_rate)
    keep = round(margin * sample_rate)
    # (length, first quiet sample, end of the last quiet frame) per pause
    found = [
        (stop - first, first * hop, (stop - 1) * hop + size)
        for first, stop in pauses(energies_db, max(1, round(min_pause / HOP_SECONDS)), quiet_db)
    ]
    longest, shortest = max_seconds * sample_rate, min_seconds * sample_rate
    done, spans = [], [(0, num_samples)]
    while spans:
        start, stop = spans.pop()
        inside = [p for p in found if p[1] - start >= shortest and stop - p[2] >= shortest]
        if stop - start <= longest or not inside:
            done.append((start, stop))
            continue
        _, quiet_from, quiet_to = max(inside)
        middle = (quiet_from + quiet_to) // 2
        spans += [(start, min(quiet_from + keep, middle)), (max(quiet_to - keep, middle), stop)]
    return sorted(done)
