"""The Brain: a generic training loop you specialise by overriding a few methods.

SpeechBrain's ``speechbrain.core``: the same ``Brain`` constructor, run options (names,
defaults and meaning: :data:`RUN_OPTION_DEFAULTS`), seams and loop. Quick start (a runnable
version with comments is ``templates/minimal/train.py``)::

    import sys, torch
    from hyperpyyaml import load_hyperpyyaml
    from speechlobes.core import Brain, Stage, parse_arguments

    class Regressor(Brain):
        def compute_forward(self, batch, stage):
            return self.modules.model(batch.x.data.to(self.device))
        def compute_objectives(self, predictions, batch, stage):
            return torch.nn.functional.mse_loss(predictions, batch.y.data.to(self.device))

    hparams_file, run_opts, overrides = parse_arguments(sys.argv[1:])
    with open(hparams_file) as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    brain = Regressor(hparams["modules"], hparams["opt_class"], hparams, run_opts,
                      checkpointer=hparams["checkpointer"])
    brain.fit(hparams["epoch_counter"], train_set, valid_set, train_loader_kwargs={"batch_size": 8})

What the Brain carries so a recipe does not:

- data: ``fit``/``evaluate`` take a dataset or a ready DataLoader; a dataset becomes a
  :class:`~speechlobes.dataio.loader.SaveableDataLoader` (``make_dataloader``), collated with
  ``PaddedBatch`` when it is a ``DynamicItemDataset`` and with torch's default collate
  otherwise. ``shuffle=True`` draws from (seed, epoch), so a resumed epoch sees the same order.
- run options (YAML or command line, see :data:`RUN_OPTION_DEFAULTS`): device, precision
  (fp32/bf16/fp16 with a GradScaler), gradient accumulation, clipping, non-finite loss and
  gradient handling, mid-epoch checkpoints, ``torch.compile``/JIT, DataParallel, debug mode,
  profiling, an out-of-memory pre-scan, a progress bar with the running loss.
- checkpoints: the Brain registers what it creates (optimizer, GradScaler, train-loader
  position, RNG states, its own counters) with the given ``Checkpointer``; a killed run restarted
  with the same command continues bit-identically (register your modules, counters and
  schedulers too); under torchrun each rank gets its own random states back. Limit of
  exactness: random draws made inside DataLoader worker processes restart with the epoch.
- torchrun: ``torchrun --nproc_per_node=N train.py hparams.yaml`` trains with DDP (no call to
  ``ddp_init_group`` needed); every stage's data is split over the ranks, losses are averaged
  over ranks, rank 0 alone writes. With ``--distributed_strategy=fsdp`` the modules are
  sharded instead (:mod:`speechlobes.fsdp`: per block, precision policy from ``precision``)
  and checkpoints hold their modules and optimizers as one sharded folder
  (:mod:`speechlobes.distributed_checkpoint`) that recovers into any number of processes.

Seams to override (SpeechBrain's): ``compute_forward``, ``compute_objectives``,
``on_fit_start``, ``on_stage_start``, ``on_stage_end``, ``on_evaluate_start``,
``init_optimizers``, ``freeze_optimizers``, ``fit_batch``, ``evaluate_batch``,
``on_fit_batch_start``, ``on_fit_batch_end``, ``update_average``.
"""

from __future__ import annotations

import contextlib
import copy
import heapq
import json
import logging
import logging.config
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import FrozenInstanceError
from datetime import date
from enum import Enum
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import yaml
from torch.utils.data import DataLoader, DistributedSampler, IterableDataset

import speechlobes
from speechlobes import distributed
from speechlobes.checkpoints import RNGState, has_checkpoint_hooks
from speechlobes.dataio.loader import LoopedLoader, make_dataloader
from speechlobes.dataio.sampler import DistributedSamplerWrapper, ReproducibleRandomSampler
from speechlobes.fsdp import is_sharded, shard_modules
from speechlobes.logger import setup_logging
from speechlobes.progress import progress
from speechlobes.utils.hparams import (
    HparamsError,
    closest_keys,
    overrides_to_yaml,
    typed_override,
    yaml_key_lines,
)
from speechlobes.utils.seed import global_seed, seed_everything
from speechlobes.utils.threads import spinning_threads_warning

__all__ = [
    "RUN_OPTION_DEFAULTS",
    "Brain",
    "RunOptions",
    "Stage",
    "check_run_option",
    "create_experiment_directory",
    "parse_arguments",
    "set_seed",
]

logger = logging.getLogger(__name__)

INTRA_EPOCH_CKPT_FLAG = "brain_intra_epoch_ckpt"

# SpeechBrain 1.1's run options with their defaults, and ours (last block). A run option is
# read from run_opts (the command line), else from the hparams, else from here.
RUN_OPTION_DEFAULTS: dict[str, Any] = {
    "test_only": False,  # fit() does nothing: evaluate a trained model
    "debug": False,  # a smoke test: debug_batches batches for debug_epochs epochs
    "debug_batches": 2,
    "debug_epochs": 2,  # <= 0: every epoch
    "debug_persistently": False,  # in debug mode, keep checkpoints (else a temporary folder)
    "device": None,  # None: cuda[:LOCAL_RANK] if available, else cpu
    "data_parallel_backend": False,  # torch.nn.DataParallel over the visible GPUs
    "data_parallel_count": -1,
    "distributed_backend": None,  # None: gloo, plus nccl for CUDA tensors when CUDA exists
    "distributed_launch": False,  # set by the Brain: started by torchrun (RANK, LOCAL_RANK)
    "find_unused_parameters": False,  # DDP: needed when part of a module skips the loss
    "jit": False,  # torch.jit.script every module (or jit_module_keys)
    "jit_module_keys": None,
    "compile": False,  # torch.compile every module (or compile_module_keys)
    "compile_module_keys": None,
    "compile_mode": "default",  # default | reduce-overhead | max-autotune
    "compile_using_fullgraph": False,
    "compile_using_dynamic_shape_tracing": False,
    "precision": "fp32",  # fp32 | bf16 | fp16 (training)
    "eval_precision": "fp32",  # fp32 | bf16 | fp16 (validation and test)
    "auto_mix_prec": False,  # deprecated: precision=fp16
    "bfloat16_mix_prec": False,  # deprecated: precision=bf16
    "max_grad_norm": 5.0,  # clip the gradient norm to this (0, None or negative: no clipping)
    "skip_nonfinite_grads": False,  # drop (set to None) gradients that are inf/nan
    "nonfinite_patience": 3,  # non-finite losses tolerated per epoch before stopping
    "noprogressbar": False,
    "ckpt_interval_minutes": 0,  # mid-epoch checkpoint every N minutes (0: never)
    "ckpt_interval_steps": 0,  # mid-epoch checkpoint every N batches (0: never)
    "grad_accumulation_factor": 1,  # batches per optimizer step
    "optimizer_step_limit": None,  # stop training after this many optimizer steps
    "tqdm_colored_bar": False,
    "tqdm_barcolor": {"train": "GREEN", "valid": "MAGENTA", "test": "CYAN"},
    "remove_vector_weight_decay": False,  # biases and norms (1-d parameters) get no weight decay
    "profile_training": False,  # torch.profiler trace of the first training steps
    "profile_warmup": 5,
    "profile_steps": 5,
    "log_config": None,  # a logging YAML for create_experiment_directory
    # speechlobes' own
    "distributed_strategy": "ddp",  # under torchrun: ddp | fsdp (sharded, speechlobes.fsdp)
    "fsdp_block_classes": None,  # fsdp: the classes sharded one by one (None: found, see fsdp)
    "seed": None,  # seed of the loaders' shuffling (default: the seed_everything seed)
    "scan_worst_batches": 0,  # before training, run the N largest batches (OOM pre-scan)
    "compile_backend": "inductor",  # torch.compile backend (e.g. aot_eager: no C++ compiler)
}
# Keys a RunOptions-style object carries besides the options themselves.
RUN_OPTION_EXTRAS = ("param_file", "overridden_args")
# The run options a command line sets: all but seed, which (as in SpeechBrain) is a
# hyperparameter override there. These two take several values: --compile_module_keys enc dec
COMMAND_LINE_RUN_OPTIONS = tuple(name for name in RUN_OPTION_DEFAULTS if name != "seed")
LIST_RUN_OPTIONS = ("jit_module_keys", "compile_module_keys")
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
DISTRIBUTED_STRATEGIES = ("ddp", "fsdp")
# The type of each run option's value (None is allowed where the default is None).
RUN_OPTION_TYPES: dict[str, type] = {
    **{name: type(default) for name, default in RUN_OPTION_DEFAULTS.items()},
    "device": str,
    "distributed_backend": str,
    "jit_module_keys": list,
    "compile_module_keys": list,
    "fsdp_block_classes": list,
    "log_config": str,
    "seed": int,
    "optimizer_step_limit": int,
    "max_grad_norm": float,
    "ckpt_interval_minutes": float,
}
# Run options that must be at least this large.
RUN_OPTION_MINIMA = {
    "grad_accumulation_factor": 1,
    "nonfinite_patience": 0,
    "ckpt_interval_minutes": 0,
    "ckpt_interval_steps": 0,
    "debug_batches": 1,
    "optimizer_step_limit": 1,
    "profile_steps": 1,
    "scan_worst_batches": 0,
}


