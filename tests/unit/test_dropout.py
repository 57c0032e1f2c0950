"""The fast CPU dropout: drop rate, scaling, gradients, seeding and the fallbacks."""

import pytest
import torch
from torch import nn

from speechlobes.nnet.dropout import FastDropout, fast_dropout


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_drop_rate_and_scale(p):
    torch.manual_seed(0)
    x = torch.full((400, 1000), 2.0)
    y = fast_dropout(x, p)
    dropped = (y == 0).float().mean().item()
    # 400k Bernoulli draws: the standard error of the rate is below 1e-3
    assert abs(dropped - p) < 4e-3
    kept = y[y != 0]
    expected = 2.0 * 65536 / (65536 - round(p * 65536))
    assert torch.allclose(kept, torch.full_like(kept, expected))
    assert abs(y.mean().item() - 2.0) < 0.02  # unbiased


def test_mask_is_independent_of_position():
    """Every 16-bit lane of a 64-bit draw must drop at the same rate (no biased sign bit)."""
    torch.manual_seed(1)
    y = fast_dropout(torch.ones(200_000, 4), 0.3)
    rates = (y == 0).float().mean(dim=0)
    assert torch.all((rates - 0.3).abs() < 6e-3), rates


def test_gradient_is_the_mask_times_the_scale():
    torch.manual_seed(2)
    x = torch.randn(64, 33, requires_grad=True)
    y = fast_dropout(x, 0.25)
    y.sum().backward()
    mask = (y != 0).float()
    assert torch.allclose(x.grad, mask * (65536 / (65536 - 16384)))


def test_seeded_draws_repeat_and_differ_between_calls():
    x = torch.ones(1000)
    torch.manual_seed(3)
    first, second = fast_dropout(x, 0.5), fast_dropout(x, 0.5)
    torch.manual_seed(3)
    assert torch.equal(fast_dropout(x, 0.5), first)
    assert not torch.equal(first, second)


def test_eval_zero_and_one():
    x = torch.randn(10, 7)
    module = FastDropout(0.4)
    assert isinstance(module, nn.Dropout)
    assert torch.equal(module.eval()(x), x)
    assert fast_dropout(x, 0.0) is x
    assert torch.equal(fast_dropout(x, 1.0), torch.zeros_like(x))
    assert fast_dropout(torch.empty(0, 3), 0.5).shape == (0, 3)
    with pytest.raises(ValueError, match="within"):
        fast_dropout(x, 1.5)


def test_keeps_dtype_and_shape():
    x = torch.ones(3, 5, 7, dtype=torch.bfloat16)
    y = FastDropout(0.2).train()(x)
    assert y.dtype == torch.bfloat16 and y.shape == x.shape
