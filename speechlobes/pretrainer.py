"""Pretrainer: load parameters from local files into the modules a YAML names.

A recipe starts from a pretrained lobe with two YAML entries::

    pretrainer: !new:speechlobes.pretrainer.Pretrainer
        collect_in: !ref <save_folder>/pretrained   # optional: links to what was loaded
        loadables:
            encoder: !ref <encoder>
            label_encoder: !ref <label_encoder>     # anything with checkpoint hooks
        paths:
            encoder: /models/BEATs_iter3.pt
            label_encoder: /models/asr/label_encoder.txt
        key_maps:                     # optional: rename key prefixes, "" strips one
            encoder: {"module.": ""}

and, as in SpeechBrain, ``run_on_main(hparams["pretrainer"].collect_files)`` and
``hparams["pretrainer"].load_collected()`` in ``train.py`` (before ``fit``).

A path may be: a ``.safetensors`` file; a ``.pt``/``.pth``/``.bin``/``.ckpt`` file (read with
``torch.load(weights_only=True)``; a dict holding the weights under ``model``, ``state_dict``
or ``module`` is unwrapped, as in original BEATs checkpoints); a Hugging Face folder
(``model.safetensors`` or ``pytorch_model.bin``); one of our checkpoint folders
(``CKPT+...``, the file of the same name); or a checkpoints folder (its most recent one).
Loading is strict by default: missing or unexpected keys are an error that lists them. A
SpeechBrain ``normalizer.ckpt`` (a dict with an integer ``count``) loads as a state dict; an
object with checkpoint hooks (an encoder, an EpochCounter) loads from its file through its
transfer hook (:func:`~speechlobes.checkpoints.mark_as_transfer`) or else its loader hook.

Example:
    >>> import tempfile
    >>> from safetensors.torch import save_file
    >>> path = Path(tempfile.mkdtemp()) / "lin.safetensors"
    >>> save_file({"net.weight": torch.ones(1, 1), "net.bias": torch.zeros(1)}, str(path))
    >>> layer = torch.nn.Linear(1, 1)
    >>> Pretrainer(loadables={"layer": layer}, paths={"layer": path},
    ...            key_maps={"layer": {"net.": ""}}).load_collected()
    >>> layer.weight.item()
    1.0
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from speechlobes.checkpoints import (
    META_FILE,
    PARAMFILE_EXT,
    Checkpointer,
    checkpoint_hook,
    load_recoverable,
    read_checkpoint,
    read_safetensors,
)
from speechlobes.distributed import run_on_main

__all__ = ["Pretrainer", "apply_key_map", "read_state_dict"]

logger = logging.getLogger(__name__)

TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
WRAPPER_KEYS = ("model", "state_dict", "module")
HF_FILES = ("model.safetensors", "pytorch_model.bin")


def read_state_dict(path: str | Path, name: str = "model") -> dict[str, torch.Tensor]:
    """The state dict stored at ``path`` (see the module docstring for the accepted forms).

    ``name`` selects the entry of one of our checkpoint folders.
    """
    path = Path(path)
    if path.is_dir():
        return read_state_dict(_weights_file_in(path, name), name)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights for {name!r}: {path} does not exist")
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    if path.suffix in TORCH_SUFFIXES:
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:  # refused: it holds more than weights
            raise pickle.UnpicklingError(f"{path}: {error}") from error
        except Exception as error:  # zip errors do not name the file
            raise ValueError(f"{path}: cannot read the weights ({error})") from error
        return _unwrap(loaded, path)
    raise ValueError(f"{path}: unknown weights format (use .safetensors or {TORCH_SUFFIXES})")


def _weights_file_in(folder: Path, name: str) -> Path:
    if (folder / META_FILE).is_file():
        return folder / f"{name}.safetensors"
    for file_name in HF_FILES:
        if (folder / file_name).is_file():
            return folder / file_name
    latest = Checkpointer(folder).find_checkpoint()
    if latest is not None:
        return latest.path / f"{name}.safetensors"
    raise FileNotFoundError(
        f"{folder}: no weights found (looked for {META_FILE}, {', '.join(HF_FILES)}, CKPT+* "
        f"folders); it holds {sorted(p.name for p in folder.iterdir())}"
    )


def _unwrap(loaded: Any, path: Path) -> dict[str, torch.Tensor]:
    while isinstance(loaded, dict) and not all(
        isinstance(v, torch.Tensor | int | float) for v in loaded.values()
    ):
        inner = next((key for key in WRAPPER_KEYS if isinstance(loaded.get(key), dict)), None)
        if inner is None:
            raise ValueError(
                f"{path}: not a state dict and no weights under {WRAPPER_KEYS}; top-level keys "
                f"are {sorted(loaded)[:20]}"
            )
        loaded = loaded[inner]
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: expected a dict of tensors, got {type(loaded).__name__}")
    return {key: torch.as_tensor(value) for key, value in loaded.items()}


def apply_key_map(
    state: dict[str, torch.Tensor], key_map: dict[str, str]
) -> dict[str, torch.Tensor]:
    """Replace the first matching prefix of each key (``{"old.": "new."}``; ``""`` strips)."""
    renamed = {}
    for key, tensor in state.items():
        for old, new in key_map.items():
            if key.startswith(old):
                key = new + key[len(old) :]
                break
        renamed[key] = tensor
    return renamed


class Pretrainer:
    """Loads pretrained parameters from local files into the objects a YAML names.

    SpeechBrain's ``speechbrain.utils.parameter_transfer.Pretrainer`` (same arguments and
    methods), reading local files only (see the module doc for the accepted forms).

    Args:
        collect_in: optional folder where :meth:`collect_files` links the files
            (``<name><suffix>``): a record in the experiment folder of what was loaded.
        loadables: ``{name: module, or object with checkpoint hooks (e.g. an encoder, an
            EpochCounter), or with load_state_dict}``.
        paths: ``{name: file or folder}``; a loadable without one is looked for as
            ``<default_source>/<name>.ckpt`` (see :meth:`collect_files`).
        custom_hooks: ``{name: hook(obj, path)}`` loading that object instead.
        conditions: ``{name: bool or callable}``; a false one skips that loadable.
        key_maps: ``{name: {old_prefix: new_prefix}}`` renaming module state-dict keys.
        strict: refuse missing or unexpected module keys (SpeechBrain only warns).
    """

    def __init__(
        self,
        collect_in: str | Path | None = None,
        loadables: dict[str, Any] | None = None,
        paths: dict[str, str | Path] | None = None,
        custom_hooks: dict[str, Callable[[Any, Path], None]] | None = None,
        conditions: dict[str, bool | Callable[[], bool]] | None = None,
        *,
        key_maps: dict[str, dict[str, str]] | None = None,
        strict: bool = True,
    ):
        self.set_collect_in(collect_in)
        self.loadables: dict[str, Any] = {}
        self.paths: dict[str, Path] = {}
        self.custom_hooks: dict[str, Callable[[Any, Path], None]] = {}
        self.conditions: dict[str, bool | Callable[[], bool]] = {}
        self.add_loadables(loadables or {})
        self.add_paths(paths or {})
        self.add_custom_hooks(custom_hooks or {})
        self.add_conditions(conditions or {})
        self.key_maps = dict(key_maps or {})
        self.strict = strict

    def set_collect_in(self, path: str | Path | None) -> None:
        """Change the folder files are linked into (None: no links)."""
        self.collect_in = Path(path) if path is not None else None

    def add_loadables(self, loadables: dict[str, Any]) -> None:
        self.loadables.update(loadables)

    def add_paths(self, paths: dict[str, str | Path]) -> None:
        self.paths.update({name: Path(path) for name, path in paths.items()})

    def add_custom_hooks(self, custom_hooks: dict[str, Callable[[Any, Path], None]]) -> None:
        self.custom_hooks.update(custom_hooks)

    def add_conditions(self, conditions: dict[str, bool | Callable[[], bool]]) -> None:
        self.conditions.update(conditions)

    @staticmethod
    def split_path(path: str | Path) -> tuple[str, str]:
        """``"source/dir/file.ckpt"`` -> ``("source/dir", "file.ckpt")``; a bare file name is
        in ``"./"``.

        Example:
            >>> Pretrainer.split_path("models/asr/lm.ckpt"), Pretrainer.split_path("lm.ckpt")
            (('models/asr', 'lm.ckpt'), ('./', 'lm.ckpt'))
        """
        path = str(path)
        if "/" not in path:
            return "./", path
        source, filename = path.rsplit("/", maxsplit=1)
        return source, filename

    def is_loadable(self, name: str) -> bool:
        """Whether ``name`` is to be loaded (its condition, if any, holds)."""
        condition = self.conditions.get(name, True)
        return bool(condition() if callable(condition) else condition)

    def collect_files(self, default_source: str | Path | None = None) -> dict[str, Path]:
        """Find each loadable's file (its path, else ``<default_source>/<name>.ckpt``), check
        that it exists, and link it into ``collect_in`` (rank 0) if given.

        Only local files and folders: a model hub name or URL is reported as missing.
        """
        for name in self.loadables:
            if not self.is_loadable(name) or name in self.paths:
                continue
            if default_source is None:
                raise ValueError(
                    f"Pretrainer: no path for {name!r} and no default_source; add it to paths"
                )
            self.paths[name] = Path(default_source) / f"{name}{PARAMFILE_EXT}"
        wanted = {name: self.paths[name] for name in self.loadables if self.is_loadable(name)}
        for name, path in wanted.items():
            if not path.exists():
                raise FileNotFoundError(
                    f"Pretrainer: {name!r} path {path} does not exist (only local files and "
                    "folders are read)"
                )
        if self.collect_in is not None:
            run_on_main(self._link_files, args=[wanted])
        return wanted

    def _link_files(self, paths: dict[str, Path]) -> None:
        self.collect_in.mkdir(parents=True, exist_ok=True)
        for name, path in paths.items():
            link = self.collect_in / f"{name}{path.suffix}"
            if link.is_symlink() or link.exists():
                link.unlink()
            os.symlink(path.resolve(), link)

    def load_collected(self) -> None:
        """Load every loadable (whose condition holds) from its file."""
        paths = self.collect_files()
        for name, path in paths.items():
            obj = self.loadables[name]
            if name in self.custom_hooks:
                self.custom_hooks[name](obj, path)
            elif isinstance(obj, torch.nn.Module):
                self._load_module(name, obj)
            else:
                self._load_other(name, obj)
            logger.info("loaded pretrained %r from %s", name, path)

    def _load_module(self, name: str, module: torch.nn.Module) -> None:
        path = self.paths[name]
        state = apply_key_map(read_state_dict(path, name), self.key_maps.get(name, {}))
        try:
            missing, unexpected = module.load_state_dict(state, strict=False)
        except RuntimeError as error:
            raise RuntimeError(f"Pretrainer: loading {path} into {name!r}: {error}") from error
        if self.strict and (missing or unexpected):
            raise KeyError(
                f"Pretrainer: {path} does not match {name!r} ({type(module).__name__}): "
                f"{len(missing)} missing keys {_head(missing)}, {len(unexpected)} unexpected keys "
                f"{_head(unexpected)}. Rename with key_maps (e.g. {{'module.': ''}}) "
                "or pass strict=False"
            )

    def _load_other(self, name: str, obj: Any) -> None:
        """As SpeechBrain: the object's transfer hook if it has one, else its loader (told
        ``end_of_epoch=False``, or in one of our checkpoint folders, that folder's flag)."""
        path = self.paths[name]
        transfer, loader = checkpoint_hook(obj, "transfer"), checkpoint_hook(obj, "loader")
        in_checkpoint = (path / META_FILE).is_file()  # one of our checkpoint folders
        if transfer is not None:
            transfer(path / f"{name}{PARAMFILE_EXT}" if in_checkpoint else path)
        elif in_checkpoint:
            load_recoverable(obj, path / name, read_checkpoint(path).end_of_epoch)
        elif loader is not None:
            loader(path, False)
        else:
            raise ValueError(
                f"Pretrainer: {name!r} ({type(obj).__name__}) is not a module and has no "
                "checkpoint hooks; give a custom_hooks entry, or one of our checkpoint folders "
                f"(CKPT+..., with {META_FILE}), got {path}"
            )


def _head(keys: list[str], count: int = 8) -> list[str]:
    return list(keys[:count]) + (["..."] if len(keys) > count else [])
