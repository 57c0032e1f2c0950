"""BEATs: Audio Pre-Training with Acoustic Tokenizers (Chen et al. 2022, arXiv 2212.09058).

A 16x16 patch embedding over a 128-bin Kaldi fbank, a convolutional positional embedding,
and a post-LN ("deep norm") Transformer whose attention adds a bucketed relative-position
bias gated per query. Module and parameter names follow Microsoft's original code (unilm,
folder ``beats/``), so its checkpoints (a dict with ``'cfg'`` and ``'model'``) load directly;
numerics match it to float32 rounding.

Padding: with ``wav_lens`` the patch padding mask is *geometric* by default: a patch is valid
iff all 16 fbank frames of its time step lie fully inside the utterance, so an utterance gives
the same valid outputs alone or in any padded batch. ``padding_mask_rule="original"``
reproduces the original's grouping rule (chunks of ``samples // frames`` samples, then of
``frames // patches`` frames), whose batched outputs depend on the batch.

Use from YAML (a frozen encoder plus a trainable head)::

    beats: !new:speechlobes.lobes.beats.BEATs
        ckp_path: !ref <save_folder>/BEATs_iter3_plus_AS2M.pt
        freeze: True
    head: !new:torch.nn.Linear
        in_features: 768
        out_features: !ref <n_classes>

Example:
    >>> cfg = {"embed_dim": 32, "encoder_layers": 2, "encoder_embed_dim": 32,
    ...        "encoder_ffn_embed_dim": 64, "encoder_attention_heads": 4, "conv_pos": 8,
    ...        "conv_pos_groups": 4}
    >>> model = BEATs(cfg=cfg)
    >>> features, padding_mask = model(torch.randn(2, 16000), torch.tensor([1.0, 0.6]))
    >>> features.shape, padding_mask.sum(dim=1).tolist()
    (torch.Size([2, 48, 32]), [0, 24])
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_model, save_model
from torch import nn
from torch.nn.utils import parametrize

from speechlobes.lobes.beats.relative_bias import gated_relative_bias, relative_position_bias
from speechlobes.nnet.attention import attend, attention_weights, merge_heads, split_heads
from speechlobes.nnet.dropout import Dropout, fast_dropout
from speechlobes.nnet.lengths import (
    conv_output_length,
    lengths_to_padding_mask,
    relative_to_absolute_lengths,
)
from speechlobes.nnet.positional_conv import SamePad, weight_norm_conv1d
from speechlobes.processing.features import Fbank

logger = logging.getLogger(__name__)

__all__ = [
    "BEATs",
    "BEATsConfig",
    "GLU_Linear",
    "GradMultiply",
    "MultiheadAttention",
    "SamePad",
    "Swish",
    "TransformerEncoder",
    "TransformerSentenceEncoderLayer",
    "gelu",
    "gelu_accurate",
    "get_activation_fn",
    "init_bert_params",
    "quant_noise",
]

SAMPLE_RATE = 16000
FRAME_LENGTH = 400  # 25 ms at 16 kHz
FRAME_SHIFT = 160  # 10 ms at 16 kHz
NUM_MEL_BINS = 128
PADDING_MASK_RULES = ("geometric", "original")


@dataclass
class BEATsConfig:
    """Every field of the original ``BEATsConfig``, with its defaults.

    ``input_patch_size`` defaults to 16 (the released checkpoints' value; the original's
    placeholder -1 cannot build a model). Unknown fields are an error unless ``strict=False``.

    Example:
        >>> BEATsConfig.from_dict({"encoder_layers": 4}).encoder_layers
        4
    """

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

    @classmethod
    def from_dict(cls, values: dict[str, Any], strict: bool = True) -> BEATsConfig:
        """Build from a plain dict (e.g. a checkpoint's ``'cfg'``); unknown keys raise if strict."""
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            message = f"BEATsConfig: unknown fields {unknown}; known fields are {sorted(known)}"
            if strict:
                raise ValueError(message + " (pass strict=False to ignore them)")
            logger.warning("%s; ignored", message)
        return cls(**{key: value for key, value in values.items() if key in known})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def gelu(x: torch.Tensor) -> torch.Tensor:
    """Exact (erf) GELU computed in float32, returned in the input dtype."""
    return F.gelu(x.float()).type_as(x)


def gelu_accurate(x: torch.Tensor) -> torch.Tensor:
    """The tanh approximation of GELU."""
    return F.gelu(x, approximate="tanh")


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _gelu_fast(x: torch.Tensor) -> torch.Tensor:
    warnings.warn("activation 'gelu_fast' is now called 'gelu_accurate'", stacklevel=2)
    return gelu_accurate(x)


_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu,
    "gelu": gelu,
    "gelu_fast": _gelu_fast,
    "gelu_accurate": gelu_accurate,
    "tanh": torch.tanh,
    "linear": _identity,
    "glu": _identity,  # the gating lives in GLU_Linear (fc1)
}


