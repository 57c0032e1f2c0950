"""Detection metrics: equal error rate, minimum detection cost, and binary statistics.

SpeechBrain's ``EER``, ``minDCF`` and ``BinaryMetricStats`` (``speechbrain.utils.
metric_stats``), e.g. for speaker verification with an x-vector or ECAPA head: a trial is
positive when both sides come from the same speaker. The candidate thresholds are every
distinct score and the midpoints between neighbours; a positive score at or below the
threshold is a miss (false rejection), a negative score above it a false alarm.

Example:
    >>> positive, negative = torch.tensor([0.6, 0.7, 0.8, 0.5]), torch.tensor([0.4, 0.3, 0.55])
    >>> eer, threshold = EER(positive, negative)
    >>> round(eer, 4), threshold
    (0.2917, 0.5)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from speechlobes.metrics.stats import first_occurrences, gather_from_ranks, select_field

__all__ = ["EER", "BinaryMetricStats", "minDCF"]


def _error_rates(
    positive_scores: torch.Tensor, negative_scores: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Candidate thresholds and, at each, the miss rate and the false-alarm rate."""
    scores = torch.unique(torch.cat([positive_scores, negative_scores]))  # sorted
    thresholds = torch.sort(torch.cat([scores, (scores[:-1] + scores[1:]) / 2])).values
    positives = torch.sort(positive_scores).values
    negatives = torch.sort(negative_scores).values
    misses = torch.searchsorted(positives, thresholds, right=True)
    false_alarms = len(negatives) - torch.searchsorted(negatives, thresholds, right=True)
    miss_rate = misses.float() / len(positives)
    false_alarm_rate = false_alarms.float() / len(negatives)
    return thresholds, miss_rate, false_alarm_rate


def EER(positive_scores: torch.Tensor, negative_scores: torch.Tensor) -> tuple[float, float]:  # noqa: N802 (SpeechBrain's name)
    """The equal error rate and its threshold: at the threshold where the false-alarm and miss
    rates are closest (the lowest such threshold), their mean."""
    thresholds, miss_rate, false_alarm_rate = _error_rates(positive_scores, negative_scores)
    # SpeechBrain's scan, to pick the same threshold among near-equal gaps: a threshold wins
    # when its gap (in float32) is below the best one's (in double precision).
    gaps = (false_alarm_rate - miss_rate).abs().tolist()
    far, frr = false_alarm_rate.tolist(), miss_rate.tolist()
    best = 0
    for index, gap in enumerate(gaps):
        if gap < abs(far[best] - frr[best]):
            best = index
    return (far[best] + frr[best]) / 2, float(thresholds[best])


def minDCF(  # noqa: N802 (SpeechBrain's name)
    positive_scores: torch.Tensor,
    negative_scores: torch.Tensor,
    c_miss: float = 1.0,
    c_fa: float = 1.0,
    p_target: float = 0.01,
) -> tuple[float, float]:
    """The minimum detection cost ``c_miss * p_miss * p_target + c_fa * p_fa * (1 - p_target)``
    over the thresholds, and its (lowest) threshold.

    Example:
        >>> minDCF(torch.tensor([0.6, 0.7, 0.8, 0.5]), torch.tensor([0.4, 0.3, 0.2, 0.1]))
        (0.0, 0.4000000059604645)
    """
    thresholds, miss_rate, false_alarm_rate = _error_rates(positive_scores, negative_scores)
    cost = c_miss * miss_rate * p_target + c_fa * false_alarm_rate * (1 - p_target)
    best = int(torch.argmin(cost))
    return float(cost[best]), float(thresholds[best])


class BinaryMetricStats:
    """Scores and 0/1 labels accumulated over batches; ``summarize`` computes the counts and
    rates at a threshold (by default the EER threshold).

    Fields: TP, TN, FP, FN, FAR, FRR, DER, threshold, precision, recall, F-score, MCC. Under
    torch.distributed, ``summarize`` merges every rank's trials (each id once): call it on
    every rank.

    Example:
        >>> stats = BinaryMetricStats()
        >>> stats.append(["a", "b", "c", "d"], torch.tensor([0.9, 0.8, 0.3, 0.6]),
        ...              torch.tensor([1, 1, 0, 0]))
        >>> stats.summarize("threshold"), stats.summarize("TP", threshold=0.5)
        (0.6000000238418579, 2.0)
    """

    def __init__(self, positive_label: int = 1):
        self.positive_label = positive_label
        self.clear()

    def clear(self) -> None:
        self.ids: list[str] = []
        self.scores: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []
        self.summary: dict[str, float] = {}

    def append(self, ids: Sequence[str], scores: torch.Tensor, labels: torch.Tensor) -> None:
        """Store a batch of trials (scores and labels, one per id)."""
        if not len(ids) == len(scores) == len(labels):
            raise ValueError(
                f"BinaryMetricStats.append: {len(ids)} ids, {len(scores)} scores and "
                f"{len(labels)} labels; give one of each per trial"
            )
        self.ids.extend(ids)
        self.scores.extend(scores.detach().cpu())
        self.labels.extend(labels.detach().cpu())

    def summarize(
        self,
        field: str | None = None,
        threshold: float | None = None,
        max_samples: int | None = None,
        beta: float = 1,
        eps: float = 1e-8,
    ) -> dict[str, float] | float:
        """Statistics at ``threshold`` (default: the EER threshold, computed on at most
        ``max_samples`` evenly spaced positive and negative scores)."""
        self._merge_ranks()
        if not self.scores:
            raise ValueError("BinaryMetricStats: nothing appended yet")
        scores, labels = torch.stack(self.scores), torch.stack(self.labels)
        if threshold is None:
            positive = _subsample(scores[labels == self.positive_label], max_samples)
            negative = _subsample(scores[labels != self.positive_label], max_samples)
            _, threshold = EER(positive, negative)
        predicted = (scores > threshold).float()
        true = labels.float()
        tp = float((predicted * true).sum())
        tn = float(((1 - predicted) * (1 - true)).sum())
        fp = float((predicted * (1 - true)).sum())
        fn = float(((1 - predicted) * true).sum())
        self.summary = {
            "TP": tp,
            "TN": tn,
            "FP": fp,
            "FN": fn,
            "FAR": fp / (fp + tn + eps),
            "FRR": fn / (tp + fn + eps),
            "DER": (fp + fn) / (tp + tn + eps),
            "threshold": threshold,
            "precision": tp / (tp + fp + eps),
            "recall": tp / (tp + fn + eps),
            "F-score": _ratio((1 + beta**2) * tp, (1 + beta**2) * tp + beta**2 * fn + fp),
            "MCC": (tp * tn - fp * fn)
            / ((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn) + eps) ** 0.5,
        }
        return select_field(self.summary, field, "BinaryMetricStats")

    def _merge_ranks(self) -> None:
        parts = gather_from_ranks((self.ids, self.scores, self.labels))
        if len(parts) > 1:
            ids = [i for part in parts for i in part[0]]
            scores = [s for part in parts for s in part[1]]
            labels = [label for part in parts for label in part[2]]
            keep = first_occurrences(ids)
            self.ids = [ids[i] for i in keep]
            self.scores, self.labels = [scores[i] for i in keep], [labels[i] for i in keep]


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def _subsample(scores: torch.Tensor, max_samples: Any) -> torch.Tensor:
    """At most about ``max_samples`` of the sorted scores, evenly spaced (all if None)."""
    if max_samples is None or len(scores) <= max_samples:
        return scores
    ordered = torch.sort(scores).values
    return ordered[:: int(len(ordered) / max_samples)]
