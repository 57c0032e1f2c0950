"""The Brain: a generic training loop you specialise by overriding a few methods.

Quick start (a runnable version with comments is ``templates/minimal/train.py``)::

    import sys, torch
    from speechlobes.core import Brain, parse_arguments
    from speechlobes.utils.hparams import load_hparams

    class Regressor(Brain):
        def compute_forward(self, batch, stage):
            return self.modules.model(batch.x.data.to(self.device))
        def compute_objectives(self, predictions, batch, stage):
            return torch.nn.functional.mse_loss(predictions, batch.y.data.to(self.device))

    hparams_file, run_opts, overrides = parse_arguments(sys.argv[1:])
    hparams = load_hparams(hparams_file, overrides)
    brain = Regressor(hparams["modules"], hparams["opt_class"], hparams, run_opts,
                      checkpointer=hparams["checkpointer"])
    brain.fit(hparams["epoch_counter"], train_set, valid_set, train_loader_kwargs={"batch_size": 8})

What the Brain carries so a recipe does not:

- data: ``fit``/``evaluate`` take a map-style dataset (a ``DynamicItemDataset``, a torch
  ``Dataset``, a list of dicts) or a ready ``DataLoader``; datasets become a resumable loader
  (``speechlobes.dataio.loader``) collated with ``PaddedBatch``.
- run options (YAML or command line, see :data:`RUN_OPTION_DEFAULTS`): device, precision
  (fp32/bf16/fp16 with a GradScaler), gradient accumulation, clipping, non-finite loss/gradient
  handling, mid-epoch checkpoints, ``torch.compile``, debug mode, profiling, an out-of-memory
  pre-scan, a progress bar with the running loss.
- checkpoints: the Brain registers what it creates (optimizer, GradScaler, train-loader
  position, RNG states, its own counters) with the given ``Checkpointer``; a killed run restarted
  with the same command continues bit-identically (register your modules, counters and
  schedulers too); under torchrun each rank gets its own random states back. Limit of
  exactness: random draws made inside DataLoader worker processes restart with the epoch.
- torchrun: ``torchrun --nproc_per_node=N train.py hparams.yaml`` trains with DDP; losses are
  averaged over ranks, rank 0 alone writes.

Seams to override: ``compute_forward``, ``compute_objectives``, ``on_fit_start``,
``on_stage_start``, ``on_stage_end``, ``on_evaluate_start``, ``init_optimizers``, ``fit_batch``,
``evaluate_batch``, ``on_fit_batch_start``, ``on_fit_batch_end``.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import logging
import platform
import random
import shlex
import shutil
import subprocess
import sys
import time
from enum import Enum
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader, DistributedSampler

import speechlobes
from speechlobes import distributed
from speechlobes.checkpoints import RNGState
from speechlobes.dataio.loader import make_dataloader
from speechlobes.logger import setup_logging
from speechlobes.progress import progress
from speechlobes.utils.hparams import (
    HparamsError,
    closest_keys,
    overrides_to_yaml,
    typed_override,
    yaml_key_lines,
)
from speechlobes.utils.threads import spinning_threads_warning

__all__ = [
    "RUN_OPTION_DEFAULTS",
    "Brain",
    "Stage",
    "check_run_option",
    "create_experiment_directory",
    "parse_arguments",
    "set_seed",
]

logger = logging.getLogger(__name__)

INTRA_EPOCH_FLAG = "intra_epoch"

RUN_OPTION_DEFAULTS: dict[str, Any] = {
    "device": "cuda" if torch.cuda.is_available() else "cpu",
    "precision": "fp32",  # fp32 | bf16 | fp16 (training)
    "eval_precision": "fp32",  # fp32 | bf16 | fp16 (validation and test)
    "distributed_backend": None,  # default: gloo, plus nccl for CUDA tensors if CUDA exists
    "find_unused_parameters": False,  # DDP: needed when part of a module skips the loss
    "grad_accumulation_factor": 1,  # batches per optimizer step
    "max_grad_norm": 5.0,  # clip the gradient norm to this (0 or None: no clipping)
    "nonfinite_patience": 3,  # non-finite losses tolerated in a row before stopping
    "skip_nonfinite_grads": False,  # skip an optimizer step whose gradients are not finite
    "ckpt_interval_minutes": 0,  # mid-epoch checkpoint every N minutes (0: never)
    "ckpt_interval_steps": 0,  # mid-epoch checkpoint every N optimizer steps (0: never)
    "compile": False,  # torch.compile every module
    "debug": False,  # a smoke test: debug_batches batches for debug_epochs epochs
    "debug_batches": 2,
    "debug_epochs": 2,
    "seed": None,  # seeds python/numpy/torch and the loaders' shuffling
    "noprogressbar": False,
    "optimizer_step_limit": None,  # stop training after this many optimizer steps
    "profile_training": False,  # torch.profiler trace of the first profile_steps steps
    "profile_steps": 5,
    "scan_worst_batches": 0,  # before training, run the N largest batches (OOM pre-scan)
}
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# The type of each run option's value (None is allowed where the default is None).
RUN_OPTION_TYPES: dict[str, type] = {
    **{name: type(default) for name, default in RUN_OPTION_DEFAULTS.items()},
    "distributed_backend": str,
    "seed": int,
    "optimizer_step_limit": int,
    "max_grad_norm": float,
    "ckpt_interval_minutes": float,
}
# Run options that must be at least this large.
RUN_OPTION_MINIMA = {
    "grad_accumulation_factor": 1,
    "max_grad_norm": 0,
    "nonfinite_patience": 0,
    "ckpt_interval_minutes": 0,
    "ckpt_interval_steps": 0,
    "debug_batches": 1,
    "debug_epochs": 1,
    "optimizer_step_limit": 1,
    "profile_steps": 1,
    "scan_worst_batches": 0,
}


class Stage(Enum):
    """The three stages of an experiment."""

    TRAIN = "train"
    VALID = "valid"
    TEST = "test"


def set_seed(seed: int) -> None:
    """Seed the python, numpy and torch (CPU and CUDA) generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------------------------
