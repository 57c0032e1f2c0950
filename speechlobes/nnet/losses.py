"""Losses that respect padding: lengths are SpeechBrain's relative lengths (length / max).

The names, signatures and reductions are SpeechBrain's (``speechbrain.nnet.losses``):
``reduction`` is ``"mean"`` (over valid elements), ``"sum"``, ``"batch"`` (one value per
utterance, averaged over its valid elements), ``"batchmean"`` (sum / batch size) or
``"none"`` (the masked element losses). Frame-level predictions and targets whose lengths
differ by at most ``allowed_len_diff`` frames are cut to the shorter one.

Example:
    >>> log_probs = torch.log_softmax(torch.zeros(1, 3, 4), dim=-1)
    >>> loss = nll_loss(log_probs, torch.tensor([[1, 2, 0]]), length=torch.tensor([2 / 3]))
    >>> round(loss.item(), 4)
    1.3863
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from speechlobes.nnet.lengths import lengths_to_padding_mask, relative_to_absolute_lengths

__all__ = [
    "AdditiveAngularMargin",
    "AngularMargin",
    "LogSoftmaxWrapper",
    "bce_loss",
    "classification_error",
    "compute_length_mask",
    "compute_masked_loss",
    "ctc_loss",
    "l1_loss",
    "mse_loss",
    "nll_loss",
    "reduce_loss",
    "truncate",
]

REDUCTIONS = ("mean", "sum", "batch", "batchmean", "none")


def truncate(
    predictions: torch.Tensor, targets: torch.Tensor, allowed_len_diff: int = 3
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut the longer of predictions and targets (dimension 1) to the other's length, when
    they differ by at most ``allowed_len_diff``; a larger difference is an error."""
    difference = predictions.shape[1] - targets.shape[1]
    if abs(difference) > allowed_len_diff:
        raise ValueError(
            f"predictions have {predictions.shape[1]} frames and targets {targets.shape[1]}: "
            f"more than allowed_len_diff={allowed_len_diff} apart"
        )
    length = min(predictions.shape[1], targets.shape[1])
    return predictions[:, :length], targets[:, :length]


def compute_length_mask(
    data: torch.Tensor, length: torch.Tensor | None = None, len_dim: int = 1
) -> torch.Tensor:
    """A mask shaped like ``data``: 1 where the position along ``len_dim`` is within the
    row's relative ``length`` (all ones if None), 0 on padding.

    Example:
        >>> compute_length_mask(torch.zeros(2, 4), torch.tensor([1.0, 0.5])).tolist()
        [[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]]
    """
    mask = torch.ones_like(data)
    if length is None:
        return mask
    time = data.shape[len_dim]
    absolute = relative_to_absolute_lengths(length.to(data.device), time)
    valid = (~lengths_to_padding_mask(absolute, time)).to(mask.dtype)  # (batch, time)
    shape = [1] * data.dim()
    shape[0], shape[len_dim] = data.shape[0], time
    return mask * valid.reshape(shape)


def reduce_loss(
    loss: torch.Tensor,
    mask: torch.Tensor,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    predictions: torch.Tensor | None = None,
    targets: torch.Tensor | None = None,
) -> torch.Tensor:
    """Reduce masked element losses; with ``label_smoothing``, mix in the mean negative
    log-probability over classes (dimension 1 of ``predictions``), as for NLL."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    reduced = _reduce(loss, mask, reduction)
    if label_smoothing == 0:
        return reduced
    uniform = _reduce(predictions.mean(dim=1) * mask, mask, reduction)
    return -label_smoothing * uniform + (1 - label_smoothing) * reduced


def _reduce(loss: torch.Tensor, mask: torch.Tensor, reduction: str) -> torch.Tensor:
    batch = loss.shape[0]
    if reduction == "mean":
        return loss.sum() / mask.sum()
    if reduction == "sum":
        return loss.sum()
    if reduction == "batchmean":
        return loss.sum() / batch
    if reduction == "batch":
        return loss.reshape(batch, -1).sum(1) / mask.reshape(batch, -1).sum(1)
    return loss


def compute_masked_loss(
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    predictions: torch.Tensor,
    targets: torch.Tensor,
    length: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
    mask_shape: str = "targets",
    reduction: str = "mean",
) -> torch.Tensor:
    """``loss_fn(predictions, targets)`` (unreduced), masked by ``length`` along dimension 1
    of the targets (or ``mask_shape`` "predictions"/"loss"), then reduced."""
    loss = loss_fn(predictions, targets)
    shapes = {"targets": targets, "predictions": predictions, "loss": loss}
    if mask_shape not in shapes:
        raise ValueError(f"mask_shape must be one of {list(shapes)}, got {mask_shape!r}")
    mask = compute_length_mask(shapes[mask_shape], length)
    return reduce_loss(loss * mask, mask, reduction, label_smoothing, predictions, targets)


def nll_loss(
    log_probabilities: torch.Tensor,
    targets: torch.Tensor,
    length: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
    allowed_len_diff: int = 3,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Negative log-likelihood of class indices, with optional label smoothing.

    Args:
        log_probabilities: (batch, classes) or (batch, time, classes) log-softmax outputs.
        targets: (batch,) or (batch, time) class indices.
        length: relative lengths of the time axis (None: all valid).
        label_smoothing: mass spread uniformly over all classes.
        weight: a rescaling weight per class.
    """
    if log_probabilities.dim() == 3:
        log_probabilities, targets = truncate(log_probabilities, targets, allowed_len_diff)
        log_probabilities = log_probabilities.transpose(1, -1)
    loss = functools.partial(F.nll_loss, weight=weight, reduction="none")
    return compute_masked_loss(
        loss,
        log_probabilities,
        targets.long(),
        length,
        label_smoothing=label_smoothing,
        reduction=reduction,
    )


