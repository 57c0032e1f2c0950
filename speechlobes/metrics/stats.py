"""Averaging any per-utterance metric over a dataset, and merging metrics across ranks.

Under ``torch.distributed`` every rank evaluates a shard of the data, and the loaders repeat
a few batches so that shards have equal sizes. Each metric's ``summarize`` therefore first
merges the utterances of all ranks, keeping each id once; it is a collective call, to be made
on EVERY rank (as ``on_stage_end`` does). Afterwards each rank holds all utterances, so
``write_stats`` on the main process alone writes the whole dataset.

Example:
    >>> def absolute_error(predictions, targets):
    ...     return (predictions - targets).abs()
    >>> stats = MetricStats(absolute_error)
    >>> stats.append(["a", "b"], torch.tensor([1.0, 2.0]), torch.tensor([1.5, 2.0]))
    >>> stats.append(["c"], predictions=torch.tensor([0.0]), targets=torch.tensor([2.0]))
    >>> stats.summarize()
    {'average': 0.8333333333333334, 'min_score': 0.0, 'min_id': 'b', 'max_score': 2.0, 'max_id': 'c'}
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any, TextIO, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


def gather_from_ranks(local: T) -> list[T]:
    """``[local]`` in a single process; under torch.distributed, every rank's ``local`` in rank
    order (a collective: every rank must call it)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [local]
    parts = [None] * dist.get_world_size()
    dist.all_gather_object(parts, local)
    return parts


def first_occurrences(ids: Sequence[Hashable]) -> list[int]:
    """Indices of the first occurrence of every id, in order.

    Example:
        >>> first_occurrences(["a", "b", "a", "c", "b"])
        [0, 1, 3]
    """
    seen, keep = set(), []
    for index, utt_id in enumerate(ids):
        if utt_id not in seen:
            seen.add(utt_id)
            keep.append(index)
    return keep


def select_field(summary: dict[str, Any], field: str | None, owner: str) -> Any:
    """The whole ``summary`` when ``field`` is None, else its ``field`` (a named KeyError if absent)."""
    if field is None:
        return summary
    if field not in summary:
        raise KeyError(f"{owner}.summarize: unknown field {field!r}; fields are {list(summary)}")
    return summary[field]


class MetricStats:
    """Accumulates ``metric(*args, **kwargs)``, which returns one value per utterance.

    ``summarize`` gives the average and the best/worst utterances; ``write_stats`` lists every
    utterance, highest value first.
    """

    def __init__(self, metric: Callable[..., torch.Tensor]):
        self.metric = metric
        self.clear()

    def clear(self) -> None:
        self.ids: list[str] = []
        self.scores: list[float] = []

    def append(self, ids: Sequence[str], *args, **kwargs) -> None:
        """Scores a batch; the metric must return a (batch,) tensor, one value per id."""
        scores = self.metric(*args, **kwargs).detach()
        if scores.shape != (len(ids),):
            raise ValueError(
                f"MetricStats.append: {getattr(self.metric, '__name__', self.metric)} returned "
                f"shape {tuple(scores.shape)} for {len(ids)} ids; it must return one value per utterance"
            )
        self.ids.extend(ids)
        self.scores.extend(scores.cpu().tolist())

    def summarize(self, field: str | None = None) -> dict[str, float | str] | float | str:
        """average, min_score, min_id, max_score, max_id (or one of them with ``field``).

        Merges all ranks' utterances first (see the module docstring).
        """
        parts = gather_from_ranks((self.ids, self.scores))
        if len(parts) > 1:
            ids = [utt_id for part_ids, _ in parts for utt_id in part_ids]
            scores = [score for _, part_scores in parts for score in part_scores]
            keep = first_occurrences(ids)
            self.ids, self.scores = [ids[i] for i in keep], [scores[i] for i in keep]
        return self._summary(field)

    def _summary(self, field: str | None) -> dict[str, float | str] | float | str:
        if not self.scores:
            raise ValueError("MetricStats: nothing appended yet")
        low = min(range(len(self.scores)), key=self.scores.__getitem__)
        high = max(range(len(self.scores)), key=self.scores.__getitem__)
        summary = {
            "average": sum(self.scores) / len(self.scores),
            "min_score": self.scores[low],
            "min_id": self.ids[low],
            "max_score": self.scores[high],
            "max_id": self.ids[high],
        }
        return select_field(summary, field, "MetricStats")

    def write_stats(self, filestream: TextIO) -> None:
        """Writes the average, then ``id: value`` for every utterance, highest value first."""
        filestream.write(f"Average score: {self._summary('average')}\n")
        for score, utt_id in sorted(zip(self.scores, self.ids, strict=True), reverse=True):
            filestream.write(f"{utt_id}: {score}\n")
