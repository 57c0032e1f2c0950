"""``from_pretrained`` / ``save_pretrained`` for every lobe, and the one state-dict checker.

A lobe class mixes in :class:`PretrainedMixin`, names its ``config_class`` and builds itself
from a config; the mixin reads and writes Hugging Face style folders through
:mod:`speechlobes.lobes.hf_io` and loads weights through :func:`load_state_dict_checked`, which
every loader uses (Hugging Face folders, original BEATs checkpoints, parts of a
SpeechEncoderDecoder folder).

Example:
    >>> import tempfile
    >>> from dataclasses import dataclass
    >>> from torch import nn
    >>> from speechlobes.lobes.config import LobeConfig
    >>> @dataclass
    ... class ToyConfig(LobeConfig):
    ...     model_type = "toy"
    ...     width: int = 4
    >>> class Toy(PretrainedMixin, nn.Module):
    ...     config_class = ToyConfig
    ...     def __init__(self, config):
    ...         super().__init__()
    ...         self.config, self.proj = config, nn.Linear(config.width, 2)
    >>> folder = tempfile.mkdtemp()
    >>> Toy(ToyConfig(width=3)).save_pretrained(folder)
    >>> Toy.from_pretrained(folder).proj.in_features
    3
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from speechlobes.lobes.config import LobeConfig
from speechlobes.lobes.hf_io import load_hf_state_dict, read_config, save_hf_folder

logger = logging.getLogger(__name__)

Model = TypeVar("Model", bound="PretrainedMixin")

# Old checkpoints name the weight-norm parts of a convolution as torch.nn.utils.weight_norm did.
LEGACY_SUFFIXES = {
    "weight_g": "parametrizations.weight.original0",
    "weight_v": "parametrizations.weight.original1",
}


def rename_legacy_keys(
    state_dict: Mapping[str, torch.Tensor], expected: Iterable[str]
) -> dict[str, torch.Tensor]:
    """Map old weight-norm names (``conv.weight_g/weight_v``) to torch's parametrization names
    (``conv.parametrizations.weight.original0/1``) where the model expects the latter."""
    expected = set(expected)
    renamed = {}
    for name, tensor in state_dict.items():
        prefix, dot, last = name.rpartition(".")
        new = prefix + dot + LEGACY_SUFFIXES[last] if last in LEGACY_SUFFIXES else name
        renamed[new if new in expected else name] = tensor
    return renamed


def load_state_dict_checked(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    source: str = "checkpoint",
    strict: bool = True,
    ignore: Iterable[str] = (),
    fresh: Iterable[str] = (),
) -> tuple[list[str], list[str]]:
    """Load ``state_dict`` into ``model`` after checking it key by key; returns (missing,
    unexpected).

    Args:
        model: the module to load into (legacy weight-norm names are renamed first).
        state_dict: the tensors, keyed as in ``model.state_dict()``.
        source: where the tensors came from, for the messages (a folder, a file).
        strict: any missing or unexpected key is an error (else a logged warning and the
            missing tensors keep their initial values).
        ignore: regular expressions of keys that may be absent or extra without notice
            (tied copies, buffers that depend on settings, parts of a larger checkpoint).
        fresh: regular expressions of keys that may be missing even when strict (they start
            from their initial values and are logged, e.g. cross-attention added to a language
            model).

    A shape mismatch is always an error. Messages name ``source`` and list the keys.
    """
    state = rename_legacy_keys(state_dict, model.state_dict().keys())
    expected = model.state_dict()
    skipped = [re.compile(pattern) for pattern in ignore]
    new = [re.compile(pattern) for pattern in fresh]

    def kept(names: Iterable[str]) -> list[str]:
        return sorted(n for n in names if not any(p.search(n) for p in skipped))

    missing = kept(set(expected) - set(state))
    unexpected = kept(set(state) - set(expected))
    shapes = [
        f"{name}: {tuple(state[name].shape)} in {source}, {tuple(t.shape)} in model"
        for name, t in expected.items()
        if name in state and state[name].shape != t.shape
    ]
    if shapes:
        raise ValueError(f"{source}: shape mismatch for {len(shapes)} tensors: {shapes}")
    started = [name for name in missing if any(p.search(name) for p in new)]
    absent = [name for name in missing if name not in started]
    if absent or unexpected:
        message = (
            f"{source} does not match {type(model).__name__}: missing keys {absent}, "
            f"unexpected keys {unexpected}"
        )
        if strict:
            raise ValueError(
                f"{message}. Check config.json against the weights, or pass strict=False to "
                "load what matches (the missing tensors keep their initial values)."
            )
        logger.warning("%s; loaded what matches", message)
    if started:
        logger.info(
            "%s: %d tensors are not in the checkpoint and start from their initial values "
            "(fine-tune before use): %s",
            source,
            len(started),
            ", ".join(started),
        )
    model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)
    return missing, unexpected


class PretrainedMixin:
    """Folder I/O of a lobe: ``from_pretrained``, ``save_pretrained``, ``load_checkpoint``.

    A subclass (also an ``nn.Module``) sets ``config_class`` and keeps its config in
    ``self.config``; it may set ``architecture`` (the ``architectures`` entry written to
    ``config.json``, default the class name), ``tied_keys`` (parameters shared with another one,
    left out of saved checkpoints), ``checkpoint_ignore`` and ``checkpoint_fresh`` (see
    :func:`load_state_dict_checked`) and override :meth:`rename_checkpoint_keys` to read the
    key layouts of related checkpoints.
    """

    config_class: ClassVar[type[LobeConfig]]
    architecture: ClassVar[str] = ""
    tied_keys: tuple[str, ...] = ()
    checkpoint_ignore: ClassVar[tuple[str, ...]] = ()
    checkpoint_fresh: ClassVar[tuple[str, ...]] = ()
    config: LobeConfig

    # --- construction

    @classmethod
    def config_from_dict(cls, values: dict[str, Any]) -> LobeConfig:
        """The config object of a ``config.json`` dict (unknown keys kept in ``extra``)."""
        return cls.config_class.from_dict(values)

    @classmethod
    def from_config(cls: type[Model], config: LobeConfig, **options: Any) -> Model:
        """A randomly initialised model of ``config`` (``options``: constructor arguments)."""
        if options:
            raise ValueError(
                f"{cls.__name__}: unknown options {sorted(options)}: they are neither fields of "
                f"{cls.config_class.__name__} ({sorted(cls.config_class.accepted_keys())}) nor "
                f"arguments of {cls.__name__}"
            )
        return cls(config)

    @classmethod
    def from_pretrained(
        cls: type[Model], folder: str | Path, strict: bool = True, **overrides: Any
    ) -> Model:
        """Build from ``folder/config.json`` and load the folder's weights (in eval mode).

        Args:
            folder: a Hugging Face style folder: ``config.json`` and the weights
                (safetensors or ``.bin``, sharded or not).
            strict: missing or unexpected tensors are errors; pass False to start a new head
                on pretrained weights (the missing tensors keep their initial values).
            **overrides: keywords naming config fields replace the folder's values (e.g.
                ``layerdrop=0.05``); the others go to the constructor (:meth:`from_config`).
        """
        keys = set(cls.config_class.accepted_keys())
        fields = {name: value for name, value in overrides.items() if name in keys}
        options = {name: value for name, value in overrides.items() if name not in keys}
        config = cls.config_from_dict({**read_config(folder), **fields})
        model = cls.from_folder_config(config, **options)
        model.load_checkpoint(load_hf_state_dict(folder), str(folder), strict=strict)
        return model.eval()

    @classmethod
    def from_folder_config(cls: type[Model], config: LobeConfig, **options: Any) -> Model:
        """The model :meth:`from_pretrained` loads weights into (default :meth:`from_config`)."""
        return cls.from_config(config, **options)

    # --- weights

    def rename_checkpoint_keys(self, state_dict: dict[str, torch.Tensor]) -> dict:
        """Map the keys of a related checkpoint layout onto ours; identity here."""
        return state_dict

    def load_checkpoint(
        self,
        state_dict: Mapping[str, torch.Tensor],
        source: str = "checkpoint",
        strict: bool = True,
    ) -> tuple[list[str], list[str]]:
        """Load a checkpoint's tensors through :func:`load_state_dict_checked`."""
        return load_state_dict_checked(
            self,
            self.rename_checkpoint_keys(dict(state_dict)),
            source,
            strict=strict,
            ignore=[f"^{re.escape(key)}$" for key in self.tied_keys] + list(self.checkpoint_ignore),
            fresh=self.checkpoint_fresh,
        )

    def checkpoint_state_dict(self) -> dict[str, torch.Tensor]:
        """The tensors a checkpoint holds: the state dict without tied copies."""
        return {k: v for k, v in self.state_dict().items() if k not in self.tied_keys}

    def checkpoint_config(self) -> dict[str, Any]:
        """The ``config.json`` contents: the config plus ``architectures``."""
        return {
            **self.config.to_dict(),
            "architectures": [self.architecture or type(self).__name__],
        }

    def save_pretrained(
        self,
        folder: str | Path,
        safe_serialization: bool = True,
        max_shard_size: int | str | None = None,
    ) -> None:
        """Write ``config.json`` and the weights (safetensors unless asked otherwise) in the
        layout :meth:`from_pretrained` and ``transformers`` read."""
        save_hf_folder(
            folder,
            self.checkpoint_config(),
            self.checkpoint_state_dict(),
            safe_serialization,
            max_shard_size,
        )
