"""Checkpointer: save and recover training state atomically, in safetensors + JSON.

A checkpoint is a folder ``CKPT+<timestamp>`` holding one entry per registered object
(``<name>.safetensors`` for its tensors, ``<name>.json`` for the rest) and ``CKPT.json`` with
the metadata (your ``meta`` plus ``unixtime`` and ``end_of_epoch``). Nothing we write is a
pickle, so loading our own checkpoints never runs code.

Writes are atomic: everything goes into a staging folder ``.tmp-<pid>@<host>-CKPT+...``, files
and folder are fsynced, then the folder is renamed; deleting renames a checkpoint to
``.trash-<pid>@<host>-CKPT+...`` first. A process killed at any instant leaves either the
previous checkpoints or the new one; its leftovers are never picked up.

Several processes may share a folder (two trainings, or inference recovering while training
saves): saving, pruning and cleaning happen under an exclusive lock on ``.checkpointer.lock``
in the folder, recovery under a shared one. A save removes only leftovers of our own naming
whose owner process is gone (this host, pid no longer running); recovery never deletes
anything. Only folders named ``CKPT+...`` holding a readable ``CKPT.json`` count as
checkpoints: anything else in the folder (``CKPT_notes/``, a backup) is never touched. A
checkpoint whose metadata or files cannot be read is skipped with a warning naming it, and
the best readable one is recovered instead.

What can be registered:

- ``torch.nn.Module``: its state dict (the ``.safetensors`` file is a plain state dict).
- anything with ``state_dict()`` / ``load_state_dict()``: optimizers, LR schedulers,
  ``GradScaler``, :class:`RNGState`; nested dicts/lists/tuples of tensors, numbers and strings.
- any class decorated with :func:`register_checkpoint_hooks` whose methods are marked with
  :func:`mark_as_saver` (``save(self, path)``) and :func:`mark_as_loader`
  (``load(self, path, end_of_epoch)``); ``path`` is ``<ckpt folder>/<name>.ckpt``. When
  the class sets ``saves_on_every_rank = True`` (a sharded state, e.g.
  :class:`speechlobes.distributed_checkpoint.ShardedState`), every rank calls its saver with
  the path in rank 0's staging folder, so the parts of all ranks are renamed in at once.

Example:
    >>> import tempfile
    >>> model = torch.nn.Linear(2, 2)
    >>> ckpt = Checkpointer(tempfile.mkdtemp(), {"model": model})
    >>> _ = ckpt.save_and_keep_only(meta={"loss": 1.0}, min_keys=["loss"])
    >>> ckpt.recover_if_possible(min_key="loss").meta["loss"]
    1.0
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
import random
import re
import shutil
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from speechlobes.distributed import (
    barrier,
    ddp_broadcast,
    gather_object,
    get_rank,
    get_world_size,
    if_main_process,
)

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "Checkpointer",
    "RNGState",
    "average_checkpoints",
    "load_recoverable",
    "load_state",
    "mark_as_loader",
    "mark_as_saver",
    "read_safetensors",
    "register_checkpoint_hooks",
    "save_state",
]

logger = logging.getLogger(__name__)

CKPT_PREFIX = "CKPT+"
META_FILE = "CKPT.json"
LOCK_FILE = ".checkpointer.lock"
TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"
# A staging or trash folder of ours: prefix, owner (pid@host), then the checkpoint's name.
LEFTOVER_NAME = re.compile(r"^\.(?:tmp|trash)-(?P<pid>\d+)@(?P<host>.+?)-CKPT\+.+$")

try:
    import fcntl
except ImportError:  # not POSIX: no locking between processes
    fcntl = None


class CheckpointError(ValueError):
    """A checkpoint's file cannot be read (corrupt, truncated); the message names the file."""


# ---------------------------------------------------------------------------------------------
# Hooks for objects that save themselves
# ---------------------------------------------------------------------------------------------
def mark_as_saver(method: Callable) -> Callable:
    """Mark ``method(self, path)`` as the way a class saves itself into a checkpoint."""
    method._ckpt_role = "saver"
    return method


def mark_as_loader(method: Callable) -> Callable:
    """Mark ``method(self, path, end_of_epoch)`` (or ``method(self, path)``) as its loader."""
    method._ckpt_role = "loader"
    return method


