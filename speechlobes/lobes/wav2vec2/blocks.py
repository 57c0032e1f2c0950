"""Building blocks of the Wav2Vec2 family, innermost first.

Attribute names follow the Hugging Face checkpoints so state-dict keys map one to one
(``conv_layers.0.conv.weight``, ``layers.0.attention.q_proj.weight``, ...). Shapes:
``x: (batch, time, hidden)`` unless said otherwise; ``padding_mask: (batch, time)``, True = padded.

Example:
    >>> import torch
    >>> from speechlobes.lobes.wav2vec2.config import Wav2Vec2Config
    >>> config = Wav2Vec2Config(hidden_size=16, num_attention_heads=2, num_hidden_layers=1,
    ...     intermediate_size=32, conv_dim=[8, 8], conv_stride=[5, 2], conv_kernel=[10, 3],
    ...     num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2)
    >>> FeatureEncoder(config)(torch.randn(2, 400)).shape     # (batch, channels, frames)
    torch.Size([2, 8, 39])
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from speechlobes.lobes.wav2vec2.config import Wav2Vec2Config
from speechlobes.lobes.wav2vec2.positional import (
    RotaryEmbedding,
    apply_rotary,
    relative_scores_to_bias,
    relative_sinusoids,
)
from speechlobes.nnet.attention import attend, attention_weights, merge_heads, split_heads
from speechlobes.nnet.dropout import Dropout, fast_dropout
from speechlobes.nnet.positional_conv import SamePad, weight_norm_conv1d

_ACTIVATIONS = {
    "gelu": nn.GELU,
    "gelu_new": partial(nn.GELU, approximate="tanh"),
    "gelu_pytorch_tanh": partial(nn.GELU, approximate="tanh"),
    "relu": nn.ReLU,
    "swish": nn.SiLU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}


def activation(name: str) -> nn.Module:
    """The activation module for a Hugging Face ``hidden_act`` name ('gelu' is the exact erf GELU)."""
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation {name!r} unknown; supported: {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]()


# ----------------------------------------------------------------------------- feature encoder


class FeatureConvLayer(nn.Module):
    """Conv1d (no padding) -> optional norm (GroupNorm per channel, or LayerNorm over channels)
    -> activation. x: (batch, channels, time)."""

    def __init__(
        self, in_dim: int, out_dim: int, kernel: int, stride: int, bias: bool, norm: str | None, act
    ) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_dim, out_dim, kernel, stride=stride, bias=bias)
        self.norm = norm
        if norm == "group":
            self.layer_norm = nn.GroupNorm(out_dim, out_dim, affine=True)
        elif norm == "layer":
            self.layer_norm = nn.LayerNorm(out_dim)
        self.activation = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.norm == "group":
            x = self.layer_norm(x)
        elif self.norm == "layer":
            x = self.layer_norm(x.transpose(1, 2)).transpose(1, 2)
        return self.activation(x)


class FeatureEncoder(nn.Module):
    """The strided conv stack: waveform (batch, samples) -> (batch, conv_dim[-1], frames).

    ``feat_extract_norm='group'``: only the first layer has a GroupNorm (whose statistics span
    the whole padded time axis); ``'layer'``: every layer has a LayerNorm (eps 1e-5).
    """

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__()
        dims = [1, *config.conv_dim]
        layers = []
        for i, (kernel, stride) in enumerate(
            zip(config.conv_kernel, config.conv_stride, strict=True)
        ):
            norm = (
                config.feat_extract_norm
                if (config.feat_extract_norm == "layer" or i == 0)
                else None
            )
            layers.append(
                FeatureConvLayer(
                    dims[i],
                    dims[i + 1],
                    kernel,
                    stride,
                    config.conv_bias,
                    norm,
                    config.feat_extract_activation,
                )
            )
        self.conv_layers = nn.ModuleList(layers)
        self.gradient_checkpointing = False

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        x = input_values[:, None, :]
        for layer in self.conv_layers:
            if self.gradient_checkpointing and self.training and x.requires_grad:
                x = checkpoint(layer, x, use_reentrant=False)
            else:
                x = layer(x)
        return x


class FeatureProjection(nn.Module):
    """LayerNorm (eps ``layer_norm_eps``; optional for HuBERT) -> Linear -> dropout.

    Returns (projected, normalised features) - the latter is ``extract_features``.
    """

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__()
        has_norm = config.model_type != "hubert" or config.feat_proj_layer_norm
        self.layer_norm = (
            nn.LayerNorm(config.conv_dim[-1], eps=config.layer_norm_eps) if has_norm else None
        )
        self.projection = nn.Linear(config.conv_dim[-1], config.hidden_size)
        self.dropout = Dropout(config.feat_proj_dropout)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        normed = self.layer_norm(features) if self.layer_norm is not None else features
        return self.dropout(self.projection(normed)), normed


# ----------------------------------------------------------------------------- transformer


class PositionalConvEmbedding(nn.Module):
    """Grouped, weight-normalised Conv1d over time -> SamePad -> activation (added by the caller).

    HuBERT's ``conv_pos_batch_norm`` variant: BatchNorm1d on the input and a plain conv weight.
    """

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__()
        hidden, kernel = config.hidden_size, config.num_conv_pos_embeddings
        groups = config.num_conv_pos_embedding_groups
        if config.conv_pos_batch_norm:
            self.batch_norm = nn.BatchNorm1d(hidden)
            self.conv = nn.Conv1d(hidden, hidden, kernel, padding=kernel // 2, groups=groups)
        else:
            self.batch_norm = None
            self.conv = weight_norm_conv1d(hidden, kernel, groups)
        self.padding = SamePad(kernel)
        self.activation = activation(config.feat_extract_activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)
        if self.batch_norm is not None:
            x = self.batch_norm(x)
        return self.activation(self.padding(self.conv(x))).transpose(1, 2)


class SelfAttention(nn.Module):
    """Multi-head self-attention with separate q/k/v/out projections (bias), via ``attend``."""

    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = heads
        self.dropout = dropout
        self.k_proj = nn.Linear(hidden, hidden)
        self.v_proj = nn.Linear(hidden, hidden)
        self.q_proj = nn.Linear(hidden, hidden)
        self.out_proj = nn.Linear(hidden, hidden)

    def forward(
        self, x: torch.Tensor, padding_mask: torch.Tensor | None, output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        q, k, v = (
            split_heads(proj(x), self.num_heads) for proj in (self.q_proj, self.k_proj, self.v_proj)
        )
        out, weights = _attention(
            q, k, v, None, padding_mask, self.dropout if self.training else 0.0, output_attentions
        )
        return self.out_proj(merge_heads(out)), weights


def _attention(q, k, v, bias, padding_mask, dropout: float, output_attentions: bool):
    """``attend``, or the explicit softmax when the caller wants the attention maps."""
    if not output_attentions:
        return attend(q, k, v, bias=bias, key_padding_mask=padding_mask, dropout=dropout), None
    weights = attention_weights(q, k, bias=bias, key_padding_mask=padding_mask)
    return torch.matmul(fast_dropout(weights, dropout), v), weights


class FeedForward(nn.Module):
    """Linear -> activation -> dropout -> Linear -> dropout."""

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__()
        self.intermediate_dropout = Dropout(config.activation_dropout)
        self.intermediate_dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = activation(config.hidden_act)
        self.output_dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.output_dropout = Dropout(config.hidden_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.intermediate_dropout(self.intermediate_act_fn(self.intermediate_dense(x)))
        return self.output_dropout(self.output_dense(x))


class TransformerLayer(nn.Module):
    """Post-LN (``stable=False``: ``LN(x + f(x))``) or pre-LN (``x + f(LN(x))``) block."""

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__()
        self.stable = config.do_stable_layer_norm
        self.attention = SelfAttention(
            config.hidden_size, config.num_attention_heads, config.attention_dropout
        )
        self.dropout = Dropout(config.hidden_dropout)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = FeedForward(config)
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x, padding_mask=None, position=None, output_attentions=False):
        if self.stable:
            attn, weights = self.attention(self.layer_norm(x), padding_mask, output_attentions)
            x = x + self.dropout(attn)
            return x + self.feed_forward(self.final_layer_norm(x)), weights
        attn, weights = self.attention(x, padding_mask, output_attentions)
        x = self.layer_norm(x + self.dropout(attn))
        return self.final_layer_norm(x + self.feed_forward(x)), weights


class _LayerStack(nn.Module):
    """Runs ``self.layers`` with layerdrop, gradient checkpointing and output collection.

    ``hidden_states`` follow transformers 4.x: entry 0 is the input of the first layer, entry i
    the output of layer i, and the LAST entry is the encoder's final output (after
    ``final_norm`` when the layout has one).
    """

    def run_layers(
        self, x, padding_mask, position, final_norm, output_hidden_states, output_attentions
    ):
        hiddens, attentions = [], []
        for layer in self.layers:
            if output_hidden_states:
                hiddens.append(x)
            if self.training and self.layerdrop > 0 and torch.rand([]) < self.layerdrop:
                continue
            if self.gradient_checkpointing and self.training:
                x, weights = checkpoint(
                    layer, x, padding_mask, position, output_attentions, use_reentrant=False
                )
            else:
                x, weights = layer(x, padding_mask, position, output_attentions)
            if output_attentions:
                attentions.append(weights)
        if final_norm is not None:
            x = final_norm(x)
        if output_hidden_states:
            hiddens.append(x)
        return (
            x,
            (tuple(hiddens) if output_hidden_states else None),
            (tuple(attentions) if output_attentions else None),
        )


def _zero_padding(x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
    return x if padding_mask is None else x.masked_fill(padding_mask[..., None], 0.0)


class TransformerEncoder(_LayerStack):
    """Wav2Vec2 / HuBERT encoder: zero padded frames, add the positional conv, then the layers.

    Base layout: ``LN(x + posconv(x))`` then post-LN layers; stable layout: ``x + posconv(x)``,
    pre-LN layers, and ``layer_norm`` after the last layer.
    """

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__()
        self.stable = config.do_stable_layer_norm
        self.pos_conv_embed = PositionalConvEmbedding(config)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout)
        self.layers = nn.ModuleList(
            TransformerLayer(config) for _ in range(config.num_hidden_layers)
        )
        self.layerdrop = config.layerdrop
        self.gradient_checkpointing = False

    def forward(self, x, padding_mask=None, output_hidden_states=False, output_attentions=False):
        x = _zero_padding(x, padding_mask)
        x = x + self.pos_conv_embed(x)
        if not self.stable:
            x = self.layer_norm(x)
        x = self.dropout(x)
        final_norm = self.layer_norm if self.stable else None
        return self.run_layers(
            x, padding_mask, None, final_norm, output_hidden_states, output_attentions
        )


# ----------------------------------------------------------------------------- conformer


class ConformerConvModule(nn.Module):
    """LN -> pointwise conv (H -> 2H) -> GLU -> depthwise conv -> BatchNorm -> act -> pointwise.

    Not masked: padded frames leak into valid ones through the depthwise conv, as in the
    reference. Pointwise convs are computed as matrix products in (batch, time, channels).
    """

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__()
        hidden, kernel = config.hidden_size, config.conv_depthwise_kernel_size
        if kernel % 2 == 0:
            raise ValueError(f"conv_depthwise_kernel_size {kernel} must be odd")
        self.layer_norm = nn.LayerNorm(hidden)
        self.pointwise_conv1 = nn.Conv1d(hidden, 2 * hidden, 1, bias=False)
        self.depthwise_conv = nn.Conv1d(
            hidden, hidden, kernel, padding=(kernel - 1) // 2, groups=hidden, bias=False
        )
        self.batch_norm = nn.BatchNorm1d(hidden)
        self.activation = activation(config.hidden_act)
        self.pointwise_conv2 = nn.Conv1d(hidden, hidden, 1, bias=False)
        self.dropout = Dropout(config.conformer_conv_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(self.layer_norm(x), self.pointwise_conv1.weight[..., 0])
        x = F.glu(x, dim=-1).transpose(1, 2)
        x = self.activation(self.batch_norm(self.depthwise_conv(x))).transpose(1, 2)
        return self.dropout(F.linear(x, self.pointwise_conv2.weight[..., 0]))


class ConformerSelfAttention(nn.Module):
    """MHSA with relative (Transformer-XL), rotary or no position information.

    relative: ``s_ij = ((q_i + u) . k_j + (q_i + v) . P(i - j)) / sqrt(d)`` where
    ``P = linear_pos(sinusoids)``; the second term is an additive bias for ``attend``.
    rotary: the rotation acts on the attention INPUT, before ``linear_q`` / ``linear_k``.
    """

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__()
        hidden, heads = config.hidden_size, config.num_attention_heads
        self.num_heads, self.head_size = heads, hidden // heads
        self.position_type = config.position_embeddings_type
        self.dropout = config.attention_dropout
        self.linear_q = nn.Linear(hidden, hidden)
        self.linear_k = nn.Linear(hidden, hidden)
        self.linear_v = nn.Linear(hidden, hidden)
        self.linear_out = nn.Linear(hidden, hidden)
        if self.position_type == "relative":
            self.linear_pos = nn.Linear(hidden, hidden, bias=False)
            self.pos_bias_u = nn.Parameter(torch.zeros(heads, self.head_size))
            self.pos_bias_v = nn.Parameter(torch.zeros(heads, self.head_size))

    def forward(self, x, padding_mask=None, position=None, output_attentions=False):
        """position: relative -> sinusoid table (2T-1, H); rotary -> (cos, sin); None otherwise."""
        query_input = key_input = x
        if self.position_type == "rotary":
            cos, sin = position
            query_input = key_input = merge_heads(
                apply_rotary(split_heads(x, self.num_heads), cos, sin)
            )
        q = split_heads(self.linear_q(query_input), self.num_heads)
        k = split_heads(self.linear_k(key_input), self.num_heads)
        v = split_heads(self.linear_v(x), self.num_heads)
        bias = None
        if self.position_type == "relative":
            pos = self.linear_pos(position).view(-1, self.num_heads, self.head_size).transpose(0, 1)
            scores = torch.matmul(q + self.pos_bias_v[:, None, :], pos.transpose(-1, -2))
            bias = relative_scores_to_bias(scores) * self.head_size**-0.5
            q = q + self.pos_bias_u[:, None, :]
        dropout = self.dropout if self.training else 0.0
        out, weights = _attention(q, k, v, bias, padding_mask, dropout, output_attentions)
        return self.linear_out(merge_heads(out)), weights


class ConformerLayer(nn.Module):
    """Macaron block: half FFN, MHSA, conv module, half FFN, final LayerNorm (all LN eps 1e-5)."""

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__()
        hidden = config.hidden_size
        self.ffn1_layer_norm = nn.LayerNorm(hidden)
        self.ffn1 = FeedForward(config)
        self.self_attn_layer_norm = nn.LayerNorm(hidden)
        self.self_attn_dropout = Dropout(config.attention_dropout)
        self.self_attn = ConformerSelfAttention(config)
        self.conv_module = ConformerConvModule(config)
        self.ffn2_layer_norm = nn.LayerNorm(hidden)
        self.ffn2 = FeedForward(config)
        self.final_layer_norm = nn.LayerNorm(hidden)

    def forward(self, x, padding_mask=None, position=None, output_attentions=False):
        x = x + 0.5 * self.ffn1(self.ffn1_layer_norm(x))
        attn, weights = self.self_attn(
            self.self_attn_layer_norm(x), padding_mask, position, output_attentions
        )
        x = x + self.self_attn_dropout(attn)
        x = x + self.conv_module(x)
        x = x + 0.5 * self.ffn2(self.ffn2_layer_norm(x))
        return self.final_layer_norm(x), weights


class ConformerEncoder(_LayerStack):
    """Zero padded frames -> conformer layers -> ``layer_norm``.

    ``pos_conv_embed`` exists because checkpoints store it, but the conformer never uses it;
    it is frozen so optimizers and DDP do not wait for gradients that never come.
    """

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__()
        self.position_type = config.position_embeddings_type
        if self.position_type == "rotary":
            self.embed_positions = RotaryEmbedding(
                config.hidden_size // config.num_attention_heads, config.rotary_embedding_base
            )
        self.pos_conv_embed = PositionalConvEmbedding(config).requires_grad_(False)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout)
        self.layers = nn.ModuleList(ConformerLayer(config) for _ in range(config.num_hidden_layers))
        self.layerdrop = config.layerdrop
        self.gradient_checkpointing = False

    def forward(self, x, padding_mask=None, output_hidden_states=False, output_attentions=False):
        x = self.dropout(_zero_padding(x, padding_mask))
        position = None
        if self.position_type == "relative":
            position = relative_sinusoids(x.shape[1], x.shape[2], x.dtype, x.device)
        elif self.position_type == "rotary":
            position = self.embed_positions(x.shape[1])
        return self.run_layers(
            x, padding_mask, position, self.layer_norm, output_hidden_states, output_attentions
        )


# ----------------------------------------------------------------------------- adapter


class AdapterLayer(nn.Module):
    """Strided Conv1d (padding 1) to twice the width, then GLU over channels. x: (B, C, T)."""

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__()
        width = config.output_hidden_size
        self.conv = nn.Conv1d(
            width, 2 * width, config.adapter_kernel_size, stride=config.adapter_stride, padding=1
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.glu(self.conv(x), dim=1)


class Adapter(nn.Module):
    """Optional Linear + LayerNorm to ``output_hidden_size``, then strided GLU convs (layerdrop)."""

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__()
        if config.output_hidden_size != config.hidden_size:
            self.proj = nn.Linear(config.hidden_size, config.output_hidden_size)
            self.proj_layer_norm = nn.LayerNorm(config.output_hidden_size)
        else:
            self.proj = self.proj_layer_norm = None
        self.layers = nn.ModuleList(AdapterLayer(config) for _ in range(config.num_adapter_layers))
        self.layerdrop = config.layerdrop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.proj is not None:
            x = self.proj_layer_norm(self.proj(x))
        x = x.transpose(1, 2)
        for layer in self.layers:
            if not self.training or torch.rand([]) > self.layerdrop:
                x = layer(x)
        return x.transpose(1, 2)
