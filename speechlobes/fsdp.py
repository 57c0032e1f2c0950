"""Fully sharded data parallel (FSDP2, PyTorch's ``fully_shard``) for the modules of a Brain.

With the run option ``distributed_strategy: fsdp`` under torchrun (or srun; one process
included, e.g. one GPU), the Brain calls :func:`shard_modules`: each of N ranks then holds 1/N
of every parameter, gradient and optimizer state, and a block's full weights exist only while
it runs. Every module of ``modules`` is sharded in units, innermost first:

1. each **block** (a transformer or conformer layer) is a unit of its own: its weights are
   gathered just before it runs and freed after (frozen or not: a unit's frozen parameters
   are gathered like the others and never reduced);
2. each **frozen** submodule (all its parameters have ``requires_grad=False``) outside the
   blocks is a unit of its own, so frozen weights never share a unit with trainable ones (they
   are gathered, never reduced);
3. then the module itself, holding the rest (feature extractor, projections, head).

Which submodules are blocks (no model is named here):

- the classes listed in the run option ``fsdp_block_classes`` (class names, dotted paths or
  classes), when given; otherwise
- the classes a module names in ``_no_split_modules`` (the Hugging Face convention, a list of
  class names: lobes may declare their blocks this way), and
- the items of every ``nn.ModuleList`` (or ``nn.Sequential``) holding two or more modules of
  one class, with parameters: the layer stack of a transformer, a conformer, a text decoder.

Blocks are taken outermost first (a block's own sub-lists are not split again).

Precision (:func:`precision_policies`): with ``precision`` bf16 or fp16 the blocks' weights are
gathered and used in that type, their inputs cast to it and their outputs cast back to
float32; everything outside the blocks keeps float32 weights (the Brain's autocast still
applies), and so do the normalisations with running statistics inside blocks (BatchNorm: a
float32 unit each, :func:`running_statistics_norms`); gradients are reduced in float32. With
fp32 nothing is cast.

Example:
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ModuleList(
    ...     [torch.nn.TransformerEncoderLayer(8, 2, 16) for _ in range(3)]))
    >>> [type(block).__name__ for block in find_blocks(model)]
    ['TransformerEncoderLayer', 'TransformerEncoderLayer', 'TransformerEncoderLayer']
    >>> len(find_blocks(model, ["Linear"]))  # the first Linear, and 2 inside each layer
    7
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from speechlobes import distributed

__all__ = [
    "find_blocks",
    "frozen_units",
    "full_state_dict",
    "is_sharded",
    "precision_policies",
    "running_statistics_norms",
    "shard_module",
    "shard_modules",
]

logger = logging.getLogger(__name__)

# the dtype each ``precision`` run option gathers the blocks' weights in
PARAM_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _class_matches(module: nn.Module, wanted: Sequence[str | type]) -> bool:
    kind = type(module)
    names = {kind.__name__, f"{kind.__module__}.{kind.__qualname__}"}
    return any(
        name in names if isinstance(name, str) else isinstance(module, name) for name in wanted
    )


def _declared_blocks(module: nn.Module) -> set[str]:
    """Class names that ``module`` and its submodules declare in ``_no_split_modules``."""
    declared: set[str] = set()
    for sub in module.modules():
        declared.update(getattr(sub, "_no_split_modules", None) or ())
    return declared


def _repeated(children: list[nn.Module]) -> bool:
    """Whether a list's items are a stack of blocks: two or more of one class, with
    parameters."""
    return (
        len(children) >= 2
        and len({type(child) for child in children}) == 1
        and any(True for _ in children[0].parameters())
    )


def find_blocks(
    module: nn.Module, block_classes: Sequence[str | type] | None = None
) -> list[nn.Module]:
    """The blocks of ``module`` that FSDP shards one by one, outermost first, in module order.

    Args:
        module: any module (a lobe, a model made of lobes).
        block_classes: the block classes (names, dotted paths or classes); None: the classes
            declared in ``_no_split_modules`` and the items of repeated ``ModuleList`` stacks.

    Returns:
        The blocks (never ``module`` itself); none inside another.
    """
    declared = _declared_blocks(module) if block_classes is None else set()
    blocks: list[nn.Module] = []

    def visit(parent: nn.Module) -> None:
        stack = isinstance(parent, nn.ModuleList | nn.Sequential) and _repeated(list(parent))
        for child in parent.children():
            if block_classes is not None:
                is_block = _class_matches(child, block_classes)
            else:
                is_block = stack or _class_matches(child, sorted(declared))
            if is_block:
                blocks.append(child)
            else:
                visit(child)

    visit(module)
    return blocks


def frozen_units(module: nn.Module, blocks: Iterable[nn.Module]) -> list[nn.Module]:
    """The largest submodules of ``module`` (not itself) outside ``blocks`` whose parameters
    are all frozen (and that have some): each becomes a unit of its own."""
    skip = {id(block) for block in blocks}
    units: list[nn.Module] = []

    def visit(parent: nn.Module) -> None:
        for child in parent.children():
            if id(child) in skip:
                continue
            parameters = list(child.parameters())
            if parameters and not any(p.requires_grad for p in parameters):
                units.append(child)
            else:
                visit(child)

    visit(module)
    return units


def running_statistics_norms(module: nn.Module) -> list[nn.Module]:
    """The normalisations in ``module`` that keep running statistics (BatchNorm, tracked
    InstanceNorm): inside a block cast to bf16/fp16 each is a float32 unit of its own, since
    their float32 statistics and low-precision weights cannot meet in one kernel.

    Example:
        >>> block = torch.nn.Sequential(torch.nn.Conv1d(2, 2, 3), torch.nn.BatchNorm1d(2))
        >>> [type(norm).__name__ for norm in running_statistics_norms(block)]
        ['BatchNorm1d']
    """
    return [
        sub
        for sub in module.modules()
        if isinstance(sub, nn.modules.batchnorm._NormBase)
        and sub.track_running_stats
        and any(True for _ in sub.parameters(recurse=False))
    ]


def precision_policies(precision: str) -> tuple[Any, Any]:
    """``(blocks' policy, the rest's policy)`` for a ``precision`` run option (see the module
    docstring).

    Example:
        >>> blocks, rest = precision_policies("bf16")
        >>> blocks.param_dtype, blocks.reduce_dtype, blocks.output_dtype, rest.param_dtype
        (torch.bfloat16, torch.float32, torch.float32, None)
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy

    if precision not in PARAM_DTYPES:
        raise ValueError(f"precision must be one of {list(PARAM_DTYPES)}, got {precision!r}")
    dtype = PARAM_DTYPES[precision]
    if dtype is None:
        return MixedPrecisionPolicy(), MixedPrecisionPolicy()
    blocks = MixedPrecisionPolicy(
        param_dtype=dtype, reduce_dtype=torch.float32, output_dtype=torch.float32
    )
    return blocks, MixedPrecisionPolicy(reduce_dtype=torch.float32)