def get_activation_fn(activation: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The activation function called ``activation`` (see ``_ACTIVATIONS`` for the names)."""
    if activation not in _ACTIVATIONS:
        raise ValueError(
            f"activation {activation!r} not supported; use one of {list(_ACTIVATIONS)}"
        )
    return _ACTIVATIONS[activation]


class Swish(nn.Module):
    """x * sigmoid(x).

    Example:
        >>> Swish()(torch.zeros(2)).tolist()
        [0.0, 0.0]
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


class GLU_Linear(nn.Module):  # noqa: N801 - the original class name, part of the public surface
    """Linear to twice ``output_dim``, then first half * activation(second half).

    ``glu_type`` is one of "sigmoid", "swish", "relu", "gelu", or "bilinear" (no activation).

    Example:
        >>> GLU_Linear(8, 4, "swish")(torch.randn(2, 3, 8)).shape
        torch.Size([2, 3, 4])
    """

    _GATES = {"sigmoid": nn.Sigmoid, "swish": Swish, "relu": nn.ReLU, "gelu": nn.GELU}

    def __init__(
        self, input_dim: int, output_dim: int, glu_type: str = "sigmoid", bias_in_glu: bool = True
    ) -> None:
        super().__init__()
        if glu_type != "bilinear" and glu_type not in self._GATES:
            raise ValueError(f"glu_type {glu_type!r}: use 'bilinear' or one of {list(self._GATES)}")
        self.glu_type = glu_type
        self.output_dim = output_dim
        self.glu_act = nn.Identity() if glu_type == "bilinear" else self._GATES[glu_type]()
        self.linear = nn.Linear(input_dim, output_dim * 2, bias=bias_in_glu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.linear(x).split(self.output_dim, dim=-1)
        return value * self.glu_act(gate)


class GradMultiply(torch.autograd.Function):
    """Identity forward; the backward multiplies the gradient by ``scale``.

    Example:
        >>> x = torch.ones(2, requires_grad=True)
        >>> GradMultiply.apply(x, 0.5).sum().backward()
        >>> x.grad.tolist()
        [0.5, 0.5]
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.scale, None


class _BlockDropNoise(nn.Module):
    """Weight parametrization for :func:`quant_noise`: drop weight blocks while training."""

    def __init__(self, p: float, block_size: int, kind: str) -> None:
        super().__init__()
        self.p, self.block_size, self.kind = p, block_size, kind

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return weight
        rows, cols = weight.shape[:2]
        if self.kind == "kernel":  # a whole kernel per (out, in) channel pair
            mask = torch.rand(rows, cols, device=weight.device) < self.p
            mask = mask[:, :, None, None].expand_as(weight)
        else:  # blocks of `block_size` consecutive input features / channels
            mask = torch.rand(rows, cols // self.block_size, device=weight.device) < self.p
            mask = mask.repeat_interleave(self.block_size, dim=1).view_as(weight)
        return weight.masked_fill(mask, 0.0) / (1 - self.p)


def quant_noise(module: nn.Module, p: float, block_size: int) -> nn.Module:
    """Quantization noise (Fan et al. 2020): in training, drop random weight blocks.

    Supports Linear, Embedding and Conv2d. Blocks are ``block_size`` consecutive input features
    (whole kernels for Conv2d with kernels larger than 1x1); kept weights are scaled by
    ``1 / (1 - p)``. With ``p <= 0`` the module is returned untouched (the only case used by
    BEATs); otherwise the weight becomes a torch parametrization
    (``parametrizations.weight.original`` in the state dict).

    Example:
        >>> layer = quant_noise(nn.Linear(16, 4), p=0.5, block_size=8)
        >>> layer.eval()(torch.ones(1, 16)).shape
        torch.Size([1, 4])
    """
    if p <= 0:
        return module
    if not isinstance(module, nn.Linear | nn.Embedding | nn.Conv2d):
        raise TypeError(f"quant_noise supports Linear, Embedding and Conv2d, not {type(module)}")
    kind, width = "block", module.weight.shape[1]
    if isinstance(module, nn.Conv2d) and module.kernel_size != (1, 1):
        kind, width = "kernel", math.prod(module.kernel_size)
    if width % block_size:
        raise ValueError(
            f"quant_noise: {width} (input size or kernel) not a multiple of {block_size}"
        )
    parametrize.register_parametrization(module, "weight", _BlockDropNoise(p, block_size, kind))
    return module


def init_bert_params(module: nn.Module) -> None:
    """BERT initialisation: N(0, 0.02) for Linear/Embedding weights and attention projections,
    zero Linear biases, zero padding embedding. Use with ``model.apply(init_bert_params)``."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    if isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
        if module.padding_idx is not None:
            nn.init.zeros_(module.weight[module.padding_idx])
    if isinstance(module, MultiheadAttention):
        for projection in (module.q_proj, module.k_proj, module.v_proj):
            nn.init.normal_(projection.weight, std=0.02)


class MultiheadAttention(nn.Module):
    """Self-attention with an optional bucketed relative-position bias and its GRU-like gate.

    Runs on the shared SDPA kernel (:func:`speechlobes.nnet.attention.attend`); the (gated)
    position bias enters as an additive score bias. ``rescale_init`` drops the key bias, as in
    the original. Inputs are batch first.

    Example:
        >>> attention = MultiheadAttention(32, 4, has_relative_attention_bias=True,
        ...                                num_buckets=32, max_distance=40, gru_rel_pos=True)
        >>> out, weights, bias = attention(torch.randn(2, 10, 32))
        >>> out.shape, bias.shape
        (torch.Size([2, 10, 32]), torch.Size([4, 10, 10]))
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        q_noise: float = 0.0,
        qn_block_size: int = 8,
        has_relative_attention_bias: bool = False,
        num_buckets: int = 32,
        max_distance: int = 128,
        gru_rel_pos: bool = False,
        rescale_init: bool = False,
    ) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.head_dim = embed_dim // num_heads
        self.dropout = dropout
        self.has_relative_attention_bias = has_relative_attention_bias
        self.max_distance = max_distance
        self.gru_rel_pos = gru_rel_pos
        if has_relative_attention_bias:
            self.relative_attention_bias = nn.Embedding(num_buckets, num_heads)

        def projection(use_bias: bool) -> nn.Module:
            return quant_noise(
                nn.Linear(embed_dim, embed_dim, bias=use_bias), q_noise, qn_block_size
            )

        self.k_proj = projection(bias and not rescale_init)
        self.v_proj = projection(bias)
        self.q_proj = projection(bias)
        self.out_proj = projection(bias)
        if gru_rel_pos:
            self.grep_linear = nn.Linear(self.head_dim, 8)
            self.grep_a = nn.Parameter(torch.ones(1, num_heads, 1, 1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for projection in (self.k_proj, self.v_proj, self.q_proj):
            nn.init.xavier_uniform_(projection.weight, gain=1 / math.sqrt(2))
        nn.init.xavier_uniform_(self.out_proj.weight)
        if self.out_proj.bias is not None:
            nn.init.zeros_(self.out_proj.bias)
        if self.has_relative_attention_bias:
            nn.init.xavier_normal_(self.relative_attention_bias.weight)

    def forward(
        self,
        x: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        position_bias: torch.Tensor | None = None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """x: (batch, time, embed_dim); key_padding_mask: (batch, time), True = padded.

        ``position_bias`` (heads, time, time) is computed from the table when not given.
        Returns the output (batch, time, embed_dim), the attention probabilities
        (batch, heads, time, time) if ``need_weights`` else None, and the ungated position bias
        (for the next layer to reuse).
        """
        time = x.shape[1]
        if position_bias is None and self.has_relative_attention_bias:
            position_bias = relative_position_bias(
                self.relative_attention_bias, time, time, self.max_distance
            )
        query = split_heads(self.q_proj(x), self.num_heads)
        key = split_heads(self.k_proj(x), self.num_heads)
        value = split_heads(self.v_proj(x), self.num_heads)
        bias = position_bias
        if bias is not None and self.gru_rel_pos:
            bias = gated_relative_bias(query, self.grep_linear, self.grep_a, bias, key_padding_mask)
            key_padding_mask = None  # now part of the bias
        dropout = self.dropout if self.training else 0.0
        out = attend(
            query, key, value, bias=bias, key_padding_mask=key_padding_mask, dropout=dropout
        )
        weights = attention_weights(query, key, bias, key_padding_mask) if need_weights else None
        return self.out_proj(merge_heads(out)), weights, position_bias


class TransformerSentenceEncoderLayer(nn.Module):
    """Self-attention and feed-forward blocks, pre-LN (``layer_norm_first``) or post-LN.

    With ``deep_norm`` (post-LN only) both residuals are scaled by
    ``alpha = (2 * encoder_layers) ** 0.25`` before the LayerNorm.

    Example:
        >>> layer = TransformerSentenceEncoderLayer(32, 64, 4, deep_norm=True, encoder_layers=2)
        >>> layer(torch.randn(2, 10, 32))[0].shape
        torch.Size([2, 10, 32])
    """

    def __init__(
        self,
        embedding_dim: int = 768,
        ffn_embedding_dim: int = 3072,
        num_attention_heads: int = 8,
        dropout: float = 0.1,
        attention_dropout: float = 0.1,
        activation_dropout: float = 0.1,
        activation_fn: str = "relu",
        layer_norm_first: bool = False,
        deep_norm: bool = False,
        has_relative_attention_bias: bool = False,
        num_buckets: int = 0,
        max_distance: int = 0,
        rescale_init: bool = False,
        gru_rel_pos: bool = False,
        encoder_layers: int = 0,
    ) -> None:
        super().__init__()
        self.layer_norm_first = layer_norm_first
        self.deep_norm_alpha = (2 * encoder_layers) ** 0.25 if deep_norm else 1.0
        self.activation_fn = get_activation_fn(activation_fn)
        self.self_attn = MultiheadAttention(
            embedding_dim,
            num_attention_heads,
            dropout=attention_dropout,
            has_relative_attention_bias=has_relative_attention_bias,
            num_buckets=num_buckets,
            max_distance=max_distance,
            gru_rel_pos=gru_rel_pos,
            rescale_init=rescale_init,
        )
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(activation_dropout)
        self.dropout3 = Dropout(dropout)
        self.self_attn_layer_norm = nn.LayerNorm(embedding_dim)
        if activation_fn == "glu":
            self.fc1 = GLU_Linear(embedding_dim, ffn_embedding_dim, "swish")
        else:
            self.fc1 = nn.Linear(embedding_dim, ffn_embedding_dim)
        self.fc2 = nn.Linear(ffn_embedding_dim, embedding_dim)
        self.final_layer_norm = nn.LayerNorm(embedding_dim)

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.dropout2(self.activation_fn(self.fc1(x)))
        return self.dropout3(self.fc2(hidden))

    def forward(
        self,
        x: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        position_bias: torch.Tensor | None = None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """x: (batch, time, embedding_dim). Returns (x, attention weights or None, position bias)."""
        if self.layer_norm_first:
            attended, weights, position_bias = self.self_attn(
                self.self_attn_layer_norm(x), padding_mask, position_bias, need_weights
            )
            x = x + self.dropout1(attended)
            x = x + self.feed_forward(self.final_layer_norm(x))
            return x, weights, position_bias
        alpha = self.deep_norm_alpha
        attended, weights, position_bias = self.self_attn(
            x, padding_mask, position_bias, need_weights
        )
        x = self.self_attn_layer_norm(alpha * x + self.dropout1(attended))
        x = self.final_layer_norm(alpha * x + self.feed_forward(x))
        return x, weights, position_bias


class TransformerEncoder(nn.Module):
    """Convolutional positional embedding, then the stack of encoder layers.

    One relative-position table is shared by all layers (each layer's ``self_attn`` holds the
    same module, so the state dict lists it once per layer, as the original's does).

    Example:
        >>> cfg = BEATsConfig(encoder_layers=2, encoder_embed_dim=32, encoder_ffn_embed_dim=64,
        ...                   encoder_attention_heads=4, conv_pos=8, conv_pos_groups=4)
        >>> x, hiddens = TransformerEncoder(cfg)(torch.randn(2, 10, 32), output_all_hiddens=True)
        >>> x.shape, len(hiddens)
        (torch.Size([2, 10, 32]), 3)
    """

    def __init__(self, args: BEATsConfig | dict[str, Any]) -> None:
        super().__init__()
        cfg = args if isinstance(args, BEATsConfig) else BEATsConfig.from_dict(args)
        channels = cfg.encoder_embed_dim
        self.dropout = cfg.dropout
        self.pos_conv = nn.Sequential(
            weight_norm_conv1d(channels, cfg.conv_pos, cfg.conv_pos_groups),
            SamePad(cfg.conv_pos),
            nn.GELU(),
        )
        self.layers = nn.ModuleList(
            TransformerSentenceEncoderLayer(
                embedding_dim=channels,
                ffn_embedding_dim=cfg.encoder_ffn_embed_dim,
                num_attention_heads=cfg.encoder_attention_heads,
                dropout=cfg.dropout,
                attention_dropout=cfg.attention_dropout,
                activation_dropout=cfg.activation_dropout,
                activation_fn=cfg.activation_fn,
                layer_norm_first=cfg.layer_norm_first,
                deep_norm=cfg.deep_norm,
                has_relative_attention_bias=cfg.relative_position_embedding,
                num_buckets=cfg.num_buckets,
                max_distance=cfg.max_distance,
                gru_rel_pos=cfg.gru_rel_pos,
                encoder_layers=cfg.encoder_layers,
            )
            for _ in range(cfg.encoder_layers)
        )
        if cfg.relative_position_embedding:
            shared_table = self.layers[0].self_attn.relative_attention_bias
            for layer in self.layers[1:]:
                layer.self_attn.relative_attention_bias = shared_table
        self.layer_norm_first = cfg.layer_norm_first
        self.layer_norm = nn.LayerNorm(channels)
        self.layerdrop = cfg.encoder_layerdrop
        self.gradient_decay = cfg.layer_wise_gradient_decay_ratio
        self._initialise(cfg)

    def _initialise(self, cfg: BEATsConfig) -> None:
        conv = self.pos_conv[0]
        with torch.no_grad():
            direction = conv.parametrizations.weight.original1
            direction.normal_(0.0, math.sqrt(4 / (cfg.conv_pos * cfg.encoder_embed_dim)))
            conv.parametrizations.weight.original0.copy_(direction.norm(dim=(0, 1), keepdim=True))
            nn.init.zeros_(conv.bias)
        self.apply(init_bert_params)
        if cfg.deep_norm:
            beta = (8 * cfg.encoder_layers) ** -0.25
            for layer in self.layers:
                attention = layer.self_attn
                nn.init.xavier_normal_(attention.k_proj.weight, gain=1)
                nn.init.xavier_normal_(attention.q_proj.weight, gain=1)
                for weight in (attention.v_proj.weight, attention.out_proj.weight):
                    nn.init.xavier_normal_(weight, gain=beta)
                nn.init.xavier_normal_(layer.fc1.weight, gain=beta)
                nn.init.xavier_normal_(layer.fc2.weight, gain=beta)

    def forward(
        self,
        x: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        output_all_hiddens: bool = False,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x: (batch, time, channels); padding_mask: (batch, time), True = padded.

        Padded rows are zeroed before the positional convolution and masked as keys; they are
        still computed as queries. Returns the output and, with ``output_all_hiddens``, the
        input of the first layer followed by every layer's output (else an empty list).
        """
        if padding_mask is not None:
            x = x.masked_fill(padding_mask[..., None], 0.0)
        x = x + self.pos_conv(x.transpose(1, 2)).transpose(1, 2)
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        x = fast_dropout(x, self.dropout, self.training)
        hiddens = [x] if output_all_hiddens else []
        position_bias = None
        for layer in self.layers:
            if self.gradient_decay != 1.0 and x.requires_grad:
                x = GradMultiply.apply(x, self.gradient_decay)
            if not (self.training and torch.rand(()).item() < self.layerdrop):
                x, _, position_bias = layer(x, padding_mask, position_bias)
            if output_all_hiddens:
                hiddens.append(x)
        if self.layer_norm_first:
            x = self.layer_norm(x)
        return x, hiddens


def _grouped_padding_mask(padding_mask: torch.Tensor, groups: int) -> torch.Tensor:
    """The original's reduction: drop the remainder, cut into ``groups`` equal chunks, all()."""
    batch, length = padding_mask.shape
    kept = length - length % groups
    return padding_mask[:, :kept].reshape(batch, groups, -1).all(dim=-1)


def _check_loaded(result: Any, source: str, strict: bool) -> None:
    """Raise (strict) or log the missing/unexpected keys of a ``load_state_dict`` result."""
    missing, unexpected = list(result[0]), list(result[1])
    if not missing and not unexpected:
        return
    message = f"{source}: state dict does not match the BEATs model built from its config"
    if missing:
        message += f"; missing keys: {missing}"
    if unexpected:
        message += f"; unexpected keys: {unexpected}"
    if strict:
        raise ValueError(message + " (pass strict=False to load what matches)")
    logger.warning(message)


def _read_original_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"BEATs checkpoint {path} does not exist")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or not {"cfg", "model"} <= set(checkpoint):
        found = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ValueError(
            f"{path}: not an original BEATs checkpoint (expected a dict with 'cfg' and 'model', "
            f"found {found}); for our safetensors format use BEATs.from_pretrained(folder)"
        )
    return checkpoint


class BEATs(nn.Module):
    """BEATs audio encoder, loading original unilm checkpoints.

    Arguments:
        ckp_path: an original checkpoint (``torch.save`` of ``{'cfg': dict, 'model': state
            dict}``); None builds a randomly initialised model.
        freeze: eval mode, no gradients (``forward`` runs under ``no_grad``; ``train()`` keeps
            the model in eval mode).
        output_all_hiddens: return (n_layers + 1, batch, patches, channels) instead of the last
            layer; index 0 is the input to the first layer. Not available with a predictor.
        cfg: a BEATsConfig or a dict of fields; with ``ckp_path``, the given fields override
            the checkpoint's (e.g. dropouts for fine-tuning).
        strict: unknown config fields and missing/unexpected checkpoint keys raise (else log).
        padding_mask_rule: "geometric" (default, batch-independent) or "original".

    Example:
        >>> model = BEATs(cfg={"embed_dim": 32, "encoder_layers": 1, "encoder_embed_dim": 32,
        ...                    "encoder_ffn_embed_dim": 64, "encoder_attention_heads": 4})
        >>> model(torch.randn(1, 10000))[0].shape
        torch.Size([1, 24, 32])
    """

    def __init__(
        self,
        ckp_path: str | Path | None = None,
        freeze: bool = True,
        output_all_hiddens: bool = False,
        cfg: BEATsConfig | dict[str, Any] | None = None,
        strict: bool = True,
        padding_mask_rule: str = "geometric",
    ) -> None:
        super().__init__()
        if padding_mask_rule not in PADDING_MASK_RULES:
            raise ValueError(
                f"padding_mask_rule {padding_mask_rule!r}: use one of {PADDING_MASK_RULES}"
            )
        checkpoint = None if ckp_path is None else _read_original_checkpoint(ckp_path)
        values = dict(checkpoint["cfg"]) if checkpoint is not None else {}
        values.update(cfg.to_dict() if isinstance(cfg, BEATsConfig) else cfg or {})
        self.cfg = BEATsConfig.from_dict(values, strict=strict)
        if self.cfg.deep_norm and self.cfg.layer_norm_first:
            raise ValueError("BEATsConfig: deep_norm and layer_norm_first cannot both be True")
        if output_all_hiddens and self.cfg.finetuned_model:
            raise ValueError(
                "output_all_hiddens=True with a fine-tuned checkpoint (predictor head): the output "
                "is class probabilities; set cfg={'finetuned_model': False} and strict=False to "
                "use the encoder alone"
            )
        self.freeze = freeze
        self.output_all_hiddens = output_all_hiddens
        self.padding_mask_rule = padding_mask_rule
        self._build()
        if checkpoint is not None:
            _check_loaded(
                self.load_state_dict(checkpoint["model"], strict=False), str(ckp_path), strict
            )
        if freeze:
            self.requires_grad_(False)
            self.eval()

    def _build(self) -> None:
        cfg = self.cfg
        patch = cfg.input_patch_size
        self.fbank = Fbank(
            num_mel_bins=NUM_MEL_BINS,
            sample_rate=SAMPLE_RATE,
            frame_length=1000 * FRAME_LENGTH / SAMPLE_RATE,
            frame_shift=1000 * FRAME_SHIFT / SAMPLE_RATE,
            dither=0.0,
        )
        self.patch_embedding = nn.Conv2d(1, cfg.embed_dim, patch, stride=patch, bias=cfg.conv_bias)
        self.layer_norm = nn.LayerNorm(cfg.embed_dim)
        self.post_extract_proj = (
            nn.Linear(cfg.embed_dim, cfg.encoder_embed_dim)
            if cfg.embed_dim != cfg.encoder_embed_dim
            else None
        )
        self.dropout_input = Dropout(cfg.dropout_input)
        self.encoder = TransformerEncoder(cfg)
        if cfg.finetuned_model:
            self.predictor_dropout = Dropout(cfg.predictor_dropout)
            self.predictor = nn.Linear(cfg.encoder_embed_dim, cfg.predictor_class)
        else:
            self.predictor = None

    def train(self, mode: bool = True) -> BEATs:
        """A frozen model stays in eval mode."""
        return super().train(mode and not self.freeze)

    @property
    def min_samples(self) -> int:
        """The shortest input that yields one patch of frames."""
        return FRAME_LENGTH + (self.cfg.input_patch_size - 1) * FRAME_SHIFT

    def preprocess(
        self, source: torch.Tensor, fbank_mean: float = 15.41663, fbank_std: float = 6.55582
    ) -> torch.Tensor:
        """(batch, samples) waveform in [-1, 1] -> (batch, frames, 128) normalised Kaldi fbank.

        The waveform is scaled to 16-bit range first; the normalisation divides by twice the
        std, as the original does.
        """
        return (self.fbank(source * 2**15) - fbank_mean) / (2 * fbank_std)

    def forward_padding_mask(
        self, features: torch.Tensor, padding_mask: torch.Tensor
    ) -> torch.Tensor:
        """The original's mask reduction to ``features.shape[1]`` positions (see module doc)."""
        return _grouped_padding_mask(padding_mask, features.shape[1])

    def patch_padding_mask(
        self,
        wav_lengths: torch.Tensor,
        num_samples: int,
        fbank: torch.Tensor,
        patches: torch.Tensor,
    ) -> torch.Tensor:
        """(batch,) absolute lengths -> (batch, patches) mask, True = padded.

        ``fbank``: (batch, frames, bins); ``patches``: the patch embedding's (batch, channels,
        time_steps, bands) output.
        """
        if self.padding_mask_rule == "original":
            samples = lengths_to_padding_mask(wav_lengths, num_samples)
            frames = self.forward_padding_mask(fbank, samples)
            return _grouped_padding_mask(frames, patches.shape[2] * patches.shape[3])
        valid_frames = conv_output_length(wav_lengths, FRAME_LENGTH, FRAME_SHIFT)
        valid_steps = torch.div(valid_frames, self.cfg.input_patch_size, rounding_mode="floor")
        step_mask = lengths_to_padding_mask(valid_steps, patches.shape[2])
        return step_mask.repeat_interleave(patches.shape[3], dim=1)

    def encode(
        self,
        fbank: torch.Tensor,
        wav_lengths: torch.Tensor | None = None,
        num_samples: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, list[torch.Tensor]]:
        """Normalised fbank (batch, frames, 128) -> (encoder output, patch mask, hiddens).

        ``wav_lengths`` (absolute, in samples) and ``num_samples`` (the padded length) give the
        padding mask; without them no position is masked.
        """
        patches = self.patch_embedding(fbank.unsqueeze(1))  # (batch, embed, time_steps, bands)
        features = self.layer_norm(patches.flatten(2).transpose(1, 2))  # patch p = 8 * t + f
        padding_mask = None
        if wav_lengths is not None:
            padding_mask = self.patch_padding_mask(wav_lengths, num_samples, fbank, patches)
        if self.post_extract_proj is not None:
            features = self.post_extract_proj(features)
        x, hiddens = self.encoder(
            self.dropout_input(features), padding_mask, output_all_hiddens=self.output_all_hiddens
        )
        return x, padding_mask, hiddens

    def _check_lengths(self, wav: torch.Tensor, wav_lengths: torch.Tensor | None) -> None:
        if wav.dim() != 2:
            raise ValueError(
                f"BEATs expects a (batch, samples) waveform, got shape {tuple(wav.shape)}"
            )
        lengths = wav_lengths if wav_lengths is not None else torch.tensor([wav.shape[-1]])
        short = (lengths < self.min_samples).nonzero().flatten().tolist()
        if short:
            raise ValueError(
                f"BEATs needs at least {self.min_samples} samples ({self.min_samples / SAMPLE_RATE} s "
                f"at 16 kHz, one {self.cfg.input_patch_size}-frame patch); batch items {short} "
                f"have lengths {lengths[short].tolist()}: pad or drop them"
            )

    def extract_features(
        self,
        wav: torch.Tensor,
        wav_lens: torch.Tensor | None = None,
        fbank_mean: float = 15.41663,
        fbank_std: float = 6.55582,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """wav: (batch, samples) at 16 kHz; wav_lens: relative lengths (SpeechBrain style).

        Returns ``(features, padding_mask)``: features (batch, patches, channels), or
        (n_layers + 1, batch, patches, channels) with ``output_all_hiddens``, or the class
        probabilities (batch, classes) for a fine-tuned checkpoint; padding_mask (batch,
        patches), True = padded, None without ``wav_lens``.
        """
        num_samples = wav.shape[-1]
        wav_lengths = None
        if wav_lens is not None:
            wav_lengths = relative_to_absolute_lengths(wav_lens.to(wav.device), num_samples)
        self._check_lengths(wav, wav_lengths)
        fbank = self.preprocess(wav, fbank_mean, fbank_std)
        x, padding_mask, hiddens = self.encode(fbank, wav_lengths, num_samples)
        if self.predictor is not None:
            return self._class_probabilities(x, padding_mask), padding_mask
        if self.output_all_hiddens:
            x = torch.stack(hiddens)
        return x, padding_mask

    def _class_probabilities(
        self, x: torch.Tensor, padding_mask: torch.Tensor | None
    ) -> torch.Tensor:
        logits = self.predictor(self.predictor_dropout(x))
        if padding_mask is None:
            return torch.sigmoid(logits.mean(dim=1))
        valid = (~padding_mask).unsqueeze(-1).to(logits.dtype)
        return torch.sigmoid((logits * valid).sum(dim=1) / valid.sum(dim=1))

    def forward(
        self,
        wav: torch.Tensor,
        wav_lens: torch.Tensor | None = None,
        fbank_mean: float = 15.41663,
        fbank_std: float = 6.55582,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`extract_features`, under ``no_grad`` when frozen."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            return self.extract_features(wav, wav_lens, fbank_mean, fbank_std)

    def save_pretrained(self, folder: str | Path) -> None:
        """Write ``config.json`` and ``model.safetensors`` (our checkpoint format)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(self.cfg.to_dict(), indent=2))
        save_model(self, str(folder / "model.safetensors"))

    @classmethod
    def from_pretrained(cls, folder: str | Path, strict: bool = True, **kwargs: Any) -> BEATs:
        """Load a folder written by :meth:`save_pretrained`; ``kwargs`` go to the constructor."""
        folder = Path(folder)
        config_path, weights_path = folder / "config.json", folder / "model.safetensors"
        for path in (config_path, weights_path):
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path} missing: not a folder written by BEATs.save_pretrained"
                )
        model = cls(cfg=json.loads(config_path.read_text()), strict=strict, **kwargs)
        _check_loaded(load_model(model, str(weights_path), strict=False), str(weights_path), strict)
        return model
