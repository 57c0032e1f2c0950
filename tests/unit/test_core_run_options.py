"""SpeechBrain 1.1's run options: names, defaults and what the Brain does with each; its
collation rule; and the experiment folder."""

import logging

import pytest
import torch
import yaml
from torch.utils.data import DataLoader

from speechlobes.checkpoints import Checkpointer
from speechlobes.core import RUN_OPTION_DEFAULTS, Brain, Stage, create_experiment_directory
from speechlobes.dataio.batch import PaddedBatch
from speechlobes.dataio.dataset import DynamicItemDataset
from speechlobes.logger import setup_logging

# SpeechBrain 1.1's RunOptions fields and defaults (speechbrain/utils/run_opts.py), except
# device (None: inferred, as there) and distributed_backend (None: gloo/nccl chosen for the
# device; SpeechBrain's "nccl" needs a GPU).
SPEECHBRAIN_RUN_OPTIONS = {
    "test_only": False,
    "debug": False,
    "debug_batches": 2,
    "debug_epochs": 2,
    "debug_persistently": False,
    "device": None,
    "data_parallel_backend": False,
    "data_parallel_count": -1,
    "distributed_launch": False,
    "find_unused_parameters": False,
    "jit": False,
    "jit_module_keys": None,
    "compile": False,
    "compile_module_keys": None,
    "compile_mode": "default",
    "compile_using_fullgraph": False,
    "compile_using_dynamic_shape_tracing": False,
    "precision": "fp32",
    "eval_precision": "fp32",
    "auto_mix_prec": False,
    "bfloat16_mix_prec": False,
    "max_grad_norm": 5.0,
    "skip_nonfinite_grads": False,
    "nonfinite_patience": 3,
    "noprogressbar": False,
    "ckpt_interval_minutes": 0,
    "ckpt_interval_steps": 0,
    "grad_accumulation_factor": 1,
    "optimizer_step_limit": None,
    "tqdm_colored_bar": False,
    "tqdm_barcolor": {"train": "GREEN", "valid": "MAGENTA", "test": "CYAN"},
    "remove_vector_weight_decay": False,
    "profile_training": False,
    "profile_warmup": 5,
    "profile_steps": 5,
    "log_config": None,
}


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(3, 1)
        self.norm = torch.nn.LayerNorm(1)

    def forward(self, x):
        return self.norm(self.linear(x))


class Regressor(Brain):
    def compute_forward(self, batch, stage):
        self.forwards = getattr(self, "forwards", 0) + 1
        x = batch["x"] if isinstance(batch, dict) else batch.x.data
        return self.modules.model(x.to(self.device))

    def compute_objectives(self, predictions, batch, stage):
        y = batch["y"] if isinstance(batch, dict) else batch.y.data
        return torch.nn.functional.mse_loss(predictions, y.to(self.device))


def examples(count=8):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(count, 3, generator=generator)
    return [{"x": x[i], "y": x[i, :1] * 2} for i in range(count)]


def make_brain(run_opts=None, hparams=None, checkpointer=None, opt=None):
    torch.manual_seed(0)
    options = {"noprogressbar": True, "device": "cpu", **(run_opts or {})}
    opt = opt or (lambda params: torch.optim.SGD(params, lr=0.1))
    return Regressor({"model": Net()}, opt, hparams, options, checkpointer)


def test_every_speechbrain_run_option_exists_with_its_default():
    for name, default in SPEECHBRAIN_RUN_OPTIONS.items():
        assert name in RUN_OPTION_DEFAULTS, name
        assert RUN_OPTION_DEFAULTS[name] == default, name
    assert RUN_OPTION_DEFAULTS["distributed_backend"] is None
    brain = Regressor({"model": Net()}, run_opts={"noprogressbar": True})
    assert brain.device in ("cpu", "cuda") and brain.distributed_launch is False
    assert brain.tqdm_barcolor == {"train": "", "valid": "", "test": ""}  # not coloured


def test_colored_bars_keep_their_colours():
    brain = make_brain({"tqdm_colored_bar": True})
    assert brain.tqdm_barcolor["valid"] == "MAGENTA"


def test_only_options_listed_as_overridden_win_over_the_hparams():
    run_opts = {"debug_batches": 2, "debug_epochs": 7, "overridden_args": {"debug_epochs"}}
    brain = make_brain(run_opts, hparams={"debug_batches": 5, "debug_epochs": 3})
    assert (brain.debug_batches, brain.debug_epochs) == (5, 7)
    plain = make_brain({"debug_batches": 2}, hparams={"debug_batches": 5})
    assert plain.debug_batches == 2  # a plain dict: every key is overridden