def register_checkpoint_hooks(cls: type) -> type:
    """Class decorator: record the methods marked as saver/loader so a Checkpointer uses them.

    Example:
        >>> @register_checkpoint_hooks
        ... class Counter:
        ...     def __init__(self):
        ...         self.count = 0
        ...     @mark_as_saver
        ...     def save(self, path):
        ...         Path(path).write_text(str(self.count))
        ...     @mark_as_loader
        ...     def load(self, path, end_of_epoch):
        ...         self.count = int(Path(path).read_text())
    """
    roles = {}
    for klass in reversed(cls.__mro__):
        for attr, value in vars(klass).items():
            role = getattr(value, "_ckpt_role", None)
            if role is not None:
                roles[role] = attr
    if set(roles) != {"saver", "loader"}:
        raise TypeError(
            f"{cls.__name__}: mark one method with @mark_as_saver and one with @mark_as_loader"
        )
    cls._ckpt_hooks = roles
    return cls


def has_checkpoint_hooks(obj: Any) -> bool:
    """Whether ``obj`` saves and loads itself (its class went through
    :func:`register_checkpoint_hooks`)."""
    return hasattr(type(obj), "_ckpt_hooks")


# ---------------------------------------------------------------------------------------------
# State trees: nested containers of tensors and plain values -> safetensors + JSON
# ---------------------------------------------------------------------------------------------
def _join(prefix: str, key: Any) -> str:
    return str(key) if not prefix else f"{prefix}.{key}"


def _encode(node: Any, path: str, tensors: dict[str, torch.Tensor], copy: bool = True) -> Any:
    """``node`` as JSON, each tensor replaced by ``{"__tensor__": its dotted path}`` and put
    into ``tensors`` (a CPU copy; with ``copy=False`` the tensor itself, e.g. a shard that
    torch.distributed.checkpoint saves or loads in place)."""
    if isinstance(node, torch.Tensor):
        if path in tensors:
            raise ValueError(f"two tensors map to the same name {path!r}")
        tensors[path] = node.detach().cpu().contiguous().clone() if copy else node
        return {"__tensor__": path}
    if isinstance(node, np.ndarray):
        return {"__ndarray__": node.tolist(), "dtype": str(node.dtype)}
    if isinstance(node, np.generic):
        return node.item()
    if isinstance(node, dict):
        if all(isinstance(key, str) for key in node):
            return {
                key: _encode(value, _join(path, key), tensors, copy) for key, value in node.items()
            }
        return {
            "__items__": [
                [key, _encode(v, _join(path, key), tensors, copy)] for key, v in node.items()
            ]
        }
    if isinstance(node, tuple):
        return {
            "__tuple__": [_encode(v, _join(path, i), tensors, copy) for i, v in enumerate(node)]
        }
    if isinstance(node, list):
        return [_encode(v, _join(path, i), tensors, copy) for i, v in enumerate(node)]
    if node is None or isinstance(node, str | int | float | bool):
        return node
    raise TypeError(f"cannot checkpoint a {type(node).__name__} at {path!r}")


