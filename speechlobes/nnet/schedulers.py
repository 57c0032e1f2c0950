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
    "LinearScheduler",
    "LinearWarmupScheduler",
    "NewBobScheduler",
    "NoamScheduler",
    "StepScheduler",
    "WarmupDecayScheduler",
    "update_learning_rate",
]


def update_learning_rate(
    optimizer: torch.optim.Optimizer, new_lr: float, param_group: list[int] | None = None
) -> None:
    """Set ``lr`` of the given parameter groups (all by default); a changed group keeps its
    previous value as ``prev_lr``.

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
        lr = new_lr * groups[index].get("lr_scale", 1.0)
        if lr != groups[index]["lr"]:
            groups[index]["prev_lr"] = groups[index]["lr"]
            groups[index]["lr"] = lr


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
        self.normalize = n_warmup_steps**0.5 if model_size is None else model_size**-0.5

    def lr_at(self, step: int) -> float:
        warmup = self.n_warmup_steps
        return self.lr_initial * self.normalize * min(step**-0.5, step * warmup**-1.5)


class NewBobScheduler:
    """Anneal a value when a metric stops improving (relative improvement below a threshold).

    ``patient`` epochs without improvement are tolerated before each annealing. The value is
    ``hyperparam_value``; ``current_patient`` counts the patience left.

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
        self.hyperparam_value = initial_value
        self.annealing_factor = annealing_factor
        self.improvement_threshold = improvement_threshold
        self.patient = patient
        self.current_patient = patient
        self.metric_values: list[float] = []

    def __call__(self, metric_value: float) -> tuple[float, float]:
        """Record the epoch's metric; returns (old_value, new_value)."""
        old_value = self.hyperparam_value
        if self.metric_values:
            previous = self.metric_values[-1]
            improvement = (previous - metric_value) / previous if previous else 0.0
            if improvement < self.improvement_threshold:
                if self.current_patient == 0:
                    self.hyperparam_value *= self.annealing_factor
                    self.current_patient = self.patient
                else:
                    self.current_patient -= 1
        self.metric_values.append(float(metric_value))
        return old_value, self.hyperparam_value

    def state_dict(self) -> dict:
        return {
            "hyperparam_value": self.hyperparam_value,
            "current_patient": self.current_patient,
            "metric_values": self.metric_values,
        }

    def load_state_dict(self, state: dict) -> None:
        self.hyperparam_value = state["hyperparam_value"]
        self.current_patient = state["current_patient"]
        self.metric_values = list(state["metric_values"])


class LinearScheduler:
    """A value going linearly from ``initial_value`` to ``final_value`` over ``epoch_count``
    epochs: ``scheduler(epoch)`` returns (value of the epoch before, value of this epoch).

    Example:
        >>> scheduler = LinearScheduler(1.0, 0.0, 4)
        >>> [tuple(round(v, 3) for v in scheduler(epoch)) for epoch in (1, 3, 4)]
        [(1.0, 0.667), (0.333, 0.0), (0.0, 0.0)]
    """

    def __init__(self, initial_value: float, final_value: float, epoch_count: int):
        self.value_at_epoch = torch.linspace(initial_value, final_value, epoch_count).tolist()

    def __call__(self, current_epoch: int) -> tuple[float, float]:
        old = self.value_at_epoch[max(0, current_epoch - 1)]
        return old, self.value_at_epoch[min(current_epoch, len(self.value_at_epoch) - 1)]


