"""Who reads which shards, and which batches they form, in one epoch of sharded data.

A plan is a pure function of the shard index (ids and durations per shard), the options, the
process layout (ranks x DataLoader workers) and ``(seed, epoch)``. Every rank computes the plan
of every rank from metadata alone (no tar is opened), which lets ranks agree on how many
batches each yields, and lets a resumed run replay exactly the batches it had not consumed.

The steps, for a layout of ``world_size`` ranks with ``num_workers`` streams each:

1. **Order.** Shards are taken in a random order drawn from ``(seed, epoch)`` (index order
   when ``shuffle`` is off).
2. **Deal.** Stream ``s = rank + world_size * worker`` takes shards ``s, s + S, s + 2S...`` of
   that order (``S`` streams in all): ranks and workers read disjoint shards, no utterance twice.
   When there are fewer shards than streams, each shard is dealt as ``k`` pieces (``k`` the
   smallest that gives at least ``S`` pieces), piece ``j`` holding the utterances at positions
   ``j, j + k, ...``; such a shard is read by ``k`` streams, each keeping its own utterances.
3. **Shuffle.** Each stream passes its utterances through a shuffle buffer of ``buffer_size``
   (a random one is emitted each time a new one comes in), drawn from ``(seed, epoch, stream)``.
4. **Batch.** Utterances go to length buckets (``bucket_boundaries``); each bucket fills one
   batch at a time while ``longest duration * count <= max_batch_length`` (and ``count <=
   max_batch_ex``), as :class:`~speechlobes.dataio.sampler.DynamicBatchSampler` packs them; a
   full batch is emitted, and what is left in the buckets at the end of the stream follows.
5. **Even out.** DDP needs every rank to take the same number of steps. With
   ``drop_last=False`` ranks with fewer batches split their largest batches in two until they
   have as many as the rank with most (every utterance exactly once); with ``drop_last=True``
   ranks drop their last batches down to the rank with fewest.

A DataLoader with ``W`` workers hands out their batches round-robin, skipping workers that
are done (:func:`interleave`): that order is what a rank's training loop sees.

Example:
    >>> durations = [[1.0, 2.0, 1.5], [0.5, 3.0], [2.5, 1.0, 1.0], [1.0, 1.0]]
    >>> plan = plan_epoch(durations, Layout(world_size=2), Batching(max_batch_length=4.0),
    ...                   shuffle=False)
    >>> [stream.batches for stream in plan.streams]  # rank 1 cut [8, 9] to match rank 0
    [[[0, 1], [2], [5], [6, 7]], [[3], [4], [8], [9]]]
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "Batching",
    "EpochPlan",
    "Layout",
    "Piece",
    "StreamPlan",
    "interleave",
    "plan_epoch",
    "quantile_boundaries",
]


@dataclass(frozen=True)
class Layout:
    """The processes reading: ``world_size`` ranks, each with ``num_workers`` streams (a
    DataLoader with 0 workers reads in the main process: one stream)."""

    world_size: int = 1
    num_workers: int = 0

    @property
    def streams_per_rank(self) -> int:
        return max(1, self.num_workers)

    @property
    def num_streams(self) -> int:
        return self.world_size * self.streams_per_rank

    def stream(self, rank: int, worker: int) -> int:
        """The stream index of ``worker`` on ``rank``."""
        return rank + self.world_size * worker


@dataclass(frozen=True)
class Batching:
    """How utterances become batches (the same rules as ``DynamicBatchSampler``).

    Attributes:
        max_batch_length: bound on ``longest duration * batch size`` (seconds); None for
            batches bounded by ``max_batch_ex`` alone (fixed-size batches).
        max_batch_ex: bound on the number of utterances in a batch.
        bucket_boundaries: upper bounds of the length buckets (empty: one bucket).
        drop_last: even out ranks by dropping batches rather than splitting them.
    """

    max_batch_length: float | None = None
    max_batch_ex: int | None = None
    bucket_boundaries: tuple[float, ...] = ()
    drop_last: bool = False

    def __post_init__(self):
        if self.max_batch_length is None and self.max_batch_ex is None:
            raise ValueError("give max_batch_length (seconds) or max_batch_ex (utterances)")
        if self.max_batch_length is not None and self.max_batch_length <= 0:
            raise ValueError(f"max_batch_length must be positive, got {self.max_batch_length}")
        if self.max_batch_ex is not None and self.max_batch_ex < 1:
            raise ValueError(f"max_batch_ex must be at least 1, got {self.max_batch_ex}")


@dataclass(frozen=True)
class Piece:
    """The utterances of ``shard`` at positions ``part, part + parts, ...`` (all when
    ``parts`` is 1)."""

    shard: int
    parts: int = 1
    part: int = 0

    def holds(self, position: int) -> bool:
        return position % self.parts == self.part


@dataclass
class StreamPlan:
    """What one stream (a rank's worker) reads and yields: ``pieces`` in reading order, and
    ``batches`` of utterance numbers (``offsets[shard] + position``) in yielding order."""

    pieces: list[Piece] = field(default_factory=list)
    batches: list[list[int]] = field(default_factory=list)


@dataclass
class EpochPlan:
    """Every stream's plan; stream ``rank + world_size * worker`` (see :class:`Layout`)."""

    layout: Layout
    offsets: list[int]  # utterance number of each shard's first utterance
    streams: list[StreamPlan]

    def rank_streams(self, rank: int) -> list[StreamPlan]:
        """The streams of ``rank``, by worker."""
        layout = self.layout
        return [self.streams[layout.stream(rank, w)] for w in range(layout.streams_per_rank)]

    def num_batches(self, rank: int) -> int:
        return sum(len(stream.batches) for stream in self.rank_streams(rank))


def plan_epoch(
    durations: Sequence[Sequence[float]],
    layout: Layout,
    batching: Batching,
    seed: int = 0,
    epoch: int = 0,
    shuffle: bool = True,
    buffer_size: int = 500,
    keep: np.ndarray | None = None,
) -> EpochPlan:
    """Plan an epoch (see the module docstring).

    Args:
        durations: per shard, the durations of its utterances in tar order.
        layout: ranks and workers.
        batching: batch rules.
        seed, epoch: the draw.
        shuffle: shuffle the shard order and pass utterances through the buffer.
        buffer_size: utterances in each stream's shuffle buffer.
        keep: a mask over all utterances (in shard order): only those kept are planned.
    """
    sizes = [len(shard) for shard in durations]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    lengths = np.concatenate([np.asarray(d, dtype=np.float64) for d in durations])
    keep = np.ones(len(lengths), dtype=bool) if keep is None else keep
    kept_positions = [np.flatnonzero(keep[offsets[s] : offsets[s + 1]]) for s in range(len(sizes))]
    nonempty = [s for s, positions in enumerate(kept_positions) if len(positions)]
    if not nonempty:
        raise ValueError("no utterance to plan: every shard is empty or filtered out")
    rng = np.random.default_rng([seed, epoch])
    order = [nonempty[i] for i in rng.permutation(len(nonempty))] if shuffle else nonempty
    parts = math.ceil(layout.num_streams / len(order))
    pieces = [Piece(shard, parts, part) for shard in order for part in range(parts)]
    streams = []
    for stream in range(layout.num_streams):
        dealt = pieces[stream :: layout.num_streams]
        items = [
            int(offsets[piece.shard] + position)
            for piece in dealt
            for position in kept_positions[piece.shard]
            if piece.holds(int(position))
        ]
        if shuffle:
            items = _buffer_shuffle(
                items, buffer_size, np.random.default_rng([seed, epoch, stream])
            )
        streams.append(StreamPlan(dealt, _pack(items, lengths, batching)))
    plan = EpochPlan(layout, offsets.tolist(), streams)
    _even_out(plan, batching.drop_last)
    return plan


def quantile_boundaries(lengths: np.ndarray, num_buckets: int) -> tuple[float, ...]:
    """Quantile boundaries giving ``num_buckets`` buckets of similar sizes (as
    ``DynamicBatchSampler`` computes them).

    Example:
        >>> quantile_boundaries(np.arange(1.0, 9.0), 2)
        (4.5,)
    """
    if num_buckets < 1:
        raise ValueError(f"num_buckets must be at least 1, got {num_buckets}")
    quantiles = np.linspace(0, 1, num_buckets + 1)[1:-1]
    return tuple(float(b) for b in np.unique(np.quantile(lengths, quantiles)))


def interleave(counts: Sequence[int]) -> list[int]:
    """The worker of each batch a DataLoader yields when its workers yield ``counts`` batches:
    round-robin, skipping workers that are done.

    Example:
        >>> interleave([3, 1, 2])
        [0, 1, 2, 0, 2, 0]
    """
    remaining = list(counts)
    order = []
    while any(remaining):
        for worker, left in enumerate(remaining):
            if left:
                order.append(worker)
                remaining[worker] -= 1
    return order


def _buffer_shuffle(items: list[int], buffer_size: int, rng: np.random.Generator) -> list[int]:
    """Each new item replaces a random one of the buffer, which is emitted; the buffer's last
    content follows in a random order."""
    if buffer_size <= 1:
        return items
    buffer = items[:buffer_size]
    draws = rng.integers(0, len(buffer), max(0, len(items) - len(buffer))).tolist()
    out = []
    for item, slot in zip(items[len(buffer) :], draws, strict=True):
        out.append(buffer[slot])
        buffer[slot] = item
    out.extend(buffer[i] for i in rng.permutation(len(buffer)))
    return out


def _pack(items: list[int], lengths: np.ndarray, batching: Batching) -> list[list[int]]:
    """One open batch per bucket, filled in stream order; full batches are emitted at once."""
    limit = math.inf if batching.max_batch_length is None else batching.max_batch_length
    most = batching.max_batch_ex or math.inf
    boundaries = np.asarray(batching.bucket_boundaries, dtype=np.float64)
    buckets = np.searchsorted(boundaries, lengths[items], side="left").tolist()
    open_batches: dict[int, tuple[list[int], float]] = {}
    batches = []
    for item, bucket in zip(items, buckets, strict=True):
        batch, longest = open_batches.get(bucket, ([], 0.0))
        length = float(lengths[item])
        if batch and (max(longest, length) * (len(batch) + 1) > limit or len(batch) >= most):
            batches.append(batch)
            batch, longest = [], 0.0
        open_batches[bucket] = (batch + [item], max(longest, length))
    batches.extend(open_batches[bucket][0] for bucket in sorted(open_batches))
    return batches


def _even_out(plan: EpochPlan, drop_last: bool) -> None:
    """Give every rank the same number of batches (module docstring, step 5), in place."""
    counts = [plan.num_batches(rank) for rank in range(plan.layout.world_size)]
    for rank, count in enumerate(counts):
        streams = plan.rank_streams(rank)
        if drop_last and count > min(counts):
            order = interleave([len(stream.batches) for stream in streams])[: min(counts)]
            for worker, stream in enumerate(streams):
                del stream.batches[order.count(worker) :]
        elif not drop_last and count < max(counts):
            _split_largest(streams, max(counts) - count, rank)


def _split_largest(streams: list[StreamPlan], missing: int, rank: int) -> None:
    """Add ``missing`` batches by cutting batches into contiguous pieces, always cutting the
    batch whose pieces are largest once more (pieces stay where the batch was)."""
    cuts = [[1] * len(stream.batches) for stream in streams]
    heap = [
        (-len(batch), worker, position)
        for worker, stream in enumerate(streams)
        for position, batch in enumerate(stream.batches)
    ]
    heapq.heapify(heap)
    for _ in range(missing):
        if not heap or -heap[0][0] < 2:
            raise ValueError(
                f"rank {rank} has too few utterances to take as many steps as the other ranks; "
                "write more, smaller shards, use fewer ranks or workers, or set drop_last"
            )
        _, worker, position = heap[0]
        cuts[worker][position] += 1
        size = len(streams[worker].batches[position])
        heapq.heapreplace(heap, (-math.ceil(size / cuts[worker][position]), worker, position))
    for stream, stream_cuts in zip(streams, cuts, strict=True):
        stream.batches[:] = [
            piece.tolist()
            for batch, count in zip(stream.batches, stream_cuts, strict=True)
            for piece in np.array_split(np.asarray(batch, dtype=np.int64), count)
        ]
