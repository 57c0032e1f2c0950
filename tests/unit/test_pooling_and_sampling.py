"""Masked pooling ignores padding; balanced sampling follows label rarity; lr_scale survives
steps.
"""

import torch

from speechlobes.dataio.balanced import EpochWeightedSampler, label_balanced_weights
from speechlobes.nnet.pooling import AttentivePooling, MaskedMaxPooling, MaskedMeanPooling
from speechlobes.nnet.schedulers import WarmupDecayScheduler


def test_pooling_ignores_whatever_the_padded_frames_hold():
    torch.manual_seed(0)
    x = torch.randn(2, 6, 4)
    lengths = torch.tensor([1.0, 0.5])  # relative: the second row has 3 valid frames
    garbage = x.clone()
    garbage[1, 3:] = 1e4
    for pooling in (MaskedMeanPooling(), MaskedMaxPooling(), AttentivePooling(4, hidden_size=8)):
        torch.testing.assert_close(pooling(x, lengths), pooling(garbage, lengths))
    torch.testing.assert_close(MaskedMeanPooling()(x, lengths)[1], x[1, :3].mean(0))
    torch.testing.assert_close(MaskedMeanPooling()(x), x.mean(1))
    torch.testing.assert_close(MaskedMaxPooling()(x, lengths)[1], x[1, :3].max(0).values)


def test_balanced_weights_are_inverse_label_frequencies():
    weights = label_balanced_weights([["speech"], ["speech"], ["speech", "beep"], ["beep"]])
    torch.testing.assert_close(
        weights, torch.tensor([1 / 3, 1 / 3, 1 / 3 + 1 / 2, 1 / 2], dtype=torch.float64)
    )


def test_weighted_sampler_is_reproducible_per_epoch_and_follows_the_weights():
    sampler = EpochWeightedSampler(torch.tensor([1.0, 3.0]), num_samples=4000, seed=7)
    sampler.set_epoch(2)
    first = list(sampler)
    assert list(sampler) == first
    sampler.set_epoch(3)
    assert list(sampler) != first
    assert abs(first.count(1) / len(first) - 0.75) < 0.03


def test_scheduler_keeps_each_group_lr_scale():
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in range(2)]
    optimizer = torch.optim.SGD(
        [{"params": [params[0]], "lr_scale": 0.25}, {"params": [params[1]]}], lr=1.0
    )
    scheduler = WarmupDecayScheduler(peak_lr=2.0, warmup_steps=4, total_steps=10)
    for _ in range(3):
        scheduler(optimizer)
    assert [group["lr"] for group in optimizer.param_groups] == [0.375, 1.5]
