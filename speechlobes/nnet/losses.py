"""Losses that respect padding: lengths are SpeechBrain's relative lengths (length / max).

Every loss takes ``reduction``: ``"mean"`` (over valid elements), ``"sum"``, or ``"batch"``
(one value per utterance, averaged over its valid elements; CTC: per-utterance loss).

Example:
    >>> log_probs = torch.log_softmax(torch.zeros(1, 3, 4), dim=-1)
    >>> round(nll_loss(log_probs, torch.tensor([[1, 2, 0]]), length=torch.tensor([2 / 3])).item(), 4)
    1.3863
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from speechlobes.nnet.lengths import lengths_to_padding_mask, relative_to_absolute_lengths

__all__ = ["bce_loss", "ctc_loss", "length_mask", "nll_loss"]

REDUCTIONS = ("mean", "sum", "batch")


def length_mask(reference: torch.Tensor, length: torch.Tensor | None) -> torch.Tensor:
    """(batch, time) float mask, 1 on valid steps, for relative ``length`` (all ones if None)."""
    batch, time = reference.shape[0], reference.shape[1]
    if length is None:
        return torch.ones(batch, time, device=reference.device)
    absolute = relative_to_absolute_lengths(length.to(reference.device), time)
    return (~lengths_to_padding_mask(absolute, time)).float()


def _reduce(values: torch.Tensor, mask: torch.Tensor, reduction: str) -> torch.Tensor:
    """Reduce masked per-element ``values`` of shape (batch, time)."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    values = values * mask
    if reduction == "sum":
        return values.sum()
    if reduction == "batch":
        return values.sum(dim=1) / mask.sum(dim=1).clamp(min=1)
    return values.sum() / mask.sum().clamp(min=1)


def nll_loss(
    log_probabilities: torch.Tensor,
    targets: torch.Tensor,
    length: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """Negative log-likelihood of class indices, with optional label smoothing.

    Args:
        log_probabilities: (batch, time, classes) or (batch, classes) log-softmax outputs.
        targets: (batch, time) or (batch,) class indices.
        length: relative lengths of the time axis (None: all valid).
        label_smoothing: mass spread uniformly over all classes.
    """
    if log_probabilities.dim() == 2:
        log_probabilities, targets = log_probabilities[:, None], targets[:, None]
    if targets.shape != log_probabilities.shape[:2]:
        raise ValueError(
            f"targets {tuple(targets.shape)} do not match log_probabilities "
            f"{tuple(log_probabilities.shape)} (batch, time, classes)"
        )
    picked = -log_probabilities.gather(-1, targets.long().unsqueeze(-1)).squeeze(-1)
    if label_smoothing:
        uniform = -log_probabilities.mean(dim=-1)
        picked = (1.0 - label_smoothing) * picked + label_smoothing * uniform
    return _reduce(picked, length_mask(targets, length), reduction)


def bce_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    length: torch.Tensor | None = None,
    pos_weight: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Binary cross-entropy on logits for multi-label targets in [0, 1].

    ``logits``/``targets``: (batch, classes) or frame-level (batch, time, classes); the mean is
    over classes and valid frames.
    """
    if logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ")
    if logits.dim() == 2:
        logits, targets = logits[:, None], targets[:, None]
    per_class = F.binary_cross_entropy_with_logits(
        logits, targets.to(logits.dtype), pos_weight=pos_weight, reduction="none"
    )
    return _reduce(per_class.mean(dim=-1), length_mask(logits, length), reduction)


def ctc_loss(
    log_probs: torch.Tensor,
    targets: torch.Tensor,
    input_lens: torch.Tensor,
    target_lens: torch.Tensor,
    blank_index: int = 0,
    reduction: str = "mean",
    zero_infinity: bool = True,
) -> torch.Tensor:
    """Connectionist temporal classification loss.

    Args:
        log_probs: (batch, time, classes) log-softmax outputs.
        targets: (batch, label_time) label indices (padding is ignored).
        input_lens, target_lens: relative lengths of ``log_probs`` and ``targets``.
        reduction: "mean" (each utterance divided by its target length, then averaged, as
            torch), "sum", or "batch" (the per-utterance losses).
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    input_abs = relative_to_absolute_lengths(input_lens, log_probs.shape[1])
    target_abs = relative_to_absolute_lengths(target_lens, targets.shape[1])
    torch_reduction = "none" if reduction == "batch" else reduction
    return F.ctc_loss(
        log_probs.transpose(0, 1).float(),
        targets.long(),
        input_abs.cpu(),
        target_abs.cpu(),
        blank=blank_index,
        reduction=torch_reduction,
        zero_infinity=zero_infinity,
    )
