"""Checkpointer: save and recover training state atomically, in safetensors + JSON.

SpeechBrain's ``speechbrain.utils.checkpoints``: the same ``Checkpointer`` (arguments, methods,
which checkpoint is chosen and which are deleted), ``Checkpoint``, hooks and
``average_checkpoints``; what differs is the files. A checkpoint is a folder
``CKPT+<timestamp>`` (or ``CKPT+<name>``) holding one entry per registered object
(``<name>.safetensors`` for its tensors and ``<name>.json`` for the rest; ``<name>.ckpt`` for
an object saving itself through hooks) and ``CKPT.json`` with the metadata: your ``meta`` plus
``unixtime`` and ``end-of-epoch`` (tensors in ``meta`` are stored as numbers or lists). Nothing
we write is a pickle, so loading our own checkpoints never runs code.

Writes are atomic: everything goes into a staging folder ``.tmp-<pid>@<host>-CKPT+...``, files
and folder are fsynced, then the folder is renamed; deleting renames a checkpoint to
``.trash-<pid>@<host>-CKPT+...`` first, and saving under the name of an existing checkpoint
moves that one to ``.replaced-<pid>@<host>-CKPT+...`` until the new one is in place. A process
killed at any instant leaves either the previous checkpoints or the new one; its leftovers are
never picked up (a replaced checkpoint whose successor never arrived is put back).

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
- any object with per-object hooks: ``add_recoverable(name, obj, custom_save_hook=save,
  custom_load_hook=load)``, called as ``save(obj, path)`` and ``load(obj, path, end_of_epoch)``.

Example:
    >>> import tempfile
    >>> model = torch.nn.Linear(2, 2)
    >>> ckpt = Checkpointer(tempfile.mkdtemp(), {"model": model})
    >>> _ = ckpt.save_and_keep_only(meta={"loss": torch.tensor(1.0)}, min_keys=["loss"])
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
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
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
    "average_state_dicts",
    "ckpt_recency",
    "load_recoverable",
    "load_state",
    "mark_as_loader",
    "mark_as_saver",
    "mark_as_transfer",
    "read_checkpoint",
    "read_safetensors",
    "register_checkpoint_hooks",
    "save_state",
]

logger = logging.getLogger(__name__)

CKPT_PREFIX = "CKPT+"
META_FILE = "CKPT.json"
PARAMFILE_EXT = ".ckpt"  # what an object saving itself through hooks writes
STATE_EXT = ".safetensors"  # the tensors of any other object (the rest is in <name>.json)
LOCK_FILE = ".checkpointer.lock"
TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"
REPLACED_PREFIX = ".replaced-"
# A staging, trash or replaced folder of ours: its kind, owner (pid@host), then the
# checkpoint's name.
LEFTOVER_NAME = re.compile(
    r"^\.(?P<kind>tmp|trash|replaced)-(?P<pid>\d+)@(?P<host>.+?)-(?P<ckpt>CKPT\+.+)$"
)

try:
    import fcntl
except ImportError:  # not POSIX: no locking between processes
    fcntl = None


class CheckpointError(ValueError):
    """A checkpoint's file cannot be read (corrupt, truncated); the message names the file."""


# ---------------------------------------------------------------------------------------------
# Hooks for objects that save themselves
# ---------------------------------------------------------------------------------------------
PATH = Path("path")  # what a hook's signature is checked against


def mark_as_saver(method: Callable) -> Callable:
    """Mark ``method(self, path)`` as the way a class saves itself into a checkpoint."""
    return _mark(method, "saver", ((PATH,),), "save(self, path)")


def mark_as_loader(method: Callable) -> Callable:
    """Mark ``method(self, path, end_of_epoch)`` (or ``method(self, path)``) as its loader."""
    return _mark(method, "loader", ((PATH, True), (PATH,)), "load(self, path, end_of_epoch)")


def mark_as_transfer(method: Callable) -> Callable:
    """Mark ``method(self, path)`` as the way the Pretrainer loads it (else the loader is)."""
    return _mark(method, "transfer", ((PATH,),), "transfer(self, path)")


def _mark(method: Callable, role: str, arguments: tuple[tuple, ...], shape: str) -> Callable:
    """Tag ``method`` with ``role`` after checking it takes one of ``arguments`` after self."""
    signature = inspect.signature(method)
    if not any(_binds(signature, (None, *args)) for args in arguments):
        raise TypeError(f"{method.__qualname__}: a checkpoint {role} must be {shape}")
    method._ckpt_role = role
    return method


