"""Logging set-up and the train logger (human-readable log, machine-readable JSONL stats and a
PNG of the training curves).

Example:
    >>> import tempfile, json
    >>> folder = tempfile.mkdtemp()
    >>> train_logger = TrainLogger(folder)
    >>> train_logger.log_stats({"epoch": 1}, train_stats={"loss": 0.5}, verbose=False)
    >>> json.loads((Path(folder) / "train_log.jsonl").read_text())
    {'epoch': 1, 'train': {'loss': 0.5}}
    >>> (Path(folder) / "training_curves.png").exists()
    True
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import torch

from speechlobes.distributed import if_main_process
from speechlobes.plotting import plot_training_curves

__all__ = ["FileTrainLogger", "TrainLogger", "setup_logging"]

logger = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(log_file: str | Path | None = None, level: int = logging.INFO) -> None:
    """Log to the console and (rank 0 only) to ``log_file``; other ranks log warnings only.

    Calling it again replaces the handlers it installed before.
    """
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_speechlobes", False)]:
        root.removeHandler(handler)
        handler.close()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None and if_main_process():
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    for handler in handlers:
        handler._speechlobes = True
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)
    root.setLevel(level if if_main_process() else logging.WARNING)


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    return value


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-2 and value != 0 else f"{value:.4g}"
    return str(value)


class TrainLogger:
    """Appends one line per epoch to ``train_log.txt`` and one JSON object to ``train_log.jsonl``,
    and redraws ``training_curves.png`` (loss and validation metrics per epoch) after each epoch.

    Args:
        save_folder: the experiment folder.
        tensorboard: also write TensorBoard scalars (needs the ``tensorboard`` package; a
            warning, not an error, when it is missing).
        plot: draw ``training_curves.png``.

    Only rank 0 writes.
    """

    def __init__(self, save_folder: str | Path, tensorboard: bool = False, plot: bool = True):
        self.save_folder = Path(save_folder)
        self.text_file = self.save_folder / "train_log.txt"
        self.stats_file = self.save_folder / "train_log.jsonl"
        self.curves_file = self.save_folder / "training_curves.png" if plot else None
        self.writer = self._tensorboard_writer() if tensorboard and if_main_process() else None

    def _tensorboard_writer(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            logger.warning("tensorboard is not installed: `pip install tensorboard` to use it")
            return None
        return SummaryWriter(self.save_folder / "tensorboard")

    def log_stats(
        self,
        stats_meta: dict,
        train_stats: dict | None = None,
        valid_stats: dict | None = None,
        test_stats: dict | None = None,
        verbose: bool = True,
    ) -> None:
        """Record one epoch's (or a test's) statistics; ``stats_meta`` holds e.g. epoch and lr."""
        if not if_main_process():
            return
        record = {key: _plain(value) for key, value in stats_meta.items()}
        stages = {"train": train_stats, "valid": valid_stats, "test": test_stats}
        for stage, stats in stages.items():
            if stats is not None:
                record[stage] = {key: _plain(value) for key, value in stats.items()}
        line = self._text_line(record)
        self.save_folder.mkdir(parents=True, exist_ok=True)
        with open(self.text_file, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
        with open(self.stats_file, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        self._write_tensorboard(record)
        if self.curves_file is not None and isinstance(record.get("epoch"), int):
            plot_training_curves(self.records(), self.curves_file)
        if verbose:
            logger.info(line)

    def records(self) -> list[dict]:
        """Every record of ``train_log.jsonl`` (earlier runs of the same experiment included)."""
        if not self.stats_file.exists():
            return []
        lines = self.stats_file.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def _text_line(self, record: dict) -> str:
        meta = [
            f"{key}: {self._format_value(v)}"
            for key, v in record.items()
            if not isinstance(v, dict)
        ]
        parts = [", ".join(meta)] if meta else []
        for stage, stats in record.items():
            if isinstance(stats, dict):
                parts.append(
                    ", ".join(f"{stage} {k}: {self._format_value(v)}" for k, v in stats.items())
                )
        return " - ".join(parts)

    @staticmethod
    def _format_value(value: Any) -> str:
        return _format_value(value)

    def _write_tensorboard(self, record: dict) -> None:
        if self.writer is None:
            return
        step = record.get("epoch", 0)
        for stage, stats in record.items():
            if isinstance(stats, dict):
                for key, value in stats.items():
                    if isinstance(value, int | float):
                        self.writer.add_scalar(f"{stage}/{key}", value, step)
        self.writer.flush()


class FileTrainLogger(TrainLogger):
    """SpeechBrain's ``FileTrainLogger``: one line per call in ``save_file``, numbers with
    ``precision`` decimals (fixed between 1 and 100, else scientific: ``1.35e-05``); the
    JSONL record and the training curves go beside it, as :class:`TrainLogger`'s.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "train_log.txt"
        >>> FileTrainLogger(path).log_stats({"epoch": 1, "lr": 0.001}, {"loss": 2.5}, verbose=False)
        >>> path.read_text()
        'epoch: 1, lr: 1.00e-03 - train loss: 2.50\\n'
    """

    def __init__(self, save_file: str | Path, precision: int = 2):
        super().__init__(Path(save_file).parent)
        self.save_file = self.text_file = Path(save_file)
        self.precision = precision

    def _format_value(self, value: Any) -> str:
        if isinstance(value, float) and 1.0 < value < 100.0:
            return f"{value:.{self.precision}f}"
        if isinstance(value, float):
            return f"{value:.{self.precision}e}"
        return str(value)
