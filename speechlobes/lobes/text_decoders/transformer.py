"""Our own Transformer text decoder with cross-attention, for training from scratch.

Pre-LayerNorm blocks (``x = x + sublayer(LN(x))`` for causal self-attention, cross-attention
and the feed-forward), a final LayerNorm, token embeddings scaled by sqrt(d_model) plus fixed
sinusoidal positions (no length limit), and an LM head tied to the token embedding. It is saved
as an HF-style folder (``config.json`` with model_type ``speechlobes-transformer-decoder`` +
``model.safetensors``) that only speechlobes reads.

Example:
    >>> config = TransformerTextDecoderConfig(vocab_size=20, d_model=16, num_layers=1,
    ...                                       num_heads=2, ffn_dim=32)
    >>> decoder = TransformerTextDecoder(config)
    >>> decoder(torch.tensor([[1, 5, 6]]), torch.randn(1, 7, 16)).logits.shape
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


@dataclass
class TransformerTextDecoderConfig(TextDecoderConfig):
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

    @property
    def hidden_size(self) -> int:
        return self.d_model


def sinusoids(positions: torch.Tensor, width: int) -> torch.Tensor:
    """Fixed position encoding (len(positions), width): sin on the first half, cos on the second."""
    half = width // 2
    rates = torch.exp(-math.log(10000.0) * torch.arange(half, device=positions.device) / half)
    angles = positions.float()[:, None] * rates[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class DecoderBlock(nn.Module):
    """Pre-LN block: causal self-attention, attention over the memory, feed-forward."""

    linear_then_activation = ("fc1", "act")  # fused by packed_products

    def __init__(self, config: TransformerTextDecoderConfig):
        super().__init__()
        width, eps = config.d_model, config.layer_norm_eps
        self.self_attn_norm = nn.LayerNorm(width, eps=eps)
        self.self_attn = Attention(width, config.num_heads, config.attention_dropout)
        if config.add_cross_attention:
            self.cross_attn_norm = nn.LayerNorm(width, eps=eps)
            self.cross_attn = Attention(width, config.num_heads, config.attention_dropout)
        self.ffn_norm = nn.LayerNorm(width, eps=eps)
        self.fc1 = nn.Linear(width, config.ffn_dim)
        self.fc2 = nn.Linear(config.ffn_dim, width)
        self.act = activation_fn(config.activation)
        self.dropout = FastDropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        cache: Any = None,
    ) -> torch.Tensor:
        """x: (rows, steps, d_model); memory: (batch, frames, d_model)."""
        x = x + self.dropout(self.self_attn(self.self_attn_norm(x), cache=cache))
        if memory is not None:
            x = x + self.dropout(self.cross_attn(self.cross_attn_norm(x), memory, mask, cache))
        y = self.fc2(self.dropout(self.act(self.fc1(self.ffn_norm(x)))))
        return x + self.dropout(y)


class TransformerTextDecoder(TextDecoder):
    """Pre-LN Transformer decoder with cross-attention and a tied LM head."""

    config_class = TransformerTextDecoderConfig
    tied_keys = ("lm_head.weight",)

    def __init__(self, config: TransformerTextDecoderConfig):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.d_model, config.pad_token_id)
        self.dropout = FastDropout(config.dropout)
        self.layers = nn.ModuleList(DecoderBlock(config) for _ in range(config.num_layers))
        self.final_layer_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
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
        tokens = self.embed_tokens(input_ids) * scale
        return self.dropout(tokens + sinusoids(positions, self.config.d_model).to(tokens.dtype))

    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_layer_norm(x)

    def lm_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.lm_head(x)
