"""Training curves: train/valid loss and the validation metrics per epoch, as one PNG.

The :class:`~speechlobes.logger.TrainLogger` redraws ``training_curves.png`` in the experiment
folder after each epoch from the records of ``train_log.jsonl``.

Example:
    >>> import tempfile
    >>> records = [{"epoch": 1, "train": {"loss": 2.0}, "valid": {"loss": 2.5, "CER": 40.0}},
    ...            {"epoch": 2, "train": {"loss": 1.0}, "valid": {"loss": 1.5, "CER": 20.0}}]
    >>> curves = epoch_curves(records)
    >>> curves["loss"]["valid"], curves["CER"]["valid"]
    ([(1, 2.5), (2, 1.5)], [(1, 40.0), (2, 20.0)])
    >>> path = Path(tempfile.mkdtemp()) / "curves.png"
    >>> plot_training_curves(records, path)
    >>> path.read_bytes()[:4] == b"\\x89PNG"
    True
"""

from __future__ import annotations

import numbers
from pathlib import Path

__all__ = ["epoch_curves", "plot_training_curves"]

STAGES = ("train", "valid")


def epoch_curves(records: list[dict]) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """``{statistic: {stage: [(epoch, value), ...]}}`` from per-epoch log records.

    Records whose ``epoch`` is not an integer (a final ``"test"`` record) are left out; when an
    epoch was logged twice (a resumed run), the later record wins.
    """
    by_epoch: dict[int, dict] = {}
    for record in records:
        epoch = record.get("epoch")
        if isinstance(epoch, int) and not isinstance(epoch, bool):
            by_epoch[epoch] = record
    curves: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for epoch in sorted(by_epoch):
        for stage in STAGES:
            for name, value in by_epoch[epoch].get(stage, {}).items():
                if isinstance(value, numbers.Real) and not isinstance(value, bool):
                    curves.setdefault(name, {}).setdefault(stage, []).append((epoch, float(value)))
    return curves


def plot_training_curves(records: list[dict], path: str | Path) -> None:
    """Draw the loss (train and valid) and each validation metric against the epoch.

    Args:
        records: per-epoch log records (``train_log.jsonl`` lines).
        path: the PNG to write (replaced atomically, so a reader never sees half a file).
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    curves = epoch_curves(records)
    names = (["loss"] if "loss" in curves else []) + sorted(set(curves) - {"loss"})
    if not names:
        return
    figure, axes = pyplot.subplots(1, len(names), figsize=(4.5 * len(names), 3.4), squeeze=False)
    for axis, name in zip(axes[0], names, strict=True):
        for stage, points in curves[name].items():
            epochs, values = zip(*points, strict=True)
            axis.plot(epochs, values, marker="o", markersize=3, label=stage)
        axis.set_title(name)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    path = Path(path)
    staging = path.with_name(f".{path.name}.tmp")
    figure.savefig(staging, format="png", dpi=100)
    pyplot.close(figure)
    staging.replace(path)
