import torch
from torch.utils.data import BatchSampler, SequentialSampler

from speechlobes.checkpoints import Checkpointer
from speechlobes.dataio.batch import PaddedBatch
from speechlobes.dataio.loader import (
    DistributedBatchSampler,
    EpochRandomSampler,
    ResumableDataLoader,
    make_dataloader,
)


def epoch_batches(loader, epoch):
    loader.set_epoch(epoch)
    return [list(batch) for batch in loader]


def test_order_depends_only_on_seed_and_epoch():
    first = make_dataloader(list(range(20)), batch_size=4, shuffle=True, seed=5, collate_fn=list)
    second = make_dataloader(list(range(20)), batch_size=4, shuffle=True, seed=5, collate_fn=list)
    assert epoch_batches(first, 3) == epoch_batches(second, 3)
    assert epoch_batches(first, 3) != epoch_batches(first, 4)
    assert sorted(sum(epoch_batches(first, 4), [])) == list(range(20))


def test_iterating_a_shuffled_loader_draws_nothing_from_the_global_generator():
    loader = make_dataloader(list(range(20)), batch_size=4, shuffle=True, collate_fn=list)
    state = torch.get_rng_state()
    epoch_batches(loader, 1)
    assert torch.equal(state, torch.get_rng_state())


def test_mid_epoch_position_is_saved_and_the_restarted_loader_skips_exactly_those(tmp_path):
    data = list(range(30))
    loader = make_dataloader(data, batch_size=4, shuffle=True, seed=1, collate_fn=list)
    loader.set_epoch(2)
    full = [list(b) for b in loader]
    loader.set_epoch(2)
    iterator = iter(loader)
    consumed = [next(iterator) for _ in range(3)]
    assert consumed == full[:3]
    Checkpointer(tmp_path, {"loader": loader}).save_checkpoint(end_of_epoch=False)

    restarted = make_dataloader(data, batch_size=4, shuffle=True, seed=1, collate_fn=list)
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


def test_default_collate_is_padded_batch():
    data = [{"id": "a", "x": torch.ones(3)}, {"id": "b", "x": torch.ones(1)}]
    batch = next(iter(make_dataloader(data, batch_size=2)))
    assert isinstance(batch, PaddedBatch)
    assert batch.x.data.shape == (2, 3)
    assert torch.allclose(batch.x.lengths, torch.tensor([1.0, 1 / 3]))


def test_plain_loader_under_two_ranks_gets_disjoint_halves():
    halves = []
    for rank in (0, 1):
        loader = make_dataloader(
            list(range(10)),
            batch_size=2,
            shuffle=True,
            seed=3,
            rank=rank,
            world_size=2,
            collate_fn=list,
        )
        halves.append(sum(epoch_batches(loader, 1), []))
    assert set(halves[0]).isdisjoint(halves[1]) and sorted(halves[0] + halves[1]) == list(range(10))


def test_distributed_batch_sampler_pads_so_every_rank_gets_as_many_batches():
    inner = BatchSampler(SequentialSampler(range(10)), batch_size=2, drop_last=False)
    ranks = [list(DistributedBatchSampler(inner, rank, 3)) for rank in range(3)]
    assert ranks == [[[0, 1], [6, 7]], [[2, 3], [8, 9]], [[4, 5], [0, 1]]]


def test_batch_sampler_that_splits_itself_is_not_split_again():
    class SelfSplitting(BatchSampler):
        world_size = 2

    inner = SelfSplitting(SequentialSampler(range(8)), batch_size=2, drop_last=False)
    loader = make_dataloader(
        list(range(8)), batch_sampler=inner, rank=1, world_size=2, collate_fn=list
    )
    assert isinstance(loader, ResumableDataLoader) and len(loader) == 4


def test_epoch_random_sampler_is_a_permutation_per_epoch():
    sampler = EpochRandomSampler(6, seed=0)
    sampler.set_epoch(1)
    first = list(sampler)
    sampler.set_epoch(2)
    assert sorted(first) == list(range(6)) and first != list(sampler)
