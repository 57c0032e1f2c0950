"""Stream batches from tar shards: split across ranks and workers, shuffled, bucketed, resumable.

:class:`StreamingDataset` reads the shards that :func:`speechlobes.dataio.shards.write_shards`
writes. Each epoch follows a plan (:mod:`speechlobes.dataio.epoch_plan`) computed from the shard
index alone: shards are dealt to ranks and DataLoader workers (no utterance twice, none lost),
utterances pass through a shuffle buffer and are packed into duration-bucketed batches as
``DynamicBatchSampler`` packs them, and every rank yields the same number of batches. A worker
reads its shards in order, decodes each utterance's audio into ``sig`` (resampled to
``sample_rate``), runs the dynamic items a ``DynamicItemDataset`` would run (tokenisation, fbank
on the fly...) and collates each planned batch with ``PaddedBatch``.

:class:`StreamingLoader` is the DataLoader for it. Its position in an epoch (batches consumed) is
saved by a ``Checkpointer``; on recovery every worker skips exactly the batches already handed
out (without decoding them) and the DataLoader's round-robin over workers is rotated to where it
stood, so the rest of the epoch is the batches an uninterrupted run would have yielded.

Example:
    >>> import json, tempfile, numpy as np, soundfile as sf
    >>> from speechlobes.dataio.shards import write_shards
    >>> folder = tempfile.mkdtemp()
    >>> manifest = {}
    >>> for i in range(6):
    ...     sf.write(f"{folder}/{i}.flac", np.zeros(800 * (i + 1), dtype="int16"), 16000)
    ...     manifest[f"utt{i}"] = {"wav": f"{folder}/{i}.flac", "duration": 0.05 * (i + 1)}
    >>> _ = open(f"{folder}/m.json", "w").write(json.dumps(manifest))
    >>> _ = write_shards(f"{folder}/m.json", f"{folder}/shards", shard_utterances=2)
    >>> dataset = StreamingDataset(f"{folder}/shards", output_keys=["id", "sig"],
    ...                            max_batch_length=0.3, seed=1)
    >>> loader = StreamingLoader(dataset)
    >>> loader.set_epoch(1)
    >>> batches = list(loader)
    >>> sorted(i for batch in batches for i in batch.id)
    ['utt0', 'utt1', 'utt2', 'utt3', 'utt4', 'utt5']
    >>> all(batch.sig.data.shape[1] * len(batch) <= 0.3 * 16000 for batch in batches)
    True
"""

from __future__ import annotations

import inspect
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from speechlobes import distributed
from speechlobes.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks
from speechlobes.dataio.batch import PaddedBatch
from speechlobes.dataio.dataset import DynamicItemDataset
from speechlobes.dataio.epoch_plan import (
    Batching,
    EpochPlan,
    Layout,
    StreamPlan,
    interleave,
    plan_epoch,
    quantile_boundaries,
)
from speechlobes.dataio.pipeline import DataPipeline, OutputKeys
from speechlobes.dataio.shards import (
    ShardIndex,
    ShardInfo,
    ShardSample,
    decode_audio,
    read_shard,
    write_manifest_shards,
)

__all__ = [
    "StreamingDataset",
    "StreamingLoader",
    "check_data_format",
    "make_streaming_loader",
    "shard_loaders",
]

logger = logging.getLogger(__name__)

AUDIO_KEY = "audio_bytes"


