"""Epoch plans of sharded data: the split over ranks and workers, shuffling, batches, evening."""

import numpy as np
import pytest

from speechlobes.dataio.epoch_plan import (
    Batching,
    Layout,
    interleave,
    plan_epoch,
    quantile_boundaries,
)


def random_shards(num_shards, seed=0, low=5, high=30):
    rng = np.random.default_rng(seed)
    return [
        rng.uniform(0.5, 8.0, rng.integers(low, high)).round(3).tolist() for _ in range(num_shards)
    ]


def items_of(stream):
    return [item for batch in stream.batches for item in batch]


def shard_of(plan, item):
    return int(np.searchsorted(plan.offsets, item, side="right") - 1)


def test_two_ranks_by_two_workers_read_disjoint_whole_shards_and_every_utterance_once():
    durations = random_shards(11)
    layout = Layout(world_size=2, num_workers=2)
    plan = plan_epoch(durations, layout, Batching(max_batch_length=30.0), seed=3, epoch=1)
    everything = [item for stream in plan.streams for item in items_of(stream)]
    assert sorted(everything) == list(range(sum(map(len, durations))))
    readers = {}
    for number, stream in enumerate(plan.streams):
        assert all(piece.parts == 1 for piece in stream.pieces)
        for piece in stream.pieces:
            assert piece.shard not in readers, "a shard is read by two streams"
            readers[piece.shard] = number
        assert {shard_of(plan, item) for item in items_of(stream)} <= {
            piece.shard for piece in stream.pieces
        }
    assert sorted(readers) == list(range(11))
    assert plan.num_batches(0) == plan.num_batches(1)
    assert [len(stream.pieces) for stream in plan.streams] == [3, 3, 3, 2]


def test_fewer_shards_than_streams_are_read_in_pieces_without_duplicates():
    durations = random_shards(3, low=20, high=21)
    layout = Layout(world_size=2, num_workers=4)  # 8 streams, 3 shards: 3 pieces each
    plan = plan_epoch(durations, layout, Batching(max_batch_ex=2), seed=0)
    everything = sorted(item for stream in plan.streams for item in items_of(stream))
    assert everything == list(range(60))
    assert all(piece.parts == 3 for stream in plan.streams for piece in stream.pieces)
    for stream in plan.streams:
        for item in items_of(stream):
            shard = shard_of(plan, item)
            position = item - plan.offsets[shard]
            assert any(p.shard == shard and p.holds(position) for p in stream.pieces)
    assert plan.num_batches(0) == plan.num_batches(1)


@pytest.mark.parametrize("drop_last", [False, True])
def test_uneven_shards_give_every_rank_the_same_number_of_batches(drop_last):
    durations = random_shards(5, seed=1)  # 3 shards on rank 0, 2 on rank 1
    layout = Layout(world_size=2, num_workers=2)
    batching = Batching(max_batch_length=25.0, drop_last=drop_last)
    plan = plan_epoch(durations, layout, batching, seed=0, epoch=2)
    unplanned = plan_epoch(
        durations, layout, Batching(max_batch_length=25.0, drop_last=False), seed=0, epoch=2
    )
    counts = [plan.num_batches(rank) for rank in range(2)]
    assert counts[0] == counts[1]
    everything = [item for stream in plan.streams for item in items_of(stream)]
    assert len(everything) == len(set(everything))
    total = sum(map(len, durations))
    if drop_last:
        assert len(everything) < total
        before = [sum(len(s.batches) for s in unplanned.rank_streams(r)) for r in range(2)]
        assert counts[0] <= min(before)
    else:
        assert sorted(everything) == list(range(total))


def test_even_out_splits_the_largest_batches_in_place():
    durations = [[1.0] * 8, [1.0] * 2]
    plan = plan_epoch(durations, Layout(2), Batching(max_batch_ex=4), shuffle=False)
    assert [s.batches for s in plan.streams] == [[[0, 1, 2, 3], [4, 5, 6, 7]], [[8], [9]]]
    durations = [[1.0] * 5, [1.0] * 8, [1.0] * 4]
    plan = plan_epoch(durations, Layout(2), Batching(max_batch_ex=8), shuffle=False)
    # rank 0 reads shards 0 and 2: [0..4, 13, 14, 15] and [16]; rank 1's [5..12] is cut once
    assert plan.streams[0].batches == [[0, 1, 2, 3, 4, 13, 14, 15], [16]]
    assert plan.streams[1].batches == [[5, 6, 7, 8], [9, 10, 11, 12]]


