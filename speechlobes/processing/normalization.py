"""Mean-variance normalisation of features that respects padding (SpeechBrain's
``InputNormalization``, with its arguments, defaults and statistics names).

Statistics are taken over valid frames only. With ``avoid_padding_norm`` the padded frames
come back unchanged; by default (as SpeechBrain) they are normalised with the rest. Global
statistics live in the buffers ``glob_mean``, ``glob_std`` and ``count`` (SpeechBrain's
names), so the module's state dict, and therefore the Checkpointer, carries them; under
torchrun every rank adds every rank's frames.

Example:
    >>> norm = InputNormalization(norm_type="global")
    >>> feats, lengths = torch.randn(4, 100, 80) * 3 + 1, torch.tensor([1.0, 0.9, 0.5, 0.7])
    >>> out = norm.train()(feats, lengths, epoch=1)  # updates the running statistics
    >>> out = norm.eval()(feats, lengths)             # uses them, frozen
    >>> int(norm.count)
    310
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from speechlobes import distributed
from speechlobes.nnet.lengths import lengths_to_padding_mask, relative_to_absolute_lengths
from speechlobes.nnet.precision import FullPrecisionBuffers

NormType = Literal["global", "batch", "sentence"]
NORM_TYPES = ("global", "batch", "sentence")


def _masked_moments(
    feats: torch.Tensor, valid: torch.Tensor, dims: tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean, (population) variance and frame count of (batch, time, ...) ``feats`` over
    ``dims``, counting only frames where ``valid`` (batch, time) is True; in float64."""
    weights = valid.to(torch.float64).reshape(valid.shape + (1,) * (feats.dim() - 2))
    values = feats.to(torch.float64)
    count = weights.sum(dims, keepdim=True)
    mean = (values * weights).sum(dims, keepdim=True) / count.clamp_min(1.0)
    variance = ((values - mean).square() * weights).sum(dims, keepdim=True) / count.clamp_min(1.0)
    return mean, variance, count


