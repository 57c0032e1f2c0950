"""Samplers: SpeechBrain's signatures, defaults and packing, plus our rank splits."""

import logging

import numpy as np
import pytest
import torch
from torch.utils.data import ConcatDataset, DataLoader

from speechlobes.dataio.batch import PaddedBatch
from speechlobes.dataio.dataset import DynamicItemDataset
from speechlobes.dataio.sampler import (
    BalancingDataSampler,
    ConcatDatasetBatchSampler,
    DistributedSamplerWrapper,
    DynamicBatchSampler,
    ReproducibleRandomSampler,
    ReproducibleWeightedRandomSampler,
    lognormal_bucket_boundaries,
)


def durations(count=500, seed=0):
    """Speech-like durations: log-normal around 6 s, clipped to 1..35 s."""
    return np.clip(np.random.default_rng(seed).lognormal(1.8, 0.6, count), 1.0, 35.0).tolist()


def sampler_of(lengths, *args, **kwargs):
    return DynamicBatchSampler(range(len(lengths)), *args, lengths_list=lengths, **kwargs)


def padded_total(lengths, batch):
    return len(batch) * max(lengths[i] for i in batch)


def permutation(count, seed):
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed)).tolist()


def test_speechbrain_positional_signature_reads_lengths_with_length_func():
    data = {f"ex_{n}": {"wav": torch.randn(n)} for n in (12, 30, 55, 80, 95)}
    dataset = DynamicItemDataset(data, output_keys=["wav"])
    sampler = DynamicBatchSampler(
        dataset, 200, 4, lambda x: len(x["wav"]), shuffle=False, batch_ordering="descending"
    )
    assert sampler.lengths.tolist() == [12, 30, 55, 80, 95]
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=PaddedBatch)
    assert max(batch.wav.data.shape[1] for batch in loader) == 95


def test_default_length_func_reads_duration_and_lengths_list_replaces_it():
    data = {f"u{i}": {"duration": float(i + 1)} for i in range(4)}
    assert sampler_of([5.0, 6.0], 10.0, 2).lengths.tolist() == [5.0, 6.0]
    sampler = DynamicBatchSampler(DynamicItemDataset(data), 6.0, num_buckets=2)
    assert sampler.lengths.tolist() == [1.0, 2.0, 3.0, 4.0]
    with pytest.raises(KeyError, match="lack the length field 'size'"):
        DynamicBatchSampler(DynamicItemDataset(data), 6.0, 2, lambda x: x["size"])
    with pytest.raises(TypeError, match="pass lengths_list"):
        DynamicBatchSampler(list(range(4)), 6.0, 2)
    with pytest.raises(ValueError, match="3 lengths for a dataset of 4"):
        DynamicBatchSampler(range(4), 6.0, 2, lengths_list=[1.0, 2.0, 3.0])


def test_num_buckets_or_boundaries_must_be_given_and_boundaries_must_be_sorted():
    with pytest.raises(RuntimeError, match="give num_buckets"):
        sampler_of([1.0], 5.0)
    with pytest.raises(ValueError, match="ascending without duplicates"):
        sampler_of([1.0], 5.0, bucket_boundaries=[3.0, 2.0])
    with pytest.raises(ValueError, match="ascending without duplicates"):
        sampler_of([1.0], 5.0, bucket_boundaries=[2.0, 2.0])
    with pytest.raises(ValueError, match="non-negative"):
        sampler_of([1.0], 5.0, bucket_boundaries=[-1.0])


def test_bucket_boundaries_follow_a_lognormal_scaled_to_max_batch_length():
    # SpeechBrain: quantiles of lognormal(s=1) at 1/(n+1) .. n/(n+1), last one = max length.
    assert lognormal_bucket_boundaries(100.0, 3).round(4).tolist() == [25.9505, 50.9416, 100.0]
    assert lognormal_bucket_boundaries(30.0, 1).tolist() == [30.0]
    assert sampler_of([1.0], 60.0, 3).bucket_boundaries.round(4).tolist() == [
        15.5703, 30.565, 60.0
    ]  # fmt: skip