def _binds(signature: inspect.Signature, args: tuple) -> bool:
    try:
        signature.bind(*args)
    except TypeError:
        return False
    return True


def register_checkpoint_hooks(cls: type) -> type:
    """Class decorator: record the methods marked as saver/loader/transfer, so that a
    Checkpointer (and the Pretrainer) use them.

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
    if not roles:
        raise TypeError(
            f"{cls.__name__}: mark one method with @mark_as_saver and one with @mark_as_loader"
        )
    cls._ckpt_hooks = roles
    return cls


def checkpoint_hook(obj: Any, role: str) -> Callable | None:
    """``obj``'s bound method registered for ``role`` ("saver", "loader" or "transfer")."""
    attr = getattr(type(obj), "_ckpt_hooks", {}).get(role)
    return None if attr is None else getattr(obj, attr)


def has_checkpoint_hooks(obj: Any) -> bool:
    """Whether ``obj`` saves and loads itself (its class went through
    :func:`register_checkpoint_hooks` with a saver and a loader)."""
    return {"saver", "loader"} <= set(getattr(type(obj), "_ckpt_hooks", {}))


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
    if checkpoint_hook(obj, "saver") is not None:
        return None
    if isinstance(obj, torch.nn.Module):
        return dict(obj.state_dict())
    if hasattr(obj, "state_dict"):
        return obj.state_dict()
    raise TypeError(
        f"cannot checkpoint {name!r} ({type(obj).__name__}): give it state_dict/"
        "load_state_dict, @register_checkpoint_hooks, or custom hooks in add_recoverable"
    )


def _read_saved_state(obj: Any, paramfile: Path) -> Any:
    """What :func:`_apply_saved_state` loads into ``obj`` (None for objects with a loader hook,
    which read their own file)."""
    if checkpoint_hook(obj, "loader") is not None:
        return None
    if isinstance(obj, torch.nn.Module):
        return read_safetensors(paramfile)
    return load_state(paramfile.with_suffix(""))


def _apply_saved_state(obj: Any, state: Any, paramfile: Path, end_of_epoch: bool) -> None:
    loader = checkpoint_hook(obj, "loader")
    if loader is None:
        obj.load_state_dict(state)
    else:
        _call_loader(loader, (paramfile, end_of_epoch))


def _call_loader(loader: Callable, args: tuple) -> None:
    """``loader(*args)``, leaving out the trailing ``end_of_epoch`` when it takes one argument
    less; an unreadable file (the path in ``args``) is a :class:`CheckpointError` naming it."""
    parameters = inspect.signature(loader).parameters.values()
    if not any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters):
        args = args[: len(parameters)]
    try:
        loader(*args)
    except (OSError, ValueError, KeyError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        path = next(arg for arg in args if isinstance(arg, Path))
        raise CheckpointError(f"{path}: unreadable ({error})") from error


def load_recoverable(obj: Any, path: Path, end_of_epoch: bool) -> None:
    """Load one object saved by a Checkpointer as ``path`` (``<ckpt folder>/<name>``)."""
    suffix = PARAMFILE_EXT if checkpoint_hook(obj, "loader") is not None else STATE_EXT
    paramfile = Path(f"{path}{suffix}")  # names may hold dots: "encoder.norm"
    _apply_saved_state(obj, _read_saved_state(obj, paramfile), paramfile, end_of_epoch)


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
# Metadata: JSON; tensors and numpy values in it are stored as numbers or lists
# ---------------------------------------------------------------------------------------------
def _write_meta(folder: Path, meta: dict) -> None:
    for key, value in meta.items():
        try:
            json.dumps(value, default=_meta_number)
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"checkpoint meta {key!r}: {error}; store numbers, strings, booleans, None, "
                "tensors or numpy values (and lists or dicts of them)"
            ) from error
    (folder / META_FILE).write_text(json.dumps(meta, indent=2, default=_meta_number))


def _meta_number(value: Any) -> Any:
    """A tensor or numpy value in the metadata as a number (0-d) or nested lists."""
    if isinstance(value, torch.Tensor | np.ndarray | np.generic):
        return value.tolist()
    raise TypeError(f"cannot store a {type(value).__name__} ({value!r})")


