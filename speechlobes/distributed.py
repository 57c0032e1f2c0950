"""torchrun / torch.distributed helpers: ranks, main-process-only work, reductions, DDP.

Launch with the standard launcher, no home-made one::

    torchrun --nproc_per_node=2 train.py hparams.yaml

torchrun sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; :func:`init_distributed` reads them
and joins the process group (gloo on CPU, nccl on CUDA). Tasks started by SLURM's ``srun``
(one per GPU, no torchrun) are found too: where torchrun's variables are absent,
:func:`slurm_environment` derives them from ``SLURM_PROCID``, ``SLURM_STEP_NUM_TASKS`` (or
``SLURM_NTASKS``), ``SLURM_LOCALID`` and the first host of ``SLURM_STEP_NODELIST`` (or
``SLURM_JOB_NODELIST``, ``SLURM_NODELIST``) as ``MASTER_ADDR``. It is idempotent and is called by
:func:`run_on_main`, ``create_experiment_directory`` and the ``Brain``, so a recipe never calls
it by hand. Outside torchrun every helper behaves as a world of one process.

The names SpeechBrain's ``speechbrain.utils.distributed`` exports work the same here:
:func:`run_on_main` and :func:`main_process_only` hand the main process's result to every
rank, :func:`ddp_barrier`, :func:`ddp_broadcast`, :func:`ddp_all_reduce`,
:func:`ddp_init_group`, :func:`infer_device`, :func:`once_per_node`. Inside a main-only
function the collectives (barriers, broadcasts, reductions) are skipped, since the other
ranks are not there to meet them.

Example:
    >>> run_on_main(print, args=["data prepared once"])
    data prepared once
    >>> if_main_process()
    True
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import socket
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "all_reduce_sum",
    "barrier",
    "broadcast_flag",
    "ddp_all_reduce",
    "ddp_barrier",
    "ddp_broadcast",
    "ddp_init_group",
    "gather_object",
    "get_local_rank",
    "get_rank",
    "get_world_size",
    "if_main_process",
    "infer_device",
    "init_distributed",
    "is_distributed",
    "is_distributed_initialized",
    "is_local_rank_zero",
    "launched",
    "main_process_only",
    "once_per_node",
    "rank_device",
    "rank_prefixed_message",
    "first_host",
    "run_on_main",
    "run_once_per_node",
    "slurm_environment",
    "wrap_ddp",
]

# How many main-only (or once-per-node) functions are running in this process: inside one,
# the other ranks are elsewhere, so a collective would wait for ever and is skipped.
_one_rank_sections = 0


# torchrun's variable -> SLURM's (per srun task), in order of preference
SLURM_VARIABLES = {
    "RANK": ("SLURM_PROCID",),
    "WORLD_SIZE": ("SLURM_STEP_NUM_TASKS", "SLURM_NTASKS"),
    "LOCAL_RANK": ("SLURM_LOCALID",),
}
SLURM_NODELISTS = ("SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST")


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list (``gpu[03-04,07],cpu1`` -> ``gpu03``).

    Example:
        >>> first_host("gpu[03-04,07],cpu1"), first_host("node7,node8"), first_host("a-[9]")
        ('gpu03', 'node7', 'a-9')
    """
    name, bracket, ranges = nodelist.partition("[")
    if "," in name or not bracket:
        return name.split(",", 1)[0].strip()
    return name.strip() + re.split(r"[,\]-]", ranges, maxsplit=1)[0]


def slurm_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """torchrun's variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
    ``MASTER_PORT``) derived from SLURM's, for a task that ``srun`` started; only those that
    ``environ`` (default: ``os.environ``) lacks. Empty outside SLURM or under torchrun (whose
    own variables win: torchrun started once per node by srun is the other way to run).

    ``MASTER_PORT`` defaults to ``15000 + SLURM_JOB_ID % 20000`` (one port per job).

    Example:
        >>> env = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1",
        ...        "SLURM_JOB_NODELIST": "gpu[12-13]", "SLURM_JOB_ID": "4242"}
        >>> slurm_environment(env)
        {'RANK': '5', 'WORLD_SIZE': '8', 'LOCAL_RANK': '1', 'MASTER_ADDR': 'gpu12', \
'MASTER_PORT': '19242'}
    """
    environ = os.environ if environ is None else environ
    if "RANK" in environ or "SLURM_PROCID" not in environ:
        return {}
    derived = {}
    for name, sources in SLURM_VARIABLES.items():
        value = next((environ[source] for source in sources if source in environ), None)
        if value is not None and name not in environ:
            derived[name] = value
    nodelist = next((environ[name] for name in SLURM_NODELISTS if environ.get(name)), None)
    if nodelist and "MASTER_ADDR" not in environ:
        derived["MASTER_ADDR"] = first_host(nodelist)
    if "MASTER_PORT" not in environ:
        derived["MASTER_PORT"] = str(15000 + int(environ.get("SLURM_JOB_ID", "0")) % 20000)
    return derived


def _env_int(name: str, default: int) -> int:
    """torchrun's variable ``name``, else the one SLURM gives, else ``default``."""
    value = os.environ.get(name)
    if value is None:
        value = slurm_environment().get(name, default)
    return int(value)