def test_buckets_fill_to_max_length_over_their_boundary_then_leftovers_follow():
    lengths = [1.0, 2.0, 3.0, 2.5, 1.2, 0.8, 1.1]
    # boundary 1.25 holds 4 examples, 2.5 holds 2, longer examples go one by one
    sampler = sampler_of(lengths, 5.0, bucket_boundaries=[1.25, 2.5], shuffle=False)
    assert sampler._bucket_lens == [4, 2, 1]
    ascending = sampler_of(
        lengths, 5.0, bucket_boundaries=[1.25, 2.5], shuffle=False, batch_ordering="ascending"
    )
    assert list(ascending) == [[0, 4, 5, 6], [1, 3], [2]]
    dropped = sampler_of(lengths, 5.0, bucket_boundaries=[1.25, 2.5], shuffle=False,
                         batch_ordering="ascending", drop_last=True)  # fmt: skip
    assert list(dropped) == [[0, 4, 5, 6], [1, 3], [2]]
    lengths.append(0.5)  # a leftover in the first bucket
    kept = sampler_of(lengths, 5.0, bucket_boundaries=[1.25, 2.5], shuffle=False,
                      batch_ordering="descending")  # fmt: skip
    assert list(kept) == [[2], [1, 3], [0, 4, 5, 6], [7]]
    dropped = sampler_of(lengths, 5.0, bucket_boundaries=[1.25, 2.5], shuffle=False,
                         batch_ordering="descending", drop_last=True)  # fmt: skip
    assert list(dropped) == [[2], [1, 3], [0, 4, 5, 6]]


def test_shuffling_and_batch_order_draw_from_seed_plus_epoch_with_default_seed_42():
    one_batch = sampler_of([1.0] * 9, 100.0, bucket_boundaries=[1.0], batch_ordering="ascending")
    assert list(one_batch) == [permutation(9, 42)]
    singles = sampler_of([1.0] * 6, 1.0, bucket_boundaries=[1.0], epoch=3)
    examples, batches = permutation(6, 45), permutation(6, 45)
    assert list(singles) == [[examples[i]] for i in batches]
    singles.set_epoch(4)
    examples, batches = permutation(6, 46), permutation(6, 46)
    assert list(singles) == [[examples[i]] for i in batches]
    assert list(singles) == list(sampler_of([1.0] * 6, 1.0, bucket_boundaries=[1.0], epoch=4))


def test_every_index_appears_once_and_batches_respect_the_bound():
    lengths = durations()
    sampler = sampler_of(lengths, 120.0, 10)
    batches = list(sampler)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    assert all(padded_total(lengths, batch) <= 120.0 for batch in batches)
    assert len(sampler) == len(batches)
    assert sampler.get_durations(batches[0]) == [lengths[i] for i in batches[0]]


def test_max_batch_ex_caps_the_batch_size():
    sampler = sampler_of([1.0] * 50, 100.0, bucket_boundaries=[2.0], max_batch_ex=8)
    assert sampler._bucket_lens == [8, 1]  # 100 // 2 = 50, capped at 8
    assert max(len(batch) for batch in sampler) == 8


def test_an_example_longer_than_the_last_boundary_forms_its_own_batch(caplog):
    with caplog.at_level(logging.WARNING):
        sampler = sampler_of([1.0, 50.0, 1.0], 10.0, 1)
    assert "1 examples are longer than the last bucket boundary 10" in caplog.text
    assert [1] in list(sampler)


def test_bucketing_pads_less_than_a_single_bucket():
    lengths = durations(2000)
    bucketed = sampler_of(lengths, 200.0, 20)
    unbucketed = sampler_of(lengths, 200.0, bucket_boundaries=[max(lengths)])
    assert bucketed.padding_ratio() < 0.5 * unbucketed.padding_ratio()
    assert 0.0 <= bucketed.padding_ratio() < 0.3


def test_padding_ratio_is_hand_computable():
    sampler = sampler_of([2.0, 4.0], 8.0, bucket_boundaries=[4.0], shuffle=False)
    assert list(sampler) == [[0, 1]]
    assert sampler.padding_ratio() == pytest.approx(1 - 6 / 8)


def test_ranks_get_disjoint_batches_covering_everything_with_equal_counts():
    lengths = durations(333)
    for world_size in (2, 3, 7):
        ranks = [
            sampler_of(lengths, 90.0, 10, seed=5, rank=rank, world_size=world_size)
            for rank in range(world_size)
        ]
        per_rank = [list(sampler) for sampler in ranks]
        assert len({len(batches) for batches in per_rank}) == 1
        assert all(len(sampler) == len(per_rank[0]) for sampler in ranks)
        indices = [i for batches in per_rank for batch in batches for i in batch]
        assert sorted(indices) == list(range(len(lengths)))
        assert all(padded_total(lengths, b) <= 90.0 for batches in per_rank for b in batches)


