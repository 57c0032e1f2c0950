"""Sharded checkpoints: modules and optimizers saved through torch.distributed.checkpoint (DCP).

Under ``distributed_strategy: fsdp`` no process holds a whole parameter, so the Brain moves
every module and optimizer registered with its ``Checkpointer`` into one :class:`ShardedState`,
registered as ``sharded``. In a checkpoint folder it is the folder ``sharded.ckpt/``: each rank
writes the tensors it holds as one safetensors file (DCP's Hugging Face storage: the shard's
place in the whole tensor is in the file's header), rank 0 adds ``structure.json`` (the
optimizers' hyperparameters, which tensor goes where) into rank 0's staging folder, and the
whole checkpoint is renamed in at once, as every checkpoint is. Nothing is pickled, so loading
never runs code. The other recoverables (epoch counter, schedulers, RNG states, loader
position) are saved as usual.

A checkpoint written by N processes recovers into M: DCP reads, for each rank, the pieces of
the saved shards that its own shards cover (M = 1 reads whole tensors into plain modules).
Saving and loading are collectives: every rank calls them (the Checkpointer does).

:func:`consolidate` writes the modules of a sharded checkpoint as the ``<name>.safetensors``
files a checkpoint without FSDP holds, for inference or evaluation in one process::

    python -m speechlobes.distributed_checkpoint results/exp/save/CKPT+2026-01-01+00-00-00+00

Example:
    >>> import tempfile
    >>> from speechlobes.checkpoints import Checkpointer, read_safetensors
    >>> model = torch.nn.Linear(2, 1)
    >>> state = ShardedState(model)
    >>> state.add("model", model)
    >>> ckpt = Checkpointer(tempfile.mkdtemp(), {"sharded": state})
    >>> saved = ckpt.save_checkpoint()
    >>> sorted(path.name for path in (saved.path / "sharded.ckpt").iterdir())
    ['shard-00001-model-00001-of-00001.safetensors', 'structure.json']
    >>> consolidate(saved.path)["model"].name
    'model.safetensors'
    >>> torch.equal(read_safetensors(saved.path / "model.safetensors")["weight"], model.weight)
    True
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from safetensors.torch import save_file
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from speechlobes import distributed
from speechlobes.checkpoints import (
    _decode,
    _encode,
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)

__all__ = ["ShardedState", "consolidate"]

SHARDED_NAME = "sharded"  # the Brain's recoverable: sharded.ckpt/ in a checkpoint folder
STRUCTURE_FILE = "structure.json"

Stateful = torch.nn.Module | torch.optim.Optimizer


@register_checkpoint_hooks
class ShardedState:
    """Modules and optimizers saved together as one sharded folder (see the module docstring).

    Args:
        root: the module that holds the optimizers' parameters (the Brain's ``modules``):
            optimizer states are keyed by the parameters' names in it.
    """

    saves_on_every_rank = True

    def __init__(self, root: torch.nn.Module):
        self.root = root
        self.objects: dict[str, Stateful] = {}

    def add(self, name: str, obj: Stateful) -> None:
        """Save ``obj`` (a module, or an optimizer over ``root``'s parameters) as ``name``."""
        if not isinstance(obj, Stateful):
            raise TypeError(f"{name!r}: a ShardedState holds modules and optimizers, not {obj!r}")
        self.objects[name] = obj

    def state_dict(self) -> dict[str, Any]:
        """Every object's state as this rank holds it (its shards under FSDP)."""
        return {
            name: get_model_state_dict(obj)
            if isinstance(obj, torch.nn.Module)
            else get_optimizer_state_dict(self.root, obj)
            for name, obj in self.objects.items()
        }

    @mark_as_saver
    def save(self, path: Path) -> None:
        tensors: dict[str, torch.Tensor] = {}
        structure = _encode(self.state_dict(), "", tensors, copy=False)
        writer = dcp.HuggingFaceStorageWriter(str(path), save_distributed=True)
        _run_dcp(dcp.save, tensors, storage_writer=writer)
        if distributed.if_main_process():
            kinds = {name: _kind(obj) for name, obj in self.objects.items()}
            (Path(path) / STRUCTURE_FILE).write_text(
                json.dumps({"kinds": kinds, "state": structure}), encoding="utf-8"
            )

    @mark_as_loader
    def load(self, path: Path) -> None:
        saved = _read_structure(path)
        missing = sorted(set(self.objects) - set(saved["kinds"]))
        if missing:
            raise FileNotFoundError(
                f"{path}: no saved state for {missing}; it holds {sorted(saved['kinds'])}. "
                "Register the same modules and optimizers as when saving"
            )
        tensors: dict[str, torch.Tensor] = {}  # this rank's tensors, filled in by dcp.load
        _encode(self.state_dict(), "", tensors, copy=False)
        _run_dcp(dcp.load, tensors, storage_reader=dcp.HuggingFaceStorageReader(str(path)))
        for name, obj in self.objects.items():
            state = _decode(saved["state"][name], tensors)
            if isinstance(obj, torch.nn.Module):
                set_model_state_dict(obj, state)
            else:
                set_optimizer_state_dict(self.root, obj, state)


def _run_dcp(
    function: Any, tensors: dict[str, torch.Tensor], alone: bool | None = None, **storage: Any
) -> None:
    """``dcp.save`` or ``dcp.load``: with every rank under torchrun (``alone`` None), else in
    this process alone (without DCP's warning that it assumes so)."""
    alone = not distributed.is_distributed() if alone is None else alone
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        function(tensors, no_dist=alone, **storage)


def _kind(obj: Stateful) -> str:
    return "module" if isinstance(obj, torch.nn.Module) else "optimizer"


def _read_structure(path: Path) -> dict[str, Any]:
    structure_file = Path(path) / STRUCTURE_FILE
    if not structure_file.is_file():
        raise FileNotFoundError(f"{path}: not a sharded checkpoint (no {STRUCTURE_FILE})")
    return json.loads(structure_file.read_text(encoding="utf-8"))


def consolidate(checkpoint: str | os.PathLike) -> dict[str, Path]:
    """Write each module of ``<checkpoint>/sharded.ckpt`` as ``<checkpoint>/<name>.safetensors``
    (what a checkpoint without FSDP holds), in one process; returns ``{name: file}``.

    Holds one module at a time in memory; the optimizers stay in the sharded folder.
    """
    folder = Path(checkpoint)
    source = folder / f"{SHARDED_NAME}.ckpt"
    saved = _read_structure(source)
    stored = dcp.HuggingFaceStorageReader(str(source)).read_metadata().state_dict_metadata
    written = {}
    for name, kind in saved["kinds"].items():
        if kind != "module":
            continue
        paths = {
            key: node["__tensor__"]
            for key, node in saved["state"][name].items()
            if isinstance(node, dict) and "__tensor__" in node
        }
        tensors = {
            path: torch.empty(stored[path].size, dtype=stored[path].properties.dtype)
            for path in paths.values()
        }
        _run_dcp(dcp.load, tensors, True, storage_reader=dcp.HuggingFaceStorageReader(str(source)))
        target = folder / f"{name}.safetensors"
        partial = folder / f".{name}.safetensors.partial"
        save_file({key: tensors[path].contiguous() for key, path in paths.items()}, str(partial))
        os.replace(partial, target)
        written[name] = target
    return written


def main(argv: list[str] | None = None) -> None:
    """Consolidate sharded checkpoints (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description="Write the modules of sharded checkpoints as <name>.safetensors beside them"
    )
    parser.add_argument("checkpoints", nargs="+", help="CKPT+... folders holding sharded.ckpt")
    for folder in parser.parse_args(argv).checkpoints:
        for name, path in consolidate(folder).items():
            print(f"{name}: {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