# Command line and experiment folder
# ---------------------------------------------------------------------------------------------
def parse_arguments(argv: list[str]) -> tuple[str, dict, str]:
    """Split ``train.py hparams.yaml --key=value ...`` into (hparams_file, run_opts, overrides).

    Options may be written ``--key=value`` or ``--key value``. Names of
    :data:`RUN_OPTION_DEFAULTS` become run options; names of keys in the file (nested as
    ``--a.b=value``) become HyperPyYAML overrides (a YAML string). A name that is neither is an
    error listing the closest keys. Everything is checked here, before anything is built or
    written: a value must parse to the type of the key's value in the file (or of the run
    option's default), a bare ``--key`` is only for booleans, and obviously invalid values
    (fewer than one epoch, a negative learning rate...) are refused, see
    :func:`speechlobes.utils.hparams.typed_override`. Tagged values (``!ref <seed>``) pass.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "h.yaml"
        >>> _ = path.write_text("lr: 0.1\\n")
        >>> parse_arguments([str(path), "--lr=0.5", "--debug"])[1:]
        ({'debug': True}, 'lr: 0.5\\n')
    """
    if not argv or argv[0].startswith("-"):
        raise HparamsError("usage: python train.py hparams.yaml [--key=value ...]")
    if warning := spinning_threads_warning():
        logger.warning("%s", warning)
    hparams_file, options = argv[0], _split_options(argv[1:])
    if not Path(hparams_file).is_file():
        raise HparamsError(f"{hparams_file}: no such hyperparameter file")
    keys = yaml_key_lines(hparams_file)
    run_opts, overrides = {}, []
    for name, raw in options:
        if name not in RUN_OPTION_DEFAULTS and name not in keys:
            close = closest_keys(name, [*keys, *RUN_OPTION_DEFAULTS])
            raise HparamsError(
                f"--{name}: no such key in {hparams_file} and not a run option; "
                f"closest: {', '.join(close) if close else '(none)'}"
            )
        if name in RUN_OPTION_DEFAULTS:
            run_opts[name] = _run_option_value(name, raw)
        if name in keys:
            overrides.append((name, typed_override(hparams_file, name, raw)))
    return hparams_file, run_opts, overrides_to_yaml(overrides)


def _run_option_value(name: str, raw: str | None) -> Any:
    """A command-line run option parsed and checked (``--debug`` alone means true)."""
    kind = RUN_OPTION_TYPES[name]
    if raw is None:
        if kind is not bool:
            raise HparamsError(f"--{name}: give a value ({kind.__name__}); bare --key is a flag")
        value = True
    else:
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as error:
            raise HparamsError(f"--{name}={raw}: not a value ({error})") from error
    try:
        return check_run_option(name, value)
    except ValueError as error:
        raise HparamsError(f"--{name}={raw}: {error}") from error


