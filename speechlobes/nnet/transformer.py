"""The Transformer encoder stack shared by BEATs, the Wav2Vec2 family and the conformers.

:class:`LayerStack` runs encoder layers in order, with layer drop, gradient checkpointing, an
optional gradient scale per layer and the hidden states collected; every layer is called as
``layer(x, padding_mask, position, output_attentions, **options) -> (x, attention weights or
None)``. :class:`ConvPositionEncoder` is the encoder of wav2vec 2.0, HuBERT and BEATs on top of
it: a convolutional positional embedding, then the layers, post-LN (LayerNorm after the
embedding) or pre-LN (LayerNorm after the last layer).

Hidden states follow transformers 4.x: entry 0 is the input of the first layer, entry i the
output of layer i, and the LAST entry is the encoder's final output (after the final
LayerNorm when the layout has one).

Example:
    >>> class Double(nn.Module):
    ...     def forward(self, x, padding_mask=None, position=None, output_attentions=False):
    ...         return 2 * x, None
    >>> stack = LayerStack([Double(), Double()])
    >>> x, hiddens, _ = stack.run_layers(torch.ones(1, 2, 3), output_hidden_states=True)
    >>> [h[0, 0, 0].item() for h in hiddens]
    [1.0, 2.0, 4.0]
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from speechlobes.nnet.dropout import FastDropout

StackOutput = tuple[
    torch.Tensor, tuple[torch.Tensor, ...] | None, tuple[torch.Tensor | None, ...] | None
]


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


def zero_padding(x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
    """x: (batch, time, channels) with the padded frames (mask True) set to zero."""
    return x if padding_mask is None else x.masked_fill(padding_mask[..., None], 0.0)


class LayerStack(nn.Module):
    """Encoder layers run in order (see the module docstring).

    Args:
        layers: the layers (kept in ``self.layers``, the checkpoints' name).
        layerdrop: probability of skipping a layer in training.
        gradient_scale: multiplies the gradient entering every layer (BEATs'
            ``layer_wise_gradient_decay_ratio``); 1.0 leaves it alone.
    """

    def __init__(
        self, layers: Iterable[nn.Module], layerdrop: float = 0.0, gradient_scale: float = 1.0
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.layerdrop = layerdrop
        self.gradient_scale = gradient_scale
        self.gradient_checkpointing = False

    def run_layers(
        self,
        x: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        position: Any = None,
        final_norm: nn.Module | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        **options: Any,
    ) -> StackOutput:
        """x: (batch, time, width) through every layer (then ``final_norm``); returns the
        output, the hidden states and the attention maps (each None unless asked for).

        ``padding_mask`` (batch, time), True = padded, ``position`` (what the layers use for
        positions) and ``options`` reach every layer unchanged.
        """
        hiddens, attentions = [], []
        for layer in self.layers:
            if output_hidden_states:
                hiddens.append(x)
            if self.gradient_scale != 1.0 and x.requires_grad:
                x = GradMultiply.apply(x, self.gradient_scale)
            if self.training and self.layerdrop > 0 and torch.rand([]) < self.layerdrop:
                continue
            if self.gradient_checkpointing and self.training:
                x, weights = checkpoint(
                    layer,
                    x,
                    padding_mask,
                    position,
                    output_attentions,
                    use_reentrant=False,
                    **options,
                )
            else:
                x, weights = layer(x, padding_mask, position, output_attentions, **options)
            if output_attentions:
                attentions.append(weights)
        if final_norm is not None:
            x = final_norm(x)
        if output_hidden_states:
            hiddens.append(x)
        return (
            x,
            tuple(hiddens) if output_hidden_states else None,
            tuple(attentions) if output_attentions else None,
        )


class ConvPositionEncoder(LayerStack):
    """Zero the padded frames, add the convolutional positional embedding, then the layers.

    Post-LN layout (``layer_norm_first=False``): ``LN(x + pos_conv_embed(x))``, then the layers;
    pre-LN layout: ``x + pos_conv_embed(x)``, the layers, then ``layer_norm``. Dropout follows
    the embedding in both.

    Example:
        >>> from speechlobes.nnet.positional_conv import PositionalConvEmbedding
        >>> encoder = ConvPositionEncoder(PositionalConvEmbedding(8, 4, 2), [], width=8)
        >>> encoder(torch.randn(2, 5, 8))[0].shape
        torch.Size([2, 5, 8])
    """

    def __init__(
        self,
        pos_conv_embed: nn.Module,
        layers: Iterable[nn.Module],
        width: int,
        layer_norm_first: bool = False,
        dropout: float = 0.0,
        layerdrop: float = 0.0,
        layer_norm_eps: float = 1e-5,
        gradient_scale: float = 1.0,
    ) -> None:
        super().__init__(layers, layerdrop, gradient_scale)
        self.pos_conv_embed = pos_conv_embed
        self.layer_norm = nn.LayerNorm(width, eps=layer_norm_eps)
        self.dropout = FastDropout(dropout)
        self.layer_norm_first = layer_norm_first

    def forward(
        self,
        x: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        position: Any = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> StackOutput:
        """x: (batch, time, width); padding_mask: (batch, time), True = padded."""
        x = zero_padding(x, padding_mask)
        x = x + self.pos_conv_embed(x)
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        x = self.dropout(x)
        final_norm = self.layer_norm if self.layer_norm_first else None
        return self.run_layers(
            x, padding_mask, position, final_norm, output_hidden_states, output_attentions
        )
