"""The BART and MBart decoders with cross-attention (``BartForCausalLM`` / ``MBartForCausalLM``).

Module paths mirror Hugging Face (``model.decoder.embed_tokens``, ``model.decoder.layers.N.
{self_attn,encoder_attn,fc1,fc2,*_layer_norm}``, ``lm_head``), so their checkpoints load key for
key. Embeddings: tokens (times sqrt(d_model) with ``scale_embedding``) + learned positions whose
row index is ``position + 2``, then ``layernorm_embedding``. BART blocks are post-LN
(``x = LN(x + sublayer(x))``); MBart blocks are pre-LN (``x = x + sublayer(LN(x))``) and a final
``layer_norm`` precedes the LM head. The LM head is tied to the token embedding, without bias.

Example:
    >>> config = MBartDecoderConfig(vocab_size=20, d_model=16, decoder_layers=1,
    ...                             decoder_attention_heads=2, decoder_ffn_dim=32)
    >>> decoder = BartDecoder(config)
    >>> decoder(torch.tensor([[2, 5, 6]]), torch.randn(1, 7, 16)).logits.shape
    torch.Size([1, 3, 20])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from speechlobes.lobes.text_decoders.attention import Attention
from speechlobes.lobes.text_decoders.base import TextDecoder, TextDecoderConfig
from speechlobes.nnet.activations import activation_fn
from speechlobes.nnet.dropout import FastDropout
from speechlobes.nnet.init import init_weights

POSITION_OFFSET = 2  # BART's learned position table starts two rows in


@dataclass
class BartDecoderConfig(TextDecoderConfig):
    """Hugging Face ``BartConfig`` fields the decoder uses (others are kept in ``extra``)."""

    model_type = "bart"

    vocab_size: int = 50265
    d_model: int = 1024
    decoder_layers: int = 12
    decoder_attention_heads: int = 16
    decoder_ffn_dim: int = 4096
    activation_function: str = "gelu"
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    max_position_embeddings: int = 1024
    init_std: float = 0.02
    scale_embedding: bool = False
    pad_token_id: int | None = 1
    bos_token_id: int | None = 0
    eos_token_id: int | None = 2
    decoder_start_token_id: int | None = 2

    @property
    def pre_norm(self) -> bool:
        return False


@dataclass
class MBartDecoderConfig(BartDecoderConfig):
    """``MBartConfig``: the same fields, pre-LN blocks and a final LayerNorm."""

    model_type = "mbart"

    @property
    def pre_norm(self) -> bool:
        return True


class BartDecoderLayer(nn.Module):
    """Self-attention, attention over the memory, feed-forward: post-LN (BART) or pre-LN
    (MBart) residual blocks."""

    linear_then_activation = ("fc1", "act")  # fused by packed_products

    def __init__(self, config: BartDecoderConfig):
        super().__init__()
        width = config.d_model
        heads = config.decoder_attention_heads
        self.pre_norm = config.pre_norm
        self.dropout = FastDropout(config.dropout)
        self.activation_dropout = FastDropout(config.activation_dropout)
        self.act = activation_fn(config.activation_function)
        self.self_attn = Attention(width, heads, config.attention_dropout)
        self.self_attn_layer_norm = nn.LayerNorm(width)
        if config.add_cross_attention:
            self.encoder_attn = Attention(width, heads, config.attention_dropout)
            self.encoder_attn_layer_norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, config.decoder_ffn_dim)
        self.fc2 = nn.Linear(config.decoder_ffn_dim, width)
        self.final_layer_norm = nn.LayerNorm(width)

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation_dropout(self.act(self.fc1(x))))

    def residual(self, x: torch.Tensor, norm: nn.LayerNorm, sublayer) -> torch.Tensor:
        """``LN(x + f(x))`` (BART) or ``x + f(LN(x))`` (MBart)."""
        x = x + self.dropout(sublayer(norm(x) if self.pre_norm else x))
        return x if self.pre_norm else norm(x)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        cache: Any = None,
    ) -> torch.Tensor:
        """x: (rows, steps, d_model); memory: (batch, frames, d_model)."""
        x = self.residual(x, self.self_attn_layer_norm, lambda h: self.self_attn(h, cache=cache))
        if memory is not None:
            x = self.residual(
                x,
                self.encoder_attn_layer_norm,
                lambda h: self.encoder_attn(h, memory, mask, cache),
            )
        return self.residual(x, self.final_layer_norm, self.feed_forward)


class BartDecoderStack(nn.Module):
    """``model.decoder``: embeddings, layers and (MBart) the final LayerNorm."""

    def __init__(self, config: BartDecoderConfig):
        super().__init__()
        width = config.d_model
        self.embed_scale = math.sqrt(width) if config.scale_embedding else 1.0
        self.embed_tokens = nn.Embedding(config.vocab_size, width, config.pad_token_id)
        self.embed_positions = nn.Embedding(config.max_position_embeddings + POSITION_OFFSET, width)
        self.layernorm_embedding = nn.LayerNorm(width)
        self.dropout = FastDropout(config.dropout)
        self.layers = nn.ModuleList(BartDecoderLayer(config) for _ in range(config.decoder_layers))
        if config.pre_norm:
            self.layer_norm = nn.LayerNorm(width)


class BartDecoderWrapper(nn.Module):
    """``model``: holds ``decoder`` (the checkpoints' nesting)."""

    def __init__(self, config: BartDecoderConfig):
        super().__init__()
        self.decoder = BartDecoderStack(config)


class BartDecoder(TextDecoder):
    """BART or MBart decoder as a causal LM (the variant follows ``config.model_type``)."""

    config_class = BartDecoderConfig
    tied_keys = ("lm_head.weight",)
    # Full seq2seq checkpoints also hold the text encoder and a logits bias a causal LM lacks.
    checkpoint_ignore = (r"^model\.encoder\.", r"^model\.shared\.", r"^final_logits_bias")

    def __init__(self, config: BartDecoderConfig):
        super().__init__()
        self.config = config
        self.model = BartDecoderWrapper(config)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        init_weights(self, config.init_std)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.decoder.embed_tokens.weight
        else:
            self.tied_keys = ()

    @property
    def blocks(self) -> nn.ModuleList:
        return self.model.decoder.layers

    @property
    def hidden_size(self) -> int:
        return self.config.d_model

    def embed(self, input_ids: torch.Tensor, past_length: int) -> torch.Tensor:
        stack = self.model.decoder
        first = past_length + POSITION_OFFSET
        last = first + input_ids.shape[1]
        if last > stack.embed_positions.num_embeddings:
            raise ValueError(
                f"{self.config.model_type} decoder: position {last - POSITION_OFFSET} exceeds "
                f"max_position_embeddings ({self.config.max_position_embeddings})"
            )
        x = (
            stack.embed_tokens(input_ids) * stack.embed_scale
            + stack.embed_positions.weight[first:last]
        )
        return stack.dropout(stack.layernorm_embedding(x))

    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.decoder.layer_norm(x) if self.config.pre_norm else x

    def lm_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.lm_head(x)

    @property
    def architecture(self) -> str:
        return "MBartForCausalLM" if self.config.pre_norm else "BartForCausalLM"

    @classmethod
    def config_from_dict(cls, values: dict) -> BartDecoderConfig:
        model_type = values.get("model_type", "bart")
        if model_type not in CONFIGS:
            raise ValueError(f"BartDecoder reads model_type 'bart' or 'mbart', got {model_type!r}")
        return CONFIGS[model_type].from_dict(values)

    def rename_checkpoint_keys(self, state_dict: dict[str, torch.Tensor]) -> dict:
        """Accept ``BartModel`` (no ``model.`` prefix) and seq2seq checkpoints (shared
        embedding).
        """
        renamed = {}
        for key, tensor in state_dict.items():
            if key.startswith(("decoder.", "encoder.", "shared.")):
                key = "model." + key
            renamed[key] = tensor
        shared = renamed.get("model.shared.weight")
        if shared is not None:
            renamed.setdefault("model.decoder.embed_tokens.weight", shared)
        return renamed


CONFIGS = {"bart": BartDecoderConfig, "mbart": MBartDecoderConfig}