def _decode(node: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(node, list):
        return [_decode(v, tensors) for v in node]
    if not isinstance(node, dict):
        return node
    if "__tensor__" in node:
        return tensors[node["__tensor__"]]
    if "__ndarray__" in node:
        return np.array(node["__ndarray__"], dtype=node["dtype"])
    if "__tuple__" in node:
        return tuple(_decode(v, tensors) for v in node["__tuple__"])
    if "__items__" in node:
        return {key: _decode(v, tensors) for key, v in node["__items__"]}
    return {key: _decode(value, tensors) for key, value in node.items()}


def save_state(state: Any, path: str | Path) -> None:
    """Write a state tree as ``<path>.safetensors`` (tensors) and ``<path>.json`` (the rest).

    Tensor names are the dotted paths into the tree, so a module state dict is stored under
    its parameter names and ``<path>.safetensors`` can be read by any safetensors tool.
    """
    tensors: dict[str, torch.Tensor] = {}
    structure = _encode(state, "", tensors)
    save_file(tensors, f"{path}.safetensors")
    Path(f"{path}.json").write_text(json.dumps(structure))


def load_state(path: str | Path, map_location: str = "cpu") -> Any:
    """Read back what :func:`save_state` wrote; :class:`CheckpointError` names a bad file."""
    tensors = read_safetensors(f"{path}.safetensors", map_location)
    structure_file = Path(f"{path}.json")
    try:
        return _decode(json.loads(structure_file.read_text()), tensors)
    except (ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{structure_file}: unreadable ({error})") from error


def read_safetensors(path: str | Path, map_location: str = "cpu") -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; :class:`CheckpointError` names a corrupt one."""
    try:
        return load_file(str(path), device=map_location)
    except (SafetensorError, OSError, ValueError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise CheckpointError(f"{path}: corrupt or truncated safetensors file ({error})") from error


# ---------------------------------------------------------------------------------------------
# Random number generators
# ---------------------------------------------------------------------------------------------
class RNGState:
    """The python, numpy, torch CPU and CUDA generators as one recoverable object.

    Under torchrun every rank's generators are saved (``state_dict`` is then a collective call,
    which the Checkpointer makes on every rank) and each rank gets its own back.

    Example:
        >>> rng = RNGState()
        >>> state = rng.state_dict()
        >>> a = torch.rand(1); rng.load_state_dict(state); bool(torch.rand(1) == a)
        True
    """

    def state_dict(self) -> dict:
        state = {
            "python": random.getstate(),
            "numpy": np.random.get_state(legacy=False),
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return {"per_rank": gather_object(state)}

    def load_state_dict(self, state: dict) -> None:
        per_rank, rank = state["per_rank"], get_rank()
        if len(per_rank) != get_world_size():
            logger.warning(
                "random states were saved by %d processes, restoring into %d: rank r takes "
                "saved state r mod %d",
                len(per_rank),
                get_world_size(),
                len(per_rank),
            )
        own = per_rank[rank % len(per_rank)]
        random.setstate(own["python"])
        np.random.set_state(own["numpy"])
        torch.set_rng_state(own["torch"])
        if "cuda" in own and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(own["cuda"])


# ---------------------------------------------------------------------------------------------
# Saving/loading one object
# ---------------------------------------------------------------------------------------------
def _state_of(name: str, obj: Any) -> Any:
    """The state tree to save for ``obj`` (None for objects that save themselves through hooks).

    Called on every rank, so that states gathering all ranks (``RNGState``) can do so.
    """
    if has_checkpoint_hooks(obj):
        return None
    if isinstance(obj, torch.nn.Module):
        return dict(obj.state_dict())
    if hasattr(obj, "state_dict"):
        return obj.state_dict()
    raise TypeError(
        f"cannot checkpoint {name!r} ({type(obj).__name__}): give it state_dict/"
        "load_state_dict or @register_checkpoint_hooks"
    )


def _write_object(obj: Any, state: Any, path: Path) -> None:
    if state is None:
        getattr(obj, type(obj)._ckpt_hooks["saver"])(path.with_suffix(".ckpt"))
    else:
        save_state(state, path)


def _object_files_exist(obj: Any, path: Path) -> bool:
    if has_checkpoint_hooks(obj):
        return path.with_suffix(".ckpt").exists()
    return Path(f"{path}.safetensors").exists()


def _read_saved_state(obj: Any, path: Path) -> Any:
    """What :func:`_apply_saved_state` loads into ``obj`` (None for objects with hooks, which
    read their own files)."""
    if has_checkpoint_hooks(obj):
        return None
    if isinstance(obj, torch.nn.Module):
        return read_safetensors(f"{path}.safetensors")
    return load_state(path)


def _apply_saved_state(obj: Any, state: Any, path: Path, end_of_epoch: bool) -> None:
    hooks = getattr(type(obj), "_ckpt_hooks", None)
    if hooks is None:
        obj.load_state_dict(state)
        return
    loader = getattr(obj, hooks["loader"])
    args = [path.with_suffix(".ckpt"), end_of_epoch]
    try:
        loader(*args[: len(inspect.signature(loader).parameters)])
    except (OSError, ValueError, KeyError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise CheckpointError(f"{path.with_suffix('.ckpt')}: unreadable ({error})") from error


def load_recoverable(obj: Any, path: Path, end_of_epoch: bool) -> None:
    """Load one object from ``path`` in a checkpoint folder (``<folder>/<name>``)."""
    _apply_saved_state(obj, _read_saved_state(obj, path), path, end_of_epoch)


def _fsync_tree(folder: Path) -> None:
    for item in sorted(folder.rglob("*")):
        if item.is_file():
            with open(item, "rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------
# Sharing a folder between processes
# ---------------------------------------------------------------------------------------------
HOST = socket.gethostname()


def _owner_tag() -> str:
    """``<pid>@<host>``: who made a staging or trash folder."""
    return f"{os.getpid()}@{HOST}"


def _owner_is_gone(folder_name: str) -> bool:
    """Whether a leftover of ours was made by a process of this host that no longer runs
    (False for any other name, and for other hosts: we cannot tell)."""
    match = LEFTOVER_NAME.match(folder_name)
    if match is None or match["host"] != HOST:
        return False
    pid = int(match["pid"])
    if pid == os.getpid():
        return True  # ours, and this process is not inside a save right now
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # running, as another user
        return False
    return False


@contextlib.contextmanager
def _folder_lock(folder: Path, exclusive: bool) -> Iterator[None]:
    """An advisory lock on ``folder/LOCK_FILE``: exclusive for writers, shared for readers.

    A reader that may not create the lock file (a read-only folder) reads without it.
    """
    if fcntl is None:
        yield
        return
    if exclusive:
        folder.mkdir(parents=True, exist_ok=True)
    handle = None
    for mode in ("a", "r"):
        with contextlib.suppress(OSError):
            handle = open(folder / LOCK_FILE, mode)  # noqa: SIM115 (held while locked)
            break
    if handle is None:
        if exclusive:
            raise PermissionError(f"{folder}: cannot create {LOCK_FILE} to save checkpoints")
        yield
        return
    try:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        handle.close()  # releases the lock


# ---------------------------------------------------------------------------------------------
# The Checkpointer
# ---------------------------------------------------------------------------------------------
class Checkpoint(NamedTuple):
    """A complete checkpoint on disk: its folder, metadata and one path per recoverable."""

    path: Path
    meta: dict
    paramfiles: dict[str, Path]


class Checkpointer:
    """Saves registered objects into atomic checkpoint folders and recovers them.

    Args:
        checkpoints_dir: where the ``CKPT+...`` folders live.
        recoverables: ``{name: object}`` to register now (more with :meth:`add_recoverable`).
        allow_partial_load: tolerate a checkpoint that lacks some registered objects.

    Only rank 0 writes and deletes; saving is followed by a barrier, so call the save methods
    on every rank. Every rank recovers from the same folder. Several processes may save into
    and recover from one folder at once (see the module docstring).

    Example:
        >>> import tempfile
        >>> model = torch.nn.Linear(2, 2)
        >>> ckpt = Checkpointer(tempfile.mkdtemp(), {"model": model})
        >>> ckpt.recover_if_possible() is None  # nothing saved yet
        True
    """

    def __init__(
        self,
        checkpoints_dir: str | Path,
        recoverables: dict[str, Any] | None = None,
        allow_partial_load: bool = False,
    ):
        self.checkpoints_dir = Path(checkpoints_dir)
        self.recoverables: dict[str, Any] = {}
        self.allow_partial_load = allow_partial_load
        if recoverables:
            self.add_recoverables(recoverables)

    def add_recoverable(self, name: str, obj: Any) -> None:
        """Register ``obj`` under ``name`` (a file name: letters, digits, ``_`` and ``-``).

        Registering a name again replaces the object (e.g. a new optimizer when ``fit`` runs
        a second time).
        """
        if not name or "/" in name or name.startswith(".") or name == Path(META_FILE).stem:
            raise ValueError(f"invalid recoverable name {name!r}")
        self.recoverables[name] = obj

    def add_recoverables(self, recoverables: dict[str, Any]) -> None:
        """Register several objects at once."""
        for name, obj in recoverables.items():
            self.add_recoverable(name, obj)

    # ---------------------------------------------------------------- saving
    def save_checkpoint(
        self, meta: dict | None = None, end_of_epoch: bool = True, name: str | None = None
    ) -> Checkpoint | None:
        """Save every recoverable atomically; returns the checkpoint (None on ranks > 0)."""
        return self._save(meta, end_of_epoch, name, after_write=None)

    def _save(self, meta, end_of_epoch, name, after_write) -> Checkpoint | None:
        states = {key: _state_of(key, obj) for key, obj in self.recoverables.items()}
        checkpoint = None
        if if_main_process():
            with _folder_lock(self.checkpoints_dir, exclusive=True):
                self._remove_leftovers()
                checkpoint = self._write_checkpoint(states, dict(meta or {}), end_of_epoch, name)
                if after_write is not None:
                    after_write(checkpoint)
        elif self._saved_by_every_rank():
            staging = ddp_broadcast(None)  # rank 0's staging folder (see _write_checkpoint)
            for obj_name in self._saved_by_every_rank():
                _write_object(self.recoverables[obj_name], None, staging / obj_name)
        barrier()
        return checkpoint

    def _saved_by_every_rank(self) -> list[str]:
        """Recoverables whose saver runs on every rank (``saves_on_every_rank``: sharded
        states), each rank writing its part into rank 0's staging folder."""
        return [
            name
            for name, obj in self.recoverables.items()
            if has_checkpoint_hooks(obj) and getattr(obj, "saves_on_every_rank", False)
        ]

    def _write_checkpoint(
        self, states: dict, meta: dict, end_of_epoch: bool, name: str | None
    ) -> Checkpoint:
        final = self._new_folder(name)
        staging = self.checkpoints_dir / f"{TMP_PREFIX}{_owner_tag()}-{final.name}"
        staging.mkdir()
        try:
            if self._saved_by_every_rank():
                ddp_broadcast(staging)
            for obj_name, obj in self.recoverables.items():
                _write_object(obj, states[obj_name], staging / obj_name)
            meta.update(unixtime=time.time(), end_of_epoch=end_of_epoch)
            (staging / META_FILE).write_text(json.dumps(meta, indent=2))
            _fsync_tree(staging)
            os.rename(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _fsync_dir(self.checkpoints_dir)
        logger.info("saved checkpoint %s", final)
        return self._read_checkpoint(final)

    def _new_folder(self, name: str | None) -> Path:
        base = name or datetime.now().strftime("%Y-%m-%d+%H-%M-%S+%f")
        if not base.startswith(CKPT_PREFIX):
            base = f"{CKPT_PREFIX}{base}"
        candidate, index = self.checkpoints_dir / base, 0
        while candidate.exists():
            index += 1
            candidate = self.checkpoints_dir / f"{base}+{index:02d}"
        return candidate

    def save_and_keep_only(
        self,
        meta: dict | None = None,
        end_of_epoch: bool = True,
        name: str | None = None,
        num_to_keep: int = 1,
        keep_recent: bool = True,
        importance_keys: list[Callable[[Checkpoint], float]] | None = None,
        max_keys: list[str] | None = None,
        min_keys: list[str] | None = None,
        ckpt_predicate: Callable[[Checkpoint], bool] | None = None,
    ) -> Checkpoint | None:
        """Save, then delete older checkpoints except the best ``num_to_keep`` for each key.

        Without keys, the ``num_to_keep`` most recent are kept. With ``keep_recent`` the new
        checkpoint is always kept. ``ckpt_predicate`` limits which checkpoints may be deleted.
        """
        keys = _importance_functions(importance_keys, max_keys, min_keys) or [_recency]

        def prune(checkpoint: Checkpoint) -> None:
            protected = {checkpoint.path} if keep_recent else set()
            self._delete_all_but(protected, num_to_keep, keys, ckpt_predicate)

        return self._save(meta, end_of_epoch, name, after_write=prune)

    def delete_checkpoints(
        self,
        num_to_keep: int = 1,
        importance_keys: list[Callable[[Checkpoint], float]] | None = None,
        max_keys: list[str] | None = None,
        min_keys: list[str] | None = None,
        ckpt_predicate: Callable[[Checkpoint], bool] | None = None,
    ) -> None:
        """Delete all checkpoints but the best ``num_to_keep`` by each key (rank 0 only)."""
        if if_main_process():
            keys = _importance_functions(importance_keys, max_keys, min_keys) or [_recency]
            with _folder_lock(self.checkpoints_dir, exclusive=True):
                self._delete_all_but(set(), num_to_keep, keys, ckpt_predicate)
        barrier()

    def _delete_all_but(self, protected, num_to_keep, keys, ckpt_predicate) -> None:
        protected = set(protected)
        for key in keys:
            ranked = self.find_checkpoints(importance_key=key, ckpt_predicate=ckpt_predicate)
            best = [ckpt for ckpt in ranked if key(ckpt) != float("-inf")][:num_to_keep]
            protected.update(ckpt.path for ckpt in best)
        for ckpt in self.list_checkpoints():
            if ckpt.path in protected or (ckpt_predicate and not ckpt_predicate(ckpt)):
                continue
            trash = self.checkpoints_dir / f"{TRASH_PREFIX}{_owner_tag()}-{ckpt.path.name}"
            os.rename(ckpt.path, trash)
            shutil.rmtree(trash)
            logger.debug("deleted checkpoint %s", ckpt.path)

    def _remove_leftovers(self) -> None:
        """Remove staging/trash folders of ours whose owner process is gone (under the lock)."""
        if not self.checkpoints_dir.is_dir():
            return
        for folder in self.checkpoints_dir.iterdir():
            if folder.is_dir() and _owner_is_gone(folder.name):
                logger.warning("removing the leftover of an interrupted save %s", folder)
                shutil.rmtree(folder, ignore_errors=True)

    # ---------------------------------------------------------------- finding
    def list_checkpoints(self) -> list[Checkpoint]:
        """Every complete, readable checkpoint, oldest first (unreadable ones are logged)."""
        if not self.checkpoints_dir.is_dir():
            return []
        found = []
        for folder in self.checkpoints_dir.iterdir():
            if folder.name.startswith(CKPT_PREFIX) and (folder / META_FILE).is_file():
                try:
                    found.append(self._read_checkpoint(folder))
                except CheckpointError as error:
                    logger.warning("skipping checkpoint %s: %s", folder, error)
                except FileNotFoundError:
                    continue  # deleted meanwhile by a process sharing the folder
        return sorted(found, key=lambda ckpt: (ckpt.meta["unixtime"], ckpt.path.name))

    def _read_checkpoint(self, folder: Path) -> Checkpoint:
        meta_file = folder / META_FILE
        try:
            meta = json.loads(meta_file.read_text())
        except (ValueError, UnicodeDecodeError) as error:
            raise CheckpointError(f"{meta_file}: unreadable metadata ({error})") from error
        if not isinstance(meta, dict) or not isinstance(meta.get("unixtime"), int | float):
            raise CheckpointError(f"{meta_file}: metadata without a 'unixtime' number")
        return Checkpoint(folder, meta, {name: folder / name for name in self.recoverables})

    def find_checkpoints(
        self,
        importance_key: Callable[[Checkpoint], float] | None = None,
        max_key: str | None = None,
        min_key: str | None = None,
        ckpt_predicate: Callable[[Checkpoint], bool] | None = None,
        max_num_checkpoints: int | None = None,
    ) -> list[Checkpoint]:
        """Checkpoints sorted best first (most recent first without a key).

        ``max_key``/``min_key`` name a meta entry; checkpoints lacking it are left out.
        """
        keys = _importance_functions(
            [importance_key] if importance_key else None,
            [max_key] if max_key else None,
            [min_key] if min_key else None,
        )
        if len(keys) > 1:
            raise ValueError("give at most one of importance_key, max_key, min_key")
        key = keys[0] if keys else _recency
        candidates = [c for c in self.list_checkpoints() if not ckpt_predicate or ckpt_predicate(c)]
        wanted = max_key or min_key
        if wanted:
            candidates = [c for c in candidates if wanted in c.meta]
        ranked = sorted(candidates, key=key, reverse=True)
        return ranked[:max_num_checkpoints] if max_num_checkpoints is not None else ranked

    def find_checkpoint(self, *args, **kwargs) -> Checkpoint | None:
        """The best checkpoint for :meth:`find_checkpoints`' arguments, or None."""
        found = self.find_checkpoints(*args, **kwargs, max_num_checkpoints=1)
        return found[0] if found else None

    # ---------------------------------------------------------------- recovering
    def recover_if_possible(
        self,
        importance_key: Callable[[Checkpoint], float] | None = None,
        max_key: str | None = None,
        min_key: str | None = None,
        ckpt_predicate: Callable[[Checkpoint], bool] | None = None,
    ) -> Checkpoint | None:
        """Load the best (default: most recent) checkpoint into the recoverables, if any.

        A checkpoint that cannot be read is skipped with a warning and the next best one is
        loaded; if there are checkpoints but none can be read, a :class:`CheckpointError`
        lists them (rather than silently starting from scratch). Nothing is written or deleted.
        """
        with _folder_lock(self.checkpoints_dir, exclusive=False):
            ranked = self.find_checkpoints(importance_key, max_key, min_key, ckpt_predicate)
            failures = []
            for checkpoint in ranked:
                try:
                    self.load_checkpoint(checkpoint)
                except CheckpointError as error:
                    logger.warning("skipping unreadable checkpoint %s: %s", checkpoint.path, error)
                    failures.append(str(error))
                    continue
                return checkpoint
        if failures:
            raise CheckpointError(
                f"{self.checkpoints_dir}: none of the {len(failures)} checkpoints could be read: "
                + "; ".join(failures)
                + ". Move them away to start from scratch."
            )
        return None

    def load_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Load every registered object from ``checkpoint``.

        Every file is read before any object changes, so an unreadable file
        (:class:`CheckpointError`, naming it) leaves the objects as they were, except for
        objects with their own loader hooks that come after the failing one.
        """
        end_of_epoch = bool(checkpoint.meta.get("end_of_epoch", True))
        states = {}
        for name, obj in self.recoverables.items():
            path = checkpoint.path / name
            if not _object_files_exist(obj, path):
                if self.allow_partial_load:
                    logger.warning("checkpoint %s has no %r: left as is", checkpoint.path, name)
                    continue
                raise FileNotFoundError(
                    f"{checkpoint.path}: no saved state for recoverable {name!r}; it holds "
                    f"{sorted(p.name for p in checkpoint.path.iterdir())}. Register the same "
                    "objects as when saving, or pass allow_partial_load=True"
                )
            states[name] = _read_saved_state(obj, path)
        for name, state in states.items():
            path = checkpoint.path / name
            _apply_saved_state(self.recoverables[name], state, path, end_of_epoch)
        logger.info("recovered checkpoint %s", checkpoint.path)


def _recency(checkpoint: Checkpoint) -> float:
    return checkpoint.meta["unixtime"]


def _importance_functions(importance_keys, max_keys, min_keys) -> list[Callable]:
    keys = list(importance_keys or [])
    keys += [_meta_key(name, sign=1.0) for name in max_keys or []]
    keys += [_meta_key(name, sign=-1.0) for name in min_keys or []]
    return keys


def _meta_key(name: str, sign: float) -> Callable[[Checkpoint], float]:
    def importance(checkpoint: Checkpoint) -> float:
        value = checkpoint.meta.get(name)
        return float("-inf") if value is None else sign * float(value)

    return importance


def average_checkpoints(
    checkpoints: Iterable[Checkpoint], recoverable_name: str
) -> dict[str, torch.Tensor]:
    """Average a module's parameters over checkpoints (e.g. the best N for evaluation).

    Floating-point tensors are averaged (in float64, cast back); integer tensors such as
    BatchNorm's ``num_batches_tracked`` are taken from the last checkpoint.

    Example:
        >>> import tempfile
        >>> model = torch.nn.Linear(1, 1, bias=False)
        >>> ckpt = Checkpointer(tempfile.mkdtemp(), {"model": model})
        >>> for value in (1.0, 3.0):
        ...     _ = model.weight.data.fill_(value); _ = ckpt.save_checkpoint(meta={"v": value})
        >>> average_checkpoints(ckpt.find_checkpoints(), "model")["weight"].item()
        2.0
    """
    checkpoints = list(checkpoints)
    if not checkpoints:
        raise ValueError("average_checkpoints: no checkpoints given")
    total: dict[str, torch.Tensor] = {}
    for checkpoint in checkpoints:
        state = read_safetensors(f"{checkpoint.path / recoverable_name}.safetensors")
        if total and state.keys() != total.keys():
            raise ValueError(f"{checkpoint.path}: {recoverable_name!r} has different keys")
        for key, tensor in state.items():
            if tensor.is_floating_point():
                total[key] = total.get(key, 0) + tensor.double()
            else:
                total[key] = tensor
    return {
        key: (value / len(checkpoints)).to(state[key].dtype)
        if state[key].is_floating_point()
        else value
        for key, value in total.items()
    }