def launched() -> bool:
    """True in a process that torchrun or srun started (even a world of one)."""
    return "RANK" in os.environ or "RANK" in slurm_environment()


def is_distributed() -> bool:
    """True once a process group with more than one process is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def is_distributed_initialized() -> bool:
    """True once a torch.distributed process group exists (of any size)."""
    return dist.is_available() and dist.is_initialized()


def _collectives_apply() -> bool:
    """Whether a collective call must meet the other ranks now."""
    return is_distributed() and _one_rank_sections == 0


@contextlib.contextmanager
def _one_rank_section():
    global _one_rank_sections
    _one_rank_sections += 1
    try:
        yield
    finally:
        _one_rank_sections -= 1


def get_rank() -> int:
    """Global rank of this process (0 outside torchrun)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return _env_int("RANK", 0)


def get_local_rank() -> int:
    """Rank of this process on its machine (selects the CUDA device)."""
    return _env_int("LOCAL_RANK", 0)


def get_world_size() -> int:
    """Number of processes (1 outside torchrun)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return _env_int("WORLD_SIZE", 1)


def if_main_process() -> bool:
    """True on rank 0: the process that writes checkpoints, logs and prepared data."""
    return get_rank() == 0


def is_local_rank_zero() -> bool:
    """True on the first process of each machine."""
    return get_local_rank() == 0


def rank_prefixed_message(message: str) -> str:
    """``"[rank: R] message"``.

    Example:
        >>> rank_prefixed_message("hello")
        '[rank: 0] hello'
    """
    return f"[rank: {get_rank()}] {message}"


def infer_device() -> str:
    """``cuda:<LOCAL_RANK>`` (``cuda`` outside a launcher) when CUDA is available, else ``cpu``."""
    if not torch.cuda.is_available():
        return "cpu"
    launched = "LOCAL_RANK" in os.environ or "LOCAL_RANK" in slurm_environment()
    return f"cuda:{get_local_rank()}" if launched else "cuda"


def init_distributed(backend: str | None = None) -> bool:
    """Join the process group torchrun (or srun, see :func:`slurm_environment`) describes in
    the environment; return True if distributed.

    Does nothing (and returns False) outside a launcher or with ``WORLD_SIZE=1``. ``backend``
    defaults to gloo, plus nccl for CUDA tensors when CUDA is available
    (``"cpu:gloo,cuda:nccl"``), so CPU and GPU runs both work on a GPU machine.
    """
    if dist.is_available() and dist.is_initialized():
        return is_distributed()
    os.environ.update(slurm_environment())
    if _env_int("WORLD_SIZE", 1) <= 1:
        return False
    if "MASTER_ADDR" not in os.environ:
        raise RuntimeError(
            "WORLD_SIZE > 1 but MASTER_ADDR is unset: launch with "
            "`torchrun --nproc_per_node=N train.py hparams.yaml` (or srun under SLURM)"
        )
    if backend is None:
        backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    if "nccl" in backend and get_local_rank() < torch.cuda.device_count():
        torch.cuda.set_device(get_local_rank())
    dist.init_process_group(backend=backend)
    return True


def rank_device(device: str) -> str:
    """The device this rank should use: ``cuda`` becomes ``cuda:<LOCAL_RANK>`` under torchrun."""
    if device == "cuda" and is_distributed():
        return f"cuda:{get_local_rank()}"
    return device


def ddp_init_group(run_opts: Any) -> None:
    """Join the process group with ``run_opts["distributed_backend"]`` (SpeechBrain's name for
    :func:`init_distributed`; ``run_opts`` may be None)."""
    backend = run_opts.get("distributed_backend") if run_opts is not None else None
    init_distributed(backend)


def barrier() -> None:
    """Wait for every rank (no-op when not distributed or inside a main-only function)."""
    if _collectives_apply():
        dist.barrier()


ddp_barrier = barrier


def ddp_broadcast(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s (picklable) ``obj`` on every rank; ``obj`` itself when not distributed."""
    if not _collectives_apply():
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def ddp_all_reduce(tensor: torch.Tensor, reduce_op: Any) -> torch.Tensor:
    """Reduce ``tensor`` in place over the ranks with ``reduce_op`` (e.g. ``ReduceOp.SUM``)
    and return it; unchanged when not distributed."""
    if _collectives_apply():
        dist.all_reduce(tensor, op=reduce_op)
    return tensor


def main_process_only(function: Callable) -> Callable:
    """Decorator: run ``function`` on rank 0 only and return rank 0's result on every rank.

    The call is a collective (the result is broadcast): call it on every rank, or from
    inside another main-only function. The result must be picklable under torchrun.
    """

    @functools.wraps(function)
    def main_only(*args, **kwargs):
        with _one_rank_section():
            result = function(*args, **kwargs) if if_main_process() else None
        return ddp_broadcast(result)

    return main_only


def once_per_node(function: Callable) -> Callable:
    """Decorator: run ``function`` on the first process of each machine; the others get None
    (nothing is broadcast, each machine keeps its own result)."""

    @functools.wraps(function)
    def once(*args, **kwargs):
        with _one_rank_section():
            return function(*args, **kwargs) if is_local_rank_zero() else None

    return once


