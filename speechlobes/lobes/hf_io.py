"""Reading and writing Hugging Face style model folders without ``transformers``.

A folder holds ``config.json`` and the weights as one of: ``model.safetensors``, a sharded
``model.safetensors.index.json`` (+ shards), ``pytorch_model.bin`` or a sharded
``pytorch_model.bin.index.json``. Foreign ``.bin`` files are read with
``torch.load(weights_only=True)``; we write safetensors unless asked otherwise.

Example:
    >>> import tempfile, torch
    >>> folder = tempfile.mkdtemp()
    >>> save_hf_folder(folder, {"model_type": "toy"}, {"w": torch.ones(2)})
    >>> load_hf_state_dict(folder)["w"]
    tensor([1., 1.])
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

import torch

CONFIG_NAME = "config.json"
SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
BIN_WEIGHTS = "pytorch_model.bin"
BIN_INDEX = "pytorch_model.bin.index.json"


def read_config(folder: str | Path) -> dict:
    """The parsed ``config.json`` of ``folder``."""
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no config.json; is {folder} a Hugging Face model folder?")
    return _read_json(path)


def _read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error


def _load_file(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{path}: weights file not found") from error
    except Exception as error:  # safetensors, zip and unpickling errors do not name the file
        raise ValueError(
            f"{path}: cannot read the weights ({type(error).__name__}: {error})"
        ) from error
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    return dict(state)


def load_hf_state_dict(folder: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of the weights in ``folder`` (safetensors preferred, then .bin; sharded or
    not).
    """
    folder = Path(folder)
    for single, index in ((SAFE_WEIGHTS, SAFE_INDEX), (BIN_WEIGHTS, BIN_INDEX)):
        if (folder / single).is_file():
            return _load_file(folder / single)
        if (folder / index).is_file():
            weight_map = _read_json(folder / index).get("weight_map")
            if not isinstance(weight_map, dict):
                raise ValueError(f"{folder / index}: no 'weight_map' mapping")
            state: dict[str, torch.Tensor] = {}
            for shard in sorted(set(weight_map.values())):
                state.update(_load_file(_shard_path(folder, index, shard)))
            missing = sorted(set(weight_map) - set(state))
            if missing:
                raise ValueError(
                    f"{folder / index}: tensors listed but absent in shards: {missing}"
                )
            return state
    found = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else "folder missing"
    raise FileNotFoundError(
        f"{folder}: no {SAFE_WEIGHTS}, {SAFE_INDEX}, {BIN_WEIGHTS} or {BIN_INDEX}; found {found}"
    )


def _shard_path(folder: Path, index: str, shard: object) -> Path:
    """``folder / shard``, refusing a name that is not a file inside ``folder``."""
    path = folder / str(shard)
    if (
        not isinstance(shard, str)
        or Path(shard).is_absolute()
        or not path.resolve().is_relative_to(folder.resolve())
    ):
        raise ValueError(
            f"{folder / index}: weight_map names {shard!r}, which is not a file inside {folder}"
        )
    return path


def _parse_size(size: int | str) -> int:
    if isinstance(size, int):
        return size
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]i?B)\s*", size, flags=re.IGNORECASE)
    if match is None:
        raise ValueError(f"max_shard_size {size!r}: use bytes (int) or e.g. '500MB', '2GB'")
    unit = match.group(2).upper()
    base = 1024 if "I" in unit else 1000
    power = {"K": 1, "M": 2, "G": 3}[unit[0]]
    return int(float(match.group(1)) * base**power)


def _shards(state: dict[str, torch.Tensor], max_bytes: int) -> list[dict[str, torch.Tensor]]:
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = tensor
        size += nbytes
    return shards


def save_hf_folder(
    folder: str | Path,
    config_dict: dict,
    state_dict: Mapping[str, torch.Tensor],
    safe_serialization: bool = True,
    max_shard_size: int | str | None = None,
) -> None:
    """Write ``config.json`` and the weights in the layout transformers reads.

    Tensors are detached, made contiguous and un-shared (safetensors forbids shared storage).
    With ``max_shard_size`` the weights are split into ``model-0000i-of-0000n.safetensors``
    (or ``pytorch_model-...bin``) plus the matching ``*.index.json``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / CONFIG_NAME, "w", encoding="utf-8") as handle:
        json.dump(config_dict, handle, indent=2, sort_keys=True)
        handle.write("\n")
    state = {name: t.detach().cpu().contiguous().clone() for name, t in state_dict.items()}
    single, index, stem, ext = (
        (SAFE_WEIGHTS, SAFE_INDEX, "model", "safetensors")
        if safe_serialization
        else (BIN_WEIGHTS, BIN_INDEX, "pytorch_model", "bin")
    )
    for stale in folder.glob(f"{stem}*.{ext}"):
        stale.unlink()
    shards = [state] if max_shard_size is None else _shards(state, _parse_size(max_shard_size))
    names = (
        [single]
        if len(shards) == 1
        else [f"{stem}-{i + 1:05d}-of-{len(shards):05d}.{ext}" for i in range(len(shards))]
    )
    for name, shard in zip(names, shards, strict=True):
        if safe_serialization:
            from safetensors.torch import save_file

            save_file(shard, str(folder / name), metadata={"format": "pt"})
        else:
            torch.save(shard, folder / name)
    if len(shards) > 1:
        total = sum(t.numel() * t.element_size() for t in state.values())
        weight_map = {key: name for name, shard in zip(names, shards, strict=True) for key in shard}
        with open(folder / index, "w", encoding="utf-8") as handle:
            json.dump(
                {"metadata": {"total_size": total}, "weight_map": weight_map}, handle, indent=2
            )
