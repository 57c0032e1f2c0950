"""A Conformer encoder over filterbank features, for ASR from scratch (e.g. Conformer-CTC).

Waveforms -> Kaldi fbank (-> optional normalisation and augmentation) -> two stride-2
convolutions (2-D, or 1-D over time: frame rate / 4) -> a Linear to the model width -> the
Wav2Vec2-Conformer layer stack (relative or rotary positions, macaron FFNs, convolution
module). The layers are the very
modules of :mod:`speechlobes.lobes.wav2vec2`, so one conformer implementation serves both. The
encoder honours the speech-encoder contract (:mod:`speechlobes.lobes.encoder`): ``forward`` is
``encode``, and a padded batch gives every item the frames of its own single run.

Example:
    >>> import torch
    >>> encoder = FbankConformer(ConformerConfig(input_size=40, hidden_size=32, num_layers=1,
    ...                                          num_heads=2, ffn_size=64, kernel_size=3))
    >>> frames, frame_lens = encoder(torch.randn(2, 16000), torch.tensor([1.0, 0.5]))
    >>> frames.shape, (frame_lens * frames.shape[1]).tolist()
    (torch.Size([2, 23, 32]), [23.0, 11.0])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from speechlobes.lobes.config import LobeConfig
from speechlobes.lobes.encoder import (
    EncoderOutput,
    EncodesOnCall,
    encoder_output,
    sample_lengths,
)
from speechlobes.lobes.pretrained import PretrainedMixin
from speechlobes.lobes.wav2vec2.blocks import ConformerEncoder
from speechlobes.lobes.wav2vec2.config import Wav2Vec2Config
from speechlobes.nnet.lengths import (
    absolute_to_relative_lengths,
    conv_output_length,
    lengths_to_padding_mask,
)
from speechlobes.nnet.precision import parameter_dtype
from speechlobes.processing.features import Fbank


@dataclass
class ConformerConfig(LobeConfig):
    """Sizes of an :class:`FbankConformer` (``input_size``: mel bins of its filterbank)."""

    model_type = "fbank-conformer"

    input_size: int = 80
    hidden_size: int = 144
    num_layers: int = 6
    num_heads: int = 4
    ffn_size: int = 576
    kernel_size: int = 15
    dropout: float = 0.1
    activation: str = "swish"
    position_embeddings_type: str | None = "relative"
    subsampling: str = "conv2d"  # or "conv1d": several times cheaper on CPU (Conv1dSubsampling)

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
    to ``output_size``: the frame count of :class:`Conv2dSubsampling` at a fraction of its
    cost on CPU (no 2-D maps of channels x time x features).

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


class FbankConformer(PretrainedMixin, EncodesOnCall, nn.Module):
    """Waveforms -> filterbanks -> 4x subsampling -> conformer layers (see the module docstring).

    Args:
        config: the sizes (or give them as keywords, e.g. ``hidden_size=144``).
        features: the waveform -> (batch, frames, ``input_size``) front end, with
            ``num_frames(samples)``; default ``Fbank(num_mel_bins=input_size)`` (16 kHz, 25 ms
            frames every 10 ms).
        normalize: ``(feats, relative lengths) -> feats``, e.g. ``InputNormalization``.
        augment: ``(feats, relative lengths) -> feats`` in training, e.g. ``SpecAugment``.
    """

    config_class = ConformerConfig

    def __init__(
        self,
        config: ConformerConfig | None = None,
        features: nn.Module | None = None,
        normalize: nn.Module | None = None,
        augment: nn.Module | None = None,
        **sizes,
    ) -> None:
        super().__init__()
        self.config = config or ConformerConfig.from_dict(sizes, strict=True)
        self.features = features or Fbank(num_mel_bins=self.config.input_size)
        self.normalize = normalize
        self.augment = augment
        if self.config.subsampling not in SUBSAMPLINGS:
            raise ValueError(
                f"ConformerConfig.subsampling={self.config.subsampling!r}: choose one of "
                f"{sorted(SUBSAMPLINGS)}"
            )
        subsampling = SUBSAMPLINGS[self.config.subsampling]
        self.subsampling = subsampling(self.config.input_size, self.config.hidden_size)
        self.encoder = ConformerEncoder(self.config.layer_config(), pos_conv_embed=False)

    @property
    def output_size(self) -> int:
        return self.config.hidden_size

    def freeze_feature_encoder(self) -> None:
        """Stop gradients into the convolutional subsampling."""
        self.subsampling.requires_grad_(False)

    def encode(
        self,
        wavs: torch.Tensor,
        wav_lens: torch.Tensor | None = None,
        reference_padding: bool = False,
    ) -> EncoderOutput:
        """wavs: (batch, samples); wav_lens: relative lengths -> frames (batch, frames,
        hidden_size) and their relative lengths. There is no reference implementation whose
        padding to reproduce: ``reference_padding`` changes nothing."""
        feats = self.features(wavs)
        samples = sample_lengths(wavs, wav_lens)
        if samples is None:
            samples = torch.full((wavs.shape[0],), wavs.shape[-1], device=wavs.device)
        frames = self.features.num_frames(samples)
        feat_lens = absolute_to_relative_lengths(frames, feats.shape[1])
        if self.normalize is not None:
            feats = self.normalize(feats, feat_lens)
        if self.augment is not None:
            feats = self.augment(feats, feat_lens)
        x = self.subsampling(feats.to(parameter_dtype(self.subsampling)))  # float32 features
        valid = self.subsampling.output_length(frames)
        padding_mask = lengths_to_padding_mask(valid, x.shape[1])
        return encoder_output(self.encoder(x, padding_mask, exact_padding=True)[0], valid)