def shard_module(
    module: nn.Module,
    mesh: Any,
    precision: str = "fp32",
    block_classes: Sequence[str | type] | None = None,
) -> int:
    """Shard ``module`` in place with ``fully_shard``: its blocks, its frozen submodules, then
    itself (a ``torch.compile`` wrapper is seen through). Returns the number of blocks.

    A module without parameters is left as it is (nothing to shard, and its inputs, e.g.
    waveforms, must not be cast).
    """
    from torch.distributed.fsdp import fully_shard

    module = getattr(module, "_orig_mod", module)
    if not any(True for _ in module.parameters()) or is_sharded(module):
        return 0
    block_policy, rest_policy = precision_policies(precision)
    blocks = find_blocks(module, block_classes)
    for block in blocks:
        if block_policy.param_dtype is not None:
            for norm in running_statistics_norms(block):
                fully_shard(norm, mesh=mesh, mp_policy=rest_policy)
        fully_shard(block, mesh=mesh, mp_policy=block_policy)
    for unit in frozen_units(module, blocks):
        fully_shard(unit, mesh=mesh, mp_policy=rest_policy)
    fully_shard(module, mesh=mesh, mp_policy=rest_policy)
    return len(blocks)


def shard_modules(
    modules: nn.ModuleDict,
    device: str,
    precision: str = "fp32",
    block_classes: Sequence[str | type] | None = None,
) -> None:
    """Shard every module of ``modules`` (the Brain's) over all ranks, in place.

    Raises:
        ValueError: a class of ``block_classes`` matches no submodule of any module.
    """
    from torch.distributed.device_mesh import init_device_mesh

    if block_classes is not None:
        _check_block_classes(modules, block_classes)
    if not distributed.is_distributed_initialized():
        # a world of one (torchrun --nproc_per_node=1): the same units and precision policy
        # run, and the checkpoints are the same kind as with more processes
        torch.distributed.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    mesh = init_device_mesh(torch.device(device).type, (distributed.get_world_size(),))
    for name, module in modules.items():
        count = shard_module(module, mesh, precision, block_classes)
        logger.info("fsdp: %s sharded in %d blocks plus the rest", name, count)


def _check_block_classes(modules: nn.Module, block_classes: Sequence[str | type]) -> None:
    for wanted in block_classes:
        if not any(_class_matches(sub, [wanted]) for sub in modules.modules()):
            classes = sorted({type(sub).__name__ for sub in modules.modules()})
            raise ValueError(
                f"fsdp_block_classes: {wanted!r} matches no submodule of the modules; their "
                f"classes are {classes}"
            )


def is_sharded(module: nn.Module) -> bool:
    """Whether ``fully_shard`` was applied to ``module``."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(getattr(module, "_orig_mod", module), FSDPModule)


def full_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """``module``'s whole state dict on CPU, sharded or not (to export final weights).

    Under FSDP this is a collective: call it on every rank; rank 0 gets the tensors, the
    others an empty dict.

    Example:
        >>> sorted(full_state_dict(torch.nn.Linear(2, 1)))
        ['bias', 'weight']
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    if not any(is_sharded(sub) for sub in module.modules()):
        return {key: value.detach().cpu() for key, value in module.state_dict().items()}
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(module, options=options)
