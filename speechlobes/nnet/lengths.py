"""Length and padding-mask arithmetic, written once and shared by every lobe.

Conventions: a *padding mask* is True where a position is padding; an *attention mask*
(Hugging Face style) is 1 where a position is valid. ``wav_lens`` are SpeechBrain's relative
lengths (length / longest length in the batch).

Example:
    >>> conv_output_length(torch.tensor([16000, 9600]), kernel=400, stride=160)
    tensor([98, 58])
    >>> lengths_to_padding_mask(torch.tensor([3, 1]), 4)
    tensor([[False, False, False,  True],
            [False,  True,  True,  True]])
"""

from __future__ import annotations

import torch


def conv_output_length(
    length: torch.Tensor | int, kernel: int, stride: int, padding: int = 0, dilation: int = 1
) -> torch.Tensor | int:
    """Frames a Conv1d (or a framing with ``snip_edges``) produces from ``length`` inputs."""
    span = dilation * (kernel - 1) + 1
    if isinstance(length, torch.Tensor):
        return torch.div(length + 2 * padding - span, stride, rounding_mode="floor") + 1
    return (length + 2 * padding - span) // stride + 1


def relative_to_absolute_lengths(wav_lens: torch.Tensor, max_len: int) -> torch.Tensor:
    """Relative lengths (fraction of ``max_len``) -> integer lengths, rounded to nearest."""
    return torch.round(wav_lens.float() * max_len).long().clamp(max=max_len)


def lengths_to_padding_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """Integer lengths (batch,) -> (batch, max_len) bool mask, True where padded."""
    max_len = int(lengths.max()) if max_len is None else max_len
    positions = torch.arange(max_len, device=lengths.device)
    return positions[None, :] >= lengths[:, None]


def padding_mask_to_lengths(padding_mask: torch.Tensor) -> torch.Tensor:
    """(batch, time) bool padding mask (right padded) -> integer lengths (batch,)."""
    return (~padding_mask).sum(dim=-1)
