"""Lengths and padding masks, written once and shared by every lobe.

The convention at module boundaries is SpeechBrain's: **relative lengths**, one float per
utterance, its length divided by the padded length of the batch (1.0 for the longest). A
kernel that needs to know which positions are padding builds a *padding mask* (True where a
position is padding) once, with :func:`relative_padding_mask`; encoders that count their
output frames exactly convert back with :func:`absolute_to_relative_lengths`. Hugging Face
*attention masks* (1 = valid) appear only at the transformers-compatible surfaces.

Example:
    >>> conv_output_length(torch.tensor([16000, 9600]), kernel=400, stride=160)
    tensor([98, 58])
    >>> relative_padding_mask(torch.tensor([0.75, 0.25]), 4)
    tensor([[False, False, False,  True],
            [False,  True,  True,  True]])
    >>> absolute_to_relative_lengths(torch.tensor([98, 58]), 98)
    tensor([1.0000, 0.5918])
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


def check_relative_lengths(lengths: torch.Tensor, batch: int, name: str = "lengths") -> None:
    """Raise a ValueError unless ``lengths`` are ``batch`` relative lengths in (0, 1].

    Under ``torch.compile`` only the shape is checked (the values would split the graph).
    """
    if lengths.dim() != 1 or lengths.shape[0] != batch or lengths.dtype == torch.bool:
        raise ValueError(
            f"{name}: expected relative lengths of shape ({batch},) (length / padded length), "
            f"got a {lengths.dtype} tensor of shape {tuple(lengths.shape)}; a padding or "
            "attention mask is not a length"
        )
    if torch.compiler.is_compiling() or not lengths.numel():
        return
    if bool((lengths <= 0).any()) or bool((lengths > 1 + 1e-6).any()):
        raise ValueError(f"{name}: relative lengths must lie in (0, 1], got {lengths.tolist()}")


def relative_to_absolute_lengths(wav_lens: torch.Tensor, max_len: int) -> torch.Tensor:
    """Relative lengths (fraction of ``max_len``) -> integer lengths, rounded to nearest."""
    return torch.round(wav_lens.float() * max_len).long().clamp(max=max_len)


def absolute_to_relative_lengths(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """Integer lengths -> relative lengths (float32) that round back to them exactly."""
    return lengths.float() / max(max_len, 1)


def lengths_to_padding_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """Integer lengths (batch,) -> (batch, max_len) bool mask, True where padded."""
    max_len = int(lengths.max()) if max_len is None else max_len
    positions = torch.arange(max_len, device=lengths.device)
    return positions[None, :] >= lengths[:, None]


def relative_padding_mask(wav_lens: torch.Tensor, max_len: int) -> torch.Tensor:
    """Relative lengths (batch,) -> (batch, max_len) bool mask, True where padded."""
    return lengths_to_padding_mask(relative_to_absolute_lengths(wav_lens, max_len), max_len)


def padding_mask_to_lengths(padding_mask: torch.Tensor) -> torch.Tensor:
    """(batch, time) bool padding mask (right padded) -> integer lengths (batch,)."""
    return (~padding_mask).sum(dim=-1)
