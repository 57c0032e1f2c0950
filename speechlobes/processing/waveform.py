"""Waveform normalisation of the Wav2Vec2 family: each row to zero mean and unit (population)
variance, ``(x - mean) / sqrt(var + 1e-7)``, over its valid samples when lengths are given.

The one place this arithmetic lives: Hugging Face's feature extractor
(:class:`~speechlobes.processors.feature_extraction.Wav2Vec2FeatureExtractor`, padding and
attention masks), the Wav2Vec2 lobe, the inference interfaces and the CoVoST recipe call it.

Example:
    >>> import torch
    >>> wavs = torch.stack([torch.randn(1000) * 3 + 1,
    ...                     torch.cat([torch.randn(600), torch.zeros(400)])])
    >>> out = normalize_waveforms(wavs, torch.tensor([1000, 600]))
    >>> round(out[1, :600].std(unbiased=False).item(), 4), out[1, 600:].abs().max().item()
    (1.0, 0.0)
"""

from __future__ import annotations

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
