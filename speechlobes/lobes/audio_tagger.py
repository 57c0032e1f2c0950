"""An audio tagger: an encoder lobe, pooling over time, and a linear classifier.

The encoder takes ``(wav, wav_lens)`` and returns ``(features, padding_mask)``, as BEATs does;
the tagger returns one logit per class (apply a sigmoid for multi-label probabilities).

Example:
    >>> import torch
    >>> from speechlobes.lobes.beats import BEATs
    >>> from speechlobes.nnet.pooling import MaskedMeanPooling
    >>> cfg = {"encoder_layers": 1, "encoder_embed_dim": 32, "encoder_ffn_embed_dim": 64,
    ...        "encoder_attention_heads": 2, "embed_dim": 16, "conv_pos": 8, "conv_pos_groups": 2}
    >>> tagger = AudioTagger(BEATs(cfg=cfg, freeze=False), MaskedMeanPooling(), 32, num_classes=5)
    >>> tagger(torch.randn(2, 8000), torch.tensor([1.0, 0.8])).shape
    torch.Size([2, 5])
"""

from __future__ import annotations

import torch
from torch import nn

from speechlobes.nnet.dropout import Dropout


class AudioTagger(nn.Module):
    """``encoder`` -> ``pooling`` -> dropout -> Linear(``feature_size``, ``num_classes``)."""

    def __init__(
        self,
        encoder: nn.Module,
        pooling: nn.Module,
        feature_size: int,
        num_classes: int,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling
        self.dropout = Dropout(dropout)
        self.classifier = nn.Linear(feature_size, num_classes)

    def forward(self, wav: torch.Tensor, wav_lens: torch.Tensor | None = None) -> torch.Tensor:
        """wav: (batch, time); wav_lens: relative lengths. Returns logits (batch, classes)."""
        features, padding_mask = self.encoder(wav, wav_lens)
        return self.classifier(self.dropout(self.pooling(features, padding_mask)))