def test_a_rank_without_enough_utterances_is_an_error_unless_drop_last():
    durations = [[1.0] * 40, [1.0]]
    with pytest.raises(ValueError, match="rank 1 has too few utterances"):
        plan_epoch(durations, Layout(2), Batching(max_batch_ex=4), shuffle=False)
    plan = plan_epoch(durations, Layout(2), Batching(max_batch_ex=4, drop_last=True), shuffle=False)
    assert plan.num_batches(0) == plan.num_batches(1) == 1


def test_dynamic_batches_respect_the_length_bound_the_count_bound_and_buckets():
    durations = random_shards(6, seed=4)
    lengths = np.concatenate(durations)
    boundaries = quantile_boundaries(lengths, 3)
    batching = Batching(max_batch_length=20.0, max_batch_ex=5, bucket_boundaries=boundaries)
    plan = plan_epoch(durations, Layout(1, 2), batching, seed=5)
    buckets = np.searchsorted(boundaries, lengths, side="left")
    batches = [batch for stream in plan.streams for batch in stream.batches]
    for batch in batches:
        assert len(batch) <= 5
        assert len(batch) == 1 or lengths[batch].max() * len(batch) <= 20.0
        assert len(set(buckets[batch])) == 1, "a batch mixes buckets"
    padded = sum(lengths[b].max() * len(b) for b in batches)
    assert 1 - lengths.sum() / padded < 0.25  # bucketing keeps padding low
    fixed = plan_epoch(durations, Layout(1), Batching(max_batch_ex=7), shuffle=False)
    sizes = [len(b) for b in fixed.streams[0].batches]
    assert sizes == [7] * (len(lengths) // 7) + ([len(lengths) % 7] if len(lengths) % 7 else [])


def spearman(order):
    ranks = np.argsort(np.argsort(order))
    return np.corrcoef(ranks, np.arange(len(order)))[0, 1]


def test_shuffling_draws_a_new_well_mixed_order_each_epoch():
    durations = random_shards(20, seed=7, low=40, high=41)  # 800 utterances in 20 shards
    batching = Batching(max_batch_ex=1)  # one utterance per batch: the order is visible
    orders = []
    for epoch in range(3):
        plan = plan_epoch(durations, Layout(1), batching, seed=11, epoch=epoch, buffer_size=100)
        orders.append(items_of(plan.streams[0]))
        assert sorted(orders[-1]) == list(range(800))
    assert orders[0] != orders[1] != orders[2]
    for a, b in [(0, 1), (1, 2), (0, 2)]:
        agreement = np.mean(np.asarray(orders[a]) == np.asarray(orders[b]))
        assert agreement < 0.02
        assert abs(spearman(np.asarray(orders[b])[np.argsort(orders[a])])) < 0.3
    for order in orders:
        assert abs(spearman(order)) < 0.3  # far from the written order
        # neighbours in the written order (same shard) are spread out, not kept together
        position = np.argsort(order)
        gaps = np.abs(np.diff(position[np.arange(0, 800, 40)[:, None] + np.arange(40)], axis=1))
        assert np.median(gaps) > 20
    again = plan_epoch(durations, Layout(1), batching, seed=11, epoch=1, buffer_size=100)
    assert items_of(again.streams[0]) == orders[1]


def test_without_shuffle_streams_read_in_index_order():
    durations = [[1.0] * 3, [1.0] * 3]
    plan = plan_epoch(durations, Layout(1), Batching(max_batch_ex=2), shuffle=False)
    assert plan.streams[0].batches == [[0, 1], [2, 3], [4, 5]]


def test_filtered_utterances_are_never_planned():
    durations = [[1.0, 9.0, 2.0], [12.0, 3.0]]
    keep = np.asarray(durations[0] + durations[1]) <= 10.0
    plan = plan_epoch(durations, Layout(1), Batching(max_batch_ex=10), shuffle=False, keep=keep)
    assert plan.streams[0].batches == [[0, 1, 2, 4]]
    with pytest.raises(ValueError, match="no utterance to plan"):
        plan_epoch(durations, Layout(1), Batching(max_batch_ex=1), keep=np.zeros(5, dtype=bool))


def test_interleave_is_round_robin_skipping_finished_workers():
    assert interleave([2, 2]) == [0, 1, 0, 1]
    assert interleave([1, 3, 0]) == [0, 1, 1, 1]
    assert interleave([]) == []


def test_batching_rules_are_checked():
    with pytest.raises(ValueError, match="give max_batch_length"):
        Batching()
    with pytest.raises(ValueError, match="max_batch_length must be positive"):
        Batching(max_batch_length=0)
