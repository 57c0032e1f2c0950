"""What every text decoder of speechlobes shares: the layer loop, the cache, folder I/O.

The decoders (BERT-as-decoder, GPT-2, BART/MBart, our Transformer decoder) keep their own
parameter names, so that Hugging Face state-dict keys map 1:1, and they all speak the same
interface::

    decoder(input_ids, memory, memory_lens, cache=None) -> DecoderOutput
    decoder.new_cache(memory, memory_lens) -> KVCache

``memory`` is the encoder output (batch, frames, width) and ``memory_lens`` its relative
lengths. Every block is called as ``block(x, memory, mask, cache)`` (``mask``: the additive
bias hiding padded memory frames, built once per call) and returns ``x``.

Example:
    >>> from speechlobes.lobes.text_decoders.transformer import (
    ...     TransformerTextDecoder, TransformerTextDecoderConfig)
    >>> decoder = TransformerTextDecoder(TransformerTextDecoderConfig(
    ...     vocab_size=20, d_model=16, num_layers=1, num_heads=2, ffn_dim=32)).eval()
    >>> memory, ids = torch.randn(1, 7, 16), torch.tensor([[1, 5, 6]])
    >>> cache = decoder.new_cache(memory)
    >>> steps = [decoder(ids[:, t : t + 1], cache=cache).logits for t in range(3)]
    >>> torch.allclose(torch.cat(steps, 1), decoder(ids, memory).logits, atol=1e-5)
    True
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from speechlobes.lobes.config import LobeConfig
from speechlobes.lobes.pretrained import PretrainedMixin
from speechlobes.lobes.text_decoders.attention import record_attention_maps
from speechlobes.lobes.text_decoders.cache import KVCache, memory_mask


@dataclass
class TextDecoderConfig(LobeConfig):
    """What every text decoder's config has (Hugging Face names): the special token ids (each
    family sets its defaults) and the switches that make a language model a decoder."""

    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    is_decoder: bool = True
    add_cross_attention: bool = True
    tie_word_embeddings: bool = True


@dataclass
class DecoderOutput:
    """What a decoder returns. ``hidden_states[0]`` is the embedding output and the last entry
    the input of the LM head; attentions are (batch, heads, query, key) per layer."""

    logits: torch.Tensor
    cache: Any = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
    cross_attentions: tuple[torch.Tensor, ...] | None = None


class TextDecoder(PretrainedMixin, nn.Module):
    """Base of every text decoder: the layer loop, the cache and the folder I/O.

    A subclass defines ``config_class``, the ``blocks`` ModuleList (``block(x, memory, mask,
    cache) -> x``), ``embed(ids, past_length)``, ``lm_logits(x)``, ``hidden_size`` and, if it
    has one, ``final_norm(x)``. Checkpoints: cross-attention weights that a language-model
    checkpoint lacks start fresh (logged); ``checkpoint_ignore``/``checkpoint_fresh`` add the
    keys of a family's related checkpoints.
    """

    checkpoint_fresh = ("cross", "encoder_attn")
    blocks: nn.ModuleList

    def embed(self, input_ids: torch.Tensor, past_length: int) -> torch.Tensor:
        raise NotImplementedError

    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def lm_logits(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def hidden_size(self) -> int:
        raise NotImplementedError

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    def new_cache(
        self, memory: torch.Tensor | None = None, memory_lens: torch.Tensor | None = None
    ) -> KVCache:
        """The plain cache of a decoding run over ``memory`` (relative lengths
        ``memory_lens``)."""
        return KVCache(memory, memory_lens)

    def forward(
        self,
        input_ids: torch.Tensor,
        memory: torch.Tensor | None = None,
        memory_lens: torch.Tensor | None = None,
        cache: Any = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> DecoderOutput:
        """Logits for ``input_ids`` (rows, steps) that follow the cached positions.

        Without a cache: the whole sequence, causally, over ``memory`` (batch, frames, width),
        whose relative lengths ``memory_lens`` hide padded frames. With a cache: the memory it
        was made with (:meth:`new_cache`). Rows may be a multiple of the memory's batch with a
        beam cache. ``output_attentions`` records the attention maps (without a cache).
        """
        if cache is not None:
            if memory is not None and cache.memory is None:
                raise ValueError("make the cache with decoder.new_cache(memory, memory_lens)")
            if output_attentions:
                raise ValueError("attention maps are recorded without a cache (cache=None)")
            memory, mask = cache.memory, cache.mask
        else:
            mask = memory_mask(memory, memory_lens)
        x = self.embed(input_ids, 0 if cache is None else cache.length)
        if memory is not None:  # float32 encoder frames into a bfloat16 decoder, say
            memory = memory.to(x.dtype)
        states = [x]
        recorder = record_attention_maps(self) if output_attentions else nullcontext(([], []))
        with recorder as (self_maps, memory_maps):
            for block in self.blocks:
                x = block(x, memory, mask, cache)
                states.append(x)
        x = self.final_norm(x)
        states[-1] = x
        return DecoderOutput(
            logits=self.lm_logits(x),
            cache=cache,
            hidden_states=tuple(states) if output_hidden_states else None,
            attentions=tuple(self_maps) if output_attentions else None,
            cross_attentions=tuple(memory_maps) if output_attentions and memory_maps else None,
        )
