"""The toy recipe's model: a small lobe with an input projection, a stack of residual blocks
(what FSDP shards one by one) and a head; optionally a frozen input projection and a head
that never takes part in the loss (a partly used lobe, which DDP must be told about)."""

import torch
from torch import nn


class ResidualBlock(nn.Module):
    """``x + linear2(dropout(relu(linear1(x))))``; x: (batch, size)."""

    def __init__(self, size: int, dropout: float = 0.0):
        super().__init__()
        self.linear1 = nn.Linear(size, 2 * size)
        self.linear2 = nn.Linear(2 * size, size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.linear2(self.dropout(torch.relu(self.linear1(x))))


class ToyLobe(nn.Module):
    """(batch, input_size) -> (batch, 1) through ``num_blocks`` residual blocks."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_blocks: int,
        dropout: float = 0.0,
        freeze_input: bool = False,
        unused_head: bool = False,
    ):
        super().__init__()
        self.input = nn.Linear(input_size, hidden_size)
        self.blocks = nn.ModuleList(ResidualBlock(hidden_size, dropout) for _ in range(num_blocks))
        self.head = nn.Linear(hidden_size, 1)
        self.unused_head = nn.Linear(hidden_size, 1) if unused_head else None
        self.input.requires_grad_(not freeze_input)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x)