class StreamingDataset(IterableDataset):
    """Batches from tar shards (iterate it through a :class:`StreamingLoader`).

    Args:
        shards: a shard folder (or its ``index.json``), or several, read as one dataset.
        dynamic_items: functions marked with ``@takes``/``@provides``, as for a
            ``DynamicItemDataset``; they see the manifest's fields, ``id``, the decoded audio
            under ``signal_key`` and the encoded audio file under ``audio_bytes``.
        output_keys: the keys each example returns (a dict renames).
        signal_key: the key of the decoded waveform (float32, channels averaged).
        sample_rate: resample the audio to this rate (None: keep each file's rate).
        max_batch_length: bound on ``longest duration * batch size``, in seconds.
        max_batch_ex: bound on the utterances in a batch (alone: fixed-size batches).
        num_buckets: length buckets from duration quantiles (or give ``bucket_boundaries``).
        shuffle: shuffle the shard order and pass utterances through a shuffle buffer, drawn
            from ``(seed, epoch)``; otherwise read in index order.
        buffer_size: utterances in each worker's shuffle buffer; the buffer and the open
            batches hold encoded audio (about buffer_size x the mean file size per worker).
        min_duration, max_duration: leave out shorter or longer utterances (seconds).
        drop_last: even ranks out by dropping batches instead of splitting batches.
        rank, world_size: this process's place (default: torch.distributed's, or torchrun's
            environment, read when an epoch is planned).
        collate_fn: turns a list of examples into a batch.
    """

    def __init__(
        self,
        shards: str | os.PathLike | Sequence[str | os.PathLike],
        dynamic_items: Iterable[Callable | dict[str, Any]] = (),
        output_keys: OutputKeys = (),
        signal_key: str = "sig",
        sample_rate: int | None = None,
        max_batch_length: float | None = None,
        max_batch_ex: int | None = None,
        num_buckets: int = 1,
        bucket_boundaries: Sequence[float] | None = None,
        shuffle: bool = True,
        buffer_size: int = 500,
        seed: int = 0,
        min_duration: float | None = None,
        max_duration: float | None = None,
        drop_last: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
        collate_fn: Callable[[list[dict[str, Any]]], Any] = PaddedBatch,
    ):
        folders = [shards] if isinstance(shards, str | os.PathLike) else list(shards)
        self.indexes = [ShardIndex.load(folder) for folder in folders]
        self.shards = [(index, shard) for index in self.indexes for shard in index.shards]
        lengths = np.asarray([d for _, shard in self.shards for d in shard.durations])
        self.keep = np.ones(len(lengths), dtype=bool)
        if min_duration is not None:
            self.keep &= lengths >= min_duration
        if max_duration is not None:
            self.keep &= lengths <= max_duration
        if bucket_boundaries is None and self.keep.any():
            bucket_boundaries = quantile_boundaries(lengths[self.keep], num_buckets)
        self.batching = Batching(
            max_batch_length, max_batch_ex, tuple(bucket_boundaries or ()), drop_last
        )
        self.shuffle, self.buffer_size, self.seed = shuffle, buffer_size, seed
        self.sample_rate, self.signal_key = sample_rate, signal_key
        self.collate_fn = collate_fn
        self._rank, self._world_size = rank, world_size
        self.epoch = 0
        self.num_workers = 0  # set by StreamingLoader
        self.start = _Start()
        source = ", ".join(str(index.folder) for index in self.indexes)
        static_keys = {"id", AUDIO_KEY}.union(*(index.fields for index in self.indexes))
        decode = {"func": self._decode, "takes": (AUDIO_KEY, "id"), "provides": signal_key}
        self.pipeline = DataPipeline(static_keys, [decode, *dynamic_items], output_keys, source)
        self._plan: tuple[tuple, EpochPlan] | None = None

    # the DynamicItemDataset API: both act on self.pipeline alone
    add_dynamic_item = DynamicItemDataset.add_dynamic_item
    set_output_keys = DynamicItemDataset.set_output_keys

    # ------------------------------------------------------------------ planning
    @property
    def rank(self) -> int:
        return distributed.get_rank() if self._rank is None else self._rank

    @property
    def world_size(self) -> int:
        return distributed.get_world_size() if self._world_size is None else self._world_size

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order to draw (the loader forwards its ``set_epoch``)."""
        self.epoch = epoch

    def plan(self) -> EpochPlan:
        """The current epoch's plan for the current layout (computed once, then cached)."""
        layout = Layout(self.world_size, self.num_workers)
        if not 0 <= self.rank < layout.world_size:
            raise ValueError(f"rank {self.rank} is outside world_size {layout.world_size}")
        key = (self.epoch, layout)
        if self._plan is None or self._plan[0] != key:
            durations = [shard.durations for _, shard in self.shards]
            plan = plan_epoch(
                durations,
                layout,
                self.batching,
                self.seed,
                self.epoch,
                self.shuffle,
                self.buffer_size,
                self.keep,
            )
            self._plan = (key, plan)
        return self._plan[1]

    def __len__(self) -> int:
        """Batches this rank yields in the current epoch."""
        return self.plan().num_batches(self.rank)

    def start_after(self, consumed: int) -> None:
        """Make the next iteration begin after the first ``consumed`` batches of the epoch (in
        the order a DataLoader with ``num_workers`` workers yields them)."""
        # pinned here, in the main process, for workers started with another method than fork
        self._rank, self._world_size = self.rank, self.world_size
        streams = self.plan().rank_streams(self.rank)
        order = interleave([len(stream.batches) for stream in streams])
        if not 0 <= consumed <= len(order):
            raise ValueError(f"cannot start after batch {consumed}: the epoch has {len(order)}")
        skips = [order[:consumed].count(worker) for worker in range(len(streams))]
        first = (order[consumed - 1] + 1) % len(streams) if consumed else 0
        self.start = _Start(tuple(skips), first)

    # ------------------------------------------------------------------ reading
    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        workers = 0 if info is None else info.num_workers
        if workers != self.num_workers:
            raise RuntimeError(
                f"the dataset was planned for {self.num_workers} workers and runs in {workers}: "
                "build its DataLoader with StreamingLoader(dataset, num_workers=...)"
            )
        streams = self.plan().rank_streams(self.rank)
        start, self.start = self.start, _Start()
        # DataLoader workers are served round-robin from worker 0; worker 0 plays the stream
        # that was next when the position was saved
        worker = ((0 if info is None else info.id) + start.first) % len(streams)
        yield from self._read(streams[worker], start.skip(worker))

    def _read(self, stream: StreamPlan, skip: int) -> Iterator[Any]:
        """Yield ``stream``'s batches after the first ``skip``, reading its pieces in order."""
        offsets = self.plan().offsets
        batches = stream.batches[skip:]
        batch_of = {item: number for number, batch in enumerate(batches) for item in batch}
        missing = [len(batch) for batch in batches]
        held: dict[int, ShardSample] = {}
        done = 0
        for piece in stream.pieces:
            first = offsets[piece.shard]
            if done == len(batches) or not any(
                first + p in batch_of
                for p in range(piece.part, offsets[piece.shard + 1] - first, piece.parts)
            ):
                continue
            index, shard = self.shards[piece.shard]
            position = -1
            for position, sample in enumerate(read_shard(index.path(shard))):
                _check_sample(index, shard, position, sample)
                item = first + position
                if piece.holds(position) and item in batch_of:
                    held[item] = sample
                    missing[batch_of[item]] -= 1
                while done < len(batches) and missing[done] == 0:
                    yield self._collate([held.pop(item) for item in batches[done]])
                    done += 1
                if done == len(batches):
                    break
            else:
                if position + 1 != shard.num_utterances:
                    raise ValueError(
                        f"{index.path(shard)}: {position + 1} utterances, the index lists "
                        f"{shard.num_utterances}; write the shards again"
                    )
        if done < len(batches):
            raise RuntimeError(f"{self.pipeline.source}: the shards ended before the plan")

    def _collate(self, samples: list[ShardSample]) -> Any:
        examples = [
            self.pipeline.compute_outputs(
                {**sample.fields, "id": sample.id, AUDIO_KEY: sample.audio}
            )
            for sample in samples
        ]
        return self.collate_fn(examples)

    def _decode(self, audio: bytes, example_id: str) -> torch.Tensor:
        name = f"{self.pipeline.source}: '{example_id}'"
        return decode_audio(audio, name, resample_to=self.sample_rate)[0]

    def fingerprint(self) -> list[str]:
        """What identifies the shards (the source manifests' digests and writing options)."""
        return [json.dumps(index.source, sort_keys=True) for index in self.indexes]