def bce_loss(
    inputs: torch.Tensor,
    targets: torch.Tensor,
    length: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
    pos_weight: torch.Tensor | None = None,
    reduction: str = "mean",
    allowed_len_diff: int = 3,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Binary cross-entropy on logits (the sigmoid is applied here, stably).

    ``inputs``: (batch), (batch, time) or (batch, time, classes) logits, or any of these
    with a trailing singleton dimension; ``targets`` in [0, 1] without it. ``length`` masks
    dimension 1 (time). ``label_smoothing`` moves the targets towards 0.5.

    Example:
        >>> bce_loss(torch.tensor([10.0, -6.0]), torch.tensor([1, 0]))
        tensor(0.0013)
    """
    if inputs.dim() == targets.dim() + 1:
        inputs = inputs.squeeze(-1)
    if inputs.dim() >= 2:
        inputs, targets = truncate(inputs, targets, allowed_len_diff)
    elif length is not None:
        raise ValueError("bce_loss: length is only for (batch, time, ...) inputs")
    else:
        inputs, targets = inputs.unsqueeze(-1), targets.unsqueeze(-1)
    if inputs.shape != targets.shape:
        raise ValueError(
            f"bce_loss: inputs {tuple(inputs.shape)} and targets {tuple(targets.shape)} differ"
        )
    if weight is not None and weight.dim() == 1:
        weight = weight.unsqueeze(-1)
    targets = targets.to(inputs.dtype)
    if label_smoothing:
        targets = targets * (1 - label_smoothing) + 0.5 * label_smoothing
    loss = functools.partial(
        F.binary_cross_entropy_with_logits, weight=weight, pos_weight=pos_weight, reduction="none"
    )
    return compute_masked_loss(loss, inputs, targets, length, reduction=reduction)


def l1_loss(
    predictions: torch.Tensor,
    targets: torch.Tensor,
    length: torch.Tensor | None = None,
    allowed_len_diff: int = 3,
    reduction: str = "mean",
) -> torch.Tensor:
    """Mean absolute error over valid elements of (batch, time, ...) tensors.

    Example:
        >>> l1_loss(torch.tensor([[0.9, 0.1, 0.1, 0.9]]), torch.tensor([[1.0, 0.0, 0.0, 1.0]]))
        tensor(0.1000)
    """
    return _elementwise_loss(F.l1_loss, predictions, targets, length, allowed_len_diff, reduction)


def mse_loss(
    predictions: torch.Tensor,
    targets: torch.Tensor,
    length: torch.Tensor | None = None,
    allowed_len_diff: int = 3,
    reduction: str = "mean",
) -> torch.Tensor:
    """Mean squared error over valid elements of (batch, time, ...) tensors."""
    return _elementwise_loss(F.mse_loss, predictions, targets, length, allowed_len_diff, reduction)


def _elementwise_loss(
    loss_fn: Callable[..., torch.Tensor],
    predictions: torch.Tensor,
    targets: torch.Tensor,
    length: torch.Tensor | None,
    allowed_len_diff: int,
    reduction: str,
) -> torch.Tensor:
    predictions, targets = truncate(predictions, targets, allowed_len_diff)
    loss = functools.partial(loss_fn, reduction="none")
    return compute_masked_loss(loss, predictions, targets, length, reduction=reduction)


def classification_error(
    probabilities: torch.Tensor,
    targets: torch.Tensor,
    length: torch.Tensor | None = None,
    allowed_len_diff: int = 3,
    reduction: str = "mean",
) -> torch.Tensor:
    """Share of wrong arg-max predictions: (batch, classes) or (batch, time, classes)
    against (batch,) or (batch, time) targets.

    Example:
        >>> classification_error(torch.tensor([[[0.9, 0.1], [0.1, 0.9]]]), torch.tensor([[1, 1]]))
        tensor(0.5000)
    """
    if probabilities.dim() == 3 and targets.dim() == 2:
        probabilities, targets = truncate(probabilities, targets, allowed_len_diff)

    def error(predictions: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return (predictions.argmax(dim=-1) != labels).float()

    return compute_masked_loss(error, probabilities, targets.long(), length, reduction=reduction)


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
            torch), "sum", "batch" (each utterance divided by its target length),
            "batchmean" (sum / batch size) or "none" (the per-utterance losses).
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    input_abs = relative_to_absolute_lengths(input_lens, log_probs.shape[1])
    target_abs = relative_to_absolute_lengths(target_lens, targets.shape[1])
    torch_reduction = {"batch": "none", "batchmean": "sum"}.get(reduction, reduction)
    loss = F.ctc_loss(
        log_probs.transpose(0, 1).float(),
        targets.long(),
        input_abs.cpu(),
        target_abs.cpu(),
        blank=blank_index,
        reduction=torch_reduction,
        zero_infinity=zero_infinity,
    )
    if reduction == "batchmean":
        return loss / targets.shape[0]
    if reduction == "batch":
        return loss / target_abs.to(loss.device)
    return loss


class AngularMargin(nn.Module):
    """Subtract ``margin`` from the target class's cosine similarity and scale by ``scale``
    (outputs: (N, classes) cosines; targets: (N, classes) one-hot).

    Example:
        >>> margin = AngularMargin(margin=0.2, scale=10.0)
        >>> margin(torch.tensor([[0.5, 0.4]]), torch.tensor([[1.0, 0.0]]))
        tensor([[3., 4.]])
    """

    def __init__(self, margin: float = 0.0, scale: float = 1.0):
        super().__init__()
        self.margin = margin
        self.scale = scale

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.scale * (outputs - self.margin * targets)


class AdditiveAngularMargin(AngularMargin):
    """Additive angular margin (AAM softmax, used by x-vector/ECAPA speaker embeddings): the
    target class's angle grows by ``margin`` before scaling; ``easy_margin`` applies it only
    where the cosine is positive."""

    def __init__(self, margin: float = 0.0, scale: float = 1.0, easy_margin: bool = False):
        super().__init__(margin, scale)
        self.easy_margin = easy_margin
        self.cos_m, self.sin_m = math.cos(margin), math.sin(margin)
        self.th = math.cos(math.pi - margin)
        self.mm = math.sin(math.pi - margin) * margin

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        cosine = outputs.float().clamp(-1 + 1e-7, 1 - 1e-7)
        sine = (1.0 - cosine.square()).sqrt()
        phi = cosine * self.cos_m - sine * self.sin_m  # cos(theta + margin)
        if self.easy_margin:
            phi = torch.where(cosine > 0, phi, cosine)
        else:
            phi = torch.where(cosine > self.th, phi, cosine - self.mm)
        return self.scale * (targets * phi + (1.0 - targets) * cosine)


class LogSoftmaxWrapper(nn.Module):
    """Cross-entropy through a margin (or any) ``loss_fn(outputs, one_hot_targets)``:
    outputs (batch, 1, classes), targets (batch, 1) class indices; averaged over the batch."""

    def __init__(self, loss_fn: Callable[..., torch.Tensor]):
        super().__init__()
        self.loss_fn = loss_fn
        self.criterion = nn.KLDivLoss(reduction="sum")

    def forward(
        self, outputs: torch.Tensor, targets: torch.Tensor, length: torch.Tensor | None = None
    ) -> torch.Tensor:
        outputs, targets = outputs.squeeze(1), targets.squeeze(1)
        one_hot = F.one_hot(targets.long(), outputs.shape[1]).float()
        try:
            predictions = self.loss_fn(outputs, one_hot)
        except TypeError:  # a function of the outputs alone
            predictions = self.loss_fn(outputs)
        return self.criterion(F.log_softmax(predictions, dim=1), one_hot) / one_hot.sum()
