"""GPT-2 with cross-attention as a text decoder (``GPT2LMHeadModel`` with ``add_cross_attention``).

Module paths mirror Hugging Face (``transformer.wte``, ``transformer.h.N.{ln_1,attn,ln_cross_attn,
crossattention,ln_2,mlp}``, ``transformer.ln_f``, ``lm_head``). GPT-2's ``Conv1D`` stores its
weight as (in, out), the transpose of ``nn.Linear``; ``attn.c_attn`` is the fused q|k|v
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

from dataclasses import dataclass, field

import torch
from torch import nn

from speechlobes.lobes.text_decoders.base import (
    DecoderCache,
    DecoderConfigIO,
    TextDecoder,
    activation,
    cross_attention,
    init_weights,
    self_attention,
)
from speechlobes.lobes.text_decoders.packing import Linear, pack_weight, packed_linear
from speechlobes.nnet.attention import merge_heads, split_fused_heads, split_heads
from speechlobes.nnet.dropout import Dropout


@dataclass
class GPT2DecoderConfig(DecoderConfigIO):
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
    is_decoder: bool = True
    add_cross_attention: bool = True
    tie_word_embeddings: bool = True
    extra: dict = field(default_factory=dict)


class Conv1D(nn.Module):
    """GPT-2's linear layer: ``x @ weight + bias`` with weight stored (in, out)."""

    def __init__(self, out_features: int, in_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        nn.init.normal_(self.weight, std=0.02)

    packed: torch.Tensor | None = None

    def pack(self, rows: int) -> None:
        """Run on a packed copy of the weight (see ``speechlobes.lobes.text_decoders.packing``)."""
        self.packed = pack_weight(self.weight.t(), rows)

    def unpack(self) -> None:
        self.packed = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is not None and x.dtype == torch.float32:
            return packed_linear(x, self.packed, self.bias)
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).view(
            *x.shape[:-1], -1
        )


class GPT2Attention(nn.Module):
    """Self-attention (``c_attn`` = q|k|v) or cross-attention (``q_attn`` + ``c_attn`` = k|v)."""

    def __init__(self, config: GPT2DecoderConfig, layer: int, is_cross: bool):
        super().__init__()
        width = config.n_embd
        self.num_heads = config.n_head
        self.dropout = config.attn_pdrop
        self.scale = (width // config.n_head) ** -0.5 if config.scale_attn_weights else 1.0
        if config.scale_attn_by_inverse_layer_idx:
            self.scale /= layer + 1
        if is_cross:
            self.q_attn = Conv1D(width, width)
            self.c_attn = Conv1D(2 * width, width)
        else:
            self.c_attn = Conv1D(3 * width, width)
        self.c_proj = Conv1D(width, width)
        self.resid_dropout = Dropout(config.resid_pdrop)

    def attend_self(self, x, index, cache, padding, need_weights):
        q, k, v = split_fused_heads(self.c_attn(x), 3, self.num_heads)
        dropout = self.dropout if self.training else 0.0
        y, weights = self_attention(
            q, k, v, cache, index, padding, dropout, self.scale, need_weights
        )
        return self.resid_dropout(self.c_proj(merge_heads(y))), weights

    def cross_kv(self, encoder_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return split_fused_heads(self.c_attn(encoder_states), 2, self.num_heads)

    def attend_cross(self, x, kv, bias, need_weights):
        q = split_heads(self.q_attn(x), self.num_heads)
        dropout = self.dropout if self.training else 0.0
        y, weights = cross_attention(q, kv[0], kv[1], bias, dropout, self.scale, need_weights)
        return self.resid_dropout(self.c_proj(merge_heads(y))), weights


class GPT2MLP(nn.Module):
    def __init__(self, config: GPT2DecoderConfig):
        super().__init__()
        inner = config.n_inner or 4 * config.n_embd
        self.c_fc = Conv1D(inner, config.n_embd)
        self.c_proj = Conv1D(config.n_embd, inner)
        self.act = activation(config.activation_function)
        self.dropout = Dropout(config.resid_pdrop)

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

    def cross_kv(self, encoder_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.crossattention.cross_kv(encoder_states)

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
        y, weights = self.attn.attend_self(self.ln_1(x), index, cache, self_padding, need_weights)
        x = x + y
        cross_weights = None
        if cross_kv is not None:
            y, cross_weights = self.crossattention.attend_cross(
                self.ln_cross_attn(x), cross_kv, cross_bias, need_weights
            )
            x = x + y
        x = x + self.mlp(self.ln_2(x))
        return x, weights, cross_weights


class GPT2Model(nn.Module):
    def __init__(self, config: GPT2DecoderConfig):
        super().__init__()
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.drop = Dropout(config.embd_pdrop)
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
        self.lm_head = Linear(config.n_embd, config.vocab_size, bias=False)
        init_weights(self, config.initializer_range)
        for module in self.modules():
            if isinstance(module, Conv1D):
                nn.init.normal_(module.weight, std=config.initializer_range)
                nn.init.zeros_(module.bias)
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
