"""The Brain's features on a toy model: each test proves one behaviour."""

import copy
import itertools
import json
import logging
import sys
from types import SimpleNamespace

import pytest
import torch

from speechlobes import core
from speechlobes.checkpoints import Checkpointer
from speechlobes.core import INTRA_EPOCH_CKPT_FLAG, Brain, Stage
from speechlobes.dataio.dataset import DynamicItemDataset
from speechlobes.nnet.schedulers import EpochCounter


def regression_data(count=16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(count, 3, generator=generator)
    y = x.sum(dim=1, keepdim=True) * 2.0
    data = {str(i): {"x": x[i], "y": y[i]} for i in range(count)}
    return DynamicItemDataset(data, output_keys=["id", "x", "y"])


class Regressor(Brain):
    """Linear regression; records what the loop did."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.events = []

    def compute_forward(self, batch, stage):
        self.events.append(("forward", stage, batch.x.data.shape[0]))
        return self.modules.model(batch.x.data.to(self.device))

    def compute_objectives(self, predictions, batch, stage):
        return torch.nn.functional.mse_loss(predictions, batch.y.data.to(self.device))

    def on_stage_start(self, stage, epoch=None):
        self.events.append(("start", stage, epoch))

    def on_stage_end(self, stage, stage_loss, epoch=None):
        self.events.append(("end", stage, epoch, stage_loss))


def make_brain(run_opts=None, hparams=None, checkpointer=None, lr=0.05, model=None, cls=Regressor):
    torch.manual_seed(0)
    model = model if model is not None else torch.nn.Linear(3, 1)
    options = {"noprogressbar": True, "device": "cpu", "max_grad_norm": 0.0, **(run_opts or {})}
    return cls(
        {"model": model},
        lambda params: torch.optim.SGD(params, lr=lr),
        hparams=hparams,
        run_opts=options,
        checkpointer=checkpointer,
    )


def weights(brain):
    return {k: v.detach().clone() for k, v in brain.modules.model.state_dict().items()}


def test_gradient_accumulation_equals_one_large_batch():
    data = regression_data(16)
    big = make_brain()
    big.fit(range(1, 2), data, train_loader_kwargs={"batch_size": 8})
    accumulated = make_brain({"grad_accumulation_factor": 2})
    accumulated.fit(range(1, 2), data, train_loader_kwargs={"batch_size": 4})
    assert big.optimizer_step == accumulated.optimizer_step == 2
    for key, value in weights(big).items():
        assert torch.allclose(value, weights(accumulated)[key], atol=1e-6)


class RecordingSGD(torch.optim.SGD):
    def __init__(self, params, lr):
        super().__init__(params, lr=lr)
        self.norms = []

    def step(self, closure=None):
        grads = [
            p.grad for group in self.param_groups for p in group["params"] if p.grad is not None
        ]
        self.norms.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())
        return super().step(closure)


@pytest.mark.parametrize("max_grad_norm", [0.0, 0.5])
def test_clipping_bounds_the_gradient_norm(max_grad_norm):
    torch.manual_seed(0)
    brain = Regressor(
        {"model": torch.nn.Linear(3, 1)},
        lambda params: RecordingSGD(params, lr=0.0),
        run_opts={"noprogressbar": True, "device": "cpu", "max_grad_norm": max_grad_norm},
    )
    brain.fit(range(1, 2), regression_data(16), train_loader_kwargs={"batch_size": 4})
    norms = brain.optimizer.norms
    if max_grad_norm:
        assert max(norms) <= max_grad_norm + 1e-5 and min(norms) > max_grad_norm - 1e-5
    else:
        assert min(norms) > 1.0  # the unclipped gradients are large


class NaNAt(Regressor):
    """Returns a nan loss for the batches whose (1-based) epoch step is in ``bad_steps``."""

    bad_steps: set = set()

    def compute_objectives(self, predictions, batch, stage):
        loss = super().compute_objectives(predictions, batch, stage)
        return loss * float("nan") if self.step in self.bad_steps else loss


def test_nonfinite_loss_skips_the_step_and_keeps_weights_finite():
    brain = make_brain({"nonfinite_patience": 1}, cls=NaNAt)
    brain.bad_steps = {2}
    brain.fit(range(1, 2), regression_data(16), train_loader_kwargs={"batch_size": 4})
    assert all(torch.isfinite(v).all() for v in weights(brain).values())
    assert brain.nonfinite_count == 1  # counted for the epoch, as SpeechBrain
    loss = next(e for e in brain.events if e[0] == "end" and e[1] == Stage.TRAIN)[3]
    assert torch.isfinite(torch.tensor(loss))


def test_more_nonfinite_losses_in_an_epoch_than_the_patience_stop_with_a_clear_error():
    brain = make_brain({"nonfinite_patience": 2}, cls=NaNAt)
    brain.bad_steps = {1, 3, 4}  # not in a row: the count is per epoch
    with pytest.raises(ValueError, match="not finite for 3 batches of this epoch"):
        brain.fit(range(1, 2), regression_data(16), train_loader_kwargs={"batch_size": 4})


def test_the_nonfinite_count_starts_again_each_epoch():
    brain = make_brain({"nonfinite_patience": 1}, cls=NaNAt)
    brain.bad_steps = {1}  # one bad batch in each of three epochs
    brain.fit(range(1, 4), regression_data(8), train_loader_kwargs={"batch_size": 4})
    assert brain.nonfinite_count == 1


class SqrtLoss(Brain):
    """Finite loss, infinite gradient at zero weights: d sqrt(|w|) / dw."""

    def compute_forward(self, batch, stage):
        return self.modules.model.weight

    def compute_objectives(self, weight, batch, stage):
        return weight.abs().sqrt().sum()


@pytest.mark.parametrize("skip", [True, False])
def test_skip_nonfinite_grads_keeps_the_weights(skip):
    model = torch.nn.Linear(2, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    brain = make_brain({"skip_nonfinite_grads": skip}, model=model, cls=SqrtLoss)
    brain.fit(range(1, 2), [torch.zeros(1)] * 2, train_loader_kwargs={"collate_fn": torch.stack})
    assert torch.isfinite(model.weight).all() == skip


def test_bf16_autocast_runs_on_cpu_and_learns():
    class Checked(Regressor):
        def compute_forward(self, batch, stage):
            predictions = super().compute_forward(batch, stage)
            self.events.append(("dtype", predictions.dtype))
            return predictions

    brain = make_brain({"precision": "bf16", "eval_precision": "bf16"}, cls=Checked)
    data = regression_data(32)
    brain.fit(range(1, 4), data, data, train_loader_kwargs={"batch_size": 8})
    assert {e[1] for e in brain.events if e[0] == "dtype"} == {torch.bfloat16}
    train_losses = [e[3] for e in brain.events if e[0] == "end" and e[1] == Stage.TRAIN]
    assert train_losses[-1] < train_losses[0]
    assert brain.modules.model.weight.dtype == torch.float32


def test_fp16_uses_a_grad_scaler_registered_with_the_checkpointer(tmp_path):
    checkpointer = Checkpointer(tmp_path)
    brain = make_brain({"precision": "fp16"}, checkpointer=checkpointer)
    assert brain.scaler.is_enabled() and checkpointer.recoverables["scaler"] is brain.scaler
    brain.fit(range(1, 2), regression_data(8), train_loader_kwargs={"batch_size": 4})
    assert brain.optimizer_step == 2


def test_a_checkpoint_saved_in_fp32_resumes_in_fp16_the_scaler_being_optional(tmp_path):
    make_brain(checkpointer=Checkpointer(tmp_path)).checkpointer.save_checkpoint()
    checkpointer = Checkpointer(tmp_path)
    brain = make_brain({"precision": "fp16"}, checkpointer=checkpointer)
    scale = brain.scaler.get_scale()
    with pytest.warns(UserWarning, match="missing a load path for scaler"):
        assert checkpointer.recover_if_possible() is not None
    assert brain.scaler.get_scale() == scale
    assert checkpointer.optional_recoverables == {"brain": False, "rng": True, "scaler": True}


def test_debug_mode_runs_debug_batches_for_debug_epochs():
    brain = make_brain({"debug": True, "debug_batches": 2, "debug_epochs": 2})
    brain.fit(
        range(1, 10),
        regression_data(40),
        regression_data(40),
        train_loader_kwargs={"batch_size": 4},
    )
    stages = [(e[1], e[2]) for e in brain.events if e[0] == "start"]
    assert stages == [(Stage.TRAIN, 1), (Stage.VALID, 1), (Stage.TRAIN, 2), (Stage.VALID, 2)]
    assert sum(1 for e in brain.events if e[0] == "forward") == 8
    assert brain.optimizer_step == 4


def test_optimizer_step_limit_stops_training():
    brain = make_brain({"optimizer_step_limit": 5})
    brain.fit(range(1, 10), regression_data(16), train_loader_kwargs={"batch_size": 4})
    assert brain.optimizer_step == 5


def test_stage_loss_is_the_mean_of_batch_losses():
    brain = make_brain(lr=0.0)
    data = regression_data(12)
    brain.fit(
        range(1, 2),
        data,
        data,
        valid_loader_kwargs={"batch_size": 4},
        train_loader_kwargs={"batch_size": 4},
    )
    model = brain.modules.model
    expected = (
        sum(
            torch.nn.functional.mse_loss(
                model(torch.stack([d["x"] for d in chunk])), torch.stack([d["y"] for d in chunk])
            ).item()
            for chunk in ([data[i] for i in range(start, start + 4)] for start in (0, 4, 8))
        )
        / 3
    )
    valid_loss = next(e[3] for e in brain.events if e[0] == "end" and e[1] == Stage.VALID)
    assert valid_loss == pytest.approx(expected, rel=1e-6)


def test_run_opts_override_hparams_and_unknown_options_are_refused():
    brain = make_brain(
        {"debug_batches": 7}, hparams={"debug_batches": 3, "debug_epochs": 4, "lr": 1}
    )
    assert brain.debug_batches == 7 and brain.debug_epochs == 4 and brain.hparams.lr == 1
    with pytest.raises(ValueError, match="closest: debug_batches"):
        make_brain({"debug_batchs": 1})
    with pytest.raises(ValueError, match="precision must be one of"):
        make_brain({"precision": "fp8"})


def test_brain_registers_what_it_creates_with_the_checkpointer(tmp_path):
    checkpointer = Checkpointer(tmp_path, {})
    brain = make_brain(checkpointer=checkpointer)
    brain.fit(range(1, 2), regression_data(8), train_loader_kwargs={"batch_size": 4})
    assert set(checkpointer.recoverables) == {"brain", "rng", "optimizer", "dataloader-TRAIN"}


def test_mid_epoch_checkpoints_every_n_steps_keep_only_the_latest(tmp_path):
    checkpointer = Checkpointer(tmp_path, {})
    brain = make_brain({"ckpt_interval_steps": 2}, checkpointer=checkpointer)
    checkpointer.add_recoverable("model", brain.modules.model)
    brain.fit(range(1, 2), regression_data(24), train_loader_kwargs={"batch_size": 4})
    found = checkpointer.list_checkpoints()
    assert len(found) == 1 and found[0].meta[INTRA_EPOCH_CKPT_FLAG]
    assert found[0].meta["end-of-epoch"] is False
    position = json.loads((found[0].path / "dataloader-TRAIN.ckpt").read_text())
    assert position == {"epoch": 1, "batches_consumed": 6}
    brain_state = json.loads((found[0].path / "brain.json").read_text())
    assert brain_state["optimizer_step"] == 6 and brain_state["step"] == 6
    assert brain_state["per_rank"][0]["avg_train_loss"] > 0


def test_mid_epoch_checkpoint_after_ckpt_interval_minutes(tmp_path, monkeypatch):
    # The clock reads 0 when the epoch starts and an hour later from then on.
    clock = itertools.chain([0.0], itertools.repeat(3600.0))
    monkeypatch.setattr(core, "time", SimpleNamespace(time=lambda: next(clock)))
    checkpointer = Checkpointer(tmp_path, {})
    brain = make_brain({"ckpt_interval_minutes": 30}, checkpointer=checkpointer)
    brain.fit(range(1, 2), regression_data(24), train_loader_kwargs={"batch_size": 4})
    (found,) = checkpointer.list_checkpoints()  # one save, then the next is 30 minutes away
    position = json.loads((found.path / "dataloader-TRAIN.ckpt").read_text())
    assert position == {"epoch": 1, "batches_consumed": 1}


def test_evaluate_recovers_the_best_checkpoint_by_min_key(tmp_path):
    model = torch.nn.Linear(3, 1)
    checkpointer = Checkpointer(tmp_path, {"model": model})
    brain = make_brain(model=model, checkpointer=checkpointer)
    for value, loss in ((1.0, 0.5), (2.0, 0.1), (3.0, 0.9)):
        torch.nn.init.constant_(model.weight, value)
        checkpointer.save_checkpoint(meta={"loss": loss})
    brain.evaluate(regression_data(8), min_key="loss", test_loader_kwargs={"batch_size": 4})
    assert torch.equal(model.weight, torch.full((1, 3), 2.0))
    assert [e[1] for e in brain.events if e[0] == "start"] == [Stage.TEST]


def test_scan_worst_batches_runs_the_largest_first_and_leaves_the_model_unchanged():
    class Transposed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.norm, self.linear = torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 3)

        def forward(self, x):  # x: (batch, time, 3)
            return self.linear(self.norm(x.transpose(1, 2)).transpose(1, 2))

    class Scanned(Regressor):
        def compute_forward(self, batch, stage):
            self.events.append(("frames", batch.x.data.shape[1]))
            return self.modules.model(batch.x.data).mean(dim=(1, 2))[:, None]

        def on_fit_start(self):
            self.after_scan = copy.deepcopy(self.modules.model.state_dict())
            super().on_fit_start()

    lengths = (2, 9, 3, 7, 2, 2)
    data = {str(i): {"x": torch.randn(n, 3), "y": torch.zeros(1)} for i, n in enumerate(lengths)}
    data = DynamicItemDataset(data, output_keys=["x", "y"])
    brain = make_brain({"scan_worst_batches": 2}, model=Transposed(), cls=Scanned)
    before = copy.deepcopy(brain.modules.model.state_dict())
    brain.fit(range(1, 2), data, train_loader_kwargs={"batch_size": 2})
    frames = [e[1] for e in brain.events if e[0] == "frames"]
    assert frames == [9, 7, 9, 7, 2]  # the scan (largest first), then the epoch in order
    assert all(torch.equal(before[k], brain.after_scan[k]) for k in before)


def test_profile_training_writes_a_chrome_trace(tmp_path):
    brain = make_brain(
        {"profile_training": True, "profile_warmup": 1, "profile_steps": 2},
        hparams={"output_folder": str(tmp_path)},
    )
    brain.fit(range(1, 2), regression_data(16), train_loader_kwargs={"batch_size": 4})
    trace = json.loads((tmp_path / "profiler" / "trace_rank0.json").read_text())
    assert trace["traceEvents"]


def test_progress_bar_shows_the_running_loss_in_a_terminal(capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    brain = make_brain({"noprogressbar": False})
    brain.fit(range(1, 2), regression_data(8), train_loader_kwargs={"batch_size": 4})
    assert "train_loss=" in capsys.readouterr().err


def test_progress_goes_to_the_log_as_plain_lines_outside_a_terminal(capsys, caplog):
    brain = make_brain({"noprogressbar": False})
    with caplog.at_level(logging.INFO, logger="speechlobes.progress"):
        brain.fit(range(1, 2), regression_data(8), train_loader_kwargs={"batch_size": 4})
    lines = [r.getMessage() for r in caplog.records if r.name == "speechlobes.progress"]
    assert lines[0].startswith("epoch 1: 2/2 (100 %)") and "train_loss" in lines[0]
    assert "\r" not in capsys.readouterr().err


def test_compile_option_wraps_modules_with_torch_compile():
    brain = make_brain({"compile": True})
    brain._compile()
    assert type(brain.modules.model).__name__ == "OptimizedModule"


def test_a_ready_dataloader_is_used_as_is_and_its_sampler_told_the_epoch():
    class EpochSampler(torch.utils.data.SequentialSampler):
        epochs = []

        def set_epoch(self, epoch):
            self.epochs.append(epoch)

    data = [torch.ones(3)] * 4
    loader = torch.utils.data.DataLoader(data, batch_size=2, sampler=EpochSampler(data))

    class Plain(Brain):
        def compute_forward(self, batch, stage):
            return self.modules.model(batch)

        def compute_objectives(self, predictions, batch, stage):
            return predictions.pow(2).mean()

    brain = make_brain(cls=Plain)
    brain.fit(range(1, 3), loader)
    assert brain.optimizer_step == 4 and loader.sampler.epochs == [1, 2]


def test_fit_can_run_twice_with_a_new_optimizer_registered(tmp_path):
    checkpointer = Checkpointer(tmp_path, {})
    brain = make_brain(checkpointer=checkpointer)
    brain.fit(range(1, 2), regression_data(8), train_loader_kwargs={"batch_size": 4})
    first = brain.optimizer
    brain.fit(range(1, 2), regression_data(8), train_loader_kwargs={"batch_size": 4})
    assert (
        brain.optimizer is not first and checkpointer.recoverables["optimizer"] is brain.optimizer
    )


class Crash(Exception):
    pass


class CrashingRegressor(Regressor):
    crash_at_step = None

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        if should_step and self.optimizer_step == self.crash_at_step:
            raise Crash


def resumable_run(folder, crash_at_step=None):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 1))
    counter = EpochCounter(2)
    options = {
        "grad_accumulation_factor": 2,
        "ckpt_interval_steps": 3,
        "seed": 5,
        "max_grad_norm": 1.0,
    }
    brain = make_brain(
        options,
        model=model,
        cls=CrashingRegressor,
        checkpointer=Checkpointer(folder, {"model": model, "counter": counter}),
    )
    brain.crash_at_step = crash_at_step
    brain.fit(counter, regression_data(16), train_loader_kwargs={"batch_size": 2, "shuffle": True})
    return weights(brain)


def test_crash_after_a_mid_epoch_checkpoint_resumes_bit_identically_with_accumulation(tmp_path):
    expected = resumable_run(tmp_path / "uninterrupted")
    with pytest.raises(Crash):  # 4 steps per epoch: the checkpoint at step 6 is mid epoch 2
        resumable_run(tmp_path / "crashed", crash_at_step=7)
    resumed = resumable_run(tmp_path / "crashed")
    assert all(torch.equal(expected[key], resumed[key]) for key in expected)
