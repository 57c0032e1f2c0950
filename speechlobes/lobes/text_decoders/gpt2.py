"""GPT-2 with cross-attention as a text decoder (``GPT2LMHeadModel`` with ``add_cross_attention``).

Module paths mirror Hugging Face (``transformer.wte``, ``transformer.h.N.{ln_1,attn,ln_cross_attn,
crossattention,ln_2,mlp}``, ``transformer.ln_f``, ``lm_head``). GPT-2's linear layer (transformers'
``Conv1D``, here :class:`TransposedLinear`) stores its weight as (in, out), the transpose of
``nn.Linear``; ``attn.c_attn`` is the fused q|k|v
projection, ``crossattention.q_attn`` projects the decoder stream and ``crossattention.c_attn`` the
encoder states to k|v. Blocks are pre-LN; scores are scaled by head_dim^-0.5 (with
``scale_attn_weights``) and by 1 / (layer + 1) with ``scale_attn_by_inverse_layer_idx``.

Example:
    >>> config = GPT2DecoderConfig(vocab_size=20, n_embd=16, n_layer=1, n_head=2)
    >>> decoder = GPT2Decoder(config)
    >>> decoder(torch.tensor([[1, 5, 6]]), torch.randn(1, 7, 16)).logits.shape
    torch.Size([1, 3, 20])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from speechlobes.lobes.text_decoders.attention import (
    KeysValues,
    attend_memory,
    attend_self,
    maps,
)
from speechlobes.lobes.text_decoders.base import TextDecoder, TextDecoderConfig
from speechlobes.nnet.activations import activation_fn
from speechlobes.nnet.attention import merge_heads, split_fused_heads, split_heads
from speechlobes.nnet.dropout import FastDropout
from speechlobes.nnet.init import init_weights


@dataclass
class GPT2DecoderConfig(TextDecoderConfig):
    """Hugging Face ``GPT2Config`` fields the decoder uses (others are kept in ``extra``)."""

    model_type = "gpt2"

    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_inner: int | None = None
    activation_function: str = "gelu_new"
    resid_pdrop: float = 0.1
    embd_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    scale_attn_weights: bool = True
    scale_attn_by_inverse_layer_idx: bool = False
    bos_token_id: int | None = 50256
    eos_token_id: int | None = 50256
    pad_token_id: int | None = None


class TransposedLinear(nn.Module):
    """GPT-2's linear layer (transformers' ``Conv1D``): ``x @ weight + bias`` with the weight
    stored (in, out)."""

    def __init__(self, out_features: int, in_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        nn.init.normal_(self.weight, std=0.02)

    def linear_weight(self) -> torch.Tensor:
        """The weight as ``nn.Linear`` holds it, (out, in)."""
        return self.weight.t()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).view(
            *x.shape[:-1], -1
        )


class GPT2Attention(nn.Module):
    """Self-attention (``c_attn`` = q|k|v) or attention over the memory (``q_attn`` for the
    decoder stream, ``c_attn`` = k|v of the memory)."""

    def __init__(self, config: GPT2DecoderConfig, layer: int, is_cross: bool):
        super().__init__()
        width = config.n_embd
        self.num_heads = config.n_head
        self.dropout = config.attn_pdrop
        self.scale = (width // config.n_head) ** -0.5 if config.scale_attn_weights else 1.0
        if config.scale_attn_by_inverse_layer_idx:
            self.scale /= layer + 1
        if is_cross:
            self.q_attn = TransposedLinear(width, width)
            self.c_attn = TransposedLinear(2 * width, width)
        else:
            self.c_attn = TransposedLinear(3 * width, width)
        self.c_proj = TransposedLinear(width, width)
        self.resid_dropout = FastDropout(config.resid_pdrop)

    def project_memory(self, memory: torch.Tensor) -> KeysValues:
        return split_fused_heads(self.c_attn(memory), 2, self.num_heads)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        cache: Any = None,
    ) -> torch.Tensor:
        dropout = self.dropout if self.training else 0.0
        if memory is None:
            q, k, v = split_fused_heads(self.c_attn(x), 3, self.num_heads)
            y = attend_self(self, q, k, v, cache, dropout, self.scale)
        else:
            q = split_heads(self.q_attn(x), self.num_heads)
            y = attend_memory(
                self, q, memory, mask, cache, self.project_memory, dropout, self.scale
            )
        return self.resid_dropout(self.c_proj(merge_heads(y)))

    def maps(self, x, memory=None, mask=None) -> torch.Tensor:
        if memory is None:
            q, k, _ = split_fused_heads(self.c_attn(x), 3, self.num_heads)
        else:
            q = split_heads(self.q_attn(x), self.num_heads)
            k, _ = self.project_memory(memory)
        return maps(q, k, memory is None, mask, self.scale)


class GPT2MLP(nn.Module):
    linear_then_activation = ("c_fc", "act")  # fused by packed_products

    def __init__(self, config: GPT2DecoderConfig):
        super().__init__()
        inner = config.n_inner or 4 * config.n_embd
        self.c_fc = TransposedLinear(inner, config.n_embd)
        self.c_proj = TransposedLinear(config.n_embd, inner)
        self.act = activation_fn(config.activation_function)
        self.dropout = FastDropout(config.resid_pdrop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class GPT2Block(nn.Module):
    """Pre-LN block: causal self-attention, cross-attention, MLP."""

    def __init__(self, config: GPT2DecoderConfig, layer: int):
        super().__init__()
        width, eps = config.n_embd, config.layer_norm_epsilon
        self.ln_1 = nn.LayerNorm(width, eps=eps)
        self.attn = GPT2Attention(config, layer, is_cross=False)
        if config.add_cross_attention:
            self.crossattention = GPT2Attention(config, layer, is_cross=True)
            self.ln_cross_attn = nn.LayerNorm(width, eps=eps)
        self.ln_2 = nn.LayerNorm(width, eps=eps)
        self.mlp = GPT2MLP(config)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        cache: Any = None,
    ) -> torch.Tensor:
        """x: (rows, steps, n_embd); memory: (batch, frames, n_embd)."""
        x = x + self.attn(self.ln_1(x), cache=cache)
        if memory is not None:
            x = x + self.crossattention(self.ln_cross_attn(x), memory, mask, cache)
        return x + self.mlp(self.ln_2(x))


class GPT2Model(nn.Module):
    def __init__(self, config: GPT2DecoderConfig):
        super().__init__()
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.drop = FastDropout(config.embd_pdrop)
        self.h = nn.ModuleList(GPT2Block(config, i) for i in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)


class GPT2Decoder(TextDecoder):
    """GPT-2 language model with cross-attention blocks (``GPT2LMHeadModel`` layout)."""

    config_class = GPT2DecoderConfig
    architecture = "GPT2LMHeadModel"
    tied_keys = ("lm_head.weight",)

    def __init__(self, config: GPT2DecoderConfig):
        super().__init__()
        self.config = config
        self.transformer = GPT2Model(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        init_weights(self, config.initializer_range)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.transformer.wte.weight
        else:
            self.tied_keys = ()

    @property
    def blocks(self) -> nn.ModuleList:
        return self.transformer.h

    @property
    def hidden_size(self) -> int:
        return self.config.n_embd

    def embed(self, input_ids: torch.Tensor, past_length: int) -> torch.Tensor:
        last = past_length + input_ids.shape[1]
        if last > self.config.n_positions:
            raise ValueError(
                f"GPT-2 decoder: position {last} exceeds n_positions ({self.config.n_positions})"
            )
        positions = self.transformer.wpe.weight[past_length:last]
        return self.transformer.drop(self.transformer.wte(input_ids) + positions)

    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.transformer.ln_f(x)

    def lm_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.lm_head(x)

    def rename_checkpoint_keys(self, state_dict: dict[str, torch.Tensor]) -> dict:
        """Accept ``GPT2Model`` checkpoints (no ``transformer.`` prefix); drop mask buffers."""
        renamed = {}
        for key, tensor in state_dict.items():
            *_, owner, name = key.split(".")
            if owner in ("attn", "crossattention") and name in ("bias", "masked_bias"):
                continue  # causal-mask buffers of old checkpoints: constants, not weights
            if not key.startswith(("transformer.", "lm_head.")):
                key = "transformer." + key
            renamed[key] = tensor
        return renamed