def run_on_main(
    func: Callable,
    args: list | None = None,
    kwargs: dict | None = None,
    post_func: Callable | None = None,
    post_args: list | None = None,
    post_kwargs: dict | None = None,
    run_post_on_main: bool = False,
    per_node: bool = False,
) -> Any:
    """Run ``func`` on rank 0 only, then a barrier, then ``post_func`` on the other ranks.

    The usual use is data preparation: rank 0 writes the manifests, every rank waits, then
    ``post_func`` (e.g. loading a tokenizer rank 0 trained) runs where it is needed; with
    ``run_post_on_main`` it runs on every rank, without a further barrier. Returns
    ``func``'s result (rank 0's, broadcast) on every rank.

    With ``per_node``, "main" is the first process of each machine (local rank 0), for work
    that each machine needs on its own disk (copying shards to a local SSD, unpacking a
    model): ``func`` runs once per machine, ``post_func`` on the machine's other processes,
    and every process gets its own machine's result.
    """
    if per_node:
        result, _ = _run_then_post(
            once_per_node(func), is_local_rank_zero, (args, kwargs),
            (post_func, post_args, post_kwargs), run_post_on_main,
        )  # fmt: skip
        return _result_of_this_node(result)
    result, _ = _run_then_post(
        main_process_only(func), if_main_process, (args, kwargs),
        (post_func, post_args, post_kwargs), run_post_on_main,
    )  # fmt: skip
    return result


def _result_of_this_node(result: Any) -> Any:
    """The result of this machine's local rank 0 (machines told apart by host name), on every
    process of the machine."""
    host = socket.gethostname()
    gathered = gather_object((host, is_local_rank_zero(), result))
    if is_local_rank_zero():
        return result
    return next(value for name, first, value in gathered if first and name == host)


def run_once_per_node(
    func: Callable,
    args: list | None = None,
    kwargs: dict | None = None,
    post_func: Callable | None = None,
    post_args: list | None = None,
    post_kwargs: dict | None = None,
    run_post_on_all: bool = False,
) -> Any:
    """Run ``func`` on the first process of each machine, a barrier, then ``post_func`` on
    the others (on every process with ``run_post_on_all``).

    Returns ``post_func``'s result where it ran, else ``func``'s result where that ran, else
    None.
    """
    result, post_result = _run_then_post(
        once_per_node(func), is_local_rank_zero, (args, kwargs),
        (post_func, post_args, post_kwargs), run_post_on_all,
    )  # fmt: skip
    return result if post_result is _NOT_RUN else post_result


_NOT_RUN = object()


def _run_then_post(
    runner: Callable, runs_here: Callable[[], bool], call: tuple, post: tuple, post_everywhere: bool
) -> tuple[Any, Any]:
    """``runner(*args, **kwargs)`` (one process runs ``func``), a barrier, then ``post_func`` on
    the processes that did not run it (on all, without a barrier, with ``post_everywhere``).
    Returns the runner's result and post_func's (``_NOT_RUN`` where it did not run)."""
    init_distributed()
    args, kwargs = call
    result = runner(*(args or []), **(kwargs or {}))
    barrier()
    post_func, post_args, post_kwargs = post
    post_result = _NOT_RUN
    if post_func is not None:
        if post_everywhere or not runs_here():
            post_result = post_func(*(post_args or []), **(post_kwargs or {}))
        if not post_everywhere:
            barrier()
    return result, post_result


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum ``values`` over ranks (a copy; returned as is when not distributed).

    gloo reduces CPU tensors, nccl CUDA tensors: the tensor is moved accordingly.
    """
    if not _collectives_apply():
        return values
    device = f"cuda:{get_local_rank()}" if dist.get_backend() == "nccl" else "cpu"
    reduced = values.detach().to(device, copy=True)
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
    return reduced.to(values.device)


def gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank (``[obj]`` alone)."""
    if not _collectives_apply():
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_flag(flag: bool) -> bool:
    """Rank 0's ``flag`` on every rank: decisions such as "save a checkpoint now" agree."""
    if not _collectives_apply():
        return flag
    value = torch.tensor([float(flag) if if_main_process() else 0.0])
    return bool(all_reduce_sum(value).item())


def wrap_ddp(
    module: torch.nn.Module, device: str, find_unused_parameters: bool = False
) -> torch.nn.Module:
    """Wrap a module with trainable parameters in DistributedDataParallel (others unchanged).

    ``find_unused_parameters=True`` is needed when part of a module does not take part in a
    step's loss (a frozen or conditionally used lobe); without it DDP waits forever.
    """
    if isinstance(module, torch.nn.parallel.DistributedDataParallel):
        return module
    if not is_distributed() or not any(p.requires_grad for p in module.parameters()):
        return module
    device_ids = [torch.device(device).index] if device.startswith("cuda") else None
    return torch.nn.parallel.DistributedDataParallel(
        module, device_ids=device_ids, find_unused_parameters=find_unused_parameters
    )
