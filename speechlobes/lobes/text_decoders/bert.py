"""BERT used as a text decoder (``BertLMHeadModel`` with ``is_decoder`` and cross-attention).

Module paths mirror Hugging Face's ``BertLMHeadModel`` (``bert.embeddings.*``,
``bert.encoder.layer.N.{attention,crossattention,intermediate,output}.*``, ``cls.predictions.*``),
so its checkpoints load key for key. Blocks are post-LayerNorm: ``x = LN(x + sublayer(x))`` for
causal self-attention, cross-attention and the feed-forward; the LM head is dense -> activation ->
LayerNorm -> the (tied) word-embedding matrix plus a bias.

Example:
    >>> config = BertDecoderConfig(vocab_size=20, hidden_size=16, num_hidden_layers=1,
    ...                            num_attention_heads=2, intermediate_size=32)
    >>> decoder = BertDecoder(config)
    >>> decoder(torch.tensor([[1, 5, 6]]), torch.randn(1, 7, 16)).logits.shape
    torch.Size([1, 3, 20])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from speechlobes.lobes.text_decoders.attention import KeysValues, attend_memory, attend_self, maps
from speechlobes.lobes.text_decoders.base import TextDecoder, TextDecoderConfig
from speechlobes.nnet.activations import activation_fn
from speechlobes.nnet.attention import merge_heads, split_heads
from speechlobes.nnet.dropout import FastDropout
from speechlobes.nnet.init import init_weights


@dataclass
class BertDecoderConfig(TextDecoderConfig):
    """Hugging Face ``BertConfig`` fields a BERT decoder uses (others are kept in ``extra``)."""

    model_type = "bert"

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    position_embedding_type: str = "absolute"
    pad_token_id: int | None = 0
    bos_token_id: int | None = None
    eos_token_id: int | None = None


class BertEmbeddings(nn.Module):
    """LayerNorm(word + position (from the cache length) + token type 0)."""

    def __init__(self, config: BertDecoderConfig):
        super().__init__()
        width = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, width, config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, width)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, width)
        self.LayerNorm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.dropout = FastDropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, past_length: int) -> torch.Tensor:
        steps = input_ids.shape[1]
        if past_length + steps > self.position_embeddings.num_embeddings:
            raise ValueError(
                f"BERT decoder: position {past_length + steps} exceeds max_position_embeddings "
                f"({self.position_embeddings.num_embeddings})"
            )
        positions = self.position_embeddings.weight[past_length : past_length + steps]
        x = self.word_embeddings(input_ids) + self.token_type_embeddings.weight[0] + positions
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    """Projections ``query``/``key``/``value`` and the attention (the output projection is in
    :class:`BertSelfOutput`): causal self-attention, or attention over the memory."""

    qkv_names = ("query", "key", "value")

    def __init__(self, config: BertDecoderConfig):
        super().__init__()
        width = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.dropout = config.attention_probs_dropout_prob
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width)
        self.value = nn.Linear(width, width)

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        return split_heads(x, self.num_heads)

    def project_self(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.heads(self.query(x)), self.heads(self.key(x)), self.heads(self.value(x))

    def project_memory(self, memory: torch.Tensor) -> KeysValues:
        return self.heads(self.key(memory)), self.heads(self.value(memory))

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        cache: Any = None,
    ) -> torch.Tensor:
        """x: (rows, steps, width) -> the attended values, heads merged."""
        dropout = self.dropout if self.training else 0.0
        if memory is None:
            q, k, v = self.project_self(x)
            out = attend_self(self, q, k, v, cache, dropout)
        else:
            q = self.heads(self.query(x))
            out = attend_memory(self, q, memory, mask, cache, self.project_memory, dropout)
        return merge_heads(out)

    def maps(self, x, memory=None, mask=None) -> torch.Tensor:
        q = self.heads(self.query(x))
        k = self.heads(self.key(x if memory is None else memory))
        return maps(q, k, memory is None, mask, None)


class BertSelfOutput(nn.Module):
    """``LN(x + dropout(dense(y)))`` after an attention or the feed-forward."""

    def __init__(self, config: BertDecoderConfig, inner: int):
        super().__init__()
        self.dense = nn.Linear(inner, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = FastDropout(config.hidden_dropout_prob)

    def forward(self, y: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(residual + self.dropout(self.dense(y)))


class BertAttention(nn.Module):
    """Attention and its residual block."""

    def __init__(self, config: BertDecoderConfig):
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config, config.hidden_size)

    def forward(self, x, memory=None, mask=None, cache=None) -> torch.Tensor:
        return self.output(self.self(x, memory, mask, cache), x)


class BertIntermediate(nn.Module):
    linear_then_activation = ("dense", "act")  # fused by packed_products

    def __init__(self, config: BertDecoderConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = activation_fn(config.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(x))


class BertLayer(nn.Module):
    """Post-LN block: causal self-attention, cross-attention, feed-forward."""

    def __init__(self, config: BertDecoderConfig):
        super().__init__()
        self.attention = BertAttention(config)
        if config.add_cross_attention:
            self.crossattention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertSelfOutput(config, config.intermediate_size)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        cache: Any = None,
    ) -> torch.Tensor:
        """x: (rows, steps, hidden_size); memory: (batch, frames, hidden_size)."""
        x = self.attention(x, cache=cache)
        if memory is not None:
            x = self.crossattention(x, memory, mask, cache)
        return self.output(self.intermediate(x), x)


class BertEncoder(nn.Module):
    def __init__(self, config: BertDecoderConfig):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))


class BertModel(nn.Module):
    def __init__(self, config: BertDecoderConfig):
        super().__init__()
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)


class BertPredictionHeadTransform(nn.Module):
    linear_then_activation = ("dense", "act")  # fused by packed_products

    def __init__(self, config: BertDecoderConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = activation_fn(config.hidden_act)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.act(self.dense(x)))


class BertLMPredictionHead(nn.Module):
    def __init__(self, config: BertDecoderConfig):
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.transform(x), self.decoder.weight, self.bias)


class BertOnlyMLMHead(nn.Module):
    def __init__(self, config: BertDecoderConfig):
        super().__init__()
        self.predictions = BertLMPredictionHead(config)


class BertDecoder(TextDecoder):
    """BERT as a causal decoder with cross-attention (``BertLMHeadModel`` layout)."""

    config_class = BertDecoderConfig
    architecture = "BertLMHeadModel"
    # BertForPreTraining / BertModel checkpoints carry heads and a pooler a decoder does not use;
    # a BertModel checkpoint has no LM head (it starts fresh).
    checkpoint_ignore = (
        r"^bert\.pooler\.",
        r"^bert\.embeddings\.position_ids",
        r"^cls\.seq_relationship\.",
        r"^cls\.predictions\.decoder\.bias",
    )
    checkpoint_fresh = (*TextDecoder.checkpoint_fresh, r"^cls\.")

    def __init__(self, config: BertDecoderConfig):
        super().__init__()
        if config.position_embedding_type != "absolute":
            raise ValueError(
                f"BERT decoder: position_embedding_type {config.position_embedding_type!r} is not "
                "supported (only 'absolute')"
            )
        self.config = config
        self.bert = BertModel(config)
        self.cls = BertOnlyMLMHead(config)
        init_weights(self, config.initializer_range)
        if config.tie_word_embeddings:
            self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight
            self.tied_keys = ("cls.predictions.decoder.weight",)

    @property
    def blocks(self) -> nn.ModuleList:
        return self.bert.encoder.layer

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    def embed(self, input_ids: torch.Tensor, past_length: int) -> torch.Tensor:
        return self.bert.embeddings(input_ids, past_length)

    def lm_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.cls.predictions(x)

    def rename_checkpoint_keys(self, state_dict: dict[str, torch.Tensor]) -> dict:
        """Accept BertModel checkpoints (no ``bert.`` prefix) and old ``gamma``/``beta`` names."""
        renamed = {}
        for key, tensor in state_dict.items():
            if not key.startswith(("bert.", "cls.")):
                key = "bert." + key
            if key.endswith("LayerNorm.gamma"):
                key = key[: -len("gamma")] + "weight"
            elif key.endswith("LayerNorm.beta"):
                key = key[: -len("beta")] + "bias"
            renamed[key] = tensor
        return renamed