def _split_options(arguments: list[str]) -> list[tuple[str, str | None]]:
    options, index = [], 0
    while index < len(arguments):
        argument = arguments[index]
        if not argument.startswith("--") or argument == "--":
            raise HparamsError(f"unexpected argument {argument!r}: options look like --key=value")
        name, equals, value = argument[2:].partition("=")
        if not equals and index + 1 < len(arguments) and not arguments[index + 1].startswith("--"):
            value, index = arguments[index + 1], index + 1
        options.append((name, value if equals or value else None))
        index += 1
    return options


def create_experiment_directory(
    experiment_directory: str | Path,
    hyperparams_to_save: str | Path | None = None,
    overrides: str | dict | None = None,
    argv: list[str] | None = None,
    log_file: str = "log.txt",
) -> None:
    """Create the experiment folder and start logging into it (rank 0 writes; all ranks wait).

    Writes ``hyperparams.yaml`` (the file with references resolved and overrides applied), a
    copy of the running script, ``command.txt`` (the command line) and ``env.json`` (python,
    torch, speechlobes versions, git commit), and logs to ``log.txt``.
    """
    distributed.init_distributed()
    folder = Path(experiment_directory)
    if distributed.if_main_process():
        folder.mkdir(parents=True, exist_ok=True)
        if hyperparams_to_save is not None:
            _save_resolved_hparams(hyperparams_to_save, overrides, folder / "hyperparams.yaml")
        script = Path(getattr(sys.modules["__main__"], "__file__", "") or "")
        if script.suffix == ".py" and script.is_file():
            shutil.copy(script, folder / script.name)
        command = argv if argv is not None else sys.argv
        (folder / "command.txt").write_text(shlex.join(["python", *command]) + "\n")
        (folder / "env.json").write_text(json.dumps(_environment(), indent=2) + "\n")
    distributed.barrier()
    setup_logging(folder / log_file)
    logger.info("experiment folder: %s", folder)


def _save_resolved_hparams(hparams_file, overrides, destination: Path) -> None:
    from hyperpyyaml import resolve_references

    with open(hparams_file, encoding="utf-8") as stream:
        resolved = resolve_references(stream, overrides or None)
    destination.write_text(resolved.getvalue(), encoding="utf-8")


def _environment() -> dict:
    package_dir = Path(speechlobes.__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=package_dir,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "speechlobes": speechlobes.__version__,
        "git_commit": commit or None,
        "platform": platform.platform(),
        "cuda": torch.version.cuda,
    }


