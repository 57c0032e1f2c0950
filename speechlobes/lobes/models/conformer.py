"""A Conformer encoder over filterbank features, for ASR from scratch (e.g. Conformer-CTC).

Two stride-2 convolutions (2-D, or 1-D over time) reduce the frame rate by 4, a Linear maps to
the model width, and the Wav2Vec2-Conformer layer stack (relative or rotary positions, macaron
FFNs, convolution module) does the rest. The layers are the very modules of :mod:`speechlobes.lobes.models.wav2vec2`, so
one conformer implementation serves both.

Example:
    >>> import torch
    >>> encoder = FbankConformer(ConformerConfig(input_size=40, hidden_size=32, num_layers=1,
    ...                                          num_heads=2, ffn_size=64, kernel_size=3))
    >>> encoder(torch.randn(2, 100, 40), torch.tensor([1.0, 0.5])).shape
    torch.Size([2, 24, 32])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from speechlobes.lobes.models.wav2vec2_blocks import ConformerEncoder
from speechlobes.lobes.models.wav2vec2_config import Wav2Vec2Config
from speechlobes.nnet.lengths import conv_output_length, lengths_to_padding_mask


@dataclass
class ConformerConfig:
    """Sizes of an :class:`FbankConformer`."""

    input_size: int = 80
    hidden_size: int = 144
    num_layers: int = 6
    num_heads: int = 4
    ffn_size: int = 576
    kernel_size: int = 15
    dropout: float = 0.1
    activation: str = "swish"
    position_embeddings_type: str | None = "relative"
    subsampling: str = "conv2d"  # or "conv1d": several times cheaper on CPU (see Conv1dSubsampling)

    def layer_config(self) -> Wav2Vec2Config:
        """The Wav2Vec2-Conformer configuration of the layer stack."""
        return Wav2Vec2Config(
            model_type="wav2vec2-conformer",
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            intermediate_size=self.ffn_size,
            hidden_act=self.activation,
            hidden_dropout=self.dropout,
            activation_dropout=self.dropout,
            attention_dropout=self.dropout,
            conformer_conv_dropout=self.dropout,
            layerdrop=0.0,
            conv_depthwise_kernel_size=self.kernel_size,
            position_embeddings_type=self.position_embeddings_type,
        )


class Conv2dSubsampling(nn.Module):
    """Two Conv2d(3x3, stride 2) + ReLU over (time, frequency), then Linear to ``output_size``.

    x: (batch, time, features) -> (batch, ~time / 4, output_size).
    """

    def __init__(self, input_size: int, output_size: int, channels: int = 64) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, channels, 3, stride=2),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=2),
            nn.ReLU(),
        )
        reduced = self.output_length(self.output_length(input_size, 1), 1)
        self.out = nn.Linear(channels * reduced, output_size)

    @staticmethod
    def output_length(length: torch.Tensor | int, layers: int = 2) -> torch.Tensor | int:
        """Frames left after ``layers`` of the 3x3 stride-2 convolutions."""
        for _ in range(layers):
            length = conv_output_length(length, kernel=3, stride=2)
        return length

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x.unsqueeze(1))  # (batch, channels, time', features')
        batch, channels, time, features = x.shape
        return self.out(x.permute(0, 2, 1, 3).reshape(batch, time, channels * features))


class Conv1dSubsampling(nn.Module):
    """Two Conv1d(kernel 3, stride 2) + ReLU over time, the features as channels, then Linear
    to ``output_size``: the same frame count as :class:`Conv2dSubsampling`, at a fraction of
    its cost on CPU (no 2-D feature maps of ``channels x time x features``).

    x: (batch, time, features) -> (batch, ~time / 4, output_size).

    Example:
        >>> Conv1dSubsampling(40, 16)(torch.randn(2, 100, 40)).shape
        torch.Size([2, 24, 16])
    """

    def __init__(self, input_size: int, output_size: int, channels: int = 256) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv1d(input_size, channels, 3, stride=2),
            nn.ReLU(),
            nn.Conv1d(channels, channels, 3, stride=2),
            nn.ReLU(),
        )
        self.out = nn.Linear(channels, output_size)

    output_length = staticmethod(Conv2dSubsampling.output_length)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.conv(x.transpose(1, 2)).transpose(1, 2))


SUBSAMPLINGS = {"conv2d": Conv2dSubsampling, "conv1d": Conv1dSubsampling}


class FbankConformer(nn.Module):
    """Filterbank features -> 4x subsampling (``config.subsampling``) -> conformer layers.
    See the module docstring."""

    def __init__(self, config: ConformerConfig | None = None, **sizes) -> None:
        super().__init__()
        self.config = config or ConformerConfig(**sizes)
        if self.config.subsampling not in SUBSAMPLINGS:
            raise ValueError(
                f"ConformerConfig.subsampling={self.config.subsampling!r}: choose one of "
                f"{sorted(SUBSAMPLINGS)}"
            )
        subsampling = SUBSAMPLINGS[self.config.subsampling]
        self.subsampling = subsampling(self.config.input_size, self.config.hidden_size)
        self.encoder = ConformerEncoder(self.config.layer_config())
        # The Wav2Vec2-Conformer keeps an unused positional conv for checkpoint compatibility;
        # a from-scratch encoder has no checkpoint to match, and unused parameters hang DDP.
        del self.encoder.pos_conv_embed

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """feats: (batch, time, input_size); lengths: relative. Returns (batch, time', hidden)."""
        x = self.subsampling(feats)
        padding_mask = None
        if lengths is not None:
            valid = self.subsampling.output_length(torch.round(lengths * feats.shape[1]).long())
            padding_mask = lengths_to_padding_mask(valid, x.shape[1])
        return self.encoder(x, padding_mask)[0]
