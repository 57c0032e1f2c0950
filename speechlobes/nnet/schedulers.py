"""Learning-rate schedulers and epoch counters, all recoverable by a Checkpointer.

Step schedulers are called once per optimizer step with the optimizer and set the learning
rate of every parameter group: ``old_lr, new_lr = scheduler(optimizer)``. :class:`NewBobScheduler`
is called once per epoch with a validation metric and returns the value to use next.
Register them in the YAML ``checkpointer`` so a resumed run continues the same schedule.

Example:
    >>> model = torch.nn.Linear(2, 2)
    >>> optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    >>> scheduler = WarmupDecayScheduler(peak_lr=1.0, warmup_steps=2, total_steps=4)
    >>> [scheduler(optimizer)[1] for _ in range(4)]
    [0.5, 1.0, 0.5, 0.0]
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from speechlobes.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks

__all__ = [
    "EpochCounter",
    "EpochCounterWithStopper",
    "NewBobScheduler",
    "NoamScheduler",
    "WarmupDecayScheduler",
    "update_learning_rate",
]


def update_learning_rate(
    optimizer: torch.optim.Optimizer, new_lr: float, param_group: list[int] | None = None
) -> None:
    """Set ``lr`` of the given parameter groups (all by default).

    A group with an ``lr_scale`` entry gets ``new_lr * lr_scale``, so per-group ratios (such as
    layer-wise learning-rate decay) survive every scheduler step.

    Example:
        >>> model = torch.nn.Linear(2, 2)
        >>> optimizer = torch.optim.SGD(
        ...     [{"params": [model.weight], "lr_scale": 0.5}, {"params": [model.bias]}], lr=1.0)
        >>> update_learning_rate(optimizer, 0.2)
        >>> [group["lr"] for group in optimizer.param_groups]
        [0.1, 0.2]
    """
    groups = optimizer.param_groups
    for index in range(len(groups)) if param_group is None else param_group:
        groups[index]["lr"] = new_lr * groups[index].get("lr_scale", 1.0)


class _StepScheduler:
    """Shared step counting; subclasses give the learning rate after ``n_steps`` steps."""

    def __init__(self):
        self.n_steps = 0

    def lr_at(self, step: int) -> float:
        raise NotImplementedError

    def __call__(self, optimizer: torch.optim.Optimizer) -> tuple[float, float]:
        """Advance one step and set the new learning rate; returns (old_lr, new_lr), the
        scheduler's own values (each group's ``lr_scale`` applies on top)."""
        old_lr = self.lr_at(self.n_steps) if self.n_steps else optimizer.param_groups[0]["lr"]
        self.n_steps += 1
        new_lr = self.lr_at(self.n_steps)
        update_learning_rate(optimizer, new_lr)
        return old_lr, new_lr

    def state_dict(self) -> dict:
        return {"n_steps": self.n_steps}

    def load_state_dict(self, state: dict) -> None:
        self.n_steps = state["n_steps"]


class WarmupDecayScheduler(_StepScheduler):
    """Linear warm-up to ``peak_lr`` over ``warmup_steps``, then linear or cosine decay.

    The decay reaches ``peak_lr * final_ratio`` at ``total_steps`` and stays there.

    Example:
        >>> s = WarmupDecayScheduler(peak_lr=2.0, warmup_steps=0, total_steps=2, decay="cosine")
        >>> s.lr_at(1), s.lr_at(2)
        (1.0, 0.0)
    """

    def __init__(
        self,
        peak_lr: float,
        warmup_steps: int,
        total_steps: int,
        decay: str = "linear",
        final_ratio: float = 0.0,
    ):
        super().__init__()
        if decay not in ("linear", "cosine"):
            raise ValueError(f"decay must be 'linear' or 'cosine', got {decay!r}")
        if total_steps <= warmup_steps:
            raise ValueError(
                f"total_steps ({total_steps}) must exceed warmup_steps ({warmup_steps})"
            )
        self.peak_lr = peak_lr
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.decay = decay
        self.final_ratio = final_ratio

    def lr_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.peak_lr * step / self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / (self.total_steps - self.warmup_steps))
        if self.decay == "linear":
            remaining = 1.0 - progress
        else:
            remaining = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.peak_lr * (self.final_ratio + (1.0 - self.final_ratio) * remaining)


class NoamScheduler(_StepScheduler):
    """The Transformer schedule: linear warm-up, then decay with 1/sqrt(step).

    Without ``model_size`` the peak (at ``n_warmup_steps``) equals ``lr_initial``; with it, the
    scale is ``model_size ** -0.5`` as in "Attention is all you need".

    Example:
        >>> NoamScheduler(lr_initial=1.0, n_warmup_steps=4).lr_at(4)
        1.0
    """

    def __init__(self, lr_initial: float, n_warmup_steps: int, model_size: int | None = None):
        super().__init__()
        self.lr_initial = lr_initial
        self.n_warmup_steps = n_warmup_steps
        self.model_size = model_size

    def lr_at(self, step: int) -> float:
        warmup = self.n_warmup_steps
        scale = warmup**0.5 if self.model_size is None else self.model_size**-0.5
        return self.lr_initial * scale * min(step**-0.5, step * warmup**-1.5)


class NewBobScheduler:
    """Anneal a value when a metric stops improving (relative improvement below a threshold).

    ``patient`` epochs without improvement are tolerated before each annealing.

    Example:
        >>> s = NewBobScheduler(initial_value=1.0, annealing_factor=0.5)
        >>> s(10.0), s(9.0), s(9.0)
        ((1.0, 1.0), (1.0, 1.0), (1.0, 0.5))
    """

    def __init__(
        self,
        initial_value: float,
        annealing_factor: float = 0.5,
        improvement_threshold: float = 0.0025,
        patient: int = 0,
    ):
        self.value = initial_value
        self.annealing_factor = annealing_factor
        self.improvement_threshold = improvement_threshold
        self.patient = patient
        self.patience_left = patient
        self.metric_values: list[float] = []

    def __call__(self, metric_value: float) -> tuple[float, float]:
        """Record the epoch's metric; returns (old_value, new_value)."""
        old_value = self.value
        if self.metric_values:
            previous = self.metric_values[-1]
            improvement = (previous - metric_value) / previous if previous else 0.0
            if improvement < self.improvement_threshold:
                if self.patience_left == 0:
                    self.value *= self.annealing_factor
                    self.patience_left = self.patient
                else:
                    self.patience_left -= 1
        self.metric_values.append(float(metric_value))
        return old_value, self.value

    def state_dict(self) -> dict:
        return {
            "value": self.value,
            "patience_left": self.patience_left,
            "metric_values": self.metric_values,
        }

    def load_state_dict(self, state: dict) -> None:
        self.value = state["value"]
        self.patience_left = state["patience_left"]
        self.metric_values = list(state["metric_values"])


