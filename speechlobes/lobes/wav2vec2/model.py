"""Base encoders of the Wav2Vec2 family and their Hugging Face folder I/O.

``Wav2Vec2Model``, ``HubertModel`` and ``Wav2Vec2ConformerModel`` share one forward:
conv feature encoder -> feature projection -> SpecAugment (training) -> encoder -> adapter.

Example:
    >>> import torch
    >>> config = Wav2Vec2Config(hidden_size=16, num_attention_heads=2, num_hidden_layers=1,
    ...     intermediate_size=32, conv_dim=[8, 8], conv_stride=[5, 2], conv_kernel=[10, 3],
    ...     num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2)
    >>> model = Wav2Vec2Model(config).eval()
    >>> model(torch.randn(2, 400)).last_hidden_state.shape
    torch.Size([2, 39, 16])
    >>> model.output_lengths(torch.tensor([400, 250]))
    tensor([39, 24])
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from speechlobes.lobes.hf_io import (
    load_hf_state_dict,
    load_state_dict_checked,
    read_config,
    save_hf_folder,
)
from speechlobes.lobes.wav2vec2.blocks import (
    Adapter,
    ConformerEncoder,
    FeatureEncoder,
    FeatureProjection,
    TransformerEncoder,
)
from speechlobes.lobes.wav2vec2.config import Wav2Vec2Config
from speechlobes.nnet.lengths import conv_output_length, lengths_to_padding_mask
from speechlobes.processing.augment import compute_span_mask

# Tensors whose presence depends on settings, not on the architecture: never a mismatch.
_OPTIONAL_KEYS = (
    r"(^|\.)masked_spec_embed$",
    r"num_batches_tracked$",
    r"embed_positions\.inv_freq$",
)


def conv_stack_lengths(config: Wav2Vec2Config, input_lengths: torch.Tensor | int):
    """Frames the conv feature encoder produces from ``input_lengths`` samples."""
    for kernel, stride in zip(config.conv_kernel, config.conv_stride, strict=True):
        input_lengths = conv_output_length(input_lengths, kernel, stride)
    return input_lengths


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


class PretrainedMixin(nn.Module):
    """``from_pretrained`` / ``save_pretrained`` for Hugging Face folders, shared by all classes.

    Subclasses set ``model_type`` and ``base_model_prefix`` (the attribute that holds the base
    encoder in head models, and the key prefix in their checkpoints).
    """

    model_type: str
    base_model_prefix: str

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

    def _match_prefix(self, state: dict[str, torch.Tensor]) -> tuple[dict, list[str]]:
        """Add or strip the base-model prefix so checkpoint keys match ours.

        A base model loaded from a head checkpoint keeps the prefixed tensors; the head's own
        tensors are returned as the second value (dropped, as transformers does).
        """
        prefix = self.base_model_prefix + "."
        has_prefix = any(key.startswith(prefix) for key in state)
        if self.is_base_model and has_prefix:
            head = sorted(k for k in state if not k.startswith(prefix))
            return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}, head
        if not self.is_base_model and not has_prefix:
            return {prefix + k: v for k, v in state.items()}, []
        return state, []

    def load_hf_state_dict(
        self, state: dict[str, torch.Tensor], strict: bool = True, source: str = "checkpoint"
    ):
        """Load Hugging Face keys (with or without the base prefix); returns (missing, unexpected)."""
        state, _ = self._match_prefix(state)
        return load_state_dict_checked(
            self, state, strict=strict, ignore=_OPTIONAL_KEYS, source=source
        )

    @classmethod
    def from_pretrained(cls, folder: str | Path, strict: bool = True, **config_overrides):
        """Build from ``folder/config.json`` (fields overridable by keyword) and load the weights.

        ``strict=True`` raises on any missing or unexpected tensor; pass ``strict=False`` to start
        a new head on a pretrained encoder (the missing tensors keep their initial values).
        """
        config = Wav2Vec2Config.from_dict({**read_config(folder), **config_overrides})
        model = cls(config)
        model.load_hf_state_dict(load_hf_state_dict(folder), strict=strict, source=str(folder))
        return model.eval()

    def save_pretrained(
        self,
        folder: str | Path,
        safe_serialization: bool = True,
        max_shard_size: int | str | None = None,
    ) -> None:
        """Write ``config.json`` + weights in the layout ``transformers`` loads."""
        config = {**self.config.to_dict(), "architectures": [type(self).__name__]}
        save_hf_folder(folder, config, self.state_dict(), safe_serialization, max_shard_size)

    def output_lengths(self, input_lengths: torch.Tensor | int, add_adapter: bool | None = None):
        """Samples -> encoder frames (through the adapter when add_adapter, default: the config's)."""
        lengths = conv_stack_lengths(self.config, input_lengths)
        if self.config.add_adapter if add_adapter is None else add_adapter:
            lengths = adapter_lengths(self.config, lengths)
        return lengths

    def frame_attention_mask(
        self, num_frames: int, attention_mask: torch.Tensor, add_adapter: bool | None = False
    ) -> torch.Tensor:
        """Sample mask (batch, samples), 1 = valid -> bool frame mask (batch, frames), True = valid."""
        lengths = self.output_lengths(attention_mask.sum(-1), add_adapter=add_adapter)
        return ~lengths_to_padding_mask(lengths.long(), num_frames)


class Wav2Vec2BaseModel(PretrainedMixin):
    """The shared forward of the three base encoders."""

    encoder_class: type[nn.Module] = TransformerEncoder

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__(config)
        self.feature_extractor = FeatureEncoder(config)
        self.feature_projection = FeatureProjection(config)
        if config.mask_time_prob > 0.0 or config.mask_feature_prob > 0.0:
            self.masked_spec_embed = nn.Parameter(torch.rand(config.hidden_size))
        self.encoder = self.encoder_class(config)
        self.adapter = Adapter(config) if config.add_adapter else None

    def freeze_feature_encoder(self) -> None:
        """Stop gradients into the conv feature encoder (as recipes do when fine-tuning)."""
        for param in self.feature_extractor.parameters():
            param.requires_grad = False

    def gradient_checkpointing_enable(self) -> None:
        """Recompute encoder layers (and conv layers) in the backward pass to save memory."""
        self.encoder.gradient_checkpointing = True
        self.feature_extractor.gradient_checkpointing = True

    def mask_hidden_states(
        self,
        hidden: torch.Tensor,
        mask_time_indices: torch.Tensor | None,
        frame_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """SpecAugment: given ``mask_time_indices`` (any mode) or sampled spans (training only)."""
        config = self.config
        if not config.apply_spec_augment:
            return hidden
        if mask_time_indices is None and config.mask_time_prob > 0 and self.training:
            mask_time_indices = self._span_mask(
                hidden.shape[:2],
                config.mask_time_prob,
                config.mask_time_length,
                config.mask_time_min_masks,
                frame_mask,
            )
        if mask_time_indices is not None:
            embed = self.masked_spec_embed.to(hidden.dtype)
            hidden = torch.where(
                mask_time_indices.bool()[..., None].to(hidden.device), embed, hidden
            )
        if config.mask_feature_prob > 0 and self.training:
            feature_mask = self._span_mask(
                (hidden.shape[0], hidden.shape[2]),
                config.mask_feature_prob,
                config.mask_feature_length,
                config.mask_feature_min_masks,
                None,
            )
            hidden = hidden.masked_fill(feature_mask[:, None, :].to(hidden.device), 0.0)
        return hidden

    @staticmethod
    def _span_mask(shape, prob, length, min_masks, frame_mask):
        lengths = None if frame_mask is None else frame_mask.sum(-1)
        return compute_span_mask(tuple(shape), prob, length, min_masks=min_masks, lengths=lengths)

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        mask_time_indices: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> Wav2Vec2BaseModelOutput:
        """input_values: (batch, samples); attention_mask: (batch, samples), 1 = valid sample."""
        features = self.feature_extractor(input_values).transpose(1, 2)
        frame_mask = None
        if attention_mask is not None:
            frame_mask = self.frame_attention_mask(features.shape[1], attention_mask)
        hidden, extract_features = self.feature_projection(features)
        hidden = self.mask_hidden_states(hidden, mask_time_indices, frame_mask)
        padding_mask = None if frame_mask is None else ~frame_mask
        last, hiddens, attentions = self.encoder(
            hidden, padding_mask, output_hidden_states, output_attentions
        )
        if self.adapter is not None:
            last = self.adapter(last)
        return Wav2Vec2BaseModelOutput(
            last_hidden_state=last,
            extract_features=None if self.model_type == "hubert" else extract_features,
            hidden_states=hiddens,
            attentions=attentions,
        )


class Wav2Vec2Model(Wav2Vec2BaseModel):
    """Wav2Vec2 encoder (base post-LN or 'stable' pre-LN layout), HF keys without prefix.

    Example:
        >>> model = Wav2Vec2Model.from_pretrained("tests/fixtures/hf/wav2vec2_group")  # doctest: +SKIP
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
        >>> model = Wav2Vec2ConformerModel.from_pretrained("tests/fixtures/hf/w2v2_conformer_relpos")  # doctest: +SKIP
    """

    model_type = "wav2vec2-conformer"
    base_model_prefix = "wav2vec2_conformer"
    encoder_class = ConformerEncoder


ENCODER_MODELS: dict[str, type[Wav2Vec2BaseModel]] = {
    "wav2vec2": Wav2Vec2Model,
    "hubert": HubertModel,
    "wav2vec2-conformer": Wav2Vec2ConformerModel,
}
