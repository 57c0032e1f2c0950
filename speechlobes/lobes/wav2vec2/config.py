"""Configuration of the Wav2Vec2 family (Wav2Vec2, HuBERT, Wav2Vec2-Conformer).

One dataclass covers the three Hugging Face config classes; field names and defaults are
those of ``config.json``. Fields we do not model (``architectures``, ``transformers_version``,
``dtype``, ...) are kept in ``extra`` and written back, so a folder survives a round trip (the
policy of every :class:`~speechlobes.lobes.config.LobeConfig`).

Example:
    >>> config = Wav2Vec2Config(model_type="wav2vec2-conformer", hidden_size=64,
    ...                         num_attention_heads=4)
    >>> config.output_hidden_size
    64
    >>> Wav2Vec2Config.from_dict(config.to_dict()) == config
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from speechlobes.lobes.config import LobeConfig

MODEL_TYPES = ("wav2vec2", "hubert", "wav2vec2-conformer")

# Fields that a model type's Hugging Face config class does not have (not written for it).
_ABSENT_FIELDS = {
    "wav2vec2": {
        "feat_proj_layer_norm",
        "conv_pos_batch_norm",
        "position_embeddings_type",
        "rotary_embedding_base",
        "max_source_positions",
        "conv_depthwise_kernel_size",
        "conformer_conv_dropout",
    },
    "hubert": {
        "feat_quantizer_dropout",
        "num_codevectors_per_group",
        "num_codevector_groups",
        "contrastive_logits_temperature",
        "num_negatives",
        "codevector_dim",
        "proj_codevector_dim",
        "diversity_loss_weight",
        "tdnn_dim",
        "tdnn_kernel",
        "tdnn_dilation",
        "xvector_output_dim",
        "add_adapter",
        "adapter_kernel_size",
        "adapter_stride",
        "num_adapter_layers",
        "output_hidden_size",
        "adapter_attn_dim",
        "position_embeddings_type",
        "rotary_embedding_base",
        "max_source_positions",
        "conv_depthwise_kernel_size",
        "conformer_conv_dropout",
    },
    "wav2vec2-conformer": {
        "do_stable_layer_norm",
        "feat_proj_layer_norm",
        "conv_pos_batch_norm",
        "adapter_attn_dim",
    },
}
# Derived from other fields: recomputed on write, dropped on read.
_DERIVED = ("num_feat_extract_layers", "num_labels")


@dataclass
class Wav2Vec2Config(LobeConfig):
    """Architecture and training hyper-parameters, named as in Hugging Face ``config.json``;
    ``model_type`` (a field here) is one of "wav2vec2", "hubert", "wav2vec2-conformer"."""

    model_type: str = "wav2vec2"
    vocab_size: int | None = 32
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout: float = 0.1
    activation_dropout: float = 0.1
    attention_dropout: float = 0.1
    feat_proj_dropout: float = 0.0
    feat_quantizer_dropout: float = 0.0
    final_dropout: float = 0.1
    layerdrop: float = 0.1
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-5
    feat_extract_norm: str = "group"
    feat_extract_activation: str = "gelu"
    conv_dim: list[int] = field(default_factory=lambda: [512] * 7)
    conv_stride: list[int] = field(default_factory=lambda: [5, 2, 2, 2, 2, 2, 2])
    conv_kernel: list[int] = field(default_factory=lambda: [10, 3, 3, 3, 3, 2, 2])
    conv_bias: bool = False
    num_conv_pos_embeddings: int = 128
    num_conv_pos_embedding_groups: int = 16
    do_stable_layer_norm: bool = False
    feat_proj_layer_norm: bool = True
    conv_pos_batch_norm: bool = False
    apply_spec_augment: bool = True
    mask_time_prob: float = 0.05
    mask_time_length: int = 10
    mask_time_min_masks: int = 2
    mask_feature_prob: float = 0.0
    mask_feature_length: int = 10
    mask_feature_min_masks: int = 0
    num_codevectors_per_group: int = 320
    num_codevector_groups: int = 2
    contrastive_logits_temperature: float = 0.1
    num_negatives: int = 100
    codevector_dim: int = 256
    proj_codevector_dim: int = 256
    diversity_loss_weight: float = 0.1
    ctc_loss_reduction: str = "sum"
    ctc_zero_infinity: bool = False
    use_weighted_layer_sum: bool = False
    classifier_proj_size: int = 256
    tdnn_dim: list[int] = field(default_factory=lambda: [512, 512, 512, 512, 1500])
    tdnn_kernel: list[int] = field(default_factory=lambda: [5, 3, 3, 1, 1])
    tdnn_dilation: list[int] = field(default_factory=lambda: [1, 2, 3, 1, 1])
    xvector_output_dim: int = 512
    pad_token_id: int | None = 0
    bos_token_id: int | None = 1
    eos_token_id: int | None = 2
    add_adapter: bool = False
    adapter_kernel_size: int = 3
    adapter_stride: int = 2
    num_adapter_layers: int = 3
    output_hidden_size: int | None = None
    adapter_attn_dim: int | None = None
    position_embeddings_type: str | None = "relative"
    rotary_embedding_base: float = 10000
    max_source_positions: int = 5000
    conv_depthwise_kernel_size: int = 31
    conformer_conv_dropout: float = 0.1
    id2label: dict[int, str] | None = None
    label2id: dict[str, int] | None = None

    def __post_init__(self) -> None:
        if self.model_type not in MODEL_TYPES:
            raise ValueError(f"model_type {self.model_type!r}: expected one of {MODEL_TYPES}")
        if self.output_hidden_size is None:
            self.output_hidden_size = self.hidden_size
        self.conv_dim, self.conv_stride, self.conv_kernel = (
            list(self.conv_dim),
            list(self.conv_stride),
            list(self.conv_kernel),
        )
        if not len(self.conv_dim) == len(self.conv_stride) == len(self.conv_kernel):
            raise ValueError(
                f"conv_dim {self.conv_dim}, conv_stride {self.conv_stride} and conv_kernel "
                f"{self.conv_kernel} must have the same length"
            )
        if self.feat_extract_norm not in ("group", "layer"):
            raise ValueError(f"feat_extract_norm {self.feat_extract_norm!r}: 'group' or 'layer'")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads "
                f"{self.num_attention_heads}"
            )
        if self.position_embeddings_type not in ("relative", "rotary", None):
            raise ValueError(
                f"position_embeddings_type {self.position_embeddings_type!r}: "
                "'relative', 'rotary' or null"
            )
        if self.adapter_attn_dim is not None:
            raise NotImplementedError(
                "adapter_attn_dim (MMS language adapters) is not supported by this lobe"
            )
        if self.id2label is not None:
            self.id2label = {int(k): v for k, v in self.id2label.items()}
        for name in ("tdnn_dim", "tdnn_kernel", "tdnn_dilation"):
            setattr(self, name, list(getattr(self, name)))

    @property
    def num_feat_extract_layers(self) -> int:
        return len(self.conv_dim)

    @property
    def num_labels(self) -> int:
        """Number of classes of classification heads (from ``id2label``; 2 when unset)."""
        return 2 if self.id2label is None else len(self.id2label)

    @property
    def is_conformer(self) -> bool:
        return self.model_type == "wav2vec2-conformer"

    @classmethod
    def accepted_keys(cls) -> tuple[str, ...]:
        return (*cls.field_names(), *_DERIVED)

    @classmethod
    def from_dict(cls, values: dict[str, Any], strict: bool = False) -> Wav2Vec2Config:
        """From a ``config.json`` dict; ``num_labels`` alone gives generic label names."""
        values = dict(values)
        if "num_labels" in values and "id2label" not in values:
            values["id2label"] = {i: f"LABEL_{i}" for i in range(int(values["num_labels"]))}
        if strict:
            cls.check_keys(key for key in values if key != "extra")
        for name in _DERIVED:
            values.pop(name, None)
        return super().from_dict(values)

    def to_dict(self) -> dict[str, Any]:
        """A ``config.json`` dict holding this model type's fields plus ``extra``."""
        values = super().to_dict()
        for name in _ABSENT_FIELDS[self.model_type]:
            values.pop(name, None)
        if self.id2label is None:
            values.pop("id2label")
            values.pop("label2id")
        else:
            values["id2label"] = {str(k): v for k, v in self.id2label.items()}
            values["label2id"] = self.label2id or {v: k for k, v in self.id2label.items()}
        values["num_feat_extract_layers"] = self.num_feat_extract_layers
        return values