# ---------------------------------------------------------------------------------------------
# The Brain
# ---------------------------------------------------------------------------------------------
class Brain:
    """Generic training and evaluation loop; subclass it for a task.

    Args:
        modules: ``{name: nn.Module}``, moved to the device, available as ``self.modules.name``.
        opt_class: a callable ``params -> optimizer`` (e.g. ``!name:torch.optim.Adam`` in YAML).
        hparams: a dict, available as the namespace ``self.hparams``; run options may be set
            here too.
        run_opts: run options (usually from :func:`parse_arguments`); they win over hparams.
        checkpointer: a ``Checkpointer``; the Brain registers its optimizer, GradScaler,
            train-loader position, RNG states and own counters with it.

    Example:
        >>> class Mean(Brain):
        ...     def compute_forward(self, batch, stage):
        ...         return self.modules.model(batch)
        ...     def compute_objectives(self, predictions, batch, stage):
        ...         return predictions.pow(2).mean()
        >>> brain = Mean({"model": torch.nn.Linear(2, 1)}, lambda p: torch.optim.SGD(p, lr=0.1),
        ...              run_opts={"noprogressbar": True, "device": "cpu"})
        >>> brain.fit(range(1, 3), [torch.ones(2)] * 4, train_loader_kwargs={"batch_size": 2,
        ...           "collate_fn": torch.stack})
        >>> brain.optimizer_step
        4
    """

    def __init__(
        self,
        modules: dict[str, torch.nn.Module] | None = None,
        opt_class: Any = None,
        hparams: dict | None = None,
        run_opts: dict | None = None,
        checkpointer: Any = None,
    ):
        for name, value in _run_options(hparams or {}, run_opts or {}).items():
            setattr(self, name, value)
        self.hparams = SimpleNamespace(**(hparams or {}))
        self.opt_class = opt_class
        self.checkpointer = checkpointer
        distributed.init_distributed(self.distributed_backend)
        self.device = distributed.rank_device(self.device)
        if self.seed is not None:
            set_seed(self.seed)
        self.modules = torch.nn.ModuleDict(modules or {}).to(self.device)
        device_type = torch.device(self.device).type
        self.scaler = torch.amp.GradScaler(device_type, enabled=self.precision == "fp16")
        self.optimizer = None
        self.optimizers_dict: dict[str, torch.optim.Optimizer] = {}
        self.step = 0  # batches done in the current training epoch
        self.optimizer_step = 0  # optimizer steps since the start of training
        self.nonfinite_count = 0
        self._loss_sum, self._loss_count = 0.0, 0
        self._last_ckpt_time = time.time()
        self._profiled = False
        if checkpointer is not None:
            checkpointer.add_recoverables({"brain": self, "rng": RNGState()})
            if self.scaler.is_enabled():
                checkpointer.add_recoverable("scaler", self.scaler)

    # ------------------------------------------------------------------ override points
    def compute_forward(self, batch: Any, stage: Stage) -> Any:
        """Predictions for a batch (override)."""
        raise NotImplementedError("override compute_forward(batch, stage)")

    def compute_objectives(self, predictions: Any, batch: Any, stage: Stage) -> torch.Tensor:
        """The loss to minimise, a scalar tensor (override); also a place to collect metrics."""
        raise NotImplementedError("override compute_objectives(predictions, batch, stage)")

    def on_fit_start(self) -> None:
        """Compile and wrap modules, build optimizers, recover the latest checkpoint."""
        self._compile_modules()
        self._wrap_distributed()
        self.init_optimizers()
        if self.checkpointer is not None:
            self.checkpointer.recover_if_possible()

    def init_optimizers(self) -> None:
        """Build ``self.optimizer`` from ``opt_class`` over :meth:`parameter_groups` and register
        it (override for several optimizers). A group's ``lr_scale`` multiplies its learning
        rate, now and at every scheduler step."""
        if self.opt_class is None:
            return
        self.optimizer = self.opt_class(self.parameter_groups())
        for group in self.optimizer.param_groups:
            group["lr"] *= group.get("lr_scale", 1.0)
        self.optimizers_dict = {"optimizer": self.optimizer}
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("optimizer", self.optimizer)

    def parameter_groups(self) -> list[dict]:
        """The optimizer's parameter groups (override for e.g. layer-wise decay).

        With ``lr_scales`` in the hparams, ``{parameter-name prefix: scale}`` such as
        ``{"asr_model.0": 0.1}`` (names as in ``modules``, first matching prefix wins), each
        scale gets its own group with that ``lr_scale``; otherwise one group holds everything.
        """
        scales = getattr(self.hparams, "lr_scales", None) or {}
        groups: dict[float, list[torch.nn.Parameter]] = {}
        for key, module in self.modules.items():
            module = getattr(module, "module", module)  # unwrap DistributedDataParallel
            for name, parameter in module.named_parameters(prefix=key):
                scale = next((s for p, s in scales.items() if name.startswith(p)), 1.0)
                groups.setdefault(scale, []).append(parameter)
        return [{"params": params, "lr_scale": scale} for scale, params in groups.items()]

    def on_stage_start(self, stage: Stage, epoch: int | None = None) -> None:
        """Called at the start of each stage (e.g. to reset metric trackers)."""

    def on_stage_end(self, stage: Stage, stage_loss: float, epoch: int | None = None) -> None:
        """Called at the end of each stage with the loss averaged over batches and ranks
        (log, anneal the learning rate, save a checkpoint here)."""

    def on_evaluate_start(self, max_key: str | None = None, min_key: str | None = None) -> None:
        """Recover the best checkpoint by ``max_key``/``min_key`` (most recent without)."""
        if self.checkpointer is not None:
            self.checkpointer.recover_if_possible(max_key=max_key, min_key=min_key)

    def on_fit_batch_start(self, batch: Any, should_step: bool) -> None:
        """Called before each training batch (``should_step``: an optimizer step follows)."""

    def on_fit_batch_end(
        self, batch: Any, outputs: Any, loss: torch.Tensor, should_step: bool
    ) -> None:
        """Called after each training batch (e.g. to advance a per-step LR scheduler)."""

    # ------------------------------------------------------------------ data
    def make_dataloader(self, dataset: Any, stage: Stage, **loader_kwargs) -> DataLoader:
        """A DataLoader for ``dataset`` (returned as is if it already is one).

        The training loader is registered with the checkpointer, so its position is saved.
        """
        if isinstance(dataset, DataLoader):
            if loader_kwargs:
                raise ValueError(f"{stage.value}: loader kwargs given with a ready DataLoader")
            if distributed.is_distributed() and not _splits_across_ranks(dataset):
                logger.warning(
                    "%s: the given DataLoader has no distributed sampler, so every rank sees all "
                    "the data; pass the dataset instead and the Brain adds one",
                    stage.value,
                )
            loader = dataset
        else:
            loader = make_dataloader(
                dataset,
                seed=self.seed or 0,
                rank=distributed.get_rank(),
                world_size=distributed.get_world_size(),
                **loader_kwargs,
            )
        if stage == Stage.TRAIN and self.checkpointer is not None:
            if getattr(type(loader), "_ckpt_hooks", None) is not None:
                self.checkpointer.add_recoverable("dataloader-TRAIN", loader)
        return loader

    # ------------------------------------------------------------------ fit / evaluate
    def fit(
        self,
        epoch_counter: Any,
        train_set: Any,
        valid_set: Any = None,
        progressbar: bool | None = None,
        train_loader_kwargs: dict | None = None,
        valid_loader_kwargs: dict | None = None,
    ) -> None:
        """Train over ``epoch_counter``'s epochs, validating after each one."""
        train_loader = self.make_dataloader(train_set, Stage.TRAIN, **(train_loader_kwargs or {}))
        valid_loader = None
        if valid_set is not None:
            valid_loader = self.make_dataloader(
                valid_set, Stage.VALID, **(valid_loader_kwargs or {})
            )
        if self.scan_worst_batches:
            self._scan_worst_batches(train_loader)
        self.on_fit_start()
        progressbar = not self.noprogressbar if progressbar is None else progressbar
        for epoch in epoch_counter:
            self._train_epoch(train_loader, epoch, progressbar)
            if valid_loader is not None:
                self._evaluate_stage(valid_loader, Stage.VALID, epoch, progressbar)
            if (self.debug and epoch >= self.debug_epochs) or self._step_limit_reached():
                break

    def evaluate(
        self,
        test_set: Any,
        max_key: str | None = None,
        min_key: str | None = None,
        progressbar: bool | None = None,
        test_loader_kwargs: dict | None = None,
    ) -> float:
        """Evaluate the best checkpoint (by ``max_key``/``min_key``) on ``test_set``; returns
        the average test loss."""
        test_loader = self.make_dataloader(test_set, Stage.TEST, **(test_loader_kwargs or {}))
        self.on_evaluate_start(max_key=max_key, min_key=min_key)
        progressbar = not self.noprogressbar if progressbar is None else progressbar
        return self._evaluate_stage(test_loader, Stage.TEST, None, progressbar)

    def _train_epoch(self, loader: DataLoader, epoch: int, progressbar: bool) -> None:
        _set_loader_epoch(loader, epoch)
        self.on_stage_start(Stage.TRAIN, epoch)
        self.modules.train()
        self._zero_grad()
        with self._profiler() as profiler:
            progress = self._progress(loader, progressbar, f"epoch {epoch}", initial=self.step)
            for batch in progress:
                self.step += 1
                loss = self.fit_batch(batch)
                self._record_loss(loss)
                progress.set_postfix(train_loss=f"{self.avg_train_loss:.4g}", refresh=False)
                profiler.step()
                self._checkpoint_if_due()
                if (self.debug and self.step >= self.debug_batches) or self._step_limit_reached():
                    break
        stage_loss = self._reduced_mean(self._loss_sum, self._loss_count)
        self.step, self._loss_sum, self._loss_count = 0, 0.0, 0
        self.on_stage_end(Stage.TRAIN, stage_loss, epoch)

    def _evaluate_stage(self, loader, stage: Stage, epoch: int | None, progressbar: bool) -> float:
        self.on_stage_start(stage, epoch)
        self.modules.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for batch in self._progress(loader, progressbar, stage.value):
                total, count = total + float(self.evaluate_batch(batch, stage)), count + 1
                if self.debug and count >= self.debug_batches:
                    break
        stage_loss = self._reduced_mean(total, count)
        self.on_stage_end(stage, stage_loss, epoch)
        return stage_loss

    def fit_batch(self, batch: Any) -> torch.Tensor:
        """Forward, loss, backward for one batch; an optimizer step every
        ``grad_accumulation_factor`` batches. Returns the detached loss."""
        should_step = self.step % self.grad_accumulation_factor == 0
        self.on_fit_batch_start(batch, should_step)
        with self._no_sync(not should_step):
            with self._autocast(Stage.TRAIN):
                outputs = self.compute_forward(batch, Stage.TRAIN)
                loss = self.compute_objectives(outputs, batch, Stage.TRAIN)
            if self._loss_is_finite(loss):
                self.scaler.scale(loss / self.grad_accumulation_factor).backward()
        if should_step:
            self.optimizers_step()
        self.on_fit_batch_end(batch, outputs, loss, should_step)
        return loss.detach().cpu()

    def evaluate_batch(self, batch: Any, stage: Stage) -> torch.Tensor:
        """Forward and loss for one batch without gradients; returns the detached loss."""
        with self._autocast(stage):
            predictions = self.compute_forward(batch, stage)
            loss = self.compute_objectives(predictions, batch, stage)
        return loss.detach().cpu()

    def optimizers_step(self) -> None:
        """Unscale, check, clip, step every optimizer, then clear the gradients."""
        for optimizer in self.optimizers_dict.values():
            self.scaler.unscale_(optimizer)
        if self._gradients_usable():
            self._clip_gradients()
            for optimizer in self.optimizers_dict.values():
                self.scaler.step(optimizer)
        self.scaler.update()
        self._zero_grad()
        self.optimizer_step += 1

    # ------------------------------------------------------------------ one helper per feature
    @property
    def avg_train_loss(self) -> float:
        """Mean training loss of the current epoch so far (this rank)."""
        return self._loss_sum / self._loss_count if self._loss_count else float("nan")

    def _record_loss(self, loss: torch.Tensor) -> None:
        if torch.isfinite(loss).all():
            self._loss_sum += float(loss)
            self._loss_count += 1

    @staticmethod
    def _reduced_mean(total: float, count: int) -> float:
        """Batch-averaged loss over every rank."""
        summed = distributed.all_reduce_sum(torch.tensor([total, count], dtype=torch.float64))
        return float(summed[0] / summed[1]) if summed[1] > 0 else float("nan")

    def _autocast(self, stage: Stage):
        """Mixed-precision context for a stage (``precision`` or ``eval_precision``)."""
        dtype = PRECISIONS[self.precision if stage == Stage.TRAIN else self.eval_precision]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=torch.device(self.device).type, dtype=dtype)

    def _no_sync(self, accumulating: bool):
        """Under DDP, skip the gradient all-reduce on batches that only accumulate."""
        stack = contextlib.ExitStack()
        if accumulating:
            for module in self.modules.values():
                if isinstance(module, torch.nn.parallel.DistributedDataParallel):
                    stack.enter_context(module.no_sync())
        return stack

    def _loss_is_finite(self, loss: torch.Tensor) -> bool:
        """Count non-finite losses (on any rank); stop after ``nonfinite_patience`` in a row."""
        finite = bool(torch.isfinite(loss.detach()).all())
        if distributed.is_distributed():
            bad_ranks = distributed.all_reduce_sum(torch.tensor([0.0 if finite else 1.0]))
            finite = bad_ranks.item() == 0
        if finite:
            self.nonfinite_count = 0
            return True
        self.nonfinite_count += 1
        logger.warning(
            "non-finite loss at epoch step %d (%d in a row): batch skipped",
            self.step,
            self.nonfinite_count,
        )
        if self.nonfinite_count > self.nonfinite_patience:
            raise FloatingPointError(
                f"the loss was not finite for {self.nonfinite_count} batches in a row "
                f"(nonfinite_patience={self.nonfinite_patience}): lower the learning rate, try "
                "precision=fp32 or bf16, or check the data for empty or broken examples"
            )
        return False

    def _gradients_usable(self) -> bool:
        """False when ``skip_nonfinite_grads`` is on and a gradient is inf/nan (step skipped)."""
        if not self.skip_nonfinite_grads:
            return True
        for parameter in self.modules.parameters():
            if parameter.grad is not None and not torch.isfinite(parameter.grad).all():
                logger.warning(
                    "non-finite gradient: optimizer step %d skipped", self.optimizer_step
                )
                return False
        return True

    def _clip_gradients(self) -> None:
        if self.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.modules.parameters(), self.max_grad_norm)

    def _zero_grad(self) -> None:
        for optimizer in self.optimizers_dict.values():
            optimizer.zero_grad(set_to_none=True)
        self.modules.zero_grad(set_to_none=True)

    def _step_limit_reached(self) -> bool:
        limit = self.optimizer_step_limit
        return limit is not None and self.optimizer_step >= limit

    def _checkpoint_if_due(self) -> None:
        """Save a mid-epoch checkpoint after an optimizer step, every ``ckpt_interval_steps``
        steps or ``ckpt_interval_minutes`` minutes (rank 0's clock decides)."""
        just_stepped = self.step % self.grad_accumulation_factor == 0
        if self.checkpointer is None or not just_stepped:
            return
        by_steps = self.ckpt_interval_steps and self.optimizer_step % self.ckpt_interval_steps == 0
        by_time = self.ckpt_interval_minutes and (
            time.time() - self._last_ckpt_time >= 60 * self.ckpt_interval_minutes
        )
        if not distributed.broadcast_flag(bool(by_steps or by_time)):
            return
        self.checkpointer.save_and_keep_only(
            meta={INTRA_EPOCH_FLAG: True},
            end_of_epoch=False,
            num_to_keep=1,
            ckpt_predicate=lambda checkpoint: INTRA_EPOCH_FLAG in checkpoint.meta,
        )
        self._last_ckpt_time = time.time()

    def _progress(self, loader, enabled: bool, description: str, initial: int = 0):
        """A tqdm bar (plain log lines when not in a terminal) on rank 0; silent elsewhere."""
        show = enabled and distributed.if_main_process()
        return progress(loader, description, initial=initial, enabled=show)

    @contextlib.contextmanager
    def _profiler(self):
        """torch.profiler over the first ``profile_steps`` training steps of this process; the
        Chrome trace goes to ``<output_folder>/profiler/``."""
        if not self.profile_training or self._profiled:
            yield SimpleNamespace(step=lambda: None)
            return
        folder = Path(getattr(self.hparams, "output_folder", ".")) / "profiler"
        folder.mkdir(parents=True, exist_ok=True)
        trace = folder / f"trace_rank{distributed.get_rank()}.json"
        activities = [torch.profiler.ProfilerActivity.CPU]
        if torch.device(self.device).type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        schedule = torch.profiler.schedule(wait=0, warmup=1, active=max(1, self.profile_steps - 1))
        with torch.profiler.profile(
            activities=activities,
            schedule=schedule,
            on_trace_ready=lambda prof: prof.export_chrome_trace(str(trace)),
        ) as profiler:
            yield profiler
        self._profiled = True
        logger.info("profiler trace written to %s", trace)

    def _compile_modules(self) -> None:
        if self.compile:
            for name, module in self.modules.items():
                if not hasattr(module, "_orig_mod"):  # not compiled yet
                    self.modules[name] = torch.compile(module)

    def _wrap_distributed(self) -> None:
        for name, module in self.modules.items():
            self.modules[name] = distributed.wrap_ddp(
                module, self.device, self.find_unused_parameters
            )

    def _scan_worst_batches(self, loader: DataLoader) -> None:
        """Run forward and backward on the ``scan_worst_batches`` largest batches (most tensor
        elements) before training, so an out-of-memory error shows in the first minute.

        Costs one pass of data loading. No optimizer step is taken and the modules' buffers
        (e.g. BatchNorm statistics) are restored afterwards.
        """
        largest: list[tuple[int, int, Any]] = []
        for index, batch in enumerate(loader):
            entry = (_batch_elements(batch), -index, batch)
            if len(largest) < self.scan_worst_batches:
                heapq.heappush(largest, entry)
            else:
                heapq.heappushpop(largest, entry)
        buffers = {name: b.clone() for name, b in self.modules.named_buffers()}
        self.modules.train()
        for elements, _, batch in sorted(largest, key=lambda entry: entry[:2], reverse=True):
            try:
                with self._autocast(Stage.TRAIN):
                    loss = self.compute_objectives(
                        self.compute_forward(batch, Stage.TRAIN), batch, Stage.TRAIN
                    )
                self.scaler.scale(loss).backward()
            except torch.OutOfMemoryError as error:
                raise RuntimeError(
                    f"out of memory on a batch of {elements} tensor elements during the "
                    "scan_worst_batches pre-scan: lower the batch size (or max batch length)"
                ) from error
            self._zero_grad()
        with torch.no_grad():
            for name, buffer in self.modules.named_buffers():
                buffer.copy_(buffers[name])
        logger.info("scan_worst_batches: the %d largest batches fit", len(largest))

    # ------------------------------------------------------------------ checkpointed state
    def state_dict(self) -> dict:
        """The Brain's own progress counters (saved as the ``brain`` recoverable); the
        per-process running sums are gathered from every rank (a collective under torchrun)."""
        own = {
            "nonfinite_count": self.nonfinite_count,
            "loss_sum": self._loss_sum,
            "loss_count": self._loss_count,
        }
        return {
            "step": self.step,
            "optimizer_step": self.optimizer_step,
            "per_rank": distributed.gather_object(own),
        }

    def load_state_dict(self, state: dict) -> None:
        self.step = state["step"]
        self.optimizer_step = state["optimizer_step"]
        per_rank = state["per_rank"]
        own = per_rank[distributed.get_rank() % len(per_rank)]
        self.nonfinite_count = own["nonfinite_count"]
        self._loss_sum, self._loss_count = own["loss_sum"], own["loss_count"]


