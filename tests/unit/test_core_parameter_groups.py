"""lr_scales split the optimizer into groups whose learning-rate ratios survive scheduling."""

import torch

from speechlobes.core import Brain
from speechlobes.nnet.schedulers import WarmupDecayScheduler


def make_brain(hparams):
    modules = {"encoder": torch.nn.Linear(2, 2), "head": torch.nn.Linear(2, 1)}
    return Brain(
        modules,
        lambda groups: torch.optim.SGD(groups, lr=0.5),
        hparams=hparams,
        run_opts={"device": "cpu", "noprogressbar": True},
    )


def test_without_lr_scales_one_group_holds_every_parameter():
    brain = make_brain({})
    brain.init_optimizers()
    (group,) = brain.optimizer.param_groups
    assert len(group["params"]) == 4 and group["lr"] == 0.5


def test_lr_scales_by_module_prefix_scale_now_and_after_scheduler_steps():
    brain = make_brain({"lr_scales": {"encoder": 0.1}})
    brain.init_optimizers()
    encoder_group = next(g for g in brain.optimizer.param_groups if g["lr_scale"] == 0.1)
    assert encoder_group["params"] == [brain.modules.encoder.weight, brain.modules.encoder.bias]
    assert sorted(g["lr"] for g in brain.optimizer.param_groups) == [0.05, 0.5]
    WarmupDecayScheduler(peak_lr=1.0, warmup_steps=2, total_steps=4)(brain.optimizer)
    assert sorted(g["lr"] for g in brain.optimizer.param_groups) == [0.05, 0.5]