class StepScheduler:
    """``initial_value * decay_factor ** floor((1 + epoch) / decay_drop)``: ``scheduler(epoch)``
    returns (value of the epoch before, value of this epoch). ``half_life`` sets the decay so
    the value halves every ``half_life`` epochs (without decay_factor and decay_drop).

    Example:
        >>> scheduler = StepScheduler(initial_value=1.0)
        >>> scheduler(1), scheduler(2), scheduler(3)
        ((1.0, 0.5), (0.5, 0.5), (0.5, 0.25))
    """

    DEFAULT_DECAY_FACTOR = 0.5
    DEFAULT_DECAY_DROP = 2

    def __init__(
        self,
        initial_value: float,
        decay_factor: float | None = None,
        decay_drop: float | None = None,
        half_life: float | None = None,
    ):
        self.initial_value = initial_value
        if half_life:
            if decay_factor or decay_drop:
                raise ValueError("half_life excludes decay_factor and decay_drop")
            self.decay_factor, self.decay_drop = math.exp(-math.log(2) / half_life), 1.0
        else:
            self.decay_factor = decay_factor or self.DEFAULT_DECAY_FACTOR
            self.decay_drop = decay_drop or self.DEFAULT_DECAY_DROP

    def __call__(self, current_epoch: int) -> tuple[float, float]:
        return self._value(current_epoch - 1), self._value(current_epoch)

    def _value(self, epoch: int) -> float:
        return self.initial_value * self.decay_factor ** math.floor((1 + epoch) / self.decay_drop)


class LinearWarmupScheduler(_StepScheduler):
    """Per optimizer step: linear warm-up from 0 to ``initial_value`` over
    ``num_warmup_steps``, then linear decay to 0 at ``num_training_steps``.

    Example:
        >>> scheduler = LinearWarmupScheduler(1.0, num_warmup_steps=2, num_training_steps=6)
        >>> [scheduler.lr_at(step) for step in range(5)]
        [0.0, 0.5, 1.0, 0.75, 0.5]
    """

    def __init__(self, initial_value: float, num_warmup_steps: int, num_training_steps: int):
        super().__init__()
        self.lr0 = initial_value
        self.num_warmup_steps = num_warmup_steps
        self.num_training_steps = num_training_steps

    def lr_at(self, step: int) -> float:
        if step < self.num_warmup_steps:
            return self.lr0 * step / max(1, self.num_warmup_steps)
        remaining = (self.num_training_steps - step) / max(
            1, self.num_training_steps - self.num_warmup_steps
        )
        return self.lr0 * max(0.0, remaining)


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
    epochs (early stopping), as SpeechBrain's: the metric is watched only after
    ``limit_warmup`` epochs, and improving means beating the best by a relative ``min_delta``
    (1e-6).

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
        if limit_to_stop < 0 or limit_warmup < 0:
            raise ValueError(
                f"limit_to_stop ({limit_to_stop}) and limit_warmup ({limit_warmup}) must be >= 0"
            )
        if direction not in ("min", "max"):
            raise ValueError(f"direction must be 'min' or 'max', got {direction!r}")
        self.limit_to_stop = limit_to_stop
        self.limit_warmup = limit_warmup
        self.direction = direction
        self.sign = 1 if direction == "min" else -1
        self.best_score = math.inf if direction == "min" else -math.inf
        self.best_limit = 0  # the epoch of the best score
        self.min_delta = 1e-6
        self.should_stop = False

    def __next__(self) -> int:
        if self.should_stop:
            raise StopIteration
        return super().__next__()

    def update_metric(self, current_metric: float) -> None:
        """Record this epoch's metric and decide whether to stop after it."""
        if self.current <= self.limit_warmup:
            return
        if self.sign * current_metric < self.sign * (1 - self.min_delta) * self.best_score:
            self.best_limit, self.best_score = self.current, float(current_metric)
        self.should_stop = self.current - self.best_limit >= self.limit_to_stop

    def state_dict(self) -> dict:
        return {
            **super().state_dict(),
            "best_score": self.best_score,
            "best_epoch": self.best_limit,
            "should_stop": self.should_stop,
        }

    def load_from_state(self, state: dict, end_of_epoch: bool) -> None:
        super().load_from_state(state, end_of_epoch)
        self.best_score = state["best_score"]
        self.best_limit = state["best_epoch"]
        self.should_stop = state["should_stop"]