class Stage(Enum):
    """The three stages of an experiment."""

    TRAIN = "train"
    VALID = "valid"
    TEST = "test"


set_seed = seed_everything  # the name our recipes' YAML uses


# ---------------------------------------------------------------------------------------------
# Command line and experiment folder
# ---------------------------------------------------------------------------------------------
class RunOptions(Mapping):
    """The run options of one experiment, read-only: SpeechBrain's ``RunOptions``.

    What :func:`parse_arguments` returns and the :class:`Brain` takes. It holds every option of
    :data:`RUN_OPTION_DEFAULTS` (the default unless given; given values are checked by
    :func:`check_run_option`), ``param_file`` (the hyperparameter file) and ``overridden_args``
    (the options actually given: only these win over the hparams). It reads as a dict
    (``run_opts["device"]``, ``get``, ``in``, ``keys``, ``items``, :meth:`as_dict`) and as an
    object (``run_opts.device``).

    Example:
        >>> run_opts = RunOptions.from_dictionary({"device": "cpu"})
        >>> run_opts["device"], run_opts.debug, run_opts.overridden_args
        ('cpu', False, {'device'})
    """

    def __init__(
        self, param_file: str = "", overridden_args: Iterable[str] = (), **options: Any
    ) -> None:
        _refuse_unknown_run_options(options)
        values = copy.deepcopy(RUN_OPTION_DEFAULTS)
        values.update({name: check_run_option(name, value) for name, value in options.items()})
        values.update(param_file=str(param_file), overridden_args=set(overridden_args))
        object.__setattr__(self, "_values", values)

    @classmethod
    def from_dictionary(cls, args_dict: Mapping) -> RunOptions:
        """Run options from a dict; every option in it counts as given."""
        options = {key: value for key, value in args_dict.items() if key not in RUN_OPTION_EXTRAS}
        return cls(args_dict.get("param_file", ""), set(options), **options)

    @classmethod
    def from_command_line_args(
        cls, arg_list: list[str] | None = None
    ) -> tuple[str, RunOptions, str]:
        """:func:`parse_arguments` (SpeechBrain's name for it)."""
        return parse_arguments(arg_list)

    def as_dict(self) -> dict:
        """A copy of every option, ``param_file`` and ``overridden_args`` as a plain dict."""
        return copy.deepcopy(self._values)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, name: str) -> Any:
        values = self.__dict__.get("_values", {})
        if name not in values:
            raise AttributeError(f"RunOptions has no option {name!r}")
        return values[name]

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"RunOptions are read-only: cannot assign to {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"RunOptions are read-only: cannot delete {name!r}")

    def __repr__(self) -> str:
        given = "".join(f", {name}={self[name]!r}" for name in sorted(self.overridden_args))
        return f"RunOptions(param_file={self.param_file!r}{given})"


