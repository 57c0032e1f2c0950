"""Pretrainer: load parameters from local files into the modules a YAML names.

A recipe starts from a pretrained lobe with two YAML entries::

    pretrainer: !new:speechlobes.pretrainer.Pretrainer
        loadables:
            encoder: !ref <encoder>
        paths:
            encoder: /models/BEATs_iter3.pt
        key_maps:                     # optional: rename key prefixes, "" strips one
            encoder: {"module.": ""}

and ``hparams["pretrainer"].load_collected()`` in ``train.py`` (before ``fit``).

A path may be: a ``.safetensors`` file; a ``.pt``/``.pth``/``.bin``/``.ckpt`` file (read with
``torch.load(weights_only=True)``; a dict holding the weights under ``model``, ``state_dict``
or ``module`` is unwrapped, as in original BEATs checkpoints); a Hugging Face folder
(``model.safetensors`` or ``pytorch_model.bin``); one of our checkpoint folders
(``CKPT+...``, the file of the same name); or a checkpoints folder (its most recent one).
Loading is strict by default: missing or unexpected keys are an error that lists them.

Example:
    >>> import tempfile
    >>> from safetensors.torch import save_file
    >>> path = Path(tempfile.mkdtemp()) / "lin.safetensors"
    >>> save_file({"net.weight": torch.ones(1, 1), "net.bias": torch.zeros(1)}, str(path))
    >>> layer = torch.nn.Linear(1, 1)
    >>> Pretrainer({"layer": layer}, {"layer": path}, key_maps={"layer": {"net.": ""}}).load_collected()
    >>> layer.weight.item()
    1.0
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path
from typing import Any

import torch

from speechlobes.checkpoints import META_FILE, Checkpointer, load_recoverable, read_safetensors
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
        isinstance(v, torch.Tensor) for v in loaded.values()
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
    return dict(loaded)


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
    """Collects pretrained parameters from local files into modules (see the module doc).

    Args:
        loadables: ``{name: module or object with checkpoint hooks}``.
        paths: ``{name: file or folder}``, one per loadable.
        key_maps: optional ``{name: {old_prefix: new_prefix}}``.
        strict: refuse missing or unexpected keys.
        collect_in: optional folder where :meth:`collect_files` links the files (a record in
            the experiment folder of what was loaded).
    """

    def __init__(
        self,
        loadables: dict[str, Any] | None = None,
        paths: dict[str, str | Path] | None = None,
        key_maps: dict[str, dict[str, str]] | None = None,
        strict: bool = True,
        collect_in: str | Path | None = None,
    ):
        self.loadables = dict(loadables or {})
        self.paths = {name: Path(path) for name, path in (paths or {}).items()}
        self.key_maps = dict(key_maps or {})
        self.strict = strict
        self.collect_in = Path(collect_in) if collect_in is not None else None
        missing = sorted(set(self.loadables) - set(self.paths))
        extra = sorted(set(self.paths) - set(self.loadables))
        if missing or extra:
            raise ValueError(
                f"Pretrainer: loadables without a path {missing}; paths without a loadable {extra}"
            )

    def collect_files(self) -> dict[str, Path]:
        """Check every path exists; link them into ``collect_in`` (rank 0) if given."""
        for name, path in self.paths.items():
            if not path.exists():
                raise FileNotFoundError(f"Pretrainer: {name!r} path {path} does not exist")
        if self.collect_in is not None:
            run_on_main(self._link_files)
        return dict(self.paths)

    def _link_files(self) -> None:
        self.collect_in.mkdir(parents=True, exist_ok=True)
        for name, path in self.paths.items():
            link = self.collect_in / f"{name}{path.suffix}"
            if link.is_symlink() or link.exists():
                link.unlink()
            os.symlink(path.resolve(), link)

    def load_collected(self) -> None:
        """Load every loadable from its path."""
        self.collect_files()
        for name, obj in self.loadables.items():
            if isinstance(obj, torch.nn.Module):
                self._load_module(name, obj)
            else:
                self._load_other(name, obj)
            logger.info("loaded pretrained %r from %s", name, self.paths[name])

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
                f"{_head(unexpected)}. Rename with key_maps (e.g. {{'module.': ''}}) or pass strict=False"
            )

    def _load_other(self, name: str, obj: Any) -> None:
        folder = self.paths[name]
        if not (folder / META_FILE).is_file():
            raise ValueError(
                f"Pretrainer: {name!r} is not a module; it loads from one of our checkpoint "
                f"folders (CKPT+..., with {META_FILE}), got {folder}"
            )
        load_recoverable(obj, folder / name, end_of_epoch=True)


def _head(keys: list[str], count: int = 8) -> list[str]:
    return list(keys[:count]) + (["..."] if len(keys) > count else [])