class InputNormalization(FullPrecisionBuffers, nn.Module):
    """Normalise features to zero mean and unit variance per feature.

    Arguments:
        mean_norm: subtract the mean.
        std_norm: divide by the standard deviation.
        norm_type: ``"sentence"``: each row with its own statistics; ``"batch"``: the
            batch's statistics; ``"global"``: running statistics over every valid frame seen
            in training (exact pooled mean and variance, or with ``avg_factor`` an exponential
            moving average), frozen in eval mode and from epoch ``update_until_epoch`` on.
        avg_factor: weight of each new batch in an exponential moving average of the global
            statistics (None: the exact pooled statistics).
        length_dim: the time dimension, which ``lengths`` measure.
        update_until_epoch: the epoch from which the global statistics stop changing (the
            ``epoch`` given to ``forward``; None: never).
        avoid_padding_norm: return padded frames unchanged.
        epsilon: smallest standard deviation divided by.
        device: where the statistics start (they follow ``.to()``).

    Example:
        >>> norm = InputNormalization(norm_type="sentence", avoid_padding_norm=True)
        >>> out = norm(torch.tensor([[[1.0], [3.0], [9.0]]]), torch.tensor([2 / 3]))
        >>> out.flatten().tolist()
        [-1.0, 1.0, 9.0]
    """

    def __init__(
        self,
        mean_norm: bool = True,
        std_norm: bool = True,
        norm_type: NormType = "global",
        avg_factor: float | None = None,
        length_dim: int = 1,
        update_until_epoch: int | None = 2,
        avoid_padding_norm: bool = False,
        epsilon: float = 1e-10,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__()
        if norm_type not in NORM_TYPES:
            raise ValueError(
                f"InputNormalization: norm_type must be one of {NORM_TYPES}, got {norm_type!r}"
            )
        if avg_factor is not None and not 0.0 < avg_factor <= 1.0:
            raise ValueError(f"InputNormalization: avg_factor must be in (0, 1], got {avg_factor}")
        self.mean_norm = mean_norm
        self.std_norm = std_norm
        self.norm_type = norm_type
        self.avg_factor = avg_factor
        self.length_dim = length_dim
        self.update_until_epoch = update_until_epoch
        self.avoid_padding_norm = avoid_padding_norm
        self.epsilon = epsilon
        # Shaped at the first update (or when a state dict is loaded).
        self.register_buffer("glob_mean", torch.zeros(0, dtype=torch.float64, device=device))
        self.register_buffer("glob_std", torch.zeros(0, dtype=torch.float64, device=device))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64, device=device))

    def forward(
        self, x: torch.Tensor, lengths: torch.Tensor | None = None, epoch: int | None = None
    ) -> torch.Tensor:
        """x: (batch, ..., time at ``length_dim``, ...); lengths: (batch,) relative lengths
        (None = all full); epoch: the current epoch, for ``update_until_epoch``."""
        if x.dim() < 2:
            raise ValueError(f"InputNormalization: expected batched features, got {tuple(x.shape)}")
        feats = x.movedim(self.length_dim, 1)
        batch, max_len = feats.shape[:2]
        if lengths is None:
            valid = torch.ones(batch, max_len, dtype=torch.bool, device=feats.device)
        else:
            valid = ~lengths_to_padding_mask(
                relative_to_absolute_lengths(lengths, max_len).to(feats.device), max_len
            )
        if self.norm_type == "sentence":
            mean, variance, _ = _masked_moments(feats, valid, (1,))
            std = variance.sqrt()
        elif self.norm_type == "batch":
            mean, variance, _ = _masked_moments(feats, valid, (0, 1))
            std = variance.clamp_min(self.epsilon).sqrt()
        else:
            if self._should_update(epoch):
                self._update(*_masked_moments(feats, valid, (0, 1)))
            if self.count == 0:
                raise RuntimeError(
                    "InputNormalization: no global statistics yet; run it in training mode "
                    "first (before update_until_epoch) or load a checkpoint"
                )
            mean, std = self.glob_mean, self.glob_std
        normalised = feats.to(torch.float64)
        if self.mean_norm:
            normalised = normalised - mean
        if self.std_norm:
            normalised = normalised / std.clamp_min(self.epsilon)
        normalised = normalised.to(feats.dtype)
        if self.avoid_padding_norm:
            keep = valid.reshape(valid.shape + (1,) * (feats.dim() - 2))
            normalised = torch.where(keep, normalised, feats)
        return normalised.movedim(1, self.length_dim)

    def _should_update(self, epoch: int | None) -> bool:
        still = self.update_until_epoch is None or epoch is None or epoch < self.update_until_epoch
        return self.training and still

    @torch.no_grad()
    def _update(self, mean: torch.Tensor, variance: torch.Tensor, count: torch.Tensor) -> None:
        """Merge one batch's moments (shaped (1, 1, ...)), of every rank, into the running
        statistics."""
        mean, variance, count = _across_ranks(mean[0, 0], variance[0, 0], count.sum())
        if count == 0:
            return
        if self.count == 0:
            self.glob_mean, self.glob_std = mean, variance.sqrt()
        else:
            if self.avg_factor is None:
                weight = count / (self.count + count)
            else:
                weight = torch.tensor(self.avg_factor, dtype=torch.float64)
            shift = mean - self.glob_mean
            running_variance = self.glob_std.square()
            self.glob_std = (
                (1 - weight) * running_variance
                + weight * variance
                + weight * (1 - weight) * shift.square()
            ).sqrt()
            self.glob_mean = self.glob_mean + weight * shift
        self.count = self.count + count

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        """Take the statistics' shape from the state dict (lazy buffers); a SpeechBrain
        ``normalizer.ckpt`` (float32 statistics, an integer count) loads too."""
        for name in ("glob_mean", "glob_std", "count"):
            key = prefix + name
            if key in state_dict:
                value = torch.as_tensor(state_dict[key], dtype=torch.float64)
                state_dict[key] = value
                setattr(self, name, torch.empty_like(value, device=self.count.device))
        super()._load_from_state_dict(state_dict, prefix, *args)


def _across_ranks(
    mean: torch.Tensor, variance: torch.Tensor, count: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The moments of every rank's frames together (this rank's alone outside torchrun)."""
    if not distributed.is_distributed():
        return mean, variance, count
    packed = torch.cat(
        [count.reshape(1), count * mean.flatten(), count * (variance + mean.square()).flatten()]
    )
    total = distributed.all_reduce_sum(packed)
    count = total[0]
    size = mean.numel()
    mean_all = (total[1 : 1 + size] / count.clamp_min(1.0)).reshape(mean.shape)
    second_moment = (total[1 + size :] / count.clamp_min(1.0)).reshape(mean.shape)
    return mean_all, (second_moment - mean_all.square()).clamp_min(0.0), count
