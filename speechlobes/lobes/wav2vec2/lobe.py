"""The SpeechBrain-style Wav2Vec2 lobe: a Hugging Face folder as a frozen or fine-tuned encoder."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from speechlobes.lobes.hf_io import read_config
from speechlobes.lobes.wav2vec2.model import ENCODER_MODELS
from speechlobes.nnet.lengths import lengths_to_padding_mask, relative_to_absolute_lengths
from speechlobes.processing.waveform import WaveformNormalizer, normalize_waveforms


class Wav2Vec2Lobe(nn.Module):
    """SpeechBrain-style wrapper: ``(wav, wav_lens) -> features`` from a Hugging Face folder.

    Arguments:
        source: folder with ``config.json`` and weights (any encoder of the family; head
            tensors of a head checkpoint are dropped).
        freeze: no gradients, eval mode always (feature extraction).
        freeze_feature_extractor: freeze only the conv feature encoder (fine-tuning).
        output_all_hiddens: return every hidden state stacked, (layers + 1, batch, frames, hidden)
            (transformers 4.x semantics: the last one is the encoder output).
        output_norm: LayerNorm (no affine) over the hidden dimension of the output.
        apply_spec_augment: SpecAugment in training (the config's mask_time_* fields).
        normalize_wav: zero mean / unit variance per utterance, like the feature extractor.
        use_attention_mask: pass the sample mask to the model. Default: the folder's
            ``preprocessor_config.json`` ``return_attention_mask`` if present, else True for
            layer-norm feature encoders and False for group-norm ones (wav2vec2-base checkpoints
            were trained without one). Without a mask, normalisation spans the padded row.
        **config_overrides: config fields to change (e.g. ``layerdrop=0.05``, ``mask_time_prob``).

    Example:
        >>> lobe = Wav2Vec2Lobe("tests/fixtures/hf/w2v2_conformer_relpos")  # doctest: +SKIP
        >>> lobe(torch.randn(2, 16000), torch.tensor([1.0, 0.6])).shape  # doctest: +SKIP
        torch.Size([2, 49, 32])
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
        use_attention_mask: bool | None = None,
        **config_overrides,
    ) -> None:
        super().__init__()
        model_type = read_config(source)["model_type"]
        if model_type not in ENCODER_MODELS:
            raise ValueError(
                f"{source}: model_type {model_type!r} is not one of {sorted(ENCODER_MODELS)}"
            )
        self.model = ENCODER_MODELS[model_type].from_pretrained(
            source, apply_spec_augment=apply_spec_augment, **config_overrides
        )
        preprocessor = Path(source) / "preprocessor_config.json"
        if use_attention_mask is None and preprocessor.is_file():
            use_attention_mask = WaveformNormalizer.from_pretrained(source).return_attention_mask
        if use_attention_mask is None:
            use_attention_mask = self.model.config.feat_extract_norm == "layer"
        self.use_attention_mask = use_attention_mask
        self.freeze = freeze
        self.output_all_hiddens = output_all_hiddens
        self.output_norm = output_norm
        self.normalize_wav = normalize_wav
        if freeze:
            self.model.requires_grad_(False)
        elif freeze_feature_extractor:
            self.model.freeze_feature_encoder()

    def train(self, mode: bool = True) -> Wav2Vec2Lobe:
        super().train(mode)
        if self.freeze:
            self.model.eval()
        return self

    def forward(self, wav: torch.Tensor, wav_lens: torch.Tensor | None = None) -> torch.Tensor:
        """wav: (batch, samples); wav_lens: relative lengths (batch,) -> (batch, frames, hidden)."""
        with torch.set_grad_enabled(not self.freeze and torch.is_grad_enabled()):
            return self.extract_features(wav, wav_lens)

    def extract_features(
        self, wav: torch.Tensor, wav_lens: torch.Tensor | None = None
    ) -> torch.Tensor:
        lengths = None
        if wav_lens is not None:
            lengths = relative_to_absolute_lengths(wav_lens, wav.shape[-1])
        if self.normalize_wav:
            wav = normalize_waveforms(wav, lengths if self.use_attention_mask else None)
        mask = None
        if self.use_attention_mask and lengths is not None:
            mask = (~lengths_to_padding_mask(lengths.to(wav.device), wav.shape[-1])).long()
        out = self.model(wav, mask, output_hidden_states=self.output_all_hiddens)
        features = (
            torch.stack(out.hidden_states) if self.output_all_hiddens else out.last_hidden_state
        )
        if self.output_norm:
            features = F.layer_norm(features, features.shape[-1:])
        return features

    def output_lengths(self, wav_lens: torch.Tensor, num_samples: int) -> torch.Tensor:
        """Valid encoder frames per utterance for relative ``wav_lens`` of a ``num_samples`` batch."""
        return self.model.output_lengths(relative_to_absolute_lengths(wav_lens, num_samples))
