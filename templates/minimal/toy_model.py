"""The template's model (YAML: ``!new:toy_model.PooledClassifier``; the folder of the running
script is on ``sys.path``, so a recipe's own modules are importable from its YAML)."""

import torch

from speechlobes.nnet.lengths import lengths_to_padding_mask


class PooledClassifier(torch.nn.Module):
    """Per-frame MLP, mean over the valid frames, linear classifier -> log-probabilities.

    Example:
        >>> model = PooledClassifier(input_dim=8, hidden=16, num_classes=3)
        >>> model(torch.randn(2, 5, 8), torch.tensor([5, 3])).shape
        torch.Size([2, 3])
    """

    def __init__(self, input_dim: int, hidden: int, num_classes: int):
        super().__init__()
        self.frames = torch.nn.Sequential(torch.nn.Linear(input_dim, hidden), torch.nn.ReLU())
        self.classifier = torch.nn.Linear(hidden, num_classes)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """features: (batch, time, input_dim); lengths: (batch,) valid frames."""
        hidden = self.frames(features)
        valid = (~lengths_to_padding_mask(lengths, features.shape[1])).unsqueeze(-1)
        pooled = (hidden * valid).sum(dim=1) / valid.sum(dim=1).clamp(min=1)
        return torch.log_softmax(self.classifier(pooled), dim=-1)
