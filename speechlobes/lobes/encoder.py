"""The speech-encoder contract: what every speech encoder of speechlobes answers.

BEATs, Wav2Vec2, HuBERT, Wav2Vec2-Conformer (the base models and ``Wav2Vec2Lobe``) and the
fbank Conformer are called the same way, so a recipe, a tagger or a SpeechEncoderDecoder swaps
one for another by changing one YAML entry::

    frames, frame_lens = encoder.encode(wavs, wav_lens)

* ``wavs``: (batch, samples) waveforms, zero-padded on the right; ``wav_lens``: (batch,)
  relative lengths (None: every row is full length).
* ``frames``: (batch, frames, ``encoder.output_size``); ``frame_lens``: (batch,) relative
  lengths of the frames (their valid counts, exactly, divided by ``frames.shape[1]``).
* A padded batch gives every item the frames of its own single run (to float rounding): each
  encoder counts, normalises and masks per utterance.
* ``reference_padding=True`` asks instead for the padded-batch outputs of the reference
  implementation (transformers for the Wav2Vec2 family, Microsoft's code for BEATs), which
  depend on the rest of the batch; the transformers-compatible surfaces use it for parity.
* ``encoder.freeze_feature_encoder()`` stops gradients into the convolutional front end.

The seed-compatible surfaces stay beside the contract: ``BEATs.extract_features`` and the
transformers-style ``forward`` of the Wav2Vec2 models.

Example:
    >>> from speechlobes.lobes.conformer import ConformerConfig, FbankConformer
    >>> encoder = FbankConformer(ConformerConfig(input_size=20, hidden_size=16, num_layers=1,
    ...                                          num_heads=2, ffn_size=32, kernel_size=3)).eval()
    >>> isinstance(encoder, SpeechEncoder)
    True
    >>> frames, frame_lens = encoder.encode(torch.randn(2, 8000), torch.tensor([1.0, 0.5]))
    >>> frames.shape, frame_lens.tolist()
    (torch.Size([2, 11, 16]), [1.0, 0.4545454680919647])
"""

from __future__ import annotations

from typing import NamedTuple, Protocol, runtime_checkable

import torch

from speechlobes.nnet.lengths import (
    absolute_to_relative_lengths,
    check_relative_lengths,
    relative_to_absolute_lengths,
)


class EncoderOutput(NamedTuple):
    """What :meth:`SpeechEncoder.encode` returns; unpacks as ``frames, lengths``."""

    frames: torch.Tensor  # (batch, frames, output_size)
    lengths: torch.Tensor  # (batch,) relative lengths of the frames


@runtime_checkable
class SpeechEncoder(Protocol):
    """The contract of the module docstring."""

    @property
    def output_size(self) -> int:
        """The width of the frames."""
        ...

    def encode(
        self,
        wavs: torch.Tensor,
        wav_lens: torch.Tensor | None = None,
        reference_padding: bool = False,
    ) -> EncoderOutput: ...

    def freeze_feature_encoder(self) -> None: ...


class EncodesOnCall:
    """For encoders whose only call is the contract's: ``forward`` is :meth:`encode`, so the
    module can be called like any other (``encoder(wavs, wav_lens)``)."""

    def forward(
        self,
        wavs: torch.Tensor,
        wav_lens: torch.Tensor | None = None,
        reference_padding: bool = False,
    ) -> EncoderOutput:
        """:meth:`encode`."""
        return self.encode(wavs, wav_lens, reference_padding)


def sample_lengths(wavs: torch.Tensor, wav_lens: torch.Tensor | None) -> torch.Tensor | None:
    """The valid samples of each row of ``wavs`` (batch, samples) from relative ``wav_lens``
    (None stays None: every sample is valid)."""
    if wav_lens is None:
        return None
    check_relative_lengths(wav_lens, wavs.shape[0], "wav_lens")
    return relative_to_absolute_lengths(wav_lens.to(wavs.device), wavs.shape[-1])


def encoder_output(frames: torch.Tensor, frame_lengths: torch.Tensor | None) -> EncoderOutput:
    """The contract's output from frames (..., batch, frames, width) and each row's count of
    valid frames (None: all valid)."""
    if frame_lengths is None:
        return EncoderOutput(frames, torch.ones(frames.shape[-3], device=frames.device))
    return EncoderOutput(frames, absolute_to_relative_lengths(frame_lengths, frames.shape[-2]))
