"""torchrun / torch.distributed helpers: ranks, main-process-only work, reductions, DDP.

Launch with the standard launcher, no home-made one::

    torchrun --nproc_per_node=2 train.py hparams.yaml

torchrun sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; :func:`init_distributed` reads them
and joins the process group (gloo on CPU, nccl on CUDA). It is idempotent and is called by
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
from collections.abc import Callable
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
    "main_process_only",
    "once_per_node",
    "rank_device",
    "rank_prefixed_message",
    "run_on_main",
    "run_once_per_node",
    "wrap_ddp",
]

# How many main-only (or once-per-node) functions are running in this process: inside one,
# the other ranks are elsewhere, so a collective would wait for ever and is skipped.
_one_rank_sections = 0


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


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
    return f"cuda:{os.environ['LOCAL_RANK']}" if "LOCAL_RANK" in os.environ else "cuda"


def init_distributed(backend: str | None = None) -> bool:
    """Join the process group torchrun describes in the environment; return True if distributed.

    Does nothing (and returns False) outside torchrun or with ``WORLD_SIZE=1``. ``backend``
    defaults to gloo, plus nccl for CUDA tensors when CUDA is available
    (``"cpu:gloo,cuda:nccl"``), so CPU and GPU runs both work on a GPU machine.
    """
    if dist.is_available() and dist.is_initialized():
        return is_distributed()
    if _env_int("WORLD_SIZE", 1) <= 1:
        return False
    if "MASTER_ADDR" not in os.environ:
        raise RuntimeError(
            "WORLD_SIZE > 1 but MASTER_ADDR is unset: launch with "
            "`torchrun --nproc_per_node=N train.py hparams.yaml`"
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
) -> Any:
    """Run ``func`` on rank 0 only, then a barrier, then ``post_func`` on the other ranks.

    The usual use is data preparation: rank 0 writes the manifests, every rank waits, then
    ``post_func`` (e.g. loading a tokenizer rank 0 trained) runs where it is needed; with
    ``run_post_on_main`` it runs on every rank, without a further barrier. Returns
    ``func``'s result (rank 0's, broadcast) on every rank.
    """
    result, _ = _run_then_post(
        main_process_only(func), if_main_process, (args, kwargs),
        (post_func, post_args, post_kwargs), run_post_on_main,
    )  # fmt: skip
    return result


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
