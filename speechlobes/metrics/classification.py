"""Classification statistics: overall and per-class accuracy and the confusion table.

SpeechBrain's ``ClassificationStats`` (``speechbrain.utils.metric_stats``): predictions and
targets are labels (preferably strings); optional ``categories`` split the targets further,
the class key then being ``(category, target)``.

Example:
    >>> import sys
    >>> stats = ClassificationStats()
    >>> stats.append(["1", "2", "3"], predictions=["dog", "cat", "cat"],
    ...              targets=["dog", "dog", "cat"])
    >>> stats.summarize("accuracy")
    0.6666666666666666
    >>> stats.summarize("classwise_accuracy")
    {'cat': 1.0, 'dog': 0.5}
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, TextIO

import torch

from speechlobes.metrics.stats import first_occurrences, gather_from_ranks, select_field

__all__ = ["ClassificationStats"]


class ClassificationStats:
    """Accumulates predictions and targets; ``summarize`` gives ``accuracy``,
    ``confusion_matrix`` (keys x predictions), ``classwise_stats`` (total, correct, accuracy
    per key), ``keys``, ``predictions`` and ``classwise_total``/``_correct``/``_accuracy``.

    Under torch.distributed, ``summarize`` merges every rank's items (each id once): call it
    on every rank.
    """

    def __init__(self):
        self.clear()

    def clear(self) -> None:
        self.ids: list[str] = []
        self.predictions: list[Hashable] = []
        self.targets: list[Hashable] = []
        self.categories: list[Hashable] = []
        self.summary: dict[str, Any] | None = None

    def append(
        self,
        ids: Sequence[str],
        predictions: Sequence[Hashable],
        targets: Sequence[Hashable],
        categories: Sequence[Hashable] | None = None,
    ) -> None:
        """Store a batch of predictions and targets (and categories, if used)."""
        if not len(ids) == len(predictions) == len(targets):
            raise ValueError(
                f"ClassificationStats.append: {len(ids)} ids, {len(predictions)} predictions "
                f"and {len(targets)} targets; give one of each per item"
            )
        self.ids.extend(ids)
        self.predictions.extend(predictions)
        self.targets.extend(targets)
        if categories is not None:
            self.categories.extend(categories)

    def summarize(self, field: str | None = None) -> Any:
        """The statistics (see the class docstring), or one ``field`` of them."""
        self._merge_ranks()
        if not self.ids:
            raise ValueError("ClassificationStats: nothing appended yet")
        keys = sorted(set(self._keys()))
        predicted = sorted(set(self.predictions))
        key_index = {key: i for i, key in enumerate(keys)}
        prediction_index = {prediction: i for i, prediction in enumerate(predicted)}
        confusion = torch.zeros(len(keys), len(predicted))
        for key, prediction in zip(self._keys(), self.predictions, strict=True):
            confusion[key_index[key], prediction_index[prediction]] += 1
        total = confusion.sum(dim=-1)
        targets = [key[1] for key in keys] if self.categories else keys
        correct = torch.tensor(
            [
                confusion[i, prediction_index[target]].item() if target in prediction_index else 0.0
                for i, target in enumerate(targets)
            ]
        )
        classwise = {
            key: {"total": t.item(), "correct": c.item(), "accuracy": (c / t).item()}
            for key, t, c in zip(keys, total, correct, strict=True)
        }
        hits = sum(p == t for p, t in zip(self.predictions, self.targets, strict=True))
        self.summary = {
            "accuracy": hits / len(self.ids),
            "confusion_matrix": confusion,
            "classwise_stats": classwise,
            "keys": keys,
            "predictions": predicted,
        }
        for stat in ("total", "correct", "accuracy"):
            self.summary[f"classwise_{stat}"] = {key: s[stat] for key, s in classwise.items()}
        return select_field(self.summary, field, "ClassificationStats")

    def write_stats(self, filestream: TextIO) -> None:
        """The overall accuracy, the per-class accuracy and the confusions, readably."""
        if self.summary is None:
            self.summarize()
        summary = self.summary
        labels = {key: self._label(key) for key in summary["keys"]}
        width = max(len(label) for label in labels.values())
        lines = [f"Overall Accuracy: {summary['accuracy']:.0%}", ""]
        lines += ["Class-Wise Accuracy", "-" * len("Class-Wise Accuracy")]
        for key, label in labels.items():
            stats = summary["classwise_stats"][key]
            lines.append(
                f"{label.ljust(width)}: {int(stats['correct'])} / {int(stats['total'])} "
                f"({stats['accuracy']:.2%})"
            )
        lines += ["", "Confusion", "-" * len("Confusion")]
        prediction_width = max(len(str(p)) for p in summary["predictions"])
        for key, row in zip(summary["keys"], summary["confusion_matrix"].int(), strict=True):
            lines.append(f"Target: {labels[key]}")
            total = int(row.sum())
            for index in torch.nonzero(row > 0).flatten().tolist():
                count = int(row[index])
                prediction = str(summary["predictions"][index]).ljust(prediction_width)
                lines.append(f"  -> {prediction}: {count} / {total} ({count / total:.2%})")
        filestream.write("\n".join(lines) + "\n")

    def _keys(self) -> list[Hashable]:
        if self.categories:
            return list(zip(self.categories, self.targets, strict=True))
        return list(self.targets)

    def _label(self, key: Hashable) -> str:
        if self.categories:
            category, target = key
            return f"{category} -> {target}"
        return str(key)

    def _merge_ranks(self) -> None:
        parts = gather_from_ranks((self.ids, self.predictions, self.targets, self.categories))
        if len(parts) == 1:
            return
        merged = [sum((list(part[field]) for part in parts), []) for field in range(4)]
        keep = first_occurrences(merged[0])
        self.ids, self.predictions, self.targets = ([m[i] for i in keep] for m in merged[:3])
        self.categories = [merged[3][i] for i in keep] if merged[3] else []
