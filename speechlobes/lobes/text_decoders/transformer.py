"""Our own Transformer text decoder with cross-attention, for training from scratch.

Pre-LayerNorm blocks (``x = x + sublayer(LN(x))`` for causal self-attention, cross-attention
and the feed-forward), a final LayerNorm, token embeddings scaled by sqrt(d_model) plus fixed
sinusoidal positions (no length limit), and an LM head tied to the token embedding. It is saved
as an HF-style folder (``config.json`` with model_type ``speechlobes-transformer-decoder`` +
``model.safetensors``) that only speechlobes reads.

Example:
    >>> config = TransformerDecoderConfig(vocab_size=20, d_model=16, num_layers=1, num_heads=2,
    ...                                   ffn_dim=32)
    >>> decoder = TransformerDecoder(config)
    >>> decoder(torch.tensor([[1, 5, 6]]), torch.randn(1, 7, 16)).logits.shape
    torch.Size([1, 3, 20])
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from speechlobes.lobes.text_decoders.base import (
    Attention,
    DecoderCache,
    DecoderConfigIO,
    TextDecoder,
    activation,
    init_weights,
)
from speechlobes.lobes.text_decoders.packing import Linear
from speechlobes.nnet.dropout import Dropout


@dataclass
class TransformerDecoderConfig(DecoderConfigIO):
    """Sizes of the native decoder; the token ids are those of the tokenizer used with it."""

    model_type = "speechlobes-transformer-decoder"

    vocab_size: int = 1000
    d_model: int = 256
    num_layers: int = 4
    num_heads: int = 4
    ffn_dim: int = 1024
    activation: str = "gelu"
    dropout: float = 0.1
    attention_dropout: float = 0.0
    layer_norm_eps: float = 1e-5
    init_std: float = 0.02
    pad_token_id: int | None = 0
    bos_token_id: int | None = 1
    eos_token_id: int | None = 2
    is_decoder: bool = True
    add_cross_attention: bool = True
    tie_word_embeddings: bool = True
    extra: dict = field(default_factory=dict)

    @property
    def hidden_size(self) -> int:
        return self.d_model


def sinusoids(positions: torch.Tensor, width: int) -> torch.Tensor:
    """Fixed position encoding (len(positions), width): sin on the first half, cos on the second."""
    half = width // 2
    rates = torch.exp(-math.log(10000.0) * torch.arange(half, device=positions.device) / half)
    angles = positions.float()[:, None] * rates[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class TransformerDecoderLayer(nn.Module):
    def __init__(self, config: TransformerDecoderConfig):
        super().__init__()
        width, eps = config.d_model, config.layer_norm_eps
        self.self_attn_norm = nn.LayerNorm(width, eps=eps)
        self.self_attn = Attention(width, config.num_heads, config.attention_dropout)
        if config.add_cross_attention:
            self.cross_attn_norm = nn.LayerNorm(width, eps=eps)
            self.cross_attn = Attention(
                width, config.num_heads, config.attention_dropout, cross=True
            )
        self.ffn_norm = nn.LayerNorm(width, eps=eps)
        self.fc1 = Linear(width, config.ffn_dim)
        self.fc2 = Linear(config.ffn_dim, width)
        self.act = activation(config.activation)
        self.dropout = Dropout(config.dropout)

    def cross_kv(self, encoder_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cross_attn.cross_kv(encoder_states)

    def forward(
        self,
        x: torch.Tensor,
        index: int,
        cache: DecoderCache | None,
        self_padding: torch.Tensor | None,
        cross_kv: tuple[torch.Tensor, torch.Tensor] | None,
        cross_bias: torch.Tensor | None,
        need_weights: bool,
    ):
        y, weights = self.self_attn.attend_self(
            self.self_attn_norm(x), index, cache, self_padding, need_weights
        )
        x = x + self.dropout(y)
        cross_weights = None
        if cross_kv is not None:
            y, cross_weights = self.cross_attn.attend_cross(
                self.cross_attn_norm(x), cross_kv, cross_bias, need_weights
            )
            x = x + self.dropout(y)
        y = self.fc2(self.dropout(self.fc1.activated(self.ffn_norm(x), self.act)))
        return x + self.dropout(y), weights, cross_weights


class TransformerDecoder(TextDecoder):
    """Pre-LN Transformer decoder with cross-attention and a tied LM head."""

    config_class = TransformerDecoderConfig
    architecture = "TransformerDecoder"
    tied_keys = ("lm_head.weight",)

    def __init__(self, config: TransformerDecoderConfig):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.d_model, config.pad_token_id)
        self.dropout = Dropout(config.dropout)
        self.layers = nn.ModuleList(
            TransformerDecoderLayer(config) for _ in range(config.num_layers)
        )
        self.final_layer_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.lm_head = Linear(config.d_model, config.vocab_size, bias=False)
        init_weights(self, config.init_std)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        else:
            self.tied_keys = ()

    @property
    def blocks(self) -> nn.ModuleList:
        return self.layers

    @property
    def hidden_size(self) -> int:
        return self.config.d_model

    def embed(self, input_ids: torch.Tensor, past_length: int) -> torch.Tensor:
        steps = input_ids.shape[1]
        positions = torch.arange(past_length, past_length + steps, device=input_ids.device)
        scale = math.sqrt(self.config.d_model)
        x = self.embed_tokens(input_ids) * scale + sinusoids(positions, self.config.d_model)
        return self.dropout(x)

    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_layer_norm(x)

    def lm_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.lm_head(x)
