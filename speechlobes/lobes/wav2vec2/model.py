"""Base encoders of the Wav2Vec2 family: Wav2Vec2, HuBERT and Wav2Vec2-Conformer.

The three share one forward: conv feature encoder -> feature projection -> SpecAugment
(training) -> encoder -> adapter. They answer the speech-encoder contract
(:mod:`speechlobes.lobes.encoder`, ``encode(wavs, wav_lens)``) and keep transformers' forward
(``input_values``, ``attention_mask`` -> ``last_hidden_state``, ...) with its outputs.

Example:
    >>> import torch
    >>> config = Wav2Vec2Config(hidden_size=16, num_attention_heads=2, num_hidden_layers=1,
    ...     intermediate_size=32, conv_dim=[8, 8], conv_stride=[5, 2], conv_kernel=[10, 3],
    ...     num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2)
    >>> model = Wav2Vec2Model(config).eval()
    >>> model(torch.randn(2, 400)).last_hidden_state.shape
    torch.Size([2, 39, 16])
    >>> frames, frame_lens = model.encode(torch.randn(2, 400), torch.tensor([1.0, 0.625]))
    >>> model.output_lengths(torch.tensor([400, 250])), frame_lens * frames.shape[1]
    (tensor([39, 24]), tensor([39., 24.]))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from speechlobes.lobes.encoder import EncoderOutput, encoder_output, sample_lengths
from speechlobes.lobes.pretrained import PretrainedMixin
from speechlobes.lobes.wav2vec2.blocks import (
    Adapter,
    ConformerEncoder,
    FeatureEncoder,
    FeatureProjection,
    conv_stack_lengths,
    transformer_encoder,
)
from speechlobes.lobes.wav2vec2.config import Wav2Vec2Config
from speechlobes.nnet.lengths import conv_output_length, lengths_to_padding_mask
from speechlobes.processing.augment import compute_span_mask


def adapter_lengths(config: Wav2Vec2Config, frame_lengths: torch.Tensor | int):
    """Frames after the adapter: ``floor((L - 1) / adapter_stride) + 1`` per adapter layer."""
    for _ in range(config.num_adapter_layers):
        frame_lengths = conv_output_length(frame_lengths, 1, config.adapter_stride)
    return frame_lengths


@dataclass
class Wav2Vec2BaseModelOutput:
    """``extract_features`` is None for HuBERT; ``hidden_states`` follow transformers 4.x."""

    last_hidden_state: torch.Tensor
    extract_features: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class Wav2Vec2PretrainedModel(PretrainedMixin, nn.Module):
    """What every class of the family shares: the config, the model type check, folder I/O
    (Hugging Face keys, with or without the base-model prefix) and the length arithmetic.

    Subclasses set ``model_type`` and ``base_model_prefix`` (the attribute that holds the base
    encoder in head models, and the key prefix in their checkpoints).
    """

    config_class = Wav2Vec2Config
    model_type: str
    base_model_prefix: str
    # Tensors whose presence depends on settings, not on the architecture: never a mismatch.
    checkpoint_ignore = (
        r"(^|\.)masked_spec_embed$",
        r"num_batches_tracked$",
        r"embed_positions\.inv_freq$",
    )

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__()
        if config.model_type != self.model_type:
            raise ValueError(
                f"{type(self).__name__} needs model_type {self.model_type!r}; the config has "
                f"{config.model_type!r} (use ENCODER_MODELS[config.model_type])"
            )
        self.config = config

    @property
    def is_base_model(self) -> bool:
        return not hasattr(self, self.base_model_prefix)

    def rename_checkpoint_keys(self, state: dict[str, torch.Tensor]) -> dict[str, Any]:
        """Add or strip the base-model prefix so checkpoint keys match ours.

        A base model loaded from a head checkpoint takes the prefixed tensors; the head's own
        tensors are dropped, as transformers does.
        """
        prefix = self.base_model_prefix + "."
        has_prefix = any(key.startswith(prefix) for key in state)
        if self.is_base_model and has_prefix:
            return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if not self.is_base_model and not has_prefix:
            return {prefix + k: v for k, v in state.items()}
        return state

    def output_lengths(self, input_lengths: torch.Tensor | int, add_adapter: bool | None = None):
        """Samples -> encoder frames (through the adapter when add_adapter, default: the
        config's).
        """
        lengths = conv_stack_lengths(self.config, input_lengths)
        if self.config.add_adapter if add_adapter is None else add_adapter:
            lengths = adapter_lengths(self.config, lengths)
        return lengths

    def frame_attention_mask(
        self, num_frames: int, attention_mask: torch.Tensor, add_adapter: bool | None = False
    ) -> torch.Tensor:
        """Sample mask (batch, samples), 1 = valid -> bool frame mask (batch, frames),
        True = valid.
        """
        lengths = self.output_lengths(attention_mask.sum(-1), add_adapter=add_adapter)
        return ~lengths_to_padding_mask(lengths.long(), num_frames)


class Wav2Vec2BaseModel(Wav2Vec2PretrainedModel):
    """The shared forward of the three base encoders."""

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__(config)
        self.feature_extractor = FeatureEncoder(config)
        self.feature_projection = FeatureProjection(config)
        if config.mask_time_prob > 0.0 or config.mask_feature_prob > 0.0:
            self.masked_spec_embed = nn.Parameter(torch.rand(config.hidden_size))
        self.encoder = (
            ConformerEncoder(config) if config.is_conformer else transformer_encoder(config)
        )
        self.adapter = Adapter(config) if config.add_adapter else None

    @property
    def output_size(self) -> int:
        """Width of the frames (after the adapter, if any)."""
        return (
            self.config.output_hidden_size if self.adapter is not None else self.config.hidden_size
        )

    def freeze_feature_encoder(self) -> None:
        """Stop gradients into the conv feature encoder (as recipes do when fine-tuning)."""
        self.feature_extractor.requires_grad_(False)

    def gradient_checkpointing_enable(self) -> None:
        """Recompute encoder layers (and conv layers) in the backward pass to save memory."""
        self.encoder.gradient_checkpointing = True
        self.feature_extractor.gradient_checkpointing = True

    def mask_hidden_states(
        self,
        hidden: torch.Tensor,
        mask_time_indices: torch.Tensor | None,
        frame_lengths: torch.Tensor | None,
    ) -> torch.Tensor:
        """SpecAugment: given ``mask_time_indices`` (any mode) or sampled spans (training only)."""
        config = self.config
        if not config.apply_spec_augment:
            return hidden
        if mask_time_indices is None and config.mask_time_prob > 0 and self.training:
            mask_time_indices = compute_span_mask(
                tuple(hidden.shape[:2]),
                config.mask_time_prob,
                config.mask_time_length,
                min_masks=config.mask_time_min_masks,
                lengths=frame_lengths,
            )
        if mask_time_indices is not None:
            embed = self.masked_spec_embed.to(hidden.dtype)
            hidden = torch.where(
                mask_time_indices.bool()[..., None].to(hidden.device), embed, hidden
            )
        if config.mask_feature_prob > 0 and self.training:
            feature_mask = compute_span_mask(
                (hidden.shape[0], hidden.shape[2]),
                config.mask_feature_prob,
                config.mask_feature_length,
                min_masks=config.mask_feature_min_masks,
            )
            hidden = hidden.masked_fill(feature_mask[:, None, :].to(hidden.device), 0.0)
        return hidden

    def run(
        self,
        input_values: torch.Tensor,
        sample_lengths: torch.Tensor | None,
        exact_padding: bool,
        mask_time_indices: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> tuple[Wav2Vec2BaseModelOutput, torch.Tensor | None]:
        """The forward of both surfaces; returns the output and the frame lengths (None
        without ``sample_lengths``). ``exact_padding``: every padded item gets the frames of
        its single run (else transformers' padded-batch numerics)."""
        exact = exact_padding and sample_lengths is not None
        features = self.feature_extractor(input_values, sample_lengths if exact else None)
        features = features.transpose(1, 2)
        frame_lengths = None
        if sample_lengths is not None:
            frame_lengths = conv_stack_lengths(self.config, sample_lengths)
        padding_mask = None
        if frame_lengths is not None:
            padding_mask = lengths_to_padding_mask(frame_lengths, features.shape[1])
        hidden, extract_features = self.feature_projection(features)
        hidden = self.mask_hidden_states(hidden, mask_time_indices, frame_lengths)
        conformer = {"exact_padding": exact} if self.config.is_conformer else {}
        last, hiddens, attentions = self.encoder(
            hidden,
            padding_mask,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            **conformer,
        )
        if self.adapter is not None:
            last, adapted = self.adapter(last, frame_lengths if exact else None)
            if frame_lengths is not None:
                frame_lengths = adapted if exact else adapter_lengths(self.config, frame_lengths)
        output = Wav2Vec2BaseModelOutput(
            last_hidden_state=last,
            extract_features=None if self.model_type == "hubert" else extract_features,
            hidden_states=hiddens,
            attentions=attentions,
        )
        return output, frame_lengths

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        mask_time_indices: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> Wav2Vec2BaseModelOutput:
        """transformers' forward. input_values: (batch, samples); attention_mask: (batch,
        samples), 1 = valid sample."""
        lengths = None if attention_mask is None else attention_mask.sum(-1)
        output, _ = self.run(
            input_values,
            lengths,
            exact_padding=False,
            mask_time_indices=mask_time_indices,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        return output

    def encode(
        self,
        wavs: torch.Tensor,
        wav_lens: torch.Tensor | None = None,
        reference_padding: bool = False,
    ) -> EncoderOutput:
        """The speech-encoder contract (:mod:`speechlobes.lobes.encoder`): (batch, samples)
        and relative lengths -> frames (batch, frames, ``output_size``) and their relative
        lengths. ``reference_padding``: transformers' padded-batch numerics instead."""
        lengths = sample_lengths(wavs, wav_lens)
        output, frame_lengths = self.run(wavs, lengths, exact_padding=not reference_padding)
        return encoder_output(output.last_hidden_state, frame_lengths)


class Wav2Vec2Model(Wav2Vec2BaseModel):
    """Wav2Vec2 encoder (base post-LN or 'stable' pre-LN layout), HF keys without prefix.

    Example:
        >>> model = Wav2Vec2Model.from_pretrained(  # doctest: +SKIP
        ...     "tests/fixtures/hf/wav2vec2_group")
    """

    model_type = "wav2vec2"
    base_model_prefix = "wav2vec2"


class HubertModel(Wav2Vec2BaseModel):
    """HuBERT encoder: Wav2Vec2 layout with an optional projection LayerNorm; no quantizer.

    Example:
        >>> model = HubertModel.from_pretrained("tests/fixtures/hf/hubert")  # doctest: +SKIP
    """

    model_type = "hubert"
    base_model_prefix = "hubert"


class Wav2Vec2ConformerModel(Wav2Vec2BaseModel):
    """Wav2Vec2-Conformer encoder (relative, rotary or no position encoding).

    Example:
        >>> model = Wav2Vec2ConformerModel.from_pretrained(  # doctest: +SKIP
        ...     "tests/fixtures/hf/w2v2_conformer_relpos")
    """

    model_type = "wav2vec2-conformer"
    base_model_prefix = "wav2vec2_conformer"


ENCODER_MODELS: dict[str, type[Wav2Vec2BaseModel]] = {
    "wav2vec2": Wav2Vec2Model,
    "hubert": HubertModel,
    "wav2vec2-conformer": Wav2Vec2ConformerModel,
}