def _set_loader_epoch(loader: Any, epoch: int) -> None:
    """Tell the loader (or, for a plain DataLoader, its samplers) which epoch starts."""
    if hasattr(loader, "set_epoch"):
        loader.set_epoch(epoch)
        return
    for sampler in (getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)):
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)


def _splits_across_ranks(loader: DataLoader) -> bool:
    sampler, batch_sampler = loader.sampler, loader.batch_sampler
    world_size = distributed.get_world_size()
    return (
        isinstance(sampler, DistributedSampler)
        or getattr(batch_sampler, "world_size", 1) == world_size
    )


def _batch_elements(batch: Any) -> int:
    """Number of tensor elements in a batch (tensors, PaddedData, dicts, lists, batches)."""
    if isinstance(batch, torch.Tensor):
        return batch.numel()
    if isinstance(batch, dict):
        return sum(_batch_elements(value) for value in batch.values())
    if isinstance(batch, list | tuple):
        return sum(_batch_elements(value) for value in batch)
    if hasattr(batch, "__dict__"):
        return sum(_batch_elements(value) for value in vars(batch).values())
    return 0


def _run_options(hparams: dict, run_opts: dict) -> dict:
    """Each run option from run_opts, else hparams, else its default; validated."""
    unknown = set(run_opts) - set(RUN_OPTION_DEFAULTS)
    if unknown:
        name = sorted(unknown)[0]
        close = closest_keys(name, list(RUN_OPTION_DEFAULTS))
        raise ValueError(f"unknown run option {name!r}; closest: {', '.join(close) or '(none)'}")
    options = {}
    for name, default in RUN_OPTION_DEFAULTS.items():
        options[name] = run_opts.get(name, hparams.get(name, default))
        if name in run_opts and name in hparams and run_opts[name] != hparams[name]:
            logger.info(
                "run option %s=%r overrides the hparams value %r",
                name,
                run_opts[name],
                hparams[name],
            )
    return {name: check_run_option(name, value) for name, value in options.items()}


def check_run_option(name: str, value: Any) -> Any:
    """``value`` if it suits run option ``name`` (type, range, choices), else a ValueError.

    Example:
        >>> check_run_option("grad_accumulation_factor", 0)
        Traceback (most recent call last):
        ...
        ValueError: grad_accumulation_factor must be >= 1, got 0
    """
    kind = RUN_OPTION_TYPES[name]
    if value is None and (RUN_OPTION_DEFAULTS[name] is None or name == "max_grad_norm"):
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{name} must be {kind.__name__}, got {value!r}")
    if name in ("precision", "eval_precision") and value not in PRECISIONS:
        raise ValueError(f"{name} must be one of {list(PRECISIONS)}, got {value!r}")
    minimum = RUN_OPTION_MINIMA.get(name)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value
