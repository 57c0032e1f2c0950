"""Task heads over any speech encoder of the contract (:mod:`speechlobes.lobes.encoder`).

* :class:`AudioTagger`: encoder -> pooling over time -> dropout -> Linear: one logit per class
  (apply a sigmoid for multi-label probabilities).
* :class:`FrameClassifier`: encoder -> dropout -> a head on every frame: per-frame logits, e.g.
  for CTC.

Both only call ``encoder.encode(wavs, wav_lens)``, so BEATs, the Wav2Vec2 family and the fbank
Conformer serve either one, swapped by one YAML entry.

Example:
    >>> import torch
    >>> from speechlobes.lobes.beats import BEATs
    >>> from speechlobes.nnet.pooling import MaskedMeanPooling
    >>> cfg = {"encoder_layers": 1, "encoder_embed_dim": 32, "encoder_ffn_embed_dim": 64,
    ...        "encoder_attention_heads": 2, "embed_dim": 16, "conv_pos": 8, "conv_pos_groups": 2}
    >>> tagger = AudioTagger(BEATs(cfg=cfg, freeze=False), MaskedMeanPooling(), num_classes=5)
    >>> tagger(torch.randn(2, 8000), torch.tensor([1.0, 0.8])).shape
    torch.Size([2, 5])
    >>> ctc = FrameClassifier(BEATs(cfg=cfg, freeze=False), torch.nn.Linear(32, 7))
    >>> ctc(torch.randn(2, 8000), torch.tensor([1.0, 0.8])).shape
    torch.Size([2, 24, 7])
"""

from __future__ import annotations

import torch
from torch import nn

from speechlobes.lobes.encoder import SpeechEncoder
from speechlobes.nnet.dropout import FastDropout


class AudioTagger(nn.Module):
    """``encoder`` -> ``pooling`` -> dropout -> Linear(``feature_size``, ``num_classes``).

    Args:
        encoder: a speech encoder (the contract of :mod:`speechlobes.lobes.encoder`).
        pooling: ``(frames, relative lengths) -> (batch, feature_size)``, e.g.
            :class:`~speechlobes.nnet.pooling.MaskedMeanPooling`.
        feature_size: width of the pooled vector; default the encoder's ``output_size``.
        num_classes: logits per utterance.
        dropout: before the classifier.
    """

    def __init__(
        self,
        encoder: SpeechEncoder,
        pooling: nn.Module,
        feature_size: int | None = None,
        num_classes: int = 527,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling
        self.dropout = FastDropout(dropout)
        self.classifier = nn.Linear(feature_size or encoder.output_size, num_classes)

    def forward(self, wav: torch.Tensor, wav_lens: torch.Tensor | None = None) -> torch.Tensor:
        """wav: (batch, time); wav_lens: relative lengths. Returns logits (batch, classes)."""
        frames, frame_lens = self.encoder.encode(wav, wav_lens)
        return self.classifier(self.dropout(self.pooling(frames, frame_lens)))


class FrameClassifier(nn.Module):
    """``encoder`` -> dropout -> ``head`` on every frame.

    ``forward`` returns the logits (batch, frames, classes) alone, for callers that keep
    SpeechBrain's convention of reusing the input's relative lengths for the frames (to a frame
    of rounding); :meth:`encode` also returns the frames' exact relative lengths, as the
    speech-encoder contract does.

    Args:
        encoder: a speech encoder (the contract of :mod:`speechlobes.lobes.encoder`).
        head: maps (batch, frames, output_size) to logits, e.g. a Linear.
        dropout: on the frames, before the head.
    """

    def __init__(self, encoder: SpeechEncoder, head: nn.Module, dropout: float = 0.0) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = FastDropout(dropout)
        self.head = head

    def encode(
        self, wavs: torch.Tensor, wav_lens: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (batch, frames, classes) and the frames' relative lengths."""
        frames, frame_lens = self.encoder.encode(wavs, wav_lens)
        return self.head(self.dropout(frames)), frame_lens

    def forward(self, wavs: torch.Tensor, wav_lens: torch.Tensor | None = None) -> torch.Tensor:
        """wavs: (batch, samples); wav_lens: relative lengths -> logits (batch, frames, classes)."""
        return self.encode(wavs, wav_lens)[0]
