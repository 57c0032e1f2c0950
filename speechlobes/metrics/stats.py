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
    {'average': 0.8333333333333334, 'min_score': 0.0, 'min_id': 'b', 'max_score': 2.0,
     'max_id': 'c'}
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
    """The whole ``summary`` when ``field`` is None, else its ``field`` (a named KeyError if
    absent).
    """
    if field is None:
        return summary
    if field not in summary:
        raise KeyError(f"{owner}.summarize: unknown field {field!r}; fields are {list(summary)}")
    return summary[field]


class MetricStats:
    """Accumulates ``metric(*args, **kwargs)``, which returns one value per utterance.

    SpeechBrain's ``MetricStats``: with ``batch_eval`` (the default) the metric scores a
    whole batch; otherwise it is called on each ``(predict, target)`` pair, given as keyword
    arguments (with optional relative ``lengths`` cutting the padding). ``n_jobs`` is
    accepted and ignored: the evaluation runs in this process. ``summarize`` gives the
    average and the best/worst utterances; ``write_stats`` lists every utterance, highest
    value first.
    """

    def __init__(self, metric: Callable[..., Any], n_jobs: int = 1, batch_eval: bool = True):
        self.metric = metric
        self.n_jobs = n_jobs
        self.batch_eval = batch_eval
        self.clear()

    def clear(self) -> None:
        self.ids: list[str] = []
        self.scores: list[float] = []
        self.summary: dict[str, Any] = {}

    def append(self, ids: Sequence[str], *args, **kwargs) -> None:
        """Scores a batch: one value per id."""
        if self.batch_eval:
            scores = torch.as_tensor(self.metric(*args, **kwargs)).detach()
        else:
            if "predict" not in kwargs or "target" not in kwargs:
                raise ValueError("MetricStats(batch_eval=False): pass predict= and target=")
            scores = torch.as_tensor(sequence_evaluation(self.metric, **kwargs))
        if scores.shape != (len(ids),):
            raise ValueError(
                f"MetricStats.append: {getattr(self.metric, '__name__', self.metric)} returned "
                f"shape {tuple(scores.shape)} for {len(ids)} ids; "
                "it must return one value per utterance"
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
        self.summary = self._summary()
        return select_field(self.summary, field, "MetricStats")

    def _summary(self) -> dict[str, float | str]:
        if not self.scores:
            raise ValueError("MetricStats: nothing appended yet")
        low = min(range(len(self.scores)), key=self.scores.__getitem__)
        high = max(range(len(self.scores)), key=self.scores.__getitem__)
        return {
            "average": sum(self.scores) / len(self.scores),
            "min_score": self.scores[low],
            "min_id": self.ids[low],
            "max_score": self.scores[high],
            "max_id": self.ids[high],
        }

    def write_stats(self, filestream: TextIO, verbose: bool = False) -> None:
        """Writes the average and extremes, then ``id: value`` for every utterance, highest
        value first (also printed with ``verbose``)."""
        summary = self._summary()
        lines = [
            f"Average score: {summary['average']}",
            f"Min error: {summary['min_score']} id: {summary['min_id']}",
            f"Max error: {summary['max_score']} id: {summary['max_id']}",
        ]
        ranked = sorted(zip(self.scores, self.ids, strict=True), key=lambda pair: -pair[0])
        lines += [f"{utt_id}: {score}" for score, utt_id in ranked]
        text = "\n".join(lines) + "\n"
        filestream.write(text)
        if verbose:
            print(text, end="")


def sequence_evaluation(
    metric: Callable[[Any, Any], Any],
    predict: Sequence[Any] | torch.Tensor,
    target: Sequence[Any] | torch.Tensor,
    lengths: torch.Tensor | None = None,
) -> list[Any]:
    """``metric(p, t)`` for each pair, the padding cut by relative ``lengths`` first."""
    if lengths is not None:
        absolute = (lengths * predict.size(1)).round().int().tolist()
        predict = [row[:n].cpu() for row, n in zip(predict, absolute, strict=True)]
        target = [row[:n].cpu() for row, n in zip(target, absolute, strict=True)]
    return [metric(p, t) for p, t in zip(predict, target, strict=True)]


class MultiMetricStats:
    """Several metrics at once: ``metric`` returns a dict (or a namedtuple) of per-utterance
    values, each kept in its own :class:`MetricStats`.

    Example:
        >>> def metric(a, b):
        ...     return {"sum": a + b, "diff": a - b}
        >>> stats = MultiMetricStats(metric, batch_eval=True)
        >>> stats.append(["x", "y"], a=torch.tensor([2.0, 1.0]), b=torch.tensor([1.0, 2.0]))
        >>> stats.summarize("average")
        {'sum': 3.0, 'diff': 0.0}
        >>> stats.summarize(flat=True)["diff_min_id"]
        'y'
    """

    def __init__(self, metric: Callable[..., Any], n_jobs: int = 1, batch_eval: bool = False):
        self.metric = metric
        self.n_jobs = n_jobs
        self.batch_eval = batch_eval
        self.ids: list[str] = []
        self.metrics: dict[str, MetricStats] = {}

    def append(self, ids: Sequence[str], *args, **kwargs) -> None:
        """Scores a batch with every metric."""
        self.ids.extend(ids)
        if self.batch_eval:
            scores = {
                key: value.detach() for key, value in _as_dict(self.metric(*args, **kwargs)).items()
            }
        else:
            if "predict" not in kwargs or "target" not in kwargs:
                raise ValueError("MultiMetricStats(batch_eval=False): pass predict= and target=")
            per_item = [_as_dict(item) for item in sequence_evaluation(self.metric, **kwargs)]
            scores = {key: torch.tensor([item[key] for item in per_item]) for key in per_item[0]}
        for key, values in scores.items():
            self.metrics.setdefault(key, MetricStats(lambda x: x)).append(ids, values)

    def summarize(self, field: str | None = None, flat: bool = False) -> dict[str, Any]:
        """``{metric: summary}`` (or one ``field`` of each); ``flat`` gives
        ``{metric_field: value}``.
        """
        result = {key: stats.summarize(field) for key, stats in self.metrics.items()}
        if flat:
            result = {
                f"{key}_{name}": value
                for key, fields in result.items()
                for name, value in (
                    fields.items() if isinstance(fields, dict) else [(field, fields)]
                )
            }
        return result


def _as_dict(values: Any) -> dict[str, Any]:
    return values._asdict() if hasattr(values, "_asdict") else dict(values)
