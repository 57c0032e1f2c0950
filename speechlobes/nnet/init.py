"""The one weight initialisation of speechlobes (BERT's): what a model trained from scratch
starts from; checkpoints overwrite it.

Example:
    >>> model = nn.Sequential(nn.Embedding(10, 4, padding_idx=0), nn.Linear(4, 4))
    >>> init_weights(model, std=0.02)
    >>> model[0].weight[0].abs().sum().item(), model[1].bias.abs().sum().item()
    (0.0, 0.0)
"""

from __future__ import annotations

import torch
from torch import nn


def init_module(module: nn.Module, std: float = 0.02) -> None:
    """Initialise ``module`` itself (not its children): N(0, std) weights of linear layers
    (``nn.Linear`` and layers that store theirs transposed, with ``linear_weight()``) and
    Embeddings (the padding row zero), zero biases, unit LayerNorm."""
    if isinstance(module, nn.Linear) or hasattr(module, "linear_weight"):
        nn.init.normal_(module.weight, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=std)
        if module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm) and module.elementwise_affine:
        nn.init.ones_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """:func:`init_module` on ``module`` and every submodule."""
    for sub in module.modules():
        init_module(sub, std)