def parse_arguments(argv: list[str] | None = None) -> tuple[str, RunOptions, str]:
    """``train.py hparams.yaml --key=value ...`` -> ``(hparams_file, run_opts, overrides)``.

    SpeechBrain's ``parse_arguments``. ``argv`` defaults to ``sys.argv[1:]``; options are
    written ``--key=value`` or ``--key value``. Names of :data:`RUN_OPTION_DEFAULTS` are run
    options, parsed as SpeechBrain parses them: booleans are flags (``--debug``; also
    ``--debug=false``), ``jit_module_keys`` and ``compile_module_keys`` take several values
    (``--compile_module_keys enc dec``), precisions are fp32, fp16 or bf16. ``run_opts`` is a
    :class:`RunOptions` whose ``overridden_args`` are the options given. Names of keys in the
    file (``--a.b=value`` for nested keys) become HyperPyYAML overrides, a YAML string;
    ``--seed`` is one of these, not a run option. A run option that is also a key of the file
    overrides the key too, so the file's references to it follow.

    Everything is checked here, before anything is built or written: a name that is neither
    a run option nor a key is an error listing the closest names; a value must parse to the
    type of the key's value in the file (or of the option's default), a bare ``--key`` is only
    for booleans, and obviously invalid values (fewer than one epoch, a negative learning
    rate...) are refused, see :func:`speechlobes.utils.hparams.typed_override`. Tagged values
    (``!ref <seed>``) pass.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "h.yaml"
        >>> _ = path.write_text("seed: 1\\nlr: 0.1\\n")
        >>> argv = [str(path), "--device", "cpu", "--debug", "--seed", "10"]
        >>> hparams_file, run_opts, overrides = parse_arguments(argv)
        >>> run_opts["device"], run_opts.debug, sorted(run_opts.overridden_args), overrides
        ('cpu', True, ['debug', 'device'], 'seed: 10')
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if warning := spinning_threads_warning():
        logger.warning("%s", warning)
    hparams_file, options = _split_command_line(argv)
    if not Path(hparams_file).is_file():
        raise HparamsError(f"{hparams_file}: no such hyperparameter file")
    keys = yaml_key_lines(hparams_file)
    run_opts, overrides = {}, []
    for name, raw in options:
        if name not in COMMAND_LINE_RUN_OPTIONS and name not in keys:
            close = closest_keys(name, [*keys, *COMMAND_LINE_RUN_OPTIONS])
            raise HparamsError(
                f"--{name}: no such key in {hparams_file} and not a run option; "
                f"closest: {', '.join(close) if close else '(none)'}"
            )
        if name in COMMAND_LINE_RUN_OPTIONS:
            run_opts[name] = _run_option_value(name, raw)
        if name in keys:
            text = json.dumps(raw) if isinstance(raw, list) else raw
            overrides.append((name, typed_override(hparams_file, name, text)))
    run_options = RunOptions(hparams_file, set(run_opts), **run_opts)
    return hparams_file, run_options, overrides_to_yaml(overrides)


def _split_command_line(argv: list[str]) -> tuple[str, list[tuple[str, Any]]]:
    """The hyperparameter file (the argument that is neither an option nor an option's value)
    and ``[(name, raw value)]``: None for a bare ``--name``, a list for the module-key lists."""
    hparams_file, options, index = None, [], 0
    while index < len(argv):
        argument, index = argv[index], index + 1
        if not argument.startswith("--") or argument == "--":
            if hparams_file is not None:
                raise HparamsError(
                    f"unexpected argument {argument!r}: options look like --key=value or "
                    "--key value, and a flag takes no separate value (--debug=false)"
                )
            hparams_file = argument
            continue
        name, equals, value = argument[2:].partition("=")
        following = []
        while index < len(argv) and not argv[index].startswith("--"):
            if equals or _is_flag(name) or (following and name not in LIST_RUN_OPTIONS):
                break
            following.append(argv[index])
            index += 1
        if name in LIST_RUN_OPTIONS:
            options.append((name, [value] if equals else following))
        else:
            options.append((name, value if equals else next(iter(following), None)))
    if hparams_file is None:
        raise HparamsError("usage: python train.py hparams.yaml [--key=value ...]")
    return hparams_file, options


def _is_flag(name: str) -> bool:
    return name in COMMAND_LINE_RUN_OPTIONS and RUN_OPTION_TYPES[name] is bool


def _run_option_value(name: str, raw: str | list[str] | None) -> Any:
    """A command-line run option parsed and checked (a bare flag means true; text options
    such as ``device`` keep the text as written)."""
    kind = RUN_OPTION_TYPES[name]
    if raw is None:
        if kind is not bool:
            raise HparamsError(f"--{name}: give a value ({kind.__name__}); bare --key is a flag")
        value = True
    elif isinstance(raw, list) or kind is str:
        value = raw
    else:
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as error:
            raise HparamsError(f"--{name}={raw}: not a value ({error})") from error
    try:
        return check_run_option(name, value)
    except ValueError as error:
        raise HparamsError(f"--{name}={raw}: {error}") from error


def create_experiment_directory(
    experiment_directory: str | Path,
    hyperparams_to_save: str | Path | None = None,
    overrides: str | dict | None = None,
    log_config: str | Path | None = None,
    save_env_desc: bool = True,
    argv: list[str] | None = None,
    log_file: str = "log.txt",
) -> None:
    """Create the experiment folder and start logging into it (rank 0 writes; all ranks wait).

    SpeechBrain's signature, plus ``argv`` (the command line to record; default
    ``sys.argv``). Writes ``hyperparams.yaml`` (the file with references resolved and
    overrides applied), a copy of the running script, ``command.txt`` (the command line) and,
    with ``save_env_desc``, ``env.json`` (python, torch, speechlobes versions, git commit).
    Logs go to ``log.txt``, configured by ``log_config`` (a ``logging.config`` YAML whose
    ``file_handler`` is pointed at ``log.txt``) or by our default set-up; uncaught exceptions
    are logged there too.
    """
    distributed.init_distributed()
    folder = Path(experiment_directory)
    try:
        if distributed.if_main_process():
            folder.mkdir(parents=True, exist_ok=True)
            if hyperparams_to_save is not None:
                _save_resolved_hparams(hyperparams_to_save, overrides, folder / "hyperparams.yaml")
            script = Path(getattr(sys.modules["__main__"], "__file__", "") or "")
            if script.suffix == ".py" and script.is_file():
                shutil.copy(script, folder / script.name)
            command = argv if argv is not None else sys.argv
            (folder / "command.txt").write_text(shlex.join(["python", *command]) + "\n")
            if save_env_desc:
                (folder / "env.json").write_text(json.dumps(_environment(), indent=2) + "\n")
    finally:
        distributed.barrier()
    if log_config is None:
        setup_logging(folder / log_file)
    else:
        _configure_logging(log_config, folder / log_file)
    sys.excepthook = _log_exception
    logger.info("experiment folder: %s", folder)


def _configure_logging(log_config: str | Path, log_file: Path) -> None:
    with open(log_config, encoding="utf-8") as stream:
        config = yaml.safe_load(stream)
    handler = config.get("handlers", {}).get("file_handler")
    if handler is not None:
        handler["filename"] = str(log_file)
    logging.config.dictConfig(config)


def _log_exception(exc_type, exc_value, exc_traceback) -> None:
    logger.error("uncaught exception", exc_info=(exc_type, exc_value, exc_traceback))


def _save_resolved_hparams(hparams_file, overrides, destination: Path) -> None:
    from hyperpyyaml import resolve_references

    with open(hparams_file, encoding="utf-8") as stream:
        resolved = resolve_references(stream, overrides or None)
    header = (
        f"# Generated {date.today()} from:\n# {Path(hparams_file).resolve()}\n# yamllint disable\n"
    )
    destination.write_text(header + resolved.getvalue(), encoding="utf-8")


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
class _Autocast:
    """A reusable autocast context (a no-op for fp32): ``with brain.training_ctx: ...``."""

    def __init__(self, device_type: str, dtype: torch.dtype | None):
        self.device_type, self.dtype = device_type, dtype
        self._contexts: list[Any] = []

    def __enter__(self) -> None:
        context = (
            torch.autocast(device_type=self.device_type, dtype=self.dtype)
            if self.dtype is not None
            else contextlib.nullcontext()
        )
        self._contexts.append(context)
        context.__enter__()

    def __exit__(self, *exc_info) -> None:
        self._contexts.pop().__exit__(*exc_info)


class Brain:
    """Generic training and evaluation loop; subclass it for a task.

    Args:
        modules: ``{name: nn.Module}``, moved to the device, available as ``self.modules.name``.
        opt_class: a callable ``params -> optimizer`` (e.g. ``!name:torch.optim.Adam`` in YAML).
        hparams: a dict, available as the namespace ``self.hparams``; run options may be set
            here too.
        run_opts: run options: a :class:`RunOptions` (from :func:`parse_arguments`), whose
            ``overridden_args`` win over the hparams, or a dict, all of whose keys do.
        checkpointer: a ``Checkpointer``; the Brain registers its optimizer, GradScaler,
            train-loader position, RNG states and own counters with it.

    Every run option becomes an attribute (``self.precision``, ``self.debug``, ...).

    Example:
        >>> class Mean(Brain):
        ...     def compute_forward(self, batch, stage):
        ...         return self.modules.model(batch)
        ...     def compute_objectives(self, predictions, batch, stage):
        ...         return predictions.pow(2).mean()
        >>> brain = Mean({"model": torch.nn.Linear(2, 1)}, lambda p: torch.optim.SGD(p, lr=0.1),
        ...              run_opts={"noprogressbar": True, "device": "cpu"})
        >>> brain.fit(range(1, 3), [torch.ones(2)] * 4, train_loader_kwargs={"batch_size": 2})
        >>> brain.optimizer_step
        4
    """

    def __init__(
        self,
        modules: dict[str, torch.nn.Module] | None = None,
        opt_class: Any = None,
        hparams: dict | None = None,
        run_opts: Mapping | None = None,
        checkpointer: Any = None,
    ):
        for name, value in _run_options(hparams or {}, run_opts).items():
            setattr(self, name, value)
        self.hparams = SimpleNamespace(**(hparams or {}))
        self.opt_class = opt_class
        self.checkpointer = checkpointer
        self.distributed_launch = "RANK" in os.environ and "LOCAL_RANK" in os.environ
        self._check_run_options()
        distributed.init_distributed(self.distributed_backend)
        self.rank = distributed.get_rank()
        self.device = distributed.rank_device(self.device or distributed.infer_device())
        self.device_type = torch.device(self.device).type
        if self.device_type == "cuda" and torch.device(self.device).index is not None:
            torch.cuda.set_device(torch.device(self.device))
        self.modules = torch.nn.ModuleDict(modules or {}).to(self.device)
        self.raw_modules = self.modules
        self.scaler = self._grad_scaler()
        self.training_ctx = _Autocast(self.device_type, PRECISIONS[self.precision])
        self.evaluation_ctx = _Autocast(self.device_type, PRECISIONS[self.eval_precision])
        self.optimizer = None
        self.optimizers_dict: dict[str, torch.optim.Optimizer] | None = None
        self.train_sampler = None  # its set_epoch is called before each training epoch
        self.step = 0  # batches done in the current stage
        self.optimizer_step = 0  # optimizer steps since the start of training
        self.avg_train_loss = 0.0
        self.nonfinite_count = 0
        self._profiled = False
        if not self.tqdm_colored_bar:
            self.tqdm_barcolor = dict.fromkeys(self.tqdm_barcolor, "")
        if self.debug and not self.debug_persistently and checkpointer is not None:
            self._checkpoint_to_temporary_folder()
        if checkpointer is not None:
            checkpointer.add_recoverable("brain", self)
            checkpointer.add_recoverable("rng", RNGState(), optional_load=True)
            if self.scaler.is_enabled():  # optional: a checkpoint saved in fp32 resumes in fp16
                checkpointer.add_recoverable("scaler", self.scaler, optional_load=True)
        self.print_trainable_parameters()

    def _grad_scaler(self) -> torch.amp.GradScaler:
        """fp16's loss scaler (disabled otherwise); under FSDP the sharded one, which agrees
        across ranks on whether a step had non-finite gradients."""
        enabled = self.precision == "fp16"
        if self._sharding():
            from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

            return ShardedGradScaler(self.device_type, enabled=enabled)
        return torch.amp.GradScaler(self.device_type, enabled=enabled)

    def _sharding(self) -> bool:
        """Whether modules are sharded with FSDP: ``distributed_strategy: fsdp`` in a process
        that torchrun or srun started (a world of one included, :func:`shard_modules`)."""
        return self.distributed_strategy == "fsdp" and distributed.launched()

    def _check_run_options(self) -> None:
        if self.auto_mix_prec:
            logger.warning("auto_mix_prec is deprecated: use precision=fp16")
            self.precision = "fp16"
        if self.bfloat16_mix_prec:
            logger.warning("bfloat16_mix_prec is deprecated: use precision=bf16")
            self.precision = "bf16"
        for name in ("precision", "eval_precision"):
            if getattr(self, name) not in PRECISIONS:
                raise ValueError(
                    f"{name} must be one of {list(PRECISIONS)}, got {getattr(self, name)!r}"
                )
        if int(self.grad_accumulation_factor) < 1:
            raise ValueError(
                f"grad_accumulation_factor must be >= 1, got {self.grad_accumulation_factor}"
            )
        if self.ckpt_interval_minutes > 0 and self.ckpt_interval_steps > 0:
            raise ValueError(
                "ckpt_interval_minutes and ckpt_interval_steps exclude each other: keep one"
            )
        if self.data_parallel_backend and self.distributed_launch:
            raise ValueError(
                "data_parallel_backend is for one process: run `python train.py hparams.yaml "
                "--data_parallel_backend`, or torchrun without it for DDP"
            )
        if self.data_parallel_backend and self.distributed_strategy == "fsdp":
            raise ValueError(
                "distributed_strategy=fsdp shards over torchrun processes and "
                "data_parallel_backend replicates in one process: choose one"
            )
        if self.data_parallel_backend and torch.cuda.device_count() == 0:
            raise ValueError("data_parallel_backend needs at least one GPU")
        if self.skip_nonfinite_grads and self.precision == "fp16":
            logger.warning(
                "skip_nonfinite_grads is ignored with precision=fp16: the GradScaler already "
                "skips steps with non-finite gradients"
            )

    def _checkpoint_to_temporary_folder(self) -> None:
        """Debug runs write their checkpoints to a temporary folder (``debug_persistently``
        keeps them in place)."""
        folder = tempfile.TemporaryDirectory()
        logger.info("debug mode: checkpoints go to the temporary folder %s", folder.name)
        self.checkpointer.checkpoints_dir = Path(folder.name)
        self.checkpointer.tempdir = folder  # lives as long as the checkpointer

    def print_trainable_parameters(self) -> None:
        """Log the number of (trainable) parameters."""
        total = sum(parameter.numel() for parameter in self.modules.parameters())
        trainable = sum(p.numel() for p in self.modules.parameters() if p.requires_grad)
        if total == 0:
            logger.warning("the model has no parameters")
            return
        if trainable == 0:
            logger.warning("the model has no trainable parameters")
        logger.info(
            "%s: %s trainable parameters of %s (%.4f%%)",
            type(self).__name__,
            f"{trainable:,}",
            f"{total:,}",
            100.0 * trainable / total,
        )

    # ------------------------------------------------------------------ override points
    def compute_forward(self, batch: Any, stage: Stage) -> Any:
        """Predictions for a batch (override)."""
        raise NotImplementedError("override compute_forward(batch, stage)")

    def compute_objectives(self, predictions: Any, batch: Any, stage: Stage) -> torch.Tensor:
        """The loss to minimise, a scalar tensor (override); also a place to collect metrics."""
        raise NotImplementedError("override compute_objectives(predictions, batch, stage)")

    def on_fit_start(self) -> None:
        """Compile and wrap modules, build optimizers, recover the latest checkpoint."""
        self._compile()
        self._wrap_distributed()
        self.init_optimizers()
        if self.checkpointer is not None:
            self._checkpoint_sharded_state()
            self.checkpointer.recover_if_possible()

    def init_optimizers(self) -> None:
        """Build ``self.optimizer`` from ``opt_class`` over :meth:`parameter_groups` and register
        it (override for several optimizers: fill ``self.optimizers_dict``). A group's
        ``lr_scale`` multiplies its learning rate, now and at every scheduler step."""
        if self.opt_class is None:
            logger.info("no opt_class given: no optimizer")
            return
        self.optimizer = self.opt_class(self.parameter_groups())
        for group in self.optimizer.param_groups:
            group["lr"] *= group.get("lr_scale", 1.0)
        self.optimizers_dict = {"opt_class": self.optimizer}
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("optimizer", self.optimizer)

    def parameter_groups(self) -> list[dict]:
        """The optimizer's parameter groups (override for e.g. layer-wise decay).

        With ``lr_scales`` in the hparams, ``{parameter-name prefix: scale}`` such as
        ``{"asr_model.0": 0.1}`` (names as in ``modules``, first matching prefix wins), each
        scale gets its own group with that ``lr_scale``; otherwise one group holds everything.
        With ``remove_vector_weight_decay``, the trainable 1-d parameters (biases, norms) of
        each group move to a group of their own with ``weight_decay=0``, first.
        """
        scales = getattr(self.hparams, "lr_scales", None) or {}
        groups: dict[float, list[torch.nn.Parameter]] = {}
        for key, module in self.modules.items():
            module = getattr(module, "module", module)  # unwrap DistributedDataParallel
            for name, parameter in module.named_parameters(prefix=key):
                scale = next((s for p, s in scales.items() if name.startswith(p)), 1.0)
                groups.setdefault(scale, []).append(parameter)
        if not self.remove_vector_weight_decay:
            return [{"params": params, "lr_scale": scale} for scale, params in groups.items()]
        split = []
        for scale, params in groups.items():
            trainable = [p for p in params if p.requires_grad]
            vectors = [p for p in trainable if p.dim() == 1]
            split.append({"params": vectors, "lr_scale": scale, "weight_decay": 0.0})
            split.append({"params": [p for p in trainable if p.dim() != 1], "lr_scale": scale})
        return split

    def freeze_optimizers(self, optimizers: dict) -> dict:
        """The optimizers to step this time (override to freeze some); all by default."""
        return optimizers

    def on_stage_start(self, stage: Stage, epoch: int | None = None) -> None:
        """Called at the start of each stage (e.g. to reset metric trackers)."""

    def on_stage_end(self, stage: Stage, stage_loss: float, epoch: int | None = None) -> None:
        """Called at the end of each stage with the loss averaged over batches and ranks
        (log, anneal the learning rate, save a checkpoint here)."""

    def on_evaluate_start(self, max_key: str | None = None, min_key: str | None = None) -> None:
        """Recover the best checkpoint by ``max_key``/``min_key`` (most recent without)."""
        if self.checkpointer is not None:
            self._checkpoint_sharded_state()
            self.checkpointer.recover_if_possible(max_key=max_key, min_key=min_key)

    def on_fit_batch_start(self, batch: Any, should_step: bool) -> None:
        """Called before each training batch (``should_step``: an optimizer step follows)."""

    def on_fit_batch_end(
        self, batch: Any, outputs: Any, loss: torch.Tensor, should_step: bool
    ) -> None:
        """Called after each training batch (e.g. to advance a per-step LR scheduler)."""

    # ------------------------------------------------------------------ data
    def make_dataloader(
        self, dataset: Any, stage: Stage, ckpt_prefix: str | None = "dataloader-", **loader_kwargs
    ) -> DataLoader | LoopedLoader:
        """A loader for ``dataset`` (see :func:`speechlobes.dataio.loader.make_dataloader`).

        ``shuffle=True`` shuffles from (``seed`` run option or the global seed, epoch); under
        torchrun every stage's data is split over the ranks. A saveable loader is registered
        with the checkpointer as ``ckpt_prefix + stage.name`` (None: not registered; ``fit``
        registers the training loader only).
        """
        loader_kwargs = self._loader_specifics(dataset, stage, dict(loader_kwargs))
        loader = make_dataloader(dataset, **loader_kwargs)
        self._register_loader(loader, stage, ckpt_prefix)
        return loader

    def _register_loader(self, loader: Any, stage: Stage, ckpt_prefix: str | None) -> None:
        """A loader that saves its position joins the checkpoint (exact mid-epoch resume)."""
        if self.checkpointer is not None and ckpt_prefix is not None:
            if has_checkpoint_hooks(loader):
                self.checkpointer.add_recoverable(ckpt_prefix + stage.name, loader)

    def _loader_specifics(self, dataset: Any, stage: Stage, loader_kwargs: dict) -> dict:
        """Reproducible shuffling and (under torchrun) each rank's share of the data."""
        if isinstance(dataset, IterableDataset):
            if distributed.is_distributed():
                logger.warning("%s: an IterableDataset is not split over ranks", stage.value)
            return loader_kwargs
        shuffle = loader_kwargs.pop("shuffle", False)
        sampler = loader_kwargs.get("sampler")
        if shuffle:
            if sampler is not None:
                raise ValueError(f"{stage.value}: give either a sampler or shuffle=True")
            seed = self.seed if self.seed is not None else global_seed()
            sampler = loader_kwargs["sampler"] = ReproducibleRandomSampler(dataset, seed=seed)
        world_size = distributed.get_world_size()
        if world_size > 1:
            place = dict(num_replicas=world_size, rank=distributed.get_rank())
            batch_sampler = loader_kwargs.get("batch_sampler")
            if batch_sampler is not None:
                if getattr(batch_sampler, "world_size", 1) != world_size:  # not split already
                    loader_kwargs["batch_sampler"] = DistributedSamplerWrapper(
                        batch_sampler, shuffle=False, **place
                    )
            elif sampler is not None:
                loader_kwargs["sampler"] = DistributedSamplerWrapper(
                    sampler, shuffle=False, drop_last=loader_kwargs.get("drop_last", False), **place
                )
            else:
                loader_kwargs["sampler"] = DistributedSampler(
                    dataset, shuffle=False, drop_last=loader_kwargs.get("drop_last", False), **place
                )
        if stage == Stage.TRAIN:
            batch_sampler = loader_kwargs.get("batch_sampler")
            self.train_sampler = (
                loader_kwargs.get("sampler") if batch_sampler is None else batch_sampler
            )
        return loader_kwargs

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
        """Train over ``epoch_counter``'s epochs, validating after each one (nothing with
        ``test_only``). Datasets become loaders; DataLoaders are used as they are."""
        if self.test_only:
            logger.info("test_only: no training, no validation")
            return
        train_set = self._loader_for(train_set, Stage.TRAIN, train_loader_kwargs)
        if valid_set is not None:
            valid_set = self._loader_for(valid_set, Stage.VALID, valid_loader_kwargs, None)
        if self.scan_worst_batches:
            self._scan_worst_batches(train_set)
        self.on_fit_start()
        progressbar = not self.noprogressbar if progressbar is None else progressbar
        enable = progressbar and distributed.if_main_process()
        for epoch in epoch_counter:
            self._fit_train(train_set, epoch, enable)
            self._fit_valid(valid_set, epoch, enable)
            debug_end = self.debug and 0 < self.debug_epochs <= epoch
            if debug_end or self._optimizer_step_limit_exceeded:
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
        progressbar = not self.noprogressbar if progressbar is None else progressbar
        enable = progressbar and distributed.if_main_process()
        test_set = self._loader_for(test_set, Stage.TEST, test_loader_kwargs, None)
        self.on_evaluate_start(max_key=max_key, min_key=min_key)
        return self._evaluate_stage(test_set, Stage.TEST, None, enable)

    def _loader_for(
        self, data: Any, stage: Stage, kwargs: dict | None, ckpt_prefix: str | None = "dataloader-"
    ) -> Any:
        if not isinstance(data, DataLoader | LoopedLoader):
            return self.make_dataloader(data, stage, ckpt_prefix, **(kwargs or {}))
        if kwargs:
            raise ValueError(f"{stage.value}: loader kwargs given with a ready DataLoader")
        self._register_loader(data, stage, ckpt_prefix)
        if distributed.is_distributed() and not _splits_across_ranks(data):
            logger.warning(
                "%s: the given DataLoader has no distributed sampler, so every rank sees all "
                "the data; pass the dataset instead and the Brain splits it",
                stage.value,
            )
        return data

    def _fit_train(self, loader: Any, epoch: int, enable: bool) -> None:
        self.on_stage_start(Stage.TRAIN, epoch)
        self.modules.train()
        self.zero_grad()
        self.nonfinite_count = 0
        _set_loader_epoch(loader, epoch, self.train_sampler)
        last_ckpt_time, batches_since_ckpt = time.time(), 0
        with self._profiler() as profiler:
            bar = self._progress(loader, enable, f"epoch {epoch}", "train", initial=self.step)
            for batch in bar:
                if self._optimizer_step_limit_exceeded:
                    logger.info("optimizer_step_limit reached")
                    break
                self.step += 1
                batches_since_ckpt += 1
                loss = self.fit_batch(batch)
                self.avg_train_loss = self.update_average(loss, self.avg_train_loss)
                bar.set_postfix(train_loss=f"{self.avg_train_loss:.4g}", refresh=False)
                profiler.step()
                if self.debug and self.step == self.debug_batches:
                    break
                if self._should_save_intra_epoch_ckpt(last_ckpt_time, batches_since_ckpt):
                    self._save_intra_epoch_ckpt()
                    last_ckpt_time, batches_since_ckpt = time.time(), 0
        self.zero_grad(set_to_none=True)
        stage_loss = self._ranks_mean(self.avg_train_loss, self.step)
        self.on_stage_end(Stage.TRAIN, stage_loss, epoch)
        self.avg_train_loss = 0.0
        self.step = 0

    def _fit_valid(self, loader: Any, epoch: int, enable: bool) -> None:
        if loader is not None:
            self._evaluate_stage(loader, Stage.VALID, epoch, enable)

    def _evaluate_stage(self, loader: Any, stage: Stage, epoch: int | None, enable: bool) -> float:
        self.on_stage_start(stage, epoch)
        self.modules.eval()
        avg_loss = 0.0
        with torch.no_grad():
            bar = self._progress(loader, enable, stage.value, stage.value)
            for batch in bar:
                self.step += 1
                avg_loss = self.update_average(self.evaluate_batch(batch, stage), avg_loss)
                if self.debug and self.step == self.debug_batches:
                    break
        stage_loss = self._ranks_mean(avg_loss, self.step)
        self.step = 0
        self.on_stage_end(stage, stage_loss, epoch)
        return stage_loss

    def fit_batch(self, batch: Any) -> torch.Tensor:
        """Forward, loss, backward for one batch; an optimizer step every
        ``grad_accumulation_factor`` batches. Returns the detached loss.

        A non-finite loss is counted (see :meth:`check_loss_isfinite`) and not
        back-propagated, so it cannot poison the weights.
        """
        should_step = self.step % self.grad_accumulation_factor == 0
        self.on_fit_batch_start(batch, should_step)
        with self.no_sync(not should_step):
            with self.training_ctx:
                outputs = self.compute_forward(batch, Stage.TRAIN)
                loss = self.compute_objectives(outputs, batch, Stage.TRAIN)
            if self.check_loss_isfinite(loss):
                self.scaler.scale(loss / self.grad_accumulation_factor).backward()
        if should_step:
            self.optimizers_step()
        self.on_fit_batch_end(batch, outputs, loss, should_step)
        return loss.detach().cpu()

    @torch.no_grad()
    def evaluate_batch(self, batch: Any, stage: Stage) -> torch.Tensor:
        """Forward and loss for one batch without gradients; returns the detached loss."""
        with self.evaluation_ctx:
            predictions = self.compute_forward(batch, stage)
            loss = self.compute_objectives(predictions, batch, stage)
        return loss.detach().cpu()

    def check_loss_isfinite(self, loss: torch.Tensor) -> bool:
        """Whether ``loss`` is finite (on every rank). A non-finite loss counts towards
        ``nonfinite_patience`` for this epoch; past it, training stops with a ValueError."""
        finite = bool(torch.isfinite(loss.detach()).all())
        if distributed.is_distributed():
            bad_ranks = distributed.all_reduce_sum(torch.tensor([0.0 if finite else 1.0]))
            finite = bad_ranks.item() == 0
        if finite:
            return True
        self.nonfinite_count += 1
        logger.warning(
            "non-finite loss at step %d of the epoch (%d this epoch): batch skipped",
            self.step,
            self.nonfinite_count,
        )
        if self.nonfinite_count > self.nonfinite_patience:
            raise ValueError(
                f"the loss was not finite for {self.nonfinite_count} batches of this epoch "
                f"(nonfinite_patience={self.nonfinite_patience}): lower the learning rate, try "
                "precision=fp32 or bf16, or check the data for empty or broken examples; to "
                "find the operation, wrap fit() in torch.autograd.detect_anomaly()"
            )
        return False

    def check_gradients(self) -> None:
        """Set gradients that hold inf or nan to None (their parameters skip this step).

        Under torchrun the ranks agree: a gradient is dropped everywhere when any rank finds
        a non-finite value in its part (FSDP shards gradients, so each rank sees a piece)."""
        named = [(n, p) for n, p in self.modules.named_parameters() if p.grad is not None]
        bad = torch.tensor([float(not torch.isfinite(_local(p.grad)).all()) for _, p in named])
        bad = distributed.all_reduce_sum(bad)
        for (name, parameter), flag in zip(named, bad.tolist(), strict=True):
            if flag:
                parameter.grad = None
                logger.warning("non-finite gradient of %s: set to None", name)

    def optimizers_step(self) -> None:
        """Unscale, clip (``max_grad_norm``), drop non-finite gradients
        (``skip_nonfinite_grads``), step every active optimizer, then clear the gradients."""
        if self.optimizers_dict is not None:
            optimizers = self.freeze_optimizers(self.optimizers_dict)
        elif self.opt_class is not None and self.optimizer is not None:
            optimizers = {"optimizer": self.optimizer}
        else:
            return
        for optimizer in optimizers.values():
            self.scaler.unscale_(optimizer)
        if self.max_grad_norm is not None and self.max_grad_norm > 0:
            for optimizer in optimizers.values():
                params = [p for group in optimizer.param_groups for p in group["params"]]
                torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm)
        if self.skip_nonfinite_grads and not self.scaler.is_enabled():
            self.check_gradients()
        for optimizer in optimizers.values():
            self.scaler.step(optimizer)
        self.scaler.update()
        for optimizer in optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        self.optimizer_step += 1

    def zero_grad(self, set_to_none: bool = False) -> None:
        """Zero the gradients of the active optimizers' parameters (None with set_to_none)."""
        if self.optimizers_dict is not None:
            for optimizer in self.freeze_optimizers(self.optimizers_dict).values():
                optimizer.zero_grad(set_to_none=set_to_none)
        elif self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=set_to_none)

    def update_average(self, loss: torch.Tensor, avg_loss: float) -> float:
        """The running mean of the stage's losses after ``self.step`` batches (a non-finite
        loss leaves it unchanged)."""
        if torch.isfinite(loss):
            avg_loss -= avg_loss / self.step
            avg_loss += float(loss) / self.step
        return avg_loss

    @contextlib.contextmanager
    def no_sync(self, use: bool = True):
        """Under DDP or FSDP (with ``use``), skip the gradient reduction: for batches that only
        accumulate gradients (FSDP then holds them unsharded until the step's batch)."""
        with contextlib.ExitStack() as stack:
            if use:
                for module in self.modules.values():
                    if isinstance(module, torch.nn.parallel.DistributedDataParallel):
                        stack.enter_context(module.no_sync())
                    elif is_sharded(module):
                        module = getattr(module, "_orig_mod", module)
                        module.set_requires_gradient_sync(False)
                        stack.callback(module.set_requires_gradient_sync, True)
            yield

    # ------------------------------------------------------------------ one helper per feature
    @property
    def _optimizer_step_limit_exceeded(self) -> bool:
        limit = self.optimizer_step_limit
        return limit is not None and self.optimizer_step >= limit

    @staticmethod
    def _ranks_mean(average: float, count: int) -> float:
        """The mean over every rank of per-rank averages over ``count`` batches each."""
        summed = distributed.all_reduce_sum(
            torch.tensor([average * count, count], dtype=torch.float64)
        )
        return float(summed[0] / summed[1]) if summed[1] > 0 else float("nan")

    def _should_save_intra_epoch_ckpt(self, last_ckpt_time: float, batches: int) -> bool:
        """After an optimizer step, every ``ckpt_interval_steps`` batches or
        ``ckpt_interval_minutes`` minutes (rank 0's clock decides)."""
        if self.checkpointer is None or self.step % self.grad_accumulation_factor != 0:
            return False
        if self.ckpt_interval_minutes <= 0 and self.ckpt_interval_steps <= 0:
            return False
        elapsed_minutes = (time.time() - last_ckpt_time) / 60.0
        due = 0 < self.ckpt_interval_minutes < elapsed_minutes
        due = due or 0 < self.ckpt_interval_steps <= batches
        return distributed.broadcast_flag(due)

    def _save_intra_epoch_ckpt(self) -> None:
        """A mid-epoch checkpoint; it replaces the previous mid-epoch one."""
        self.checkpointer.save_and_keep_only(
            meta={INTRA_EPOCH_CKPT_FLAG: True},
            end_of_epoch=False,
            num_to_keep=1,
            ckpt_predicate=lambda checkpoint: INTRA_EPOCH_CKPT_FLAG in checkpoint.meta,
            verbosity=logging.DEBUG,
        )

    def _progress(self, loader, enable: bool, description: str, stage: str, initial: int = 0):
        """A tqdm bar (plain log lines when not in a terminal) on rank 0; silent elsewhere."""
        colour = self.tqdm_barcolor.get(stage)
        return progress(loader, description, initial=initial, enabled=enable, colour=colour)

    @contextlib.contextmanager
    def _profiler(self):
        """torch.profiler over ``profile_warmup`` + ``profile_steps`` training steps of this
        process's first epoch; the Chrome trace goes to ``<output_folder>/profiler/``."""
        if not self.profile_training or self._profiled:
            yield SimpleNamespace(step=lambda: None)
            return
        folder = Path(getattr(self.hparams, "output_folder", ".")) / "profiler"
        folder.mkdir(parents=True, exist_ok=True)
        trace = folder / f"trace_rank{distributed.get_rank()}.json"
        activities = [torch.profiler.ProfilerActivity.CPU]
        if self.device_type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        schedule = torch.profiler.schedule(
            wait=0, warmup=self.profile_warmup, active=max(1, self.profile_steps), repeat=1
        )
        with torch.profiler.profile(
            activities=activities,
            schedule=schedule,
            on_trace_ready=lambda prof: prof.export_chrome_trace(str(trace)),
            record_shapes=True,
        ) as profiler:
            yield profiler
        self._profiled = True
        logger.info("profiler trace written to %s", trace)

    def _compile(self) -> None:
        """torch.compile (``compile``, ``compile_module_keys``) and then TorchScript (``jit``,
        ``jit_module_keys``) the requested modules; a module that fails to compile is left
        as it is (and scripted if JIT was asked for it too)."""
        compile_keys = self._module_keys(self.compile, self.compile_module_keys, "compile")
        jit_keys = self._module_keys(self.jit, self.jit_module_keys, "jit")
        for name in compile_keys:
            if hasattr(self.modules[name], "_orig_mod"):  # compiled already
                jit_keys.discard(name)
                continue
            try:
                compiled = torch.compile(
                    self.modules[name],
                    backend=self.compile_backend,
                    mode=self.compile_mode,
                    fullgraph=self.compile_using_fullgraph,
                    dynamic=self.compile_using_dynamic_shape_tracing,
                )
            except Exception as error:  # noqa: BLE001 (any backend failure: skip, as documented)
                logger.warning("module %r failed to compile and is skipped: %s", name, error)
                continue
            self.modules[name] = compiled
            jit_keys.discard(name)
        for name in jit_keys:
            if not isinstance(self.modules[name], torch.jit.ScriptModule):
                self.modules[name] = torch.jit.script(self.modules[name])

    def _module_keys(self, enabled: bool, keys: list[str] | None, option: str) -> set[str]:
        if not enabled:
            return set()
        if keys is None:
            return set(self.modules)
        missing = sorted(set(keys) - set(self.modules))
        if missing:
            raise ValueError(
                f"{option}_module_keys names {missing}, which are not in modules "
                f"({sorted(self.modules)})"
            )
        return set(keys)

    def _wrap_distributed(self) -> None:
        """Under torchrun, DDP (modules without trainable parameters stay as they are) or,
        with ``distributed_strategy: fsdp``, FSDP2 (:func:`speechlobes.fsdp.shard_modules`);
        DataParallel with ``data_parallel_backend``."""
        if self.distributed_strategy == "fsdp":
            if self._sharding():
                shard_modules(self.modules, self.device, self.precision, self.fsdp_block_classes)
            else:
                logger.info("distributed_strategy=fsdp without torchrun: nothing to shard")
            return
        for name, module in self.modules.items():
            if self.data_parallel_backend:
                if any(p.requires_grad for p in module.parameters()) and not isinstance(
                    module, torch.nn.DataParallel
                ):
                    self.modules[name] = torch.nn.DataParallel(module)
            else:
                self.modules[name] = distributed.wrap_ddp(
                    module, self.device, self.find_unused_parameters
                )

    def _checkpoint_sharded_state(self) -> None:
        """Under ``distributed_strategy: fsdp``, the modules and optimizers registered with the
        checkpointer move into one :class:`~speechlobes.distributed_checkpoint.ShardedState`
        (``sharded``, saved by every rank through torch.distributed.checkpoint, recoverable
        into any number of processes); the other recoverables are saved as usual."""
        if self.distributed_strategy != "fsdp":
            return
        from speechlobes.distributed_checkpoint import SHARDED_NAME, ShardedState

        recoverables = self.checkpointer.recoverables
        state = recoverables.get(SHARDED_NAME)
        if not isinstance(state, ShardedState):
            state = ShardedState(self.modules)
        for name, obj in list(recoverables.items()):
            if isinstance(obj, torch.nn.Module | torch.optim.Optimizer):
                state.add(name, recoverables.pop(name))
        self.checkpointer.add_recoverable(SHARDED_NAME, state)

    def _scan_worst_batches(self, loader: Any) -> None:
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
                with self.training_ctx:
                    loss = self.compute_objectives(
                        self.compute_forward(batch, Stage.TRAIN), batch, Stage.TRAIN
                    )
                self.scaler.scale(loss).backward()
            except torch.OutOfMemoryError as error:
                raise RuntimeError(
                    f"out of memory on a batch of {elements} tensor elements during the "
                    "scan_worst_batches pre-scan: lower the batch size (or max batch length)"
                ) from error
            self.modules.zero_grad(set_to_none=True)
        with torch.no_grad():
            for name, buffer in self.modules.named_buffers():
                buffer.copy_(buffers[name])
        logger.info("scan_worst_batches: the %d largest batches fit", len(largest))

    # ------------------------------------------------------------------ checkpointed state
    def state_dict(self) -> dict:
        """The Brain's own progress counters (saved as the ``brain`` recoverable); the
        per-process running values are gathered from every rank (a collective under torchrun)."""
        own = {"avg_train_loss": self.avg_train_loss, "nonfinite_count": self.nonfinite_count}
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
        self.avg_train_loss = own["avg_train_loss"]
        self.nonfinite_count = own["nonfinite_count"]


