"""Raw-waveform batching and normalisation for the Wav2Vec2 family (Wav2Vec2FeatureExtractor).

Right-pad the waveforms with ``padding_value``, then normalise each row to zero mean and unit
(population) variance, ``(x - mean) / sqrt(var + 1e-7)``. With an attention mask the statistics
cover the valid samples only and the padded tail is reset to ``padding_value``; without one
(``return_attention_mask=False``, as wav2vec2-base checkpoints are configured) they cover the
whole padded row, zeros included.

Example:
    >>> import torch
    >>> normalizer = WaveformNormalizer()
    >>> batch = normalizer([torch.randn(1000) * 3 + 1, torch.randn(600)])
    >>> batch.input_values.shape, batch.attention_mask.sum(-1).tolist()
    (torch.Size([2, 1000]), [1000, 600])
    >>> round(batch.input_values[1, :600].std(unbiased=False).item(), 4)
    1.0
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from speechlobes.nnet.lengths import lengths_to_padding_mask

VARIANCE_EPS = 1e-7


def normalize_waveforms(
    wav: torch.Tensor, lengths: torch.Tensor | None = None, padding_value: float = 0.0
) -> torch.Tensor:
    """Per-row zero mean / unit variance of wav (batch, samples) over the first ``lengths``
    samples (all when None); with ``lengths`` the padded tail is set to ``padding_value``."""
    wav = wav.float()
    if lengths is None:
        mean = wav.mean(dim=-1, keepdim=True)
        var = wav.var(dim=-1, unbiased=False, keepdim=True)
        return (wav - mean) / torch.sqrt(var + VARIANCE_EPS)
    padded = lengths_to_padding_mask(lengths.to(wav.device), wav.shape[-1])
    count = lengths.to(wav.device, wav.dtype)[:, None]
    mean = wav.masked_fill(padded, 0.0).sum(dim=-1, keepdim=True) / count
    centered = (wav - mean).masked_fill(padded, 0.0)
    var = centered.pow(2).sum(dim=-1, keepdim=True) / count
    return (centered / torch.sqrt(var + VARIANCE_EPS)).masked_fill(padded, padding_value)


class NormalizedBatch(NamedTuple):
    input_values: torch.Tensor  # (batch, samples) float32
    attention_mask: torch.Tensor | None  # (batch, samples) int32, 1 = sample; None if not requested


class WaveformNormalizer:
    """Pads and normalises raw waveforms like Hugging Face's ``Wav2Vec2FeatureExtractor``.

    ``from_pretrained(folder)`` reads ``preprocessor_config.json``.
    """

    def __init__(
        self,
        do_normalize: bool = True,
        return_attention_mask: bool = True,
        padding_value: float = 0.0,
        sampling_rate: int = 16000,
    ) -> None:
        self.do_normalize = do_normalize
        self.return_attention_mask = return_attention_mask
        self.padding_value = padding_value
        self.sampling_rate = sampling_rate

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> WaveformNormalizer:
        path = Path(folder) / "preprocessor_config.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no preprocessor_config.json in {folder}")
        config = json.loads(path.read_text(encoding="utf-8"))
        if config.get("padding_side", "right") != "right":
            raise ValueError(
                f"{path}: padding_side {config['padding_side']!r}; only 'right' is supported"
            )
        return cls(
            do_normalize=config.get("do_normalize", True),
            return_attention_mask=config.get("return_attention_mask", True),
            padding_value=config.get("padding_value", 0.0),
            sampling_rate=config.get("sampling_rate", 16000),
        )

    def __call__(
        self,
        waveforms: list[torch.Tensor | np.ndarray] | torch.Tensor | np.ndarray,
        sampling_rate: int | None = None,
        pad_to_multiple_of: int | None = None,
    ) -> NormalizedBatch:
        """waveforms: one 1-D signal or a list of them (any lengths); returns the padded batch."""
        if sampling_rate is not None and sampling_rate != self.sampling_rate:
            raise ValueError(
                f"audio at {sampling_rate} Hz but the model expects {self.sampling_rate} Hz: resample first"
            )
        if isinstance(waveforms, (torch.Tensor, np.ndarray)) and waveforms.ndim == 1:
            waveforms = [waveforms]
        rows = [torch.as_tensor(np.asarray(w, dtype=np.float32)) for w in waveforms]
        if any(row.ndim != 1 for row in rows):
            raise ValueError(
                f"expected mono 1-D waveforms; got shapes {[tuple(r.shape) for r in rows]}"
            )
        lengths = torch.tensor([len(row) for row in rows])
        total = int(lengths.max())
        if pad_to_multiple_of:
            total = -(-total // pad_to_multiple_of) * pad_to_multiple_of
        batch = torch.full((len(rows), total), float(self.padding_value))
        for i, row in enumerate(rows):
            batch[i, : len(row)] = row
        mask = (
            None
            if not self.return_attention_mask
            else (~lengths_to_padding_mask(lengths, total)).int()
        )
        if self.do_normalize:
            batch = normalize_waveforms(
                batch, lengths if mask is not None else None, self.padding_value
            )
        return NormalizedBatch(batch, mask)
