"""BEATs: Audio Pre-Training with Acoustic Tokenizers (Chen et al. 2022, arXiv 2212.09058).

A 16x16 patch embedding over a 128-bin Kaldi fbank, a convolutional positional embedding,
and a post-LN ("deep norm") Transformer whose attention adds a bucketed relative-position
bias gated per query. Module and parameter names follow Microsoft's original code (unilm,
folder ``beats/``), so its checkpoints (a dict with ``'cfg'`` and ``'model'``) load directly
(the positional convolution's keys ``encoder.pos_conv.0.*`` are read as the shared encoder's
``encoder.pos_conv_embed.conv.*``); numerics match it to float32 rounding.

Frames are the patches, time step major (patch ``p = 8 * t + f`` for 8 frequency bands),
``encoder_embed_dim`` wide. Padding: the speech-encoder contract (:meth:`BEATs.encode`) counts
a patch as valid iff all 16 fbank frames of its time step lie inside the utterance, so an
utterance gives the same frames alone or in any padded batch. The original grouping rule
(chunks of ``samples // frames`` samples, then of ``frames // patches`` frames), whose batched
outputs depend on the batch, is ``reference_padding=True`` (or ``padding_mask_rule="original"``
for :meth:`BEATs.extract_features`).

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
    >>> model.encode(torch.randn(2, 16000), torch.tensor([1.0, 0.6])).lengths.tolist()
    [1.0, 0.5]
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from speechlobes.lobes.beats.config import BEATsConfig
from speechlobes.lobes.beats.relative_bias import gated_relative_bias, relative_position_bias
from speechlobes.lobes.encoder import EncoderOutput, encoder_output, sample_lengths
from speechlobes.lobes.pretrained import PretrainedMixin
from speechlobes.nnet.activations import Activation, activation_fn, identity
from speechlobes.nnet.attention import attend, attention_weights, merge_heads, split_heads
from speechlobes.nnet.dropout import FastDropout
from speechlobes.nnet.init import init_weights
from speechlobes.nnet.lengths import conv_output_length, lengths_to_padding_mask
from speechlobes.nnet.positional_conv import PositionalConvEmbedding
from speechlobes.nnet.precision import parameter_dtype
from speechlobes.nnet.transformer import ConvPositionEncoder
from speechlobes.processing.features import Fbank

SAMPLE_RATE = 16000
FRAME_LENGTH = 400  # 25 ms at 16 kHz
FRAME_SHIFT = 160  # 10 ms at 16 kHz
NUM_MEL_BINS = 128
PADDING_MASK_RULES = ("geometric", "original")


def get_activation_fn(activation: str) -> Activation:
    """The activation named ``activation`` in a BEATs config (the shared table, plus the
    original's "glu", whose gate lives in :class:`GLU_Linear`, and its old "gelu_fast")."""
    if activation == "glu":
        return identity
    if activation == "gelu_fast":
        warnings.warn("activation 'gelu_fast' is now called 'gelu_accurate'", stacklevel=2)
    return activation_fn(activation)


class GLU_Linear(nn.Module):  # noqa: N801 - the original class name
    """Linear to twice ``output_dim``, then first half * activation(second half).

    ``glu_type`` is one of "sigmoid", "swish", "relu", "gelu", or "bilinear" (no activation).

    Example:
        >>> GLU_Linear(8, 4, "swish")(torch.randn(2, 3, 8)).shape
        torch.Size([2, 3, 4])
    """

    GATES = ("sigmoid", "swish", "relu", "gelu")

    def __init__(
        self, input_dim: int, output_dim: int, glu_type: str = "sigmoid", bias_in_glu: bool = True
    ) -> None:
        super().__init__()
        if glu_type != "bilinear" and glu_type not in self.GATES:
            raise ValueError(f"glu_type {glu_type!r}: use 'bilinear' or one of {self.GATES}")
        self.glu_type = glu_type
        self.output_dim = output_dim
        self.glu_act = identity if glu_type == "bilinear" else activation_fn(glu_type)
        self.linear = nn.Linear(input_dim, output_dim * 2, bias=bias_in_glu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.linear(x).split(self.output_dim, dim=-1)
        return value * self.glu_act(gate)


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


class RelativeBiasAttention(nn.Module):
    """Self-attention with an optional bucketed relative-position bias and its GRU-like gate
    (the original's ``MultiheadAttention``; parameter names unchanged).

    Runs on the shared SDPA kernel (:func:`speechlobes.nnet.attention.attend`); the (gated)
    position bias enters as an additive score bias. ``rescale_init`` drops the key bias, as in
    the original. Inputs are batch first.

    Example:
        >>> attention = RelativeBiasAttention(32, 4, has_relative_attention_bias=True,
        ...                                   num_buckets=32, max_distance=40, gru_rel_pos=True)
        >>> out, weights = attention(torch.randn(2, 10, 32))
        >>> out.shape, attention.position_bias(10).shape
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

    def position_bias(self, time: int) -> torch.Tensor | None:
        """The (ungated) relative-position bias (heads, time, time), or None without a table."""
        if not self.has_relative_attention_bias:
            return None
        return relative_position_bias(self.relative_attention_bias, time, time, self.max_distance)

    def forward(
        self,
        x: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        position_bias: torch.Tensor | None = None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: (batch, time, embed_dim); key_padding_mask: (batch, time), True = padded.

        ``position_bias`` (heads, time, time) is computed from the table when not given.
        Returns the output (batch, time, embed_dim) and the attention probabilities
        (batch, heads, time, time) if ``need_weights`` else None.
        """
        if position_bias is None:
            position_bias = self.position_bias(x.shape[1])
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
        return self.out_proj(merge_heads(out)), weights


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
        self.self_attn = RelativeBiasAttention(
            embedding_dim,
            num_attention_heads,
            dropout=attention_dropout,
            has_relative_attention_bias=has_relative_attention_bias,
            num_buckets=num_buckets,
            max_distance=max_distance,
            gru_rel_pos=gru_rel_pos,
            rescale_init=rescale_init,
        )
        self.dropout1 = FastDropout(dropout)
        self.dropout2 = FastDropout(activation_dropout)
        self.dropout3 = FastDropout(dropout)
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
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: (batch, time, embedding_dim). Returns (x, attention weights or None)."""
        if self.layer_norm_first:
            attended, weights = self.self_attn(
                self.self_attn_layer_norm(x), padding_mask, position_bias, need_weights
            )
            x = x + self.dropout1(attended)
            return x + self.feed_forward(self.final_layer_norm(x)), weights
        alpha = self.deep_norm_alpha
        attended, weights = self.self_attn(x, padding_mask, position_bias, need_weights)
        x = self.self_attn_layer_norm(alpha * x + self.dropout1(attended))
        x = self.final_layer_norm(alpha * x + self.feed_forward(x))
        return x, weights


def beats_encoder(cfg: BEATsConfig) -> ConvPositionEncoder:
    """The original's ``TransformerEncoder``: the shared convolutional-position encoder with
    BEATs layers, initialised as the original initialises it.

    One relative-position table is shared by all layers (each layer's ``self_attn`` holds the
    same module, so the state dict lists it once per layer, as the original's does).

    Example:
        >>> cfg = BEATsConfig(encoder_layers=2, encoder_embed_dim=32, encoder_ffn_embed_dim=64,
        ...                   encoder_attention_heads=4, conv_pos=8, conv_pos_groups=4)
        >>> x, hiddens, _ = beats_encoder(cfg)(torch.randn(2, 10, 32), output_hidden_states=True)
        >>> x.shape, len(hiddens)
        (torch.Size([2, 10, 32]), 3)
    """
    channels = cfg.encoder_embed_dim
    layers = [
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
    ]
    if cfg.relative_position_embedding:
        for layer in layers[1:]:
            layer.self_attn.relative_attention_bias = layers[0].self_attn.relative_attention_bias
    encoder = ConvPositionEncoder(
        PositionalConvEmbedding(channels, cfg.conv_pos, cfg.conv_pos_groups),
        layers,
        channels,
        layer_norm_first=cfg.layer_norm_first,
        dropout=cfg.dropout,
        layerdrop=cfg.encoder_layerdrop,
        gradient_scale=cfg.layer_wise_gradient_decay_ratio,
    )
    conv = encoder.pos_conv_embed.conv
    with torch.no_grad():
        direction = conv.parametrizations.weight.original1
        direction.normal_(0.0, math.sqrt(4 / (cfg.conv_pos * channels)))
        conv.parametrizations.weight.original0.copy_(direction.norm(dim=(0, 1), keepdim=True))
        nn.init.zeros_(conv.bias)
    init_weights(encoder, std=0.02)
    if cfg.deep_norm:
        beta = (8 * cfg.encoder_layers) ** -0.25
        for layer in encoder.layers:
            attention = layer.self_attn
            nn.init.xavier_normal_(attention.k_proj.weight, gain=1)
            nn.init.xavier_normal_(attention.q_proj.weight, gain=1)
            for weight in (attention.v_proj.weight, attention.out_proj.weight):
                nn.init.xavier_normal_(weight, gain=beta)
            nn.init.xavier_normal_(layer.fc1.weight, gain=beta)
            nn.init.xavier_normal_(layer.fc2.weight, gain=beta)
    return encoder


def _grouped_padding_mask(padding_mask: torch.Tensor, groups: int) -> torch.Tensor:
    """The original's reduction: drop the remainder, cut into ``groups`` equal chunks, all()."""
    batch, length = padding_mask.shape
    kept = length - length % groups
    return padding_mask[:, :kept].reshape(batch, groups, -1).all(dim=-1)


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


class BEATs(PretrainedMixin, nn.Module):
    """BEATs audio encoder, loading original unilm checkpoints.

    Args:
        ckp_path: an original checkpoint (``torch.save`` of ``{'cfg': dict, 'model': state
            dict}``); None builds a randomly initialised model.
        freeze: eval mode, no gradients (``forward`` and ``encode`` run under ``no_grad``;
            ``train()`` keeps the model in eval mode).
        output_all_hiddens: frames of every layer stacked in front, (n_layers + 1, batch,
            patches, channels), instead of the last layer's; index 0 is the input to the first
            layer, the last the encoder output. Not available with a predictor.
        cfg: a BEATsConfig or a dict of fields; with ``ckp_path``, the given fields override
            the checkpoint's (e.g. dropouts for fine-tuning).
        strict: unknown config fields and missing/unexpected checkpoint keys raise (else the
            fields are kept in ``cfg.extra`` and the keys logged).
        padding_mask_rule: "geometric" (default, batch-independent) or "original", for
            :meth:`extract_features`.

    Example:
        >>> model = BEATs(cfg={"embed_dim": 32, "encoder_layers": 1, "encoder_embed_dim": 32,
        ...                    "encoder_ffn_embed_dim": 64, "encoder_attention_heads": 4})
        >>> model(torch.randn(1, 10000))[0].shape
        torch.Size([1, 24, 32])
    """

    config_class = BEATsConfig

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
        if isinstance(cfg, BEATsConfig) and checkpoint is None:
            self.config = cfg
        else:
            values = dict(checkpoint["cfg"]) if checkpoint is not None else {}
            values.update(cfg.to_dict() if isinstance(cfg, BEATsConfig) else cfg or {})
            self.config = BEATsConfig.from_dict(values, strict=strict)
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
            self.load_checkpoint(checkpoint["model"], str(ckp_path), strict)
        if freeze:
            self.requires_grad_(False)
            self.eval()

    @property
    def cfg(self) -> BEATsConfig:
        """The config (the original's attribute name)."""
        return self.config

    @classmethod
    def from_config(cls, config: BEATsConfig, **options: Any) -> BEATs:
        """A randomly initialised, trainable BEATs (``options``: constructor arguments)."""
        return cls(cfg=config, **{"freeze": False, **options})

    def rename_checkpoint_keys(self, state_dict: dict[str, torch.Tensor]) -> dict:
        """The original's positional convolution ``encoder.pos_conv.0`` is the shared
        encoder's ``encoder.pos_conv_embed.conv``."""
        old, new = "encoder.pos_conv.0.", "encoder.pos_conv_embed.conv."
        return {
            (new + key[len(old) :] if key.startswith(old) else key): tensor
            for key, tensor in state_dict.items()
        }

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
        self.dropout_input = FastDropout(cfg.dropout_input)
        self.encoder = beats_encoder(cfg)
        if cfg.finetuned_model:
            self.predictor_dropout = FastDropout(cfg.predictor_dropout)
            self.predictor = nn.Linear(cfg.encoder_embed_dim, cfg.predictor_class)
        else:
            self.predictor = None

    def train(self, mode: bool = True) -> BEATs:
        """A frozen model stays in eval mode."""
        return super().train(mode and not self.freeze)

    @property
    def output_size(self) -> int:
        """Width of the frames (patches)."""
        return self.cfg.encoder_embed_dim

    @property
    def min_samples(self) -> int:
        """The shortest input that yields one patch of frames."""
        return FRAME_LENGTH + (self.cfg.input_patch_size - 1) * FRAME_SHIFT

    def freeze_feature_encoder(self) -> None:
        """Stop gradients into the patch embedding (BEATs' feature encoder)."""
        self.patch_embedding.requires_grad_(False)

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
        rule: str,
    ) -> torch.Tensor:
        """(batch,) absolute lengths -> (batch, patches) mask, True = padded, by ``rule``.

        ``fbank``: (batch, frames, bins); ``patches``: the patch embedding's (batch, channels,
        time_steps, bands) output.
        """
        if rule == "original":
            samples = lengths_to_padding_mask(wav_lengths, num_samples)
            frames = self.forward_padding_mask(fbank, samples)
            return _grouped_padding_mask(frames, patches.shape[2] * patches.shape[3])
        valid_frames = conv_output_length(wav_lengths, FRAME_LENGTH, FRAME_SHIFT)
        valid_steps = torch.div(valid_frames, self.cfg.input_patch_size, rounding_mode="floor")
        step_mask = lengths_to_padding_mask(valid_steps, patches.shape[2])
        return step_mask.repeat_interleave(patches.shape[3], dim=1)

    def encode_fbank(
        self,
        fbank: torch.Tensor,
        wav_lengths: torch.Tensor | None = None,
        num_samples: int | None = None,
        rule: str = "geometric",
    ) -> tuple[torch.Tensor, torch.Tensor | None, tuple[torch.Tensor, ...] | None]:
        """Normalised fbank (batch, frames, 128) -> (encoder output, patch mask, hiddens).

        ``wav_lengths`` (absolute, in samples) and ``num_samples`` (the padded length) give the
        padding mask (by ``rule``); without them no position is masked. The hidden states are
        None unless ``output_all_hiddens``.
        """
        # The fbank is float32 (see Fbank); the model may be bfloat16 or float16.
        fbank = fbank.to(parameter_dtype(self.patch_embedding))
        patches = self.patch_embedding(fbank.unsqueeze(1))  # (batch, embed, time_steps, bands)
        features = self.layer_norm(patches.flatten(2).transpose(1, 2))  # patch p = 8 * t + f
        padding_mask = None
        if wav_lengths is not None:
            padding_mask = self.patch_padding_mask(wav_lengths, num_samples, fbank, patches, rule)
        if self.post_extract_proj is not None:
            features = self.post_extract_proj(features)
        position = self.encoder.layers[0].self_attn.position_bias(features.shape[1])
        x, hiddens, _ = self.encoder(
            self.dropout_input(features),
            padding_mask,
            position,
            output_hidden_states=self.output_all_hiddens,
        )
        return x, padding_mask, hiddens

    def _check_lengths(self, wav: torch.Tensor, wav_lengths: torch.Tensor | None) -> None:
        if wav.dim() != 2:
            raise ValueError(
                f"BEATs expects a (batch, samples) waveform, got shape {tuple(wav.shape)}"
            )
        if torch.compiler.is_compiling():  # the lengths' values would split the graph
            return
        lengths = wav_lengths if wav_lengths is not None else torch.tensor([wav.shape[-1]])
        short = (lengths < self.min_samples).nonzero().flatten().tolist()
        if short:
            raise ValueError(
                f"BEATs needs at least {self.min_samples} samples "
                f"({self.min_samples / SAMPLE_RATE} s at 16 kHz, "
                f"one {self.cfg.input_patch_size}-frame patch); batch items {short} "
                f"have lengths {lengths[short].tolist()}: pad or drop them"
            )

    def _run(
        self,
        wav: torch.Tensor,
        wav_lens: torch.Tensor | None,
        rule: str,
        fbank_mean: float = 15.41663,
        fbank_std: float = 6.55582,
    ) -> tuple[torch.Tensor, torch.Tensor | None, tuple[torch.Tensor, ...] | None]:
        wav_lengths = sample_lengths(wav, wav_lens)
        self._check_lengths(wav, wav_lengths)
        fbank = self.preprocess(wav, fbank_mean, fbank_std)
        return self.encode_fbank(fbank, wav_lengths, wav.shape[-1], rule)

    def encode(
        self,
        wavs: torch.Tensor,
        wav_lens: torch.Tensor | None = None,
        reference_padding: bool = False,
    ) -> EncoderOutput:
        """The speech-encoder contract (:mod:`speechlobes.lobes.encoder`): (batch, samples) at
        16 kHz and relative lengths -> patches (batch, patches, ``output_size``) and their
        relative lengths; ``reference_padding`` applies the original's mask rule."""
        rule = "original" if reference_padding else "geometric"
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            x, padding_mask, hiddens = self._run(wavs, wav_lens, rule)
        frames = torch.stack(hiddens) if self.output_all_hiddens else x
        return encoder_output(frames, None if padding_mask is None else (~padding_mask).sum(1))

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
        x, padding_mask, hiddens = self._run(
            wav, wav_lens, self.padding_mask_rule, fbank_mean, fbank_std
        )
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
