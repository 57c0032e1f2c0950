"""Multi-label tagging metrics (AudioSet style): per-class AP and ROC-AUC, mAP, mean AUC, d'.

All metrics depend only on the ORDER of the scores within a class, so logits, sigmoid outputs
or any monotonic transform of them give the same numbers. Tied scores are handled like
scikit-learn: a group of tied scores is one threshold (AP) and counts one half in the
pairwise comparisons behind the AUC.

A class without positives has no AP and a class without positives or without negatives has no
AUC: those entries are NaN and are LEFT OUT of the means (AudioSet evaluation sets cover every
class, but small or filtered sets may not; ``num_classes_with_ap`` / ``num_classes_with_auc``
say how many classes the means cover).

Example:
    >>> scores = torch.tensor([[0.9, 0.1], [0.8, 0.7], [0.2, 0.6]])
    >>> targets = torch.tensor([[1, 0], [0, 1], [1, 0]])
    >>> average_precision(scores, targets)
    tensor([0.8333, 1.0000], dtype=torch.float64)
    >>> roc_auc(scores, targets)
    tensor([0.5000, 1.0000], dtype=torch.float64)
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch

from speechlobes.metrics.stats import first_occurrences, gather_from_ranks, select_field


def _check_scores_and_targets(scores: torch.Tensor, targets: torch.Tensor) -> None:
    if scores.dim() != 2 or scores.shape != targets.shape:
        raise ValueError(
            f"scores and targets must both be (samples, classes); got {tuple(scores.shape)} "
            f"and {tuple(targets.shape)}"
        )
    if scores.shape[0] == 0:
        raise ValueError("scores and targets hold no samples; there is nothing to rank")
    if torch.isnan(scores).any():
        raise ValueError("scores contain NaN; a NaN score cannot be ranked")
    if not ((targets == 0) | (targets == 1)).all():
        raise ValueError("targets must be 0/1 (multi-hot); found other values")


class _TieGroups(NamedTuple):
    """Runs of equal scores once each class is sorted by decreasing score, over all classes."""

    num_samples: int
    num_positives: torch.Tensor  # (classes,) float64
    class_index: torch.Tensor  # (groups,) the class of each group
    first: torch.Tensor  # (groups,) first sorted position, 0-based
    last: torch.Tensor  # (groups,) last sorted position
    positives_above: torch.Tensor  # (groups,) float64 positives ranked above the group
    positives_through: torch.Tensor  # (groups,) ... above or in the group


def _tie_groups(scores: torch.Tensor, targets: torch.Tensor) -> _TieGroups:
    _check_scores_and_targets(scores, targets)
    # Class-major and contiguous, so that each class is sorted along memory (several times faster).
    sorted_scores, order = scores.t().contiguous().sort(dim=1, descending=True)
    sorted_targets = targets.t().double().gather(1, order)
    num_classes, num_samples = sorted_scores.shape
    boundary = sorted_scores[:, 1:] != sorted_scores[:, :-1]
    edge = torch.ones(num_classes, 1, dtype=torch.bool)
    is_first, is_last = torch.cat([edge, boundary], dim=1), torch.cat([boundary, edge], dim=1)
    # Boolean selection reads row by row, so the k-th first and k-th last belong to one group.
    positions = torch.arange(num_samples).expand(num_classes, num_samples)
    positives_through = sorted_targets.cumsum(dim=1)
    return _TieGroups(
        num_samples=num_samples,
        num_positives=positives_through[:, -1],
        class_index=torch.arange(num_classes)[:, None].expand(num_classes, num_samples)[is_last],
        first=positions[is_first],
        last=positions[is_last],
        positives_above=(positives_through - sorted_targets)[is_first],
        positives_through=positives_through[is_last],
    )


def _per_class_sum(groups: _TieGroups, values: torch.Tensor) -> torch.Tensor:
    total = torch.zeros(len(groups.num_positives), dtype=torch.float64)
    return total.index_add_(0, groups.class_index, values)


def _average_precision(groups: _TieGroups) -> torch.Tensor:
    # Each threshold (tie group) adds its recall gain times the precision reached at its end.
    positives_in_group = groups.positives_through - groups.positives_above
    precision = groups.positives_through / (groups.last + 1)
    num_positives = groups.num_positives
    return _per_class_sum(groups, positives_in_group * precision) / num_positives.where(
        num_positives > 0, torch.nan
    )


def _roc_auc(groups: _TieGroups) -> torch.Tensor:
    # Mann-Whitney: positives' 1-based ranks in INCREASING score order, averaged over ties.
    positives_in_group = groups.positives_through - groups.positives_above
    average_rank = groups.num_samples - (groups.first + groups.last).double() / 2
    rank_sum = _per_class_sum(groups, positives_in_group * average_rank)
    num_positives = groups.num_positives
    pairs = num_positives * (groups.num_samples - num_positives)
    return (rank_sum - num_positives * (num_positives + 1) / 2) / pairs.where(pairs > 0, torch.nan)


def average_precision(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-class average precision (scikit-learn's definition), NaN for classes without positives.

    scores, targets: (samples, classes). Returns float64 (classes,).
    """
    return _average_precision(_tie_groups(scores, targets))