@register_checkpoint_hooks
class EpochCounter:
    """Iterate over epochs 1..limit; recovery resumes at the right epoch.

    After an end-of-epoch checkpoint, iteration continues with the next epoch; after a
    mid-epoch checkpoint, the interrupted epoch is run again (its loader skips what was done).

    Example:
        >>> list(EpochCounter(3))
        [1, 2, 3]
    """

    def __init__(self, limit: int):
        self.limit = int(limit)
        self.current = 0

    def __iter__(self):
        return self

    def __next__(self) -> int:
        if self.current >= self.limit:
            raise StopIteration
        self.current += 1
        return self.current

    def state_dict(self) -> dict:
        return {"current": self.current}

    def load_from_state(self, state: dict, end_of_epoch: bool) -> None:
        self.current = state["current"] if end_of_epoch else state["current"] - 1

    @mark_as_saver
    def _save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.state_dict()))

    @mark_as_loader
    def _load(self, path: Path, end_of_epoch: bool) -> None:
        self.load_from_state(json.loads(Path(path).read_text()), end_of_epoch)


class EpochCounterWithStopper(EpochCounter):
    """An EpochCounter that also stops when a metric has not improved for ``limit_to_stop``
    epochs (early stopping); epochs up to ``limit_warmup`` never stop.

    Call :meth:`update_metric` once per epoch (e.g. in ``on_stage_end`` for VALID).

    Example:
        >>> counter = EpochCounterWithStopper(limit=10, limit_to_stop=2, direction="min")
        >>> for epoch in counter:
        ...     counter.update_metric([3.0, 2.0, 2.5, 2.4, 1.0][epoch - 1])
        >>> counter.current
        4
    """

    def __init__(
        self, limit: int, limit_to_stop: int, limit_warmup: int = 0, direction: str = "min"
    ):
        super().__init__(limit)
        if direction not in ("min", "max"):
            raise ValueError(f"direction must be 'min' or 'max', got {direction!r}")
        self.limit_to_stop = limit_to_stop
        self.limit_warmup = limit_warmup
        self.sign = 1.0 if direction == "min" else -1.0
        self.best_score: float | None = None
        self.best_epoch = 0
        self.should_stop = False

    def __next__(self) -> int:
        if self.should_stop:
            raise StopIteration
        return super().__next__()

    def update_metric(self, value: float) -> None:
        """Record this epoch's metric and decide whether to stop after it."""
        score = self.sign * float(value)
        if self.best_score is None or score < self.best_score:
            self.best_score, self.best_epoch = score, self.current
        elif self.current > self.limit_warmup:
            self.should_stop = self.current - self.best_epoch >= self.limit_to_stop

    def state_dict(self) -> dict:
        return {
            **super().state_dict(),
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "should_stop": self.should_stop,
        }

    def load_from_state(self, state: dict, end_of_epoch: bool) -> None:
        super().load_from_state(state, end_of_epoch)
        self.best_score = state["best_score"]
        self.best_epoch = state["best_epoch"]
        self.should_stop = state["should_stop"]
