"""SaveableDataLoader, LoopedLoader and make_dataloader: SpeechBrain's collation rule,
reproducible shuffling and exact mid-epoch resumption."""

import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset

from speechlobes.checkpoints import Checkpointer
from speechlobes.dataio.batch import PaddedBatch
from speechlobes.dataio.dataset import DynamicItemDataset
from speechlobes.dataio.loader import LoopedLoader, SaveableDataLoader, make_dataloader
from speechlobes.dataio.sampler import ReproducibleRandomSampler
from speechlobes.utils.seed import GLOBAL_SEED_ENV


def epoch_batches(loader, epoch):
    loader.set_epoch(epoch)
    return [list(batch) for batch in loader]


def test_order_depends_only_on_seed_and_epoch(monkeypatch):
    monkeypatch.setenv(GLOBAL_SEED_ENV, "5")  # as seed_everything(5) records it
    first = make_dataloader(list(range(20)), batch_size=4, shuffle=True, collate_fn=list)
    second = make_dataloader(list(range(20)), batch_size=4, shuffle=True, collate_fn=list)
    assert isinstance(first.sampler, ReproducibleRandomSampler) and first.sampler.seed == 5
    assert epoch_batches(first, 3) == epoch_batches(second, 3)
    assert epoch_batches(first, 3) != epoch_batches(first, 4)
    assert sorted(sum(epoch_batches(first, 4), [])) == list(range(20))


def test_shuffle_with_a_sampler_is_refused():
    with pytest.raises(ValueError, match="either a sampler or shuffle"):
        make_dataloader(list(range(4)), shuffle=True, sampler=range(4))


def test_iterating_a_shuffled_loader_draws_nothing_from_the_global_generator():
    loader = make_dataloader(list(range(20)), batch_size=4, shuffle=True, collate_fn=list)
    state = torch.get_rng_state()
    epoch_batches(loader, 1)
    assert torch.equal(state, torch.get_rng_state())


def test_mid_epoch_position_is_saved_and_the_restarted_loader_skips_exactly_those(tmp_path):
    data = list(range(30))
    loader = make_dataloader(data, batch_size=4, shuffle=True, collate_fn=list)
    loader.set_epoch(2)
    full = [list(b) for b in loader]
    loader.set_epoch(2)
    iterator = iter(loader)
    consumed = [next(iterator) for _ in range(3)]
    assert consumed == full[:3] and loader.batches_consumed == 3
    Checkpointer(tmp_path, {"loader": loader}).save_checkpoint(end_of_epoch=False)

    restarted = make_dataloader(data, batch_size=4, shuffle=True, collate_fn=list)
    Checkpointer(tmp_path, {"loader": restarted}).recover_if_possible()
    assert restarted.epoch == 2
    assert epoch_batches(restarted, 2) == full[3:]
    assert epoch_batches(restarted, 2) == full  # the skip applies to one iteration only


def test_end_of_epoch_checkpoint_does_not_skip(tmp_path):
    loader = make_dataloader(list(range(8)), batch_size=2, collate_fn=list)
    epoch_batches(loader, 1)
    Checkpointer(tmp_path, {"loader": loader}).save_checkpoint(end_of_epoch=True)
    restarted = make_dataloader(list(range(8)), batch_size=2, collate_fn=list)
    Checkpointer(tmp_path, {"loader": restarted}).recover_if_possible()
    assert len(epoch_batches(restarted, 2)) == 4


def test_a_checkpoint_loaded_after_iteration_began_leaves_the_position_alone(tmp_path):
    loader = SaveableDataLoader(list(range(8)), batch_size=2)
    iterator = iter(loader)
    next(iterator)
    Checkpointer(tmp_path, {"loader": loader}).save_checkpoint(end_of_epoch=False)
    Checkpointer(tmp_path, {"loader": loader}).recover_if_possible()  # e.g. the best model
    assert len(list(loader)) == 4


def test_saveable_loader_takes_dataloader_arguments_positionally_and_by_batch_sampler():
    loader = SaveableDataLoader(list(range(7)), 3, False, None, None, 0, list)
    assert [list(b) for b in loader] == [[0, 1, 2], [3, 4, 5], [6]]
    by_batches = SaveableDataLoader(list(range(4)), batch_sampler=[[3, 1], [0]], collate_fn=list)
    assert list(by_batches) == [[3, 1], [0]]
    unbatched = SaveableDataLoader(list(range(3)), batch_size=None)
    assert [int(x) for x in unbatched] == [0, 1, 2]


def test_dynamic_item_datasets_collate_with_padded_batch_others_with_torch_default():
    data = {"a": {"x": torch.ones(3)}, "b": {"x": torch.ones(1)}}
    dataset = DynamicItemDataset(data, output_keys=["id", "x"])
    batch = next(iter(make_dataloader(dataset, batch_size=2)))
    assert isinstance(batch, PaddedBatch)
    assert torch.allclose(batch.x.lengths, torch.tensor([1.0, 1 / 3]))
    dicts = [{"x": torch.ones(2), "y": 1}, {"x": torch.zeros(2), "y": 2}]
    collated = next(iter(make_dataloader(dicts, batch_size=2)))
    assert isinstance(collated, dict) and collated["x"].shape == (2, 2)
    assert collated["y"].tolist() == [1, 2]


def test_iterable_datasets_get_a_plain_dataloader():
    class Stream(IterableDataset):
        def __iter__(self):
            return iter(range(5))

    loader = make_dataloader(Stream(), batch_size=2)
    assert type(loader) is DataLoader and [b.tolist() for b in loader] == [[0, 1], [2, 3], [4]]


def test_looped_loader_runs_nominal_epochs_across_the_underlying_loader(tmp_path):
    looped = make_dataloader(list(range(5)), looped_nominal_epoch=3, batch_size=2)
    assert isinstance(looped, LoopedLoader) and len(looped) == 3
    first = [b.tolist() for b in looped]
    second = [b.tolist() for b in looped]
    assert first == [[0, 1], [2, 3], [4]] and second == [[0, 1], [2, 3], [4]]
    assert looped.total_steps == 6 and looped.total_samples == 10
    Checkpointer(tmp_path, {"looped": looped}).save_checkpoint(end_of_epoch=True)
    fresh = LoopedLoader([torch.zeros(4)], epoch_length=3)
    Checkpointer(tmp_path, {"looped": fresh}).recover_if_possible()
    assert (fresh.step, fresh.total_steps, fresh.total_samples) == (0, 6, 10)
    assert fresh.batchsize_fn(torch.zeros(4, 2)) == 4


def test_looped_loader_saved_after_its_epoch_ended_ends_at_once_when_recovered_mid_epoch(
    tmp_path,
):
    looped = LoopedLoader([1, 2], epoch_length=2)
    list(looped)
    Checkpointer(tmp_path, {"looped": looped}).save_checkpoint(end_of_epoch=False)
    fresh = LoopedLoader([1, 2], epoch_length=2)
    Checkpointer(tmp_path, {"looped": fresh}).recover_if_possible()
    assert list(fresh) == [] and list(fresh) == [1, 2]
