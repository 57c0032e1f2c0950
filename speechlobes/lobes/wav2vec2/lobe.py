"""The SpeechBrain-style Wav2Vec2 lobe: a Hugging Face folder as a frozen or fine-tuned encoder."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from speechlobes.lobes.encoder import (
    EncoderOutput,
    EncodesOnCall,
    encoder_output,
    sample_lengths,
)
from speechlobes.lobes.hf_io import read_config
from speechlobes.lobes.wav2vec2.model import ENCODER_MODELS
from speechlobes.processing.waveform import normalize_waveforms


class Wav2Vec2Lobe(EncodesOnCall, nn.Module):
    """A Wav2Vec2-family encoder from a Hugging Face folder, honouring the speech-encoder
    contract (:mod:`speechlobes.lobes.encoder`): ``frames, frame_lens = lobe(wavs, wav_lens)``.

    Args:
        source: folder with ``config.json`` and weights (any encoder of the family; head
            tensors of a head checkpoint are dropped).
        freeze: no gradients, eval mode always (feature extraction).
        freeze_feature_extractor: freeze only the conv feature encoder (fine-tuning).
        output_all_hiddens: frames of every layer stacked in front, (layers + 1, batch, frames,
            hidden) (transformers 4.x semantics: the last one is the encoder output).
        output_norm: LayerNorm (no affine) over the hidden dimension of the output.
        apply_spec_augment: SpecAugment in training (the config's mask_time_* fields).
        normalize_wav: zero mean / unit variance per utterance over its own samples, as the
            Hugging Face feature extractor does.
        **config_overrides: config fields to change (e.g. ``layerdrop=0.05``, ``mask_time_prob``).

    Example:
        >>> import tempfile
        >>> from speechlobes.lobes.wav2vec2 import HubertModel, Wav2Vec2Config
        >>> folder = tempfile.mkdtemp()
        >>> HubertModel(Wav2Vec2Config(model_type="hubert", hidden_size=16, num_attention_heads=2,
        ...     num_hidden_layers=1, intermediate_size=32, conv_dim=[8, 8], conv_stride=[5, 4],
        ...     conv_kernel=[10, 4], num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2)
        ... ).save_pretrained(folder)
        >>> lobe = Wav2Vec2Lobe(folder)
        >>> frames, frame_lens = lobe(torch.randn(2, 1600), torch.tensor([1.0, 0.5]))
        >>> frames.shape, (frame_lens * frames.shape[1]).tolist()
        (torch.Size([2, 79, 16]), [79.0, 39.0])
    """

    def __init__(
        self,
        source: str | Path,
        freeze: bool = True,
        freeze_feature_extractor: bool = True,
        output_all_hiddens: bool = False,
        output_norm: bool = False,
        apply_spec_augment: bool = False,
        normalize_wav: bool = True,
        **config_overrides,
    ) -> None:
        super().__init__()
        model_type = read_config(source).get("model_type")
        if model_type not in ENCODER_MODELS:
            raise ValueError(
                f"{source}: model_type {model_type!r} is not one of {sorted(ENCODER_MODELS)}"
            )
        self.model = ENCODER_MODELS[model_type].from_pretrained(
            source, apply_spec_augment=apply_spec_augment, **config_overrides
        )
        self.freeze = freeze
        self.output_all_hiddens = output_all_hiddens
        self.output_norm = output_norm
        self.normalize_wav = normalize_wav
        if freeze:
            self.model.requires_grad_(False)
        elif freeze_feature_extractor:
            self.model.freeze_feature_encoder()

    @property
    def output_size(self) -> int:
        return self.model.output_size

    def freeze_feature_encoder(self) -> None:
        self.model.freeze_feature_encoder()

    def train(self, mode: bool = True) -> Wav2Vec2Lobe:
        super().train(mode)
        if self.freeze:
            self.model.eval()
        return self

    def encode(
        self,
        wavs: torch.Tensor,
        wav_lens: torch.Tensor | None = None,
        reference_padding: bool = False,
    ) -> EncoderOutput:
        """wavs: (batch, samples); wav_lens: relative lengths (batch,) -> frames (batch,
        frames, hidden) and their relative lengths; under ``no_grad`` when frozen."""
        with torch.set_grad_enabled(not self.freeze and torch.is_grad_enabled()):
            lengths = sample_lengths(wavs, wav_lens)
            if self.normalize_wav:
                wavs = normalize_waveforms(wavs, lengths)
            out, frame_lengths = self.model.run(
                wavs,
                lengths,
                exact_padding=not reference_padding,
                output_hidden_states=self.output_all_hiddens,
            )
            frames = (
                torch.stack(out.hidden_states) if self.output_all_hiddens else out.last_hidden_state
            )
            if self.output_norm:
                frames = F.layer_norm(frames, frames.shape[-1:])
        return encoder_output(frames, frame_lengths)