@dataclass(frozen=True)
class _Start:
    """Where the next iteration begins: the batches each stream skips, and the stream that
    DataLoader worker 0 plays."""

    skips: tuple[int, ...] = ()
    first: int = 0

    def skip(self, stream: int) -> int:
        return self.skips[stream] if self.skips else 0


def _check_sample(index: ShardIndex, shard: ShardInfo, position: int, sample: ShardSample) -> None:
    if position >= shard.num_utterances or sample.id != shard.ids[position]:
        raise ValueError(
            f"{index.path(shard)}: utterance {position} is '{sample.id}', the index "
            f"({index.folder}/index.json) does not list it there; write the shards again"
        )


@register_checkpoint_hooks
class StreamingLoader(DataLoader):
    """The DataLoader of a :class:`StreamingDataset`, whose position a Checkpointer saves.

    Call ``set_epoch(epoch)`` before each epoch (the Brain does). ``batches_consumed`` counts
    the batches handed out in the current epoch; it is the same on every rank, and is saved
    (rank 0 writes it) with the epoch and the layout. A position saved under another number of
    ranks or workers, or from other shards, cannot be replayed: the epoch then restarts.

    Args:
        dataset: the dataset (it batches and shuffles itself).
        num_workers: DataLoader workers; each reads its own shards.
        **kwargs: other DataLoader options (``pin_memory``, ``prefetch_factor``, ``timeout``...).
    """

    def __init__(self, dataset: StreamingDataset, num_workers: int = 0, **kwargs):
        for name in ("batch_size", "shuffle", "sampler", "batch_sampler", "drop_last"):
            if name in kwargs:
                raise ValueError(f"StreamingLoader: set {name!r} on the StreamingDataset")
        if kwargs.get("persistent_workers") or kwargs.get("in_order") is False:
            raise ValueError(
                "StreamingLoader needs fresh workers each epoch and in-order batches: leave "
                "persistent_workers and in_order at their defaults"
            )
        dataset.num_workers = num_workers
        kwargs.setdefault("generator", torch.Generator().manual_seed(dataset.seed))
        super().__init__(dataset, batch_size=None, num_workers=num_workers, **kwargs)
        self.batches_consumed = 0
        self._resume_after = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's order, and re-seed the workers' seeding from (seed, epoch)."""
        self.dataset.set_epoch(epoch)
        self.generator.manual_seed(self.dataset.seed + epoch)

    def __iter__(self) -> Iterator[Any]:
        skip, self._resume_after = self._resume_after, 0
        self.dataset.start_after(skip)  # plans the epoch here, before the workers start
        self.batches_consumed = skip
        for batch in super().__iter__():
            self.batches_consumed += 1
            yield batch
        self.batches_consumed = 0

    def state_dict(self) -> dict[str, Any]:
        """The position: epoch, batches consumed, and what it is valid for."""
        return {
            "epoch": self.dataset.epoch,
            "batches_consumed": self.batches_consumed,
            "world_size": self.dataset.world_size,
            "num_workers": self.num_workers,
            "seed": self.dataset.seed,
            "shards": self.dataset.fingerprint(),
        }

    def load_state_dict(self, state: dict[str, Any], end_of_epoch: bool = False) -> None:
        """Resume at a saved position (``end_of_epoch``: the saved epoch was complete)."""
        self.set_epoch(state["epoch"])
        self._resume_after = 0 if end_of_epoch else state["batches_consumed"]
        now = self.state_dict()
        keys = ("world_size", "num_workers", "seed", "shards")
        changed = [key for key in keys if state[key] != now[key]]
        if self._resume_after and changed:
            logger.warning(
                "the loader position was saved with other %s; epoch %d restarts from its first "
                "batch (its first %d batches are seen twice)",
                ", ".join(changed),
                state["epoch"],
                self._resume_after,
            )
            self._resume_after = 0
        elif self._resume_after:
            logger.info("resuming epoch %d after batch %d", state["epoch"], self._resume_after)

    @mark_as_saver
    def _save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.state_dict()))

    @mark_as_loader
    def _load(self, path: Path, end_of_epoch: bool) -> None:
        self.load_state_dict(json.loads(Path(path).read_text()), end_of_epoch)


def make_streaming_loader(
    shards: str | os.PathLike | Sequence[str | os.PathLike],
    loader_kwargs: dict[str, Any] | None = None,
    **dataset_kwargs,
) -> StreamingLoader:
    """A :class:`StreamingLoader` from the loader kwargs a recipe gives a map-style dataset.

    ``batch_size`` becomes ``max_batch_ex``, ``shuffle`` (default False, as for a DataLoader)
    and the :class:`StreamingDataset` options (``max_batch_length``, ``num_buckets``,
    ``buffer_size``...) go to the dataset, the rest (``num_workers``, ``pin_memory``...) to the
    DataLoader. ``dataset_kwargs`` are further dataset options.

    Example:
        >>> make_streaming_loader("no/such/folder", {"batch_size": 8})
        Traceback (most recent call last):
        FileNotFoundError: no/such/folder/index.json: no shard index; write the shards first ...
    """
    kwargs = dict(loader_kwargs or {})
    if "batch_size" in kwargs:
        kwargs["max_batch_ex"] = kwargs.pop("batch_size")
    kwargs.setdefault("shuffle", False)
    names = inspect.signature(StreamingDataset).parameters
    dataset_options = {key: kwargs.pop(key) for key in list(kwargs) if key in names}
    dataset = StreamingDataset(shards, **{**dataset_options, **dataset_kwargs})
    return StreamingLoader(dataset, **kwargs)


def check_data_format(hparams: dict[str, Any], hparams_file: str, manifest_format: str) -> bool:
    """Check a recipe's ``data_format`` (its manifests' ``manifest_format`` or ``shards``);
    returns True for shards.

    Example:
        >>> check_data_format({"data_format": "shards"}, "h.yaml", "json")
        True
        >>> check_data_format({"data_format": "tar"}, "h.yaml", "json")
        Traceback (most recent call last):
        ValueError: h.yaml: data_format must be 'json' or 'shards', got 'tar'
    """
    value = hparams.get("data_format", manifest_format)
    if value not in (manifest_format, "shards"):
        raise ValueError(
            f"{hparams_file}: data_format must be {manifest_format!r} or 'shards', got {value!r}"
        )
    return value == "shards"


def shard_loaders(
    hparams: dict[str, Any],
    dynamic_items: Iterable[Callable | dict[str, Any]],
    output_keys: OutputKeys,
    splits: Sequence[str] = ("train", "valid", "test"),
    **dataset_kwargs: Any,
) -> dict[str, StreamingLoader]:
    """What a recipe's ``data_format: shards`` reads: a :class:`StreamingLoader` per split.

    For each split, the manifest ``<split>_csv`` (or ``<split>_json``) is written into shards
    under ``<shards_folder>/<manifest name>`` on the main process (skipped when they are up to
    date with the manifest), and streamed with the audio decoded into ``sig``.

    The hparams read: ``shards_folder``; ``data_folder`` (replaces ``$data_root``);
    ``sample_rate``; ``seed``; ``max_duration`` (training only); the loader kwargs
    ``train_loader_kwargs`` (training) or ``valid_loader_kwargs`` (the other splits), see
    :func:`make_streaming_loader`, updated with ``shards_loader_kwargs`` (``num_workers``,
    ``buffer_size``, ``max_batch_length``...). ``dataset_kwargs`` go to every
    :class:`StreamingDataset` (e.g. ``signal_key``, for a pipeline that reworks the audio).
    """
    manifests = {
        split: hparams.get(f"{split}_csv") or hparams.get(f"{split}_json") for split in splits
    }
    missing = [split for split, manifest in manifests.items() if manifest is None]
    if missing:
        raise KeyError(f"hparams name no manifest for {missing} (<split>_csv or <split>_json)")
    replacements = {"data_root": str(hparams.get("data_folder", ""))}
    distributed.run_on_main(
        write_manifest_shards,
        [manifests.values(), hparams["shards_folder"]],
        {"replacements": replacements},
    )
    loaders = {}
    for split, manifest in manifests.items():
        stage = "train" if split == "train" else "valid"
        kwargs = {**hparams[f"{stage}_loader_kwargs"], **hparams.get("shards_loader_kwargs", {})}
        loaders[split] = make_streaming_loader(
            Path(hparams["shards_folder"]) / Path(manifest).stem,
            kwargs,
            dynamic_items=dynamic_items,
            output_keys=output_keys,
            sample_rate=hparams.get("sample_rate"),
            seed=hparams.get("seed", 0),
            max_duration=hparams.get("max_duration") if split == "train" else None,
            **dataset_kwargs,
        )
    return loaders
