"""Building blocks of the Wav2Vec2 family, innermost first.

Attribute names follow the Hugging Face checkpoints so state-dict keys map one to one
(``conv_layers.0.conv.weight``, ``layers.0.attention.q_proj.weight``, ...). Shapes:
``x: (batch, time, hidden)`` unless said otherwise; ``padding_mask: (batch, time)``, True = padded;
``lengths``: (batch,) integer counts of valid samples or frames.

Padded batches: with ``lengths`` (the speech-encoder contract) the group norm of the feature
encoder takes its statistics over each utterance's own frames, and the conformer's depthwise
convolution and the adapter see zeros past each utterance's end, as in its single run; without
them (the transformers-compatible forward) both span the padded row, as transformers does.

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

import math

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
from speechlobes.nnet.activations import activation_fn
from speechlobes.nnet.attention import attend, attention_weights, merge_heads, split_heads
from speechlobes.nnet.dropout import FastDropout, fast_dropout
from speechlobes.nnet.lengths import conv_output_length, lengths_to_padding_mask
from speechlobes.nnet.positional_conv import PositionalConvEmbedding
from speechlobes.nnet.precision import parameter_dtype
from speechlobes.nnet.strided_conv import conv1d_rows
from speechlobes.nnet.transformer import ConvPositionEncoder, LayerStack, zero_padding

# ----------------------------------------------------------------------------- feature encoder


def conv_stack_lengths(config: Wav2Vec2Config, input_lengths: torch.Tensor | int):
    """Frames the conv feature encoder produces from ``input_lengths`` samples."""
    for kernel, stride in zip(config.conv_kernel, config.conv_stride, strict=True):
        input_lengths = conv_output_length(input_lengths, kernel, stride)
    return input_lengths


def channel_moments(
    frames: torch.Tensor, lengths: torch.Tensor, chunk: int = 2048
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-item, per-channel mean and biased variance of time-major ``frames`` (batch, slots,
    channels) over each item's first ``lengths`` slots (at least one), in float32: (batch,
    channels) each.

    Sums are masked products over ``chunk`` rows at a time (a whole-size temporary, or
    ``torch.var_mean`` over the time axis, is several times slower on CPU), with no
    data-dependent slicing, so that ``torch.compile`` captures them in one graph.
    """
    batch, slots, _ = frames.shape
    counts = lengths.clamp(1, slots)  # an item without a frame takes its first slot
    positions = torch.arange(slots, device=frames.device)
    weights = (positions < counts[:, None]).float()[:, None, :]  # (batch, 1, slots)
    step = max(1, chunk // batch)
    parts = list(zip(frames.split(step, dim=1), weights.split(step, dim=2), strict=True))
    count = counts.float()[:, None]
    mean = sum(torch.bmm(weight, part.float()) for part, weight in parts)[:, 0] / count
    squares = sum(
        torch.bmm(weight, (part.float() - mean[:, None]).square_()) for part, weight in parts
    )
    return mean, squares[:, 0] / count


def group_norm_over_time(
    x: torch.Tensor, lengths: torch.Tensor, norm: nn.GroupNorm
) -> torch.Tensor:
    """``norm`` (one group per channel) on time-major ``x`` (batch, slots, channels), each item's
    statistics over its first ``lengths`` slots only (in float32); every slot is normalised."""
    mean, variance = channel_moments(x, lengths)
    scale = torch.rsqrt(variance[:, None, :] + norm.eps) * norm.weight.float()
    shift = norm.bias.float() - mean[:, None, :] * scale
    return torch.addcmul(shift.to(x.dtype), x, scale.to(x.dtype))


class FeatureConvLayer(nn.Module):
    """Conv1d (no padding) -> optional norm (GroupNorm per channel, or LayerNorm over channels)
    -> activation, on time-major x: (batch, slots, channels) -> (batch, slots // stride, out).

    The convolution runs as matrix products (:func:`conv1d_rows`); ``self.conv`` holds the
    checkpoint's weights. Only each item's first frames are real (see :class:`FeatureEncoder`).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        kernel: int,
        stride: int,
        bias: bool,
        norm: str | None,
        activation: str,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_dim, out_dim, kernel, stride=stride, bias=bias)
        self.norm = norm
        if norm == "group":
            self.layer_norm = nn.GroupNorm(out_dim, out_dim, affine=True)
        elif norm == "layer":
            self.layer_norm = nn.LayerNorm(out_dim)
        self.activation = activation_fn(activation)

    def output_length(self, lengths: torch.Tensor | int) -> torch.Tensor | int:
        return conv_output_length(lengths, self.conv.kernel_size[0], self.conv.stride[0])

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``lengths``: real input frames per item; the group norm's statistics see only them."""
        batch, slots, channels = x.shape
        stride = self.conv.stride[0]
        rows = conv1d_rows(
            x.reshape(batch * slots, channels), self.conv.weight, self.conv.bias, stride
        )
        x = rows.view(batch, slots // stride, -1)
        if self.norm == "group":
            x = group_norm_over_time(x, self.output_length(lengths), self.layer_norm)
        elif self.norm == "layer":
            x = self.layer_norm(x)
        return self.activation(x)


class FeatureEncoder(nn.Module):
    """The strided conv stack: waveform (batch, samples) -> (batch, conv_dim[-1], frames).

    ``feat_extract_norm='group'``: only the first layer has a GroupNorm; ``'layer'``: every
    layer has a LayerNorm (eps 1e-5), which looks at one frame at a time.

    The layers work time-major on a waveform zero-padded to a multiple of the total stride, so
    every layer's rows divide evenly by its stride; the result is the real frames, returned as
    a (batch, channels, frames) view of that time-major buffer.
    """

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__()
        dims = [1, *config.conv_dim]
        layers = []
        for i, (kernel, stride) in enumerate(
            zip(config.conv_kernel, config.conv_stride, strict=True)
        ):
            group_or_layer = config.feat_extract_norm == "layer" or i == 0
            norm = config.feat_extract_norm if group_or_layer else None
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
        self.config = config
        self.gradient_checkpointing = False

    @property
    def receptive_field(self) -> int:
        """Samples behind one output frame."""
        span = 1
        for kernel, stride in zip(
            self.config.conv_kernel[::-1], self.config.conv_stride[::-1], strict=True
        ):
            span = (span - 1) * stride + kernel
        return span

    def forward(
        self, input_values: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``lengths``: valid samples per row (the group norm then counts only them; without
        them it counts the whole padded row). The waveform is cast to the layers' dtype
        (float32 input to a bfloat16 model is fine)."""
        batch, samples = input_values.shape
        frames = conv_stack_lengths(self.config, samples)
        if frames < 1:
            raise ValueError(
                f"the waveform has {samples} samples, fewer than the feature encoder's "
                f"receptive field ({self.receptive_field} samples)"
            )
        if lengths is None:
            lengths = torch.full((batch,), samples, device=input_values.device)
        total_stride = math.prod(self.config.conv_stride)
        slots = -(-samples // total_stride) * total_stride
        x = F.pad(input_values.to(parameter_dtype(self)), (0, slots - samples))[..., None]
        for layer in self.conv_layers:
            if self.gradient_checkpointing and self.training and x.requires_grad:
                x = checkpoint(layer, x, lengths, use_reentrant=False)
            else:
                x = layer(x, lengths)
            lengths = layer.output_length(lengths)
        return x[:, :frames].transpose(1, 2)


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
        self.dropout = FastDropout(config.feat_proj_dropout)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        normed = self.layer_norm(features) if self.layer_norm is not None else features
        return self.dropout(self.projection(normed)), normed


# ----------------------------------------------------------------------------- transformer


def positional_conv_embedding(config: Wav2Vec2Config) -> PositionalConvEmbedding:
    """The family's positional convolution (HuBERT may put a BatchNorm in front of it)."""
    return PositionalConvEmbedding(
        config.hidden_size,
        config.num_conv_pos_embeddings,
        config.num_conv_pos_embedding_groups,
        config.feat_extract_activation,
        batch_norm=config.conv_pos_batch_norm,
    )


def attention_with_weights(q, k, v, bias, padding_mask, dropout: float, output_attentions: bool):
    """``attend``, or the explicit softmax when the caller wants the attention maps."""
    if not output_attentions:
        return attend(q, k, v, bias=bias, key_padding_mask=padding_mask, dropout=dropout), None
    weights = attention_weights(q, k, bias=bias, key_padding_mask=padding_mask)
    return torch.matmul(fast_dropout(weights, dropout), v), weights


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
        dropout = self.dropout if self.training else 0.0
        out, weights = attention_with_weights(
            q, k, v, None, padding_mask, dropout, output_attentions
        )
        return self.out_proj(merge_heads(out)), weights


class FeedForward(nn.Module):
    """Linear -> activation -> dropout -> Linear -> dropout."""

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__()
        self.intermediate_dropout = FastDropout(config.activation_dropout)
        self.intermediate_dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = activation_fn(config.hidden_act)
        self.output_dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.output_dropout = FastDropout(config.hidden_dropout)

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
        self.dropout = FastDropout(config.hidden_dropout)
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


def transformer_encoder(config: Wav2Vec2Config) -> ConvPositionEncoder:
    """The Wav2Vec2 / HuBERT encoder: positional conv, then post-LN layers (base layout) or
    pre-LN layers and a final LayerNorm (``do_stable_layer_norm``)."""
    return ConvPositionEncoder(
        positional_conv_embedding(config),
        (TransformerLayer(config) for _ in range(config.num_hidden_layers)),
        config.hidden_size,
        layer_norm_first=config.do_stable_layer_norm,
        dropout=config.hidden_dropout,
        layerdrop=config.layerdrop,
        layer_norm_eps=config.layer_norm_eps,
    )


# ----------------------------------------------------------------------------- conformer


class ConformerConvModule(nn.Module):
    """LN -> pointwise conv (H -> 2H) -> GLU -> depthwise conv -> BatchNorm -> act -> pointwise.

    Pointwise convs are computed as matrix products in (batch, time, channels). Given a
    ``padding_mask``, padded frames are zeroed before the depthwise convolution, so valid frames
    near the end see what their single run sees (transformers lets the padding leak in).
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
        self.activation = activation_fn(config.hidden_act)
        self.pointwise_conv2 = nn.Conv1d(hidden, hidden, 1, bias=False)
        self.dropout = FastDropout(config.conformer_conv_dropout)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = F.linear(self.layer_norm(x), self.pointwise_conv1.weight[..., 0])
        x = zero_padding(F.glu(x, dim=-1), padding_mask).transpose(1, 2)
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
        out, weights = attention_with_weights(
            q, k, v, bias, padding_mask, dropout, output_attentions
        )
        return self.linear_out(merge_heads(out)), weights


class ConformerLayer(nn.Module):
    """Macaron block: half FFN, MHSA, conv module, half FFN, final LayerNorm (all LN eps 1e-5).

    ``exact_padding``: the convolution module sees zeros past each utterance's end (see
    :class:`ConformerConvModule`).
    """

    def __init__(self, config: Wav2Vec2Config) -> None:
        super().__init__()
        hidden = config.hidden_size
        self.ffn1_layer_norm = nn.LayerNorm(hidden)
        self.ffn1 = FeedForward(config)
        self.self_attn_layer_norm = nn.LayerNorm(hidden)
        self.self_attn_dropout = FastDropout(config.attention_dropout)
        self.self_attn = ConformerSelfAttention(config)
        self.conv_module = ConformerConvModule(config)
        self.ffn2_layer_norm = nn.LayerNorm(hidden)
        self.ffn2 = FeedForward(config)
        self.final_layer_norm = nn.LayerNorm(hidden)

    def forward(
        self, x, padding_mask=None, position=None, output_attentions=False, exact_padding=False
    ):
        x = x + 0.5 * self.ffn1(self.ffn1_layer_norm(x))
        attn, weights = self.self_attn(
            self.self_attn_layer_norm(x), padding_mask, position, output_attentions
        )
        x = x + self.self_attn_dropout(attn)
        x = x + self.conv_module(x, padding_mask if exact_padding else None)
        x = x + 0.5 * self.ffn2(self.ffn2_layer_norm(x))
        return self.final_layer_norm(x), weights


class ConformerEncoder(LayerStack):
    """Zero padded frames -> conformer layers -> ``layer_norm``.

    ``pos_conv_embed`` exists because checkpoints store it, but the conformer never uses it;
    it is frozen so optimizers and DDP do not wait for gradients that never come (pass
    ``pos_conv_embed=False`` for a stack trained from scratch, which has no checkpoint to match).
    """

    def __init__(self, config: Wav2Vec2Config, pos_conv_embed: bool = True) -> None:
        super().__init__(
            (ConformerLayer(config) for _ in range(config.num_hidden_layers)), config.layerdrop
        )
        self.position_type = config.position_embeddings_type
        if self.position_type == "rotary":
            self.embed_positions = RotaryEmbedding(
                config.hidden_size // config.num_attention_heads, config.rotary_embedding_base
            )
        if pos_conv_embed:
            self.pos_conv_embed = positional_conv_embedding(config).requires_grad_(False)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = FastDropout(config.hidden_dropout)

    def forward(
        self,
        x,
        padding_mask=None,
        output_hidden_states=False,
        output_attentions=False,
        exact_padding=False,
    ):
        """``exact_padding``: each padded item gets the frames of its single run."""
        x = self.dropout(zero_padding(x, padding_mask))
        position = None
        if self.position_type == "relative":
            position = relative_sinusoids(x.shape[1], x.shape[2], x.dtype, x.device)
        elif self.position_type == "rotary":
            position = self.embed_positions(x.shape[1])
        return self.run_layers(
            x,
            padding_mask,
            position,
            self.layer_norm,
            output_hidden_states,
            output_attentions,
            exact_padding=exact_padding,
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

    def output_length(self, lengths: torch.Tensor) -> torch.Tensor:
        return conv_output_length(lengths, self.conv.kernel_size[0], self.conv.stride[0], 1)

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

    def forward(
        self, x: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Returns the frames and, given the valid ``lengths`` of ``x``, theirs; frames past
        each row's end are zeroed before every convolution, as in the row's single run."""
        if self.proj is not None:
            x = self.proj_layer_norm(self.proj(x))
        for layer in self.layers:
            if self.training and torch.rand([]) <= self.layerdrop:
                continue
            if lengths is not None:
                x = zero_padding(x, lengths_to_padding_mask(lengths, x.shape[1]))
                lengths = layer.output_length(lengths)
            x = layer(x.transpose(1, 2)).transpose(1, 2)
        return x, lengths
