"""Attention of the text decoders: causal self-attention and attention over the memory.

A decoder attention module is called as ``attention(x, memory, mask, cache)``: without
``memory`` it is causal self-attention over ``x`` (and the cached past), with it attention over
the memory (the encoder frames), ``mask`` hiding padded frames. The two functions below hold
the one choice every attention module makes: attend directly (no cache: training, scoring) or
through the cache (decoding), whose kind (plain or beam) then decides how the past is kept.
Attention modules also answer ``maps(x, memory, mask)``: the softmax probabilities of an
uncached call, which :func:`record_attention_maps` collects for ``output_attentions``.

Example:
    >>> attention = Attention(width=16, num_heads=2)
    >>> x, memory = torch.randn(2, 3, 16), torch.randn(2, 7, 16)
    >>> attention(x).shape, attention(x, memory).shape
    (torch.Size([2, 3, 16]), torch.Size([2, 3, 16]))
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from speechlobes.nnet.attention import attend, attention_weights, merge_heads, split_heads

KeysValues = tuple[torch.Tensor, torch.Tensor]


def attend_self(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    cache: Any,
    dropout: float,
    scale: float | None = None,
) -> torch.Tensor:
    """Causal attention of (rows, heads, steps, head_dim) queries, through ``cache`` if any."""
    if cache is None:
        return attend(query, key, value, causal=True, dropout=dropout, scale=scale)
    return cache.attend_self(module, query, key, value, dropout, scale)


def attend_memory(
    module: nn.Module,
    query: torch.Tensor,
    memory: torch.Tensor,
    mask: torch.Tensor | None,
    cache: Any,
    project: Callable[[torch.Tensor], KeysValues],
    dropout: float,
    scale: float | None = None,
) -> torch.Tensor:
    """Attention of the queries on the memory (``project(memory) -> keys, values``), through
    ``cache`` if any (which then projects the memory once)."""
    if cache is None:
        key, value = project(memory)
        return attend(query, key, value, bias=mask, dropout=dropout, scale=scale)
    return cache.attend_memory(module, query, project, dropout, scale)


def maps(
    query: torch.Tensor, key: torch.Tensor, self_attention: bool, mask: torch.Tensor | None, scale
) -> torch.Tensor:
    """Attention probabilities (batch, heads, steps, keys) of an uncached call."""
    return attention_weights(
        query, key, None if self_attention else mask, None, self_attention, scale
    )


@contextmanager
def record_attention_maps(
    decoder: nn.Module,
) -> Iterator[tuple[list[torch.Tensor], list[torch.Tensor]]]:
    """Collect the self- and memory-attention maps of every attention module of ``decoder``
    (modules with ``maps``) called inside the block, in call order."""
    self_maps: list[torch.Tensor] = []
    memory_maps: list[torch.Tensor] = []

    def record(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        x, memory, mask, _ = (*args, *[None] * 4)[:4]
        memory = kwargs.get("memory", memory)
        mask = kwargs.get("mask", mask)
        with torch.no_grad():
            (self_maps if memory is None else memory_maps).append(module.maps(x, memory, mask))

    hooks = [
        module.register_forward_hook(record, with_kwargs=True)
        for module in decoder.modules()
        if hasattr(module, "maps")
    ]
    try:
        yield self_maps, memory_maps
    finally:
        for hook in hooks:
            hook.remove()


class Attention(nn.Module):
    """Multi-head attention with separate ``q_proj``/``k_proj``/``v_proj``/``out_proj`` (BART
    naming): causal self-attention, or attention over the memory when given one."""

    qkv_names = ("q_proj", "k_proj", "v_proj")

    def __init__(self, width: int, num_heads: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if width % num_heads:
            raise ValueError(f"width {width} is not divisible by {num_heads} attention heads")
        self.num_heads = num_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(width, width, bias=bias)
        self.k_proj = nn.Linear(width, width, bias=bias)
        self.v_proj = nn.Linear(width, width, bias=bias)
        self.out_proj = nn.Linear(width, width, bias=bias)

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        return split_heads(x, self.num_heads)

    def project_self(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """x (rows, steps, width) -> queries, keys, values (rows, heads, steps, head_dim)."""
        return self.heads(self.q_proj(x)), self.heads(self.k_proj(x)), self.heads(self.v_proj(x))

    def project_memory(self, memory: torch.Tensor) -> KeysValues:
        return self.heads(self.k_proj(memory)), self.heads(self.v_proj(memory))

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        cache: Any = None,
    ) -> torch.Tensor:
        """x: (rows, steps, width); memory: (batch, frames, width); mask: additive bias
        (batch, 1, 1, frames) or None."""
        dropout = self.dropout if self.training else 0.0
        if memory is None:
            q, k, v = self.project_self(x)
            out = attend_self(self, q, k, v, cache, dropout)
        else:
            q = self.heads(self.q_proj(x))
            out = attend_memory(self, q, memory, mask, cache, self.project_memory, dropout)
        return self.out_proj(merge_heads(out))

    def maps(self, x, memory=None, mask=None) -> torch.Tensor:
        q = self.heads(self.q_proj(x))
        k = self.heads(self.k_proj(x if memory is None else memory))
        return maps(q, k, memory is None, mask, None)