def roc_auc(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-class area under the ROC curve, NaN for classes lacking positives or negatives.

    Computed as the Mann-Whitney statistic with average ranks for ties, which equals the
    trapezoidal area scikit-learn reports. Returns float64 (classes,).
    """
    return _roc_auc(_tie_groups(scores, targets))


def d_prime(auc: torch.Tensor | float) -> torch.Tensor:
    """Sensitivity index ``sqrt(2) * Phi^-1(auc)`` (= ``2 * erfinv(2 auc - 1)``).

    Example:
        >>> round(float(d_prime(0.9)), 4)
        1.8124
    """
    return 2 * torch.special.erfinv(2 * torch.as_tensor(auc, dtype=torch.float64) - 1)


class MultiLabelStats:
    """Accumulates clip-level scores and multi-hot targets; reports mAP, mean AUC and d'.

    Example:
        >>> stats = MultiLabelStats()
        >>> stats.append(["a", "b"], torch.tensor([[0.9, 0.2], [0.3, 0.8]]),
        ...              torch.tensor([[1, 0], [0, 1]]))
        >>> stats.append(["c"], torch.tensor([[0.4, 0.1]]), torch.tensor([[0, 1]]))
        >>> summary = stats.summarize()
        >>> summary["mAP"], summary["mAUC"], summary["num_classes_with_ap"]
        (0.9166666666666666, 0.75, 2)
    """

    def __init__(self):
        self.clear()

    def clear(self) -> None:
        self.ids: list[str] = []
        self._scores: list[torch.Tensor] = []
        self._targets: list[torch.Tensor] = []
        self._per_class: dict[str, torch.Tensor] | None = None

    def append(self, ids: Sequence[str], scores: torch.Tensor, targets: torch.Tensor) -> None:
        """Adds a batch: ``scores`` and ``targets`` are (batch, classes), one row per id."""
        scores, targets = scores.detach().cpu(), targets.detach().cpu()
        _check_scores_and_targets(scores, targets)
        if len(ids) != scores.shape[0]:
            raise ValueError(
                f"MultiLabelStats.append: {len(ids)} ids for {scores.shape[0]} rows of scores"
            )
        if self._scores and scores.shape[1] != self._scores[0].shape[1]:
            raise ValueError(
                f"MultiLabelStats.append: {scores.shape[1]} classes, earlier batches had "
                f"{self._scores[0].shape[1]}"
            )
        self.ids.extend(ids)
        self._scores.append(scores)
        self._targets.append(targets)
        self._per_class = None

    def per_class(self) -> dict[str, torch.Tensor]:
        """Per-class ``average_precision``, ``roc_auc`` and ``num_positives`` over the clips this
        process holds (all ranks' clips once ``summarize`` has run on every rank)."""
        if not self._scores:
            raise ValueError("MultiLabelStats: nothing appended yet")
        if self._per_class is None:
            groups = _tie_groups(torch.cat(self._scores), torch.cat(self._targets))
            self._per_class = {
                "average_precision": _average_precision(groups),
                "roc_auc": _roc_auc(groups),
                "num_positives": groups.num_positives.long(),
            }
        return self._per_class

    def summarize(self, field: str | None = None) -> dict[str, float | int] | float | int:
        """mAP and mAUC (means over the classes that have them), d' of mAUC, and class counts.

        Under torch.distributed, merges all ranks' clips first: call it on every rank (see
        ``speechlobes.metrics.stats``).
        """
        self._merge_ranks()
        per_class = self.per_class()
        ap, auc = per_class["average_precision"], per_class["roc_auc"]
        mean_auc = float(auc.nanmean())
        summary = {
            "mAP": float(ap.nanmean()),
            "mAUC": mean_auc,
            "d_prime": float(d_prime(mean_auc)),
            "num_classes_with_ap": int((~ap.isnan()).sum()),
            "num_classes_with_auc": int((~auc.isnan()).sum()),
            "num_samples": len(self.ids),
        }
        return select_field(summary, field, "MultiLabelStats")

    def _merge_ranks(self) -> None:
        local = (
            (self.ids, torch.cat(self._scores), torch.cat(self._targets)) if self._scores else None
        )
        gathered = gather_from_ranks(local)
        parts = [part for part in gathered if part is not None]
        if len(gathered) == 1 or not parts:
            return
        ids = [utt_id for part_ids, _, _ in parts for utt_id in part_ids]
        keep = torch.tensor(first_occurrences(ids))
        self.ids = [ids[i] for i in keep.tolist()]
        self._scores = [torch.cat([scores for _, scores, _ in parts])[keep]]
        self._targets = [torch.cat([targets for _, _, targets in parts])[keep]]
        self._per_class = None

    def write_per_class_csv(self, path: str | Path, class_names: Sequence[str]) -> None:
        """One CSV row per class: index, name, positives, AP, AUC (empty where undefined)."""
        per_class = self.per_class()
        num_classes = len(per_class["num_positives"])
        if len(class_names) != num_classes:
            raise ValueError(
                f"{path}: {len(class_names)} class names for {num_classes} classes of scores"
            )
        with open(path, "w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow(["index", "name", "num_positives", "average_precision", "roc_auc"])
            rows = zip(
                class_names,
                per_class["num_positives"].tolist(),
                per_class["average_precision"].tolist(),
                per_class["roc_auc"].tolist(),
                strict=True,
            )
            for index, (name, positives, ap, auc) in enumerate(rows):
                writer.writerow([index, name, positives, _csv_number(ap), _csv_number(auc)])


def _csv_number(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.6f}"
