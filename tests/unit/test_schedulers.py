import math

import pytest
import torch

from speechlobes.checkpoints import Checkpointer
from speechlobes.nnet.schedulers import (
    EpochCounter,
    EpochCounterWithStopper,
    LinearScheduler,
    LinearWarmupScheduler,
    NewBobScheduler,
    NoamScheduler,
    StepScheduler,
    WarmupDecayScheduler,
    update_learning_rate,
)


def sgd(lr=1.0):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def test_linear_warmup_then_linear_decay_to_final_ratio():
    scheduler = WarmupDecayScheduler(peak_lr=1.0, warmup_steps=4, total_steps=8, final_ratio=0.2)
    optimizer = sgd()
    lrs = [scheduler(optimizer)[1] for _ in range(10)]
    expected = [0.25, 0.5, 0.75, 1.0, 0.8, 0.6, 0.4, 0.2, 0.2, 0.2]
    assert lrs == pytest.approx(expected)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.2)


def test_cosine_decay_passes_half_way_at_mid_point():
    scheduler = WarmupDecayScheduler(peak_lr=2.0, warmup_steps=2, total_steps=6, decay="cosine")
    assert scheduler.lr_at(2) == pytest.approx(2.0)
    assert scheduler.lr_at(4) == pytest.approx(1.0)
    assert scheduler.lr_at(5) == pytest.approx(1.0 + math.cos(math.pi * 0.75))
    assert scheduler.lr_at(6) == pytest.approx(0.0)


def test_noam_peaks_at_warmup_and_decays_as_inverse_square_root():
    scheduler = NoamScheduler(lr_initial=0.5, n_warmup_steps=25)
    assert scheduler.lr_at(5) == pytest.approx(0.5 * 5 / 25)
    assert scheduler.lr_at(25) == pytest.approx(0.5)
    assert scheduler.lr_at(100) == pytest.approx(0.5 * (25 / 100) ** 0.5)
    assert NoamScheduler(1.0, 4, model_size=16).lr_at(4) == pytest.approx(16**-0.5 * 4**-0.5)


def test_newbob_anneals_after_patience_runs_out():
    scheduler = NewBobScheduler(initial_value=1.0, annealing_factor=0.5, patient=1)
    values = [scheduler(metric)[1] for metric in (10.0, 9.0, 9.0, 9.0, 9.0, 5.0)]
    assert values == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5]
    assert scheduler.hyperparam_value == 0.5 and scheduler.current_patient == 0


def test_step_scheduler_and_newbob_resume_from_a_checkpoint(tmp_path):
    noam, newbob = NoamScheduler(1.0, 10), NewBobScheduler(1.0)
    optimizer = sgd()
    for _ in range(3):
        noam(optimizer)
    newbob(4.0), newbob(4.0)
    Checkpointer(tmp_path, {"noam": noam, "newbob": newbob}).save_checkpoint()
    noam2, newbob2 = NoamScheduler(1.0, 10), NewBobScheduler(1.0)
    Checkpointer(tmp_path, {"noam": noam2, "newbob": newbob2}).recover_if_possible()
    assert noam2(sgd())[1] == noam(optimizer)[1]
    assert newbob2(4.0) == newbob(4.0)


def test_update_learning_rate_sets_selected_groups():
    optimizer = torch.optim.SGD(
        [
            {"params": [torch.nn.Parameter(torch.zeros(1))]},
            {"params": [torch.nn.Parameter(torch.zeros(1))]},
        ],
        lr=1.0,
    )
    update_learning_rate(optimizer, 0.1, param_group=[1])
    assert [group["lr"] for group in optimizer.param_groups] == [1.0, 0.1]
    assert (
        optimizer.param_groups[1]["prev_lr"] == 1.0 and "prev_lr" not in optimizer.param_groups[0]
    )


def test_epoch_counter_counts_from_one_to_limit():
    assert list(EpochCounter(3)) == [1, 2, 3]


def test_early_stopping_watches_only_after_warmup_as_speechbrain():
    counter = EpochCounterWithStopper(10, 5, 2, "min")
    epochs = []
    for epoch in counter:
        counter.update_metric(0.0)  # never improves after epoch 3, the first one watched
        epochs.append(epoch)
    assert epochs == [1, 2, 3, 4, 5, 6, 7, 8] and counter.best_limit == 3
    rising = EpochCounterWithStopper(limit=20, limit_to_stop=2, limit_warmup=1, direction="max")
    for epoch in rising:
        rising.update_metric([0.9, 0.1, 0.2, 0.3, 0.2, 0.1, 0.0][epoch - 1])
    assert rising.current == 6 and rising.best_score == 0.3  # the 0.9 fell in the warm-up
    with pytest.raises(ValueError, match="direction must be"):
        EpochCounterWithStopper(5, 1, 0, "up")


def test_early_stopping_state_survives_recovery(tmp_path):
    counter = EpochCounterWithStopper(limit=10, limit_to_stop=1)
    next(counter)
    counter.update_metric(1.0)
    Checkpointer(tmp_path, {"counter": counter}).save_checkpoint()
    resumed = EpochCounterWithStopper(limit=10, limit_to_stop=1)
    Checkpointer(tmp_path, {"counter": resumed}).recover_if_possible()
    assert next(resumed) == 2
    resumed.update_metric(2.0)
    assert list(resumed) == []


def test_epoch_schedulers_return_the_previous_and_the_current_value():
    linear = LinearScheduler(1.0, 0.0, 4)
    assert [linear(epoch)[1] for epoch in range(5)] == pytest.approx([1.0, 2 / 3, 1 / 3, 0.0, 0.0])
    step = StepScheduler(initial_value=1.0)
    assert [step(epoch) for epoch in (1, 2, 3)] == [(1.0, 0.5), (0.5, 0.5), (0.5, 0.25)]
    halving = StepScheduler(8.0, half_life=2)
    assert halving(1)[1] == pytest.approx(4.0)  # 8 * 2 ** (-(1 + epoch) / half_life)
    with pytest.raises(ValueError, match="half_life excludes"):
        StepScheduler(1.0, decay_factor=0.5, half_life=2)


def test_linear_warmup_scheduler_rises_then_falls_per_step():
    scheduler = LinearWarmupScheduler(1.0, num_warmup_steps=2, num_training_steps=10)
    assert [scheduler.lr_at(step) for step in range(5)] == [0.0, 0.5, 1.0, 0.875, 0.75]
    optimizer = sgd(lr=1.0)
    assert scheduler(optimizer) == (1.0, 0.5) and optimizer.param_groups[0]["lr"] == 0.5
