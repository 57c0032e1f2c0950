"""DynamicBatchSampler: length bounds, coverage, determinism, buckets and rank splits."""

import logging

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from speechlobes.dataio.batch import PaddedBatch
from speechlobes.dataio.dataset import DynamicItemDataset
from speechlobes.dataio.sampler import DynamicBatchSampler


def durations(count=500, seed=0):
    """Speech-like durations: log-normal around 6 s, clipped to 1..35 s."""
    return np.clip(np.random.default_rng(seed).lognormal(1.8, 0.6, count), 1.0, 35.0)


def padded_total(lengths, batch):
    return len(batch) * max(lengths[i] for i in batch)


def test_every_index_appears_once_and_batches_respect_the_bound():
    lengths = durations()
    sampler = DynamicBatchSampler(lengths, max_batch_length=120.0, num_buckets=10)
    batches = list(sampler)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    assert all(padded_total(lengths, batch) <= 120.0 for batch in batches)
    assert len(sampler) == len(batches)


def test_max_batch_ex_caps_the_batch_size():
    sampler = DynamicBatchSampler([1.0] * 50, max_batch_length=100.0, max_batch_ex=8)
    assert max(len(batch) for batch in sampler) == 8


def test_an_example_longer_than_the_bound_forms_its_own_batch(caplog):
    with caplog.at_level(logging.WARNING):
        sampler = DynamicBatchSampler([1.0, 50.0, 1.0], max_batch_length=10.0, num_buckets=1)
    assert "1 examples are longer than max_batch_length" in caplog.text
    assert [1] in list(sampler)


def test_bucketing_pads_less_than_a_single_bucket():
    lengths = durations(2000)
    bucketed = DynamicBatchSampler(lengths, max_batch_length=200.0, num_buckets=20)
    unbucketed = DynamicBatchSampler(lengths, max_batch_length=200.0, num_buckets=1)
    assert bucketed.padding_ratio() < 0.5 * unbucketed.padding_ratio()
    assert 0.0 <= bucketed.padding_ratio() < 0.1


def test_padding_ratio_is_hand_computable():
    sampler = DynamicBatchSampler([2.0, 4.0], max_batch_length=8.0, num_buckets=1, shuffle=False)
    assert list(sampler) == [[0, 1]]
    assert sampler.padding_ratio() == pytest.approx(1 - 6 / 8)


def test_same_seed_and_epoch_give_the_same_batches_and_epochs_differ():
    lengths = durations()
    first = DynamicBatchSampler(lengths, max_batch_length=100.0, seed=3)
    second = DynamicBatchSampler(lengths, max_batch_length=100.0, seed=3)
    assert list(first) == list(second)
    epoch0 = list(first)
    first.set_epoch(1)
    assert list(first) != epoch0
    assert list(DynamicBatchSampler(lengths, max_batch_length=100.0, seed=3, epoch=1)) == list(
        first
    )


def test_ordered_batches_follow_their_longest_example():
    lengths = durations()
    for ordering, sign in (("ascending", 1), ("descending", -1)):
        sampler = DynamicBatchSampler(lengths, 100.0, batch_ordering=ordering)
        longest = [sign * max(lengths[i] for i in batch) for batch in sampler]
        assert longest == sorted(longest)


def test_ranks_get_disjoint_batches_covering_everything_with_equal_counts():
    lengths = durations(333)
    for world_size in (2, 3, 7):
        ranks = [
            DynamicBatchSampler(lengths, 90.0, seed=5, rank=rank, world_size=world_size)
            for rank in range(world_size)
        ]
        per_rank = [list(sampler) for sampler in ranks]
        assert len({len(batches) for batches in per_rank}) == 1
        assert all(len(sampler) == len(per_rank[0]) for sampler in ranks)
        indices = [i for batches in per_rank for batch in batches for i in batch]
        assert sorted(indices) == list(range(len(lengths)))
        assert all(padded_total(lengths, b) <= 90.0 for batches in per_rank for b in batches)


def test_drop_last_drops_the_uneven_batches_instead_of_splitting():
    lengths = durations(100)
    full = DynamicBatchSampler(lengths, 90.0, world_size=1)
    dropped = [
        DynamicBatchSampler(lengths, 90.0, rank=r, world_size=3, drop_last=True) for r in (0, 1, 2)
    ]
    assert len(dropped[0]) == len(full) // 3
    assert all(len(sampler) == len(dropped[0]) for sampler in dropped)


def test_too_few_examples_for_the_ranks_is_an_error():
    sampler = DynamicBatchSampler([1.0], 10.0, rank=0, world_size=2)
    with pytest.raises(ValueError, match="1 examples cannot make the same number of batches on 2"):
        list(sampler)


def test_lengths_come_from_a_dataset_duration_field():
    data = {f"u{i}": {"duration": float(i + 1)} for i in range(6)}
    sampler = DynamicBatchSampler(DynamicItemDataset(data), max_batch_length=6.0, num_buckets=2)
    assert sampler.lengths.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    with pytest.raises(KeyError, match="lack the length field 'size'"):
        DynamicBatchSampler(DynamicItemDataset(data), 6.0, length_key="size")


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="batch_ordering 'sorted'"):
        DynamicBatchSampler([1.0], 5.0, batch_ordering="sorted")
    with pytest.raises(ValueError, match="finite and non-negative"):
        DynamicBatchSampler([1.0, float("nan")], 5.0)
    with pytest.raises(ValueError, match="rank 2 is outside world_size 2"):
        DynamicBatchSampler([1.0], 5.0, rank=2, world_size=2)


def test_explicit_bucket_boundaries_keep_batches_inside_one_bucket():
    lengths = durations(300)
    sampler = DynamicBatchSampler(lengths, 100.0, bucket_boundaries=[5.0, 10.0])
    for batch in sampler:
        buckets = {int(np.searchsorted([5.0, 10.0], lengths[i])) for i in batch}
        assert len(buckets) == 1


def test_rank_and_world_size_come_from_torch_distributed_when_initialised(monkeypatch):
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 1)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    lengths = durations(100)
    sampler = DynamicBatchSampler(lengths, 90.0, seed=2)
    explicit = DynamicBatchSampler(lengths, 90.0, seed=2, rank=1, world_size=2)
    assert (sampler.rank, sampler.world_size) == (1, 2)
    assert list(sampler) == list(explicit)


def test_padding_ratio_is_logged_once_per_epoch(caplog):
    sampler = DynamicBatchSampler(durations(100), 90.0)
    with caplog.at_level(logging.INFO, logger="speechlobes.dataio.sampler"):
        list(sampler)
        list(sampler)
        sampler.set_epoch(1)
        list(sampler)
    logged = [r.getMessage() for r in caplog.records if "padding ratio" in r.getMessage()]
    assert len(logged) == 2 and logged[0].startswith("epoch 0: ") and "epoch 1: " in logged[1]
    assert f"padding ratio {sampler.padding_ratio():.3f}" in logged[1]


def test_drives_a_dataloader_with_padded_batches():
    data = {f"u{i}": {"duration": float(1 + i % 4)} for i in range(20)}
    dataset = DynamicItemDataset(data, output_keys=["id", "sig"])
    dataset.add_dynamic_item(lambda d: torch.ones(int(d * 10)), "duration", "sig")
    sampler = DynamicBatchSampler(dataset, max_batch_length=8.0, num_buckets=4)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=PaddedBatch)
    batches = list(loader)
    assert len(batches) == len(sampler)
    assert sorted(i for batch in batches for i in batch.id) == sorted(data)
    assert all(batch.sig.data.shape[1] * len(batch) <= 80 for batch in batches)