def test_with_drop_last_ranks_drop_the_uneven_batches_instead_of_splitting():
    lengths = durations(100)
    full = sampler_of(lengths, 90.0, 10, drop_last=True)
    dropped = [
        sampler_of(lengths, 90.0, 10, rank=r, world_size=3, drop_last=True) for r in range(3)
    ]
    assert len(dropped[0]) == len(full) // 3
    assert all(len(sampler) == len(dropped[0]) for sampler in dropped)


def test_too_few_examples_for_the_ranks_is_an_error():
    with pytest.raises(ValueError, match="1 examples cannot make the same number of batches on 2"):
        sampler_of([1.0], 10.0, 1, rank=0, world_size=2)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="batch_ordering 'sorted'"):
        sampler_of([1.0], 5.0, 1, batch_ordering="sorted")
    with pytest.raises(ValueError, match="finite and non-negative"):
        sampler_of([1.0, float("nan")], 5.0, 1)
    with pytest.raises(ValueError, match="rank 2 is outside world_size 2"):
        sampler_of([1.0], 5.0, 1, rank=2, world_size=2)


def test_rank_and_world_size_come_from_torch_distributed_when_initialised(monkeypatch):
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 1)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    lengths = durations(100)
    sampler = sampler_of(lengths, 90.0, 8, seed=2)
    explicit = sampler_of(lengths, 90.0, 8, seed=2, rank=1, world_size=2)
    assert (sampler.rank, sampler.world_size) == (1, 2)
    assert list(sampler) == list(explicit)


def test_padding_ratio_is_logged_each_time_the_batches_are_drawn(caplog):
    with caplog.at_level(logging.INFO, logger="speechlobes.dataio.sampler"):
        sampler = sampler_of(durations(100), 90.0, 8)
        list(sampler)
        sampler.set_epoch(1)
    logged = [r.getMessage() for r in caplog.records if "padding ratio" in r.getMessage()]
    assert len(logged) == 2 and "epoch 0: " in logged[0] and "epoch 1: " in logged[1]
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


def test_reproducible_random_sampler_permutes_from_seed_plus_epoch():
    sampler = ReproducibleRandomSampler(range(7))
    assert list(sampler) == permutation(7, 563375142) == list(sampler)
    sampler.set_epoch(2)
    assert list(sampler) == permutation(7, 563375144)
    with pytest.raises(ValueError, match="drop generator"):
        ReproducibleRandomSampler(range(3), generator=torch.Generator())


def test_reproducible_weighted_sampler_draws_from_seed_plus_epoch():
    weights = [0.1, 0.9, 0.4, 0.7, 3.0, 0.6]
    sampler = ReproducibleWeightedRandomSampler(weights, 5, replacement=True)
    generator = torch.Generator().manual_seed(129491412)
    expected = torch.multinomial(
        torch.tensor(weights, dtype=torch.double), 5, True, generator=generator
    )
    assert list(sampler) == expected.tolist() == list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != expected.tolist()


def test_balancing_sampler_weighs_examples_by_their_class_frequency():
    data = {1: {"category": "A"}, 2: {"category": "A"}, 3: {"category": "B"}}
    sampler = BalancingDataSampler(DynamicItemDataset(data), "category", num_samples=2000)
    assert sampler.weights.tolist() == [0.5, 0.5, 1.0] and sampler.seed == 563375142
    draws = np.bincount(list(sampler), minlength=3)
    assert abs(draws[2] - (draws[0] + draws[1])) < 200  # the classes come up equally often


def test_distributed_wrapper_gives_each_rank_its_share_of_the_batches():
    batches = [[0, 1], [2, 3], [4, 5], [6]]
    shares = [
        list(DistributedSamplerWrapper(batches, num_replicas=3, rank=r, shuffle=False))
        for r in range(3)
    ]
    assert shares == [[[0, 1], [6]], [[2, 3], [0, 1]], [[4, 5], [2, 3]]]
    single = list(DistributedSamplerWrapper([[9]], num_replicas=1, rank=0, shuffle=False))
    assert single == [[9]]


def test_concat_dataset_batch_sampler_takes_each_part_s_share_per_batch():
    first, second = torch.arange(0, 10)[:, None], torch.arange(20, 40)[:, None]
    concat = ConcatDataset([first, second])
    sampler = ConcatDatasetBatchSampler(
        [ReproducibleRandomSampler(first), ReproducibleRandomSampler(second)], [2, 4]
    )
    assert len(sampler) == 5
    for batch in DataLoader(concat, batch_sampler=sampler):
        assert batch.shape == (6, 1) and (batch[:2] < 10).all() and (batch[2:] >= 20).all()
    with pytest.raises(ValueError, match="2 samplers but 1 batch sizes"):
        ConcatDatasetBatchSampler([range(2), range(2)], [1])