def test_test_only_skips_training_and_validation_but_not_evaluation():
    brain = make_brain({"test_only": True})
    brain.fit(range(1, 3), examples(), examples(), train_loader_kwargs={"batch_size": 4})
    assert not hasattr(brain, "forwards") and brain.optimizer is None
    brain.evaluate(examples(), test_loader_kwargs={"batch_size": 4})
    assert brain.forwards == 2


def test_plain_datasets_use_torch_default_collate_and_dynamic_item_datasets_padded_batch():
    seen = []

    class Recording(Regressor):
        def compute_forward(self, batch, stage):
            seen.append(type(batch))
            return super().compute_forward(batch, stage)

    brain = Recording({"model": Net()}, run_opts={"noprogressbar": True, "device": "cpu"})
    brain.evaluate(examples(4), test_loader_kwargs={"batch_size": 4})
    data = {f"u{i}": example for i, example in enumerate(examples(4))}
    brain.evaluate(
        DynamicItemDataset(data, output_keys=["x", "y"]), test_loader_kwargs={"batch_size": 4}
    )
    assert seen == [dict, PaddedBatch]


def test_deprecated_precision_flags_select_fp16_and_bf16(caplog):
    with caplog.at_level(logging.WARNING):
        assert make_brain({"auto_mix_prec": True}).precision == "fp16"
    assert "auto_mix_prec is deprecated" in caplog.text
    assert make_brain({"bfloat16_mix_prec": True}).precision == "bf16"


def test_exclusive_or_impossible_options_are_refused():
    with pytest.raises(ValueError, match="exclude each other"):
        make_brain({"ckpt_interval_minutes": 1, "ckpt_interval_steps": 5})
    if torch.cuda.device_count() == 0:
        with pytest.raises(ValueError, match="data_parallel_backend needs at least one GPU"):
            make_brain({"data_parallel_backend": True})


def test_debug_runs_checkpoint_to_a_temporary_folder_unless_persistently(tmp_path):
    temporary = make_brain({"debug": True}, checkpointer=Checkpointer(tmp_path / "a"))
    assert temporary.checkpointer.checkpoints_dir != tmp_path / "a"
    assert temporary.checkpointer.tempdir.name == str(temporary.checkpointer.checkpoints_dir)
    kept = make_brain(
        {"debug": True, "debug_persistently": True}, checkpointer=Checkpointer(tmp_path / "b")
    )
    assert kept.checkpointer.checkpoints_dir == tmp_path / "b"


def test_debug_epochs_zero_or_less_runs_every_epoch():
    brain = make_brain({"debug": True, "debug_epochs": 0, "debug_batches": 1})
    epochs = []
    brain.on_stage_start = lambda stage, epoch=None: epochs.append(epoch)
    brain.fit(range(1, 4), examples(), train_loader_kwargs={"batch_size": 2})
    assert epochs == [1, 2, 3] and brain.optimizer_step == 3


def test_jit_and_compile_apply_to_all_modules_or_to_the_listed_keys():
    class Two(Regressor):
        pass

    def two_modules(run_opts):
        return Two(
            {"model": Net(), "extra": torch.nn.Linear(2, 2)},
            run_opts={"noprogressbar": True, "device": "cpu", **run_opts},
        )

    jitted = two_modules({"jit": True, "jit_module_keys": ["extra"]})
    jitted._compile()
    assert isinstance(jitted.modules.extra, torch.jit.ScriptModule)
    assert not isinstance(jitted.modules.model, torch.jit.ScriptModule)
    compiled = two_modules({"compile": True, "compile_module_keys": ["model"]})
    compiled._compile()
    assert type(compiled.modules.model).__name__ == "OptimizedModule"
    assert type(compiled.modules.extra).__name__ == "Linear"
    with pytest.raises(ValueError, match=r"jit_module_keys names \['missing'\]"):
        two_modules({"jit": True, "jit_module_keys": ["missing"]})._compile()


def test_remove_vector_weight_decay_puts_biases_and_norms_in_a_group_without_decay():
    brain = make_brain(
        {"remove_vector_weight_decay": True},
        opt=lambda params: torch.optim.AdamW(params, lr=0.1, weight_decay=0.5),
    )
    brain.init_optimizers()
    vectors, matrices = brain.optimizer.param_groups
    assert vectors["weight_decay"] == 0.0 and matrices["weight_decay"] == 0.5
    assert {p.dim() for p in vectors["params"]} == {1} and len(vectors["params"]) == 3
    assert [p.shape for p in matrices["params"]] == [torch.Size([1, 3])]


