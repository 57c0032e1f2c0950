"""Mean-variance normalisation of features that respects padding (SpeechBrain's
``InputNormalization``).

Statistics are taken over valid frames only; padded frames are returned unchanged. Global
statistics live in buffers (``mean``, ``variance``, ``frames``), so the module's state dict,
and therefore the Checkpointer, carries them.

Example:
    >>> norm = InputNormalization(norm_type="global")
    >>> feats, lengths = torch.randn(4, 100, 80) * 3 + 1, torch.tensor([1.0, 0.9, 0.5, 0.7])
    >>> out = norm.train()(feats, lengths)   # updates the running statistics
    >>> out = norm.eval()(feats, lengths)    # uses them, frozen
    >>> int(norm.frames)
    310
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from speechlobes.nnet.lengths import lengths_to_padding_mask, relative_to_absolute_lengths

NormType = Literal["global", "batch", "sentence"]


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


class InputNormalization(nn.Module):
    """Normalise (batch, time, ...) features to zero mean and unit variance per feature.

    norm_type:
        ``"sentence"``: each row with its own statistics; ``"batch"``: the batch's statistics;
        ``"global"``: running statistics over every valid frame seen in training (exact
        pooled mean and variance, or an exponential moving average with weight
        ``avg_factor`` per batch), frozen in eval mode and after ``update_until_epoch``.

    Example:
        >>> norm = InputNormalization(norm_type="sentence", std_norm=False)
        >>> out = norm(torch.tensor([[[1.0], [3.0], [9.0]]]), torch.tensor([2 / 3]))
        >>> out.flatten().tolist()
        [-1.0, 1.0, 9.0]
    """

    def __init__(
        self,
        norm_type: NormType = "global",
        mean_norm: bool = True,
        std_norm: bool = True,
        avg_factor: float | None = None,
        update_until_epoch: int | None = None,
        epsilon: float = 1e-10,
    ) -> None:
        super().__init__()
        if norm_type not in ("global", "batch", "sentence"):
            raise ValueError(
                f"InputNormalization: norm_type must be global, batch or sentence, got {norm_type!r}"
            )
        if avg_factor is not None and not 0.0 < avg_factor <= 1.0:
            raise ValueError(f"InputNormalization: avg_factor must be in (0, 1], got {avg_factor}")
        self.norm_type = norm_type
        self.mean_norm = mean_norm
        self.std_norm = std_norm
        self.avg_factor = avg_factor
        self.update_until_epoch = update_until_epoch
        self.epsilon = epsilon
        # Shaped at the first update (or when a state dict is loaded).
        self.register_buffer("mean", torch.zeros(0, dtype=torch.float64))
        self.register_buffer("variance", torch.zeros(0, dtype=torch.float64))
        self.register_buffer("frames", torch.zeros((), dtype=torch.float64))

    def forward(
        self, feats: torch.Tensor, lengths: torch.Tensor | None = None, epoch: int | None = None
    ) -> torch.Tensor:
        """feats: (batch, time, ...); lengths: (batch,) relative lengths (None = all full)."""
        if feats.dim() < 2:
            raise ValueError(
                f"InputNormalization: expected (batch, time, ...) features, got {tuple(feats.shape)}"
            )
        batch, max_len = feats.shape[:2]
        if lengths is None:
            valid = torch.ones(batch, max_len, dtype=torch.bool, device=feats.device)
        else:
            valid = ~lengths_to_padding_mask(
                relative_to_absolute_lengths(lengths, max_len).to(feats.device), max_len
            )
        if self.norm_type == "sentence":
            mean, variance, _ = _masked_moments(feats, valid, (1,))
        elif self.norm_type == "batch":
            mean, variance, _ = _masked_moments(feats, valid, (0, 1))
        else:
            if self.training and (
                self.update_until_epoch is None or epoch is None or epoch <= self.update_until_epoch
            ):
                self._update(*_masked_moments(feats, valid, (0, 1)))
            if self.frames == 0:
                raise RuntimeError(
                    "InputNormalization: no global statistics yet; run it in training mode first or load a checkpoint"
                )
            mean, variance = self.mean, self.variance
        normalised = feats.to(torch.float64)
        if self.mean_norm:
            normalised = normalised - mean
        if self.std_norm:
            normalised = normalised / variance.sqrt().clamp_min(self.epsilon)
        valid = valid.reshape(valid.shape + (1,) * (feats.dim() - 2))
        return torch.where(valid, normalised.to(feats.dtype), feats)

    @torch.no_grad()
    def _update(self, mean: torch.Tensor, variance: torch.Tensor, count: torch.Tensor) -> None:
        """Merge one batch's moments (shaped (1, 1, ...)) into the running statistics."""
        mean, variance, count = mean[0, 0], variance[0, 0], count.sum()
        if count == 0:
            return
        if self.frames == 0:
            self.mean, self.variance = mean, variance
        else:
            if self.avg_factor is None:
                weight = count / (self.frames + count)
            else:
                weight = torch.tensor(self.avg_factor, dtype=torch.float64)
            shift = mean - self.mean
            self.variance = (
                (1 - weight) * self.variance
                + weight * variance
                + weight * (1 - weight) * shift.square()
            )
            self.mean = self.mean + weight * shift
        self.frames = self.frames + count

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        """Take the statistics' shape from the state dict before loading (lazy buffers)."""
        for name in ("mean", "variance"):
            if prefix + name in state_dict:
                setattr(
                    self,
                    name,
                    torch.empty_like(state_dict[prefix + name], device=self.frames.device),
                )
        super()._load_from_state_dict(state_dict, prefix, *args)
