"""The configuration of BEATs: every field of Microsoft's original ``BEATsConfig``.

Example:
    >>> BEATsConfig.from_dict({"encoder_layers": 4}).encoder_layers
    4
"""

from __future__ import annotations

from dataclasses import dataclass

from speechlobes.lobes.config import LobeConfig


@dataclass
class BEATsConfig(LobeConfig):
    """Every field of the original ``BEATsConfig``, with its defaults.

    ``input_patch_size`` defaults to 16 (the released checkpoints' value; the original's
    placeholder -1 cannot build a model). Unknown keys follow the policy of
    :class:`~speechlobes.lobes.config.LobeConfig` (the ``cfg`` of an original checkpoint has
    none).
    """

    model_type = "beats"

    input_patch_size: int = 16
    embed_dim: int = 512
    conv_bias: bool = False
    encoder_layers: int = 12
    encoder_embed_dim: int = 768
    encoder_ffn_embed_dim: int = 3072
    encoder_attention_heads: int = 12
    activation_fn: str = "gelu"
    layer_wise_gradient_decay_ratio: float = 1.0
    layer_norm_first: bool = False
    deep_norm: bool = False
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    encoder_layerdrop: float = 0.0
    dropout_input: float = 0.0
    conv_pos: int = 128
    conv_pos_groups: int = 16
    relative_position_embedding: bool = False
    num_buckets: int = 320
    max_distance: int = 1280
    gru_rel_pos: bool = False
    finetuned_model: bool = False
    predictor_dropout: float = 0.1
    predictor_class: int = 527