def _set_loader_epoch(loader: Any, epoch: int, train_sampler: Any) -> None:
    """Tell the loader (or, for a plain DataLoader, its samplers and the Brain's
    ``train_sampler``) which epoch starts."""
    if hasattr(loader, "set_epoch"):
        loader.set_epoch(epoch)
        return
    samplers = (getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None))
    for sampler in {id(s): s for s in (*samplers, train_sampler) if s is not None}.values():
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)


def _splits_across_ranks(loader: Any) -> bool:
    sampler = getattr(loader, "sampler", None)
    batch_sampler = getattr(loader, "batch_sampler", None)
    inner = getattr(batch_sampler, "sampler", None)  # a SaveableDataLoader's skipping wrapper
    world_size = distributed.get_world_size()
    return any(
        isinstance(candidate, DistributedSampler)
        or getattr(candidate, "world_size", 1) == world_size
        for candidate in (sampler, batch_sampler, inner, getattr(inner, "sampler", None))
    )


def _local(tensor: torch.Tensor) -> torch.Tensor:
    """The part of ``tensor`` this rank holds (a DTensor's shard; a tensor itself)."""
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor


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


def _as_dict(run_opts: Any) -> dict:
    if run_opts is None:
        return {}
    if isinstance(run_opts, Mapping):
        return dict(run_opts)
    if hasattr(run_opts, "as_dict"):
        return run_opts.as_dict()
    raise TypeError(f"run_opts must be a dict of run options, got {type(run_opts).__name__}")