def _read_meta(folder: Path) -> dict:
    meta_file = folder / META_FILE
    try:
        meta = json.loads(meta_file.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{meta_file}: unreadable metadata ({error})") from error
    if not isinstance(meta, dict) or not isinstance(meta.get("unixtime"), int | float):
        raise CheckpointError(f"{meta_file}: metadata without a 'unixtime' number")
    return meta


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
    """A complete checkpoint on disk: its folder, its metadata and ``{name: file}`` for each
    object saved in it (``<name>.safetensors``, or ``<name>.ckpt`` for hooks). Hashed by its
    folder, so checkpoints can go in sets."""

    path: Path
    meta: dict
    paramfiles: dict[str, Path]

    def __hash__(self) -> int:
        return hash(self.path)

    @property
    def end_of_epoch(self) -> bool:
        """Its ``end-of-epoch`` flag (``end_of_epoch`` in our earlier checkpoints)."""
        return bool(self.meta.get("end-of-epoch", self.meta.get("end_of_epoch", True)))


def read_checkpoint(folder: str | Path) -> Checkpoint:
    """The checkpoint in ``folder`` (a ``CKPT+...`` folder): its metadata and files."""
    folder = Path(folder)
    paramfiles = {
        item.stem: item
        for item in sorted(folder.iterdir())
        if item.suffix in (PARAMFILE_EXT, STATE_EXT)
    }
    return Checkpoint(folder, _read_meta(folder), paramfiles)


def ckpt_recency(checkpoint: Checkpoint) -> float:
    """Importance by recency: the checkpoint's ``unixtime`` (the default ranking)."""
    return checkpoint.meta["unixtime"]


class Checkpointer:
    """Saves registered objects into atomic checkpoint folders and recovers them.

    Args:
        checkpoints_dir: where the ``CKPT+...`` folders live (created if missing).
        recoverables: ``{name: object}`` to register now (more with :meth:`add_recoverable`).
        custom_load_hooks: ``{name: load(obj, path, end_of_epoch)}`` for registered objects.
        custom_save_hooks: ``{name: save(obj, path)}``; ``path`` is ``<ckpt>/<name>.ckpt``.
        allow_partial_load: a checkpoint lacking some registered objects loads the others
            (otherwise a RuntimeError names the missing one).

    Only rank 0 writes and deletes; saving is followed by a barrier, so call the save methods on
    every rank. Every rank recovers from the same folder. Several processes may save into and
    recover from one folder at once (see the module docstring).

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
        recoverables: Mapping[str, Any] | None = None,
        custom_load_hooks: Mapping[str, Callable] | None = None,
        custom_save_hooks: Mapping[str, Callable] | None = None,
        allow_partial_load: bool = False,
    ):
        self.checkpoints_dir = Path(checkpoints_dir)
        self.checkpoints_dir.mkdir(parents=True, exist_ok=True)
        self.recoverables: dict[str, Any] = {}
        self.optional_recoverables: dict[str, bool] = {}
        self.custom_load_hooks: dict[str, Callable] = dict(custom_load_hooks or {})
        self.custom_save_hooks: dict[str, Callable] = dict(custom_save_hooks or {})
        self.allow_partial_load = allow_partial_load
        if recoverables is not None:
            self.add_recoverables(recoverables)

    def add_recoverable(
        self,
        name: str,
        obj: Any,
        custom_load_hook: Callable | None = None,
        custom_save_hook: Callable | None = None,
        optional_load: bool = False,
    ) -> None:
        """Register ``obj`` under ``name`` (a file name: letters, digits, ``_`` and ``-``).

        Registering a name again replaces the object (e.g. a new optimizer when ``fit`` runs
        a second time). ``custom_save_hook(obj, path)`` and ``custom_load_hook(obj, path,
        end_of_epoch)`` replace the usual saving and loading of this object. With
        ``optional_load``, a checkpoint without it loads anyway, with a warning (the Brain
        registers its GradScaler so: a checkpoint saved in fp32 resumes in fp16).
        """
        if not name or "/" in name or name.startswith(".") or name == Path(META_FILE).stem:
            raise ValueError(f"invalid recoverable name {name!r}")
        self.recoverables[name] = obj
        self.optional_recoverables[name] = optional_load
        if custom_load_hook is not None:
            self.custom_load_hooks[name] = custom_load_hook
        if custom_save_hook is not None:
            self.custom_save_hooks[name] = custom_save_hook

    def add_recoverables(self, recoverables: Mapping[str, Any]) -> None:
        """Register several objects at once (``{name: object}``)."""
        if not isinstance(recoverables, Mapping):
            raise TypeError(
                f"Checkpointer recoverables must be a mapping {{name: object}}, got "
                f"{type(recoverables).__name__}"
            )
        for name, obj in recoverables.items():
            self.add_recoverable(name, obj)

    # ---------------------------------------------------------------- saving
    def save_checkpoint(
        self,
        meta: Mapping | None = None,
        end_of_epoch: bool = True,
        name: str | None = None,
        verbosity: int = logging.INFO,
    ) -> Checkpoint | None:
        """Save every recoverable atomically; returns the checkpoint (None on ranks > 0).

        ``meta`` (numbers, strings, tensors, arrays, containers of them) is stored with
        ``unixtime`` and ``end-of-epoch``. A ``name`` gives the folder ``CKPT+<name>``, which
        replaces an earlier checkpoint of that name. ``verbosity`` is the log level.
        """
        return self._save(meta, end_of_epoch, name, verbosity, prune=None)

    def save_and_keep_only(
        self,
        meta: Mapping | None = None,
        end_of_epoch: bool = True,
        name: str | None = None,
        num_to_keep: int = 1,
        keep_recent: bool = True,
        importance_keys: Sequence[Callable[[Checkpoint], Any]] | None = None,
        max_keys: Sequence[str] | None = None,
        min_keys: Sequence[str] | None = None,
        ckpt_predicate: Callable[[Checkpoint], bool] | None = None,
        verbosity: int = logging.INFO,
    ) -> Checkpoint | None:
        """Save, then delete the checkpoints no ranking keeps (see :meth:`delete_checkpoints`).

        The rankings are ``importance_keys``, ``max_keys``, ``min_keys`` and, with
        ``keep_recent``, recency: each keeps its best ``num_to_keep``. Returns the new
        checkpoint if it was kept (None otherwise and on ranks > 0).
        """
        _check_num_to_keep(num_to_keep)
        rankings = _rankings(importance_keys, max_keys, min_keys)
        if keep_recent:
            rankings.append({"importance_key": ckpt_recency})

        def prune(checkpoint: Checkpoint) -> bool:
            self._delete_unkept(num_to_keep, rankings, ckpt_predicate, verbosity)
            return checkpoint.path.is_dir()

        return self._save(meta, end_of_epoch, name, verbosity, prune)

    def _save(self, meta, end_of_epoch, name, verbosity, prune) -> Checkpoint | None:
        states = {
            key: _state_of(key, obj)
            for key, obj in self.recoverables.items()
            if key not in self.custom_save_hooks
        }
        checkpoint = None
        if if_main_process():
            with _folder_lock(self.checkpoints_dir, exclusive=True):
                self._remove_leftovers()
                meta = {"unixtime": time.time(), "end-of-epoch": end_of_epoch, **(meta or {})}
                checkpoint = self._write_checkpoint(states, meta, name, verbosity)
                if prune is not None and not prune(checkpoint):
                    checkpoint = None
        elif self._saved_by_every_rank():
            staging = ddp_broadcast(None)  # rank 0's staging folder (see _write_checkpoint)
            for obj_name in self._saved_by_every_rank():
                self._write_object(obj_name, self.recoverables[obj_name], None, staging)
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

    def _write_checkpoint(self, states: dict, meta: dict, name: str | None, verbosity: int):
        final = self._new_folder(name)
        staging = self.checkpoints_dir / f"{TMP_PREFIX}{_owner_tag()}-{final.name}"
        staging.mkdir()
        try:
            if self._saved_by_every_rank():
                ddp_broadcast(staging)
            for obj_name, obj in self.recoverables.items():
                self._write_object(obj_name, obj, states.get(obj_name), staging)
            _write_meta(staging, meta)
            _fsync_tree(staging)
            self._publish(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        kind = "an end-of-epoch" if meta["end-of-epoch"] else "an intra-epoch"
        logger.log(verbosity, "saved %s checkpoint in %s", kind, final)
        return read_checkpoint(final)

    def _write_object(self, name: str, obj: Any, state: Any, staging: Path) -> None:
        paramfile = staging / f"{name}{PARAMFILE_EXT}"
        if name in self.custom_save_hooks:
            self.custom_save_hooks[name](obj, paramfile)
        elif state is None:
            checkpoint_hook(obj, "saver")(paramfile)
        else:
            save_state(state, staging / name)

    def _new_folder(self, name: str | None) -> Path:
        """``CKPT+<name>`` (replacing a checkpoint of that name), or a new timestamped one."""
        if name is not None:
            folder = self.checkpoints_dir / (
                name if name.startswith(CKPT_PREFIX) else CKPT_PREFIX + name
            )
            if folder.exists() and not (folder / META_FILE).is_file():
                raise FileExistsError(
                    f"{folder} exists and is not a checkpoint: it is left alone; give the "
                    "checkpoint another name"
                )
            return folder
        base = CKPT_PREFIX + datetime.now().strftime("%Y-%m-%d+%H-%M-%S+%f")
        candidate, index = self.checkpoints_dir / base, 0
        while candidate.exists():
            index += 1
            candidate = self.checkpoints_dir / f"{base}+{index:02d}"
        return candidate

    def _publish(self, staging: Path, final: Path) -> None:
        """Rename the staging folder to ``final``; an earlier checkpoint there steps aside
        first and is deleted once the new one is in place."""
        replaced = None
        if final.exists():
            replaced = self.checkpoints_dir / f"{REPLACED_PREFIX}{_owner_tag()}-{final.name}"
            os.rename(final, replaced)
        os.rename(staging, final)
        _fsync_dir(self.checkpoints_dir)
        if replaced is not None:
            self._discard(replaced)

    def _discard(self, folder: Path) -> None:
        """Delete a folder of ours: renamed to a trash name first, so that a reader never sees
        a half-deleted checkpoint (call under the exclusive lock)."""
        name = LEFTOVER_NAME.match(folder.name)
        trash = self.checkpoints_dir / (
            f"{TRASH_PREFIX}{_owner_tag()}-{name['ckpt'] if name else folder.name}"
        )
        os.rename(folder, trash)
        shutil.rmtree(trash)

    def delete_checkpoints(
        self,
        *,
        num_to_keep: int = 1,
        min_keys: Sequence[str] | None = None,
        max_keys: Sequence[str] | None = None,
        importance_keys: Sequence[Callable[[Checkpoint], Any]] = (ckpt_recency,),
        ckpt_predicate: Callable[[Checkpoint], bool] | None = None,
        verbosity: int = logging.INFO,
    ) -> None:
        """Delete the checkpoints no ranking keeps (rank 0 deletes; call it on every rank).

        Each ranking (each of ``importance_keys``, each meta key of ``max_keys``/``min_keys``)
        considers the checkpoints passing ``ckpt_predicate`` (and holding its meta key) and
        keeps its best ``num_to_keep``; a considered checkpoint that no ranking keeps is
        deleted. Checkpoints no ranking considers stay.
        """
        _check_num_to_keep(num_to_keep)
        rankings = _rankings(importance_keys, max_keys, min_keys)
        if if_main_process():
            with _folder_lock(self.checkpoints_dir, exclusive=True):
                self._delete_unkept(num_to_keep, rankings, ckpt_predicate, verbosity)
        barrier()

    def _delete_unkept(self, num_to_keep, rankings, ckpt_predicate, verbosity) -> None:
        checkpoints = self.list_checkpoints()
        considered, kept = set(), set()
        for ranking in rankings:
            ranked = _rank(checkpoints, ckpt_predicate=ckpt_predicate, **ranking)
            considered.update(ranked)
            kept.update(ranked[:num_to_keep])
        for checkpoint in sorted(considered - kept, key=ckpt_recency):
            self._discard(checkpoint.path)
            logger.log(verbosity, "deleted checkpoint %s", checkpoint.path)

    def _remove_leftovers(self) -> None:
        """Clean what interrupted saves of ours left (owner gone; under the exclusive lock):
        staging and trash folders are removed, a replaced checkpoint whose successor never
        arrived is put back."""
        for folder in self.checkpoints_dir.iterdir():
            if not folder.is_dir() or not _owner_is_gone(folder.name):
                continue
            leftover = LEFTOVER_NAME.match(folder.name)
            original = self.checkpoints_dir / leftover["ckpt"]
            if leftover["kind"] == "replaced" and not original.exists():
                logger.warning("putting back %s, replaced by a save that was cut", original)
                os.rename(folder, original)
            else:
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
                    found.append(read_checkpoint(folder))
                except CheckpointError as error:
                    logger.warning("skipping checkpoint %s: %s", folder, error)
                except FileNotFoundError:
                    continue  # deleted meanwhile by a process sharing the folder
        return sorted(found, key=lambda ckpt: (ckpt_recency(ckpt), ckpt.path.name))

    def find_checkpoints(
        self,
        importance_key: Callable[[Checkpoint], Any] | None = None,
        max_key: str | None = None,
        min_key: str | None = None,
        ckpt_predicate: Callable[[Checkpoint], bool] | None = None,
        max_num_checkpoints: int | None = None,
    ) -> list[Checkpoint]:
        """Checkpoints sorted best first by one of ``importance_key`` (highest first),
        ``max_key``/``min_key`` (a meta entry; checkpoints lacking it are left out) or, without
        any, recency; among equals the most recent comes first."""
        ranked = _rank(self.list_checkpoints(), importance_key, max_key, min_key, ckpt_predicate)
        return ranked[:max_num_checkpoints] if max_num_checkpoints is not None else ranked

    def find_checkpoint(
        self,
        importance_key: Callable[[Checkpoint], Any] | None = None,
        max_key: str | None = None,
        min_key: str | None = None,
        ckpt_predicate: Callable[[Checkpoint], bool] | None = None,
    ) -> Checkpoint | None:
        """The best checkpoint for :meth:`find_checkpoints`' arguments, or None."""
        found = self.find_checkpoints(importance_key, max_key, min_key, ckpt_predicate, 1)
        return found[0] if found else None

    # ---------------------------------------------------------------- recovering
    def recover_if_possible(
        self,
        importance_key: Callable[[Checkpoint], Any] | None = None,
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
        logger.info("no checkpoint to recover in %s yet", self.checkpoints_dir)
        return None

    def load_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Load every registered object from ``checkpoint``.

        An object the checkpoint lacks is a RuntimeError naming it, unless
        ``allow_partial_load`` is set, it was registered with ``optional_load=True`` or its
        name contains "dataloader" (then it is skipped with a warning). Every file is read
        before any object changes, so an unreadable file (:class:`CheckpointError`, naming it)
        leaves the objects as they were, except for objects with their own loader hooks that
        come after the failing one.
        """
        end_of_epoch = checkpoint.end_of_epoch
        loads = []
        for name, obj in self.recoverables.items():
            paramfile = checkpoint.paramfiles.get(name)
            if paramfile is None:
                self._skip_missing(checkpoint, name)
            elif name in self.custom_load_hooks:
                loads.append((name, None, paramfile))
            else:
                self._check_format(name, obj, paramfile)
                loads.append((name, _read_saved_state(obj, paramfile), paramfile))
        for name, state, paramfile in loads:
            obj = self.recoverables[name]
            if name in self.custom_load_hooks:
                _call_loader(self.custom_load_hooks[name], (obj, paramfile, end_of_epoch))
            else:
                _apply_saved_state(obj, state, paramfile, end_of_epoch)
        logger.info("loaded checkpoint %s", checkpoint.path)

    def _skip_missing(self, checkpoint: Checkpoint, name: str) -> None:
        message = f"Loading checkpoint from {checkpoint.path}, but missing a load path for {name}"
        if self.allow_partial_load or "dataloader" in name or self.optional_recoverables.get(name):
            warnings.warn(f"{message}: left as it is", UserWarning, stacklevel=3)
            return
        raise RuntimeError(
            f"{message}; it holds {sorted(checkpoint.paramfiles)}. Register the same objects as "
            "when saving, register this one with add_recoverable(..., optional_load=True), or "
            "pass allow_partial_load=True"
        )

    def _check_format(self, name: str, obj: Any, paramfile: Path) -> None:
        """A file saved by hooks for an object loaded from a state, or the other way round, is
        a RuntimeError rather than a "corrupt file" to skip."""
        expected = PARAMFILE_EXT if checkpoint_hook(obj, "loader") is not None else STATE_EXT
        if paramfile.suffix != expected:
            raise RuntimeError(
                f"{paramfile}: {name!r} ({type(obj).__name__}) loads from a {expected} file; "
                f"register it as it was when saving (or give a custom_load_hook)"
            )


def _check_num_to_keep(num_to_keep: int) -> None:
    if num_to_keep < 0:
        raise ValueError(f"num_to_keep must be 0 or more, got {num_to_keep}")


def _rankings(importance_keys, max_keys, min_keys) -> list[dict]:
    """The rankings of a deletion, as :func:`_rank` arguments."""
    return [
        *({"min_key": key} for key in min_keys or ()),
        *({"max_key": key} for key in max_keys or ()),
        *({"importance_key": key} for key in importance_keys or ()),
    ]


def _rank(
    checkpoints: Iterable[Checkpoint],
    importance_key: Callable[[Checkpoint], Any] | None = None,
    max_key: str | None = None,
    min_key: str | None = None,
    ckpt_predicate: Callable[[Checkpoint], bool] | None = None,
) -> list[Checkpoint]:
    """``checkpoints`` best first, most recent first among equals (see find_checkpoints)."""
    if sum(key is not None for key in (importance_key, max_key, min_key)) > 1:
        raise ValueError("give at most one of importance_key, max_key and min_key")
    meta_key = max_key if max_key is not None else min_key
    if meta_key is not None:
        importance_key = _meta_importance(meta_key, sign=1.0 if max_key is not None else -1.0)
    candidates = [
        checkpoint
        for checkpoint in checkpoints
        if (meta_key is None or meta_key in checkpoint.meta)
        and (ckpt_predicate is None or ckpt_predicate(checkpoint))
    ]
    newest_first = sorted(candidates, key=ckpt_recency, reverse=True)
    return sorted(newest_first, key=importance_key or ckpt_recency, reverse=True)


def _meta_importance(name: str, sign: float) -> Callable[[Checkpoint], float]:
    def importance(checkpoint: Checkpoint) -> float:
        value = checkpoint.meta[name]
        return float("-inf") if value is None else sign * float(value)

    return importance


# ---------------------------------------------------------------------------------------------
# Averaging
# ---------------------------------------------------------------------------------------------
def average_state_dicts(state_dicts: Iterable[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The average of state dicts (an iterable, read one at a time).

    Floating-point tensors are averaged (in float64, cast back); integer tensors such as
    BatchNorm's ``num_batches_tracked`` are taken from the last state dict.
    """
    total: dict[str, torch.Tensor] = {}
    dtypes: dict[str, torch.dtype] = {}
    count = 0
    for count, state in enumerate(state_dicts, 1):
        if count > 1 and state.keys() != total.keys():
            raise ValueError(f"average_state_dicts: state dict {count} has different keys")
        for key, tensor in state.items():
            dtypes[key] = tensor.dtype
            if tensor.is_floating_point():
                total[key] = total.get(key, 0) + tensor.double()
            else:
                total[key] = tensor
    if count == 0:
        raise ValueError("average_state_dicts: no state dicts to average")
    return {
        key: (value / count).to(dtypes[key]) if dtypes[key].is_floating_point else value
        for key, value in total.items()
    }


def average_checkpoints(
    checkpoint_list: Iterable[Checkpoint],
    recoverable_name: str,
    parameter_loader: Callable[..., Any] = read_safetensors,
    averager: Callable[[Iterator[Any]], Any] = average_state_dicts,
) -> Any:
    """Average a module's parameters over checkpoints (e.g. the best N for evaluation).

    Each checkpoint's file for ``recoverable_name`` is read with
    ``parameter_loader(path, map_location="cpu")`` and the iterator of what it returns goes
    to ``averager`` (see :func:`average_state_dicts`).

    Example:
        >>> import tempfile
        >>> model = torch.nn.Linear(1, 1, bias=False)
        >>> ckpt = Checkpointer(tempfile.mkdtemp(), {"model": model})
        >>> for value in (1.0, 3.0):
        ...     _ = model.weight.data.fill_(value); _ = ckpt.save_checkpoint(meta={"v": value})
        >>> average_checkpoints(ckpt.find_checkpoints(), "model")["weight"].item()
        2.0
    """

    def states() -> Iterator[Any]:
        for checkpoint in checkpoint_list:
            if recoverable_name not in checkpoint.paramfiles:
                raise ValueError(
                    f"{checkpoint.path}: no {recoverable_name!r}; it holds "
                    f"{sorted(checkpoint.paramfiles)}"
                )
            yield parameter_loader(checkpoint.paramfiles[recoverable_name], map_location="cpu")

    return averager(states())