def test_freeze_optimizers_chooses_which_optimizers_step():
    class Frozen(Regressor):
        def freeze_optimizers(self, optimizers):
            return {}

    brain = Frozen({"model": Net()}, lambda p: torch.optim.SGD(p, lr=0.1),
                   run_opts={"noprogressbar": True, "device": "cpu"})  # fmt: skip
    before = {k: v.clone() for k, v in brain.modules.model.state_dict().items()}
    brain.fit(range(1, 2), examples(), train_loader_kwargs={"batch_size": 4})
    assert all(torch.equal(v, before[k]) for k, v in brain.modules.model.state_dict().items())
    assert brain.optimizers_dict == {"opt_class": brain.optimizer}


def test_update_average_is_the_running_mean_over_the_stage_steps():
    brain = make_brain()
    average = 0.0
    for step, loss in enumerate([2.0, 4.0, float("nan"), 6.0], start=1):
        brain.step = step
        average = brain.update_average(torch.tensor(loss), average)
    assert average == pytest.approx(3.0 - 3.0 / 4 + 6.0 / 4)  # 2, 3, nan leaves 3, then 3.75


def test_the_training_loader_is_registered_under_its_stage_name_and_others_are_not(tmp_path):
    checkpointer = Checkpointer(tmp_path)
    brain = make_brain(checkpointer=checkpointer)
    brain.fit(range(1, 2), examples(), examples(), train_loader_kwargs={"batch_size": 4},
              valid_loader_kwargs={"batch_size": 4})  # fmt: skip
    brain.evaluate(examples(), test_loader_kwargs={"batch_size": 4})
    assert "dataloader-TRAIN" in checkpointer.recoverables
    assert not {"dataloader-VALID", "dataloader-TEST"} & set(checkpointer.recoverables)
    brain.make_dataloader(examples(), Stage.VALID, ckpt_prefix="loader-")
    assert "loader-VALID" in checkpointer.recoverables


def test_a_given_dataloader_is_not_registered_and_the_train_sampler_is_told_the_epoch(tmp_path):
    class EpochSampler(torch.utils.data.SequentialSampler):
        epochs = []

        def set_epoch(self, epoch):
            self.epochs.append(epoch)

    checkpointer = Checkpointer(tmp_path)
    brain = make_brain(checkpointer=checkpointer)
    sampler = EpochSampler(examples())
    brain.train_sampler = sampler
    brain.fit(range(1, 3), DataLoader(examples(), batch_size=4))
    assert "dataloader-TRAIN" not in checkpointer.recoverables
    assert EpochSampler.epochs == [1, 2]


def test_shuffle_draws_from_the_seed_run_option():
    brain = make_brain({"seed": 11})
    loader = brain.make_dataloader(examples(), Stage.TRAIN, batch_size=2, shuffle=True)
    assert loader.sampler.seed == 11 and brain.train_sampler is loader.sampler


def test_training_and_evaluation_contexts_are_reusable_autocast_contexts():
    brain = make_brain({"precision": "bf16"})
    for _ in range(2):
        with brain.training_ctx:
            assert torch.is_autocast_enabled("cpu")
    with brain.evaluation_ctx:
        assert not torch.is_autocast_enabled("cpu")


def test_experiment_folder_with_a_logging_config_and_without_environment(tmp_path):
    hparams = tmp_path / "hparams.yaml"
    hparams.write_text("lr: 0.1\nfolder: !ref <lr>\n")
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(levelname)s %(message)s"}},
        "handlers": {
            "file_handler": {"class": "logging.FileHandler", "filename": "x", "formatter": "plain"}
        },
        "root": {"level": "INFO", "handlers": ["file_handler"]},
    }
    config_file = tmp_path / "log-config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    folder = tmp_path / "exp"
    try:
        create_experiment_directory(folder, hparams, log_config=config_file, save_env_desc=False)
        logging.getLogger("speechlobes.test").info("configured")
    finally:
        logging.getLogger().handlers.clear()
        setup_logging(None)
    saved = (folder / "hyperparams.yaml").read_text().splitlines()
    assert saved[0].startswith("# Generated ") and saved[1] == f"# {hparams.resolve()}"
    assert "folder: 0.1" in saved
    assert "INFO configured" in (folder / "log.txt").read_text()
    assert not (folder / "env.json").exists() and (folder / "command.txt").exists()