def _run_options(hparams: dict, run_opts: Any) -> dict:
    """Each run option from run_opts, else hparams, else its default.

    When run_opts lists ``overridden_args`` (the options given on the command line), only
    those win over the hparams; otherwise every key of run_opts does.
    """
    run_opts = _as_dict(run_opts)
    overridden = set(run_opts.pop("overridden_args", run_opts))
    run_opts.pop("param_file", None)
    _refuse_unknown_run_options(run_opts)
    options = {}
    for name, default in RUN_OPTION_DEFAULTS.items():
        if name in run_opts and name in overridden:
            if name in hparams and run_opts[name] != hparams[name]:
                logger.info(
                    "run option %s=%r overrides the hparams value %r",
                    name,
                    run_opts[name],
                    hparams[name],
                )
            options[name] = run_opts[name]
        elif name in hparams:
            options[name] = hparams[name]
        else:
            options[name] = copy.deepcopy(default)
    return {name: check_run_option(name, value) for name, value in options.items()}


def _refuse_unknown_run_options(names: Iterable[str]) -> None:
    unknown = sorted(set(names) - set(RUN_OPTION_DEFAULTS))
    if unknown:
        close = closest_keys(unknown[0], list(RUN_OPTION_DEFAULTS))
        raise ValueError(
            f"unknown run option {unknown[0]!r}; closest: {', '.join(close) or '(none)'}"
        )


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
    if name == "distributed_strategy" and value not in DISTRIBUTED_STRATEGIES:
        raise ValueError(f"{name} must be one of {list(DISTRIBUTED_STRATEGIES)}, got {value!r}")
    minimum = RUN_OPTION_MINIMA.get(name)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value
