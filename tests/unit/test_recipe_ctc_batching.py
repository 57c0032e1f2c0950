"""The LibriSpeech CTC recipe's training batches: similar durations, little padding, and a
warning when the LR schedule's length does not match the batches."""

import logging

import pytest
from recipe_modules import load_recipe_module

from speechlobes.dataio.dataset import DynamicItemDataset
from speechlobes.dataio.sampler import DynamicBatchSampler

train = load_recipe_module("LibriSpeech/ASR/CTC/train.py")
DURATIONS = [1.0, 9.0, 2.0, 8.5, 1.5, 3.0, 7.0, 2.5, 1.2, 8.0, 4.0, 6.0]


def hparams(**changes):
    values = {
        "seed": 3,
        "data_format": "csv",
        "number_of_epochs": 2,
        "total_steps": None,
        "dynamic_batching": True,
        "dynamic_batch_sampler": {"max_batch_length": 18.0, "num_buckets": 4},
        "train_loader_kwargs": {"batch_size": 16, "shuffle": True, "num_workers": 0},
    }
    return {**values, **changes}


@pytest.fixture
def dataset():
    data = {f"utt{i}": {"duration": seconds} for i, seconds in enumerate(DURATIONS)}
    return DynamicItemDataset(data)


def test_dynamic_batches_replace_batch_size_and_shuffle_and_keep_other_loader_kwargs(dataset):
    kwargs = train.train_loader_kwargs(hparams(), dataset)
    assert set(kwargs) == {"batch_sampler", "num_workers"} and kwargs["num_workers"] == 0
    sampler = kwargs["batch_sampler"]
    assert isinstance(sampler, DynamicBatchSampler)
    batches = list(sampler)
    assert sorted(i for batch in batches for i in batch) == list(range(len(DURATIONS)))
    for batch in batches:  # padded length: the longest utterance times the batch's size
        assert len(batch) == 1 or max(DURATIONS[i] for i in batch) * len(batch) <= 18.0


def test_similar_durations_waste_less_than_arrival_order(dataset):
    sampler = train.train_loader_kwargs(hparams(), dataset)["batch_sampler"]
    in_order = [list(range(start, start + 3)) for start in range(0, len(DURATIONS), 3)]
    padded = sum(max(DURATIONS[i] for i in batch) * len(batch) for batch in in_order)
    assert sampler.padding_ratio() < 1 - sum(DURATIONS) / padded


@pytest.mark.parametrize("change", [{"dynamic_batching": False}, {"data_format": "shards"}])
def test_fixed_batches_when_dynamic_batching_is_off_or_shards_stream(dataset, change):
    values = hparams(**change)
    assert train.train_loader_kwargs(values, dataset) is values["train_loader_kwargs"]


def test_a_schedule_shorter_or_longer_than_the_training_is_flagged(dataset, caplog):
    batches = len(train.train_loader_kwargs(hparams(), dataset)["batch_sampler"])
    with caplog.at_level(logging.INFO):
        train.train_loader_kwargs(hparams(total_steps=2 * batches), dataset)
        assert not [record for record in caplog.records if record.levelno >= logging.WARNING]
        train.train_loader_kwargs(hparams(total_steps=5), dataset)
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1 and f"--total_steps={2 * batches}" in warnings[0].getMessage()
