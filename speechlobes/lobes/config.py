"""The one config base of every lobe: a dataclass with dict and JSON I/O.

Every family's config (``BEATsConfig``, ``Wav2Vec2Config``, ``ConformerConfig``, the text
decoders' and ``SpeechEncoderDecoderConfig``) is a :class:`LobeConfig`: fields named as in the
checkpoints they describe, ``from_dict``/``to_dict``, ``from_json``/``to_json``, and a
``model_type`` that names the family in ``config.json``.

Unknown keys, one policy: a key the dataclass does not model is kept in ``extra`` and written
back unchanged, so a foreign ``config.json`` (``architectures``, ``transformers_version``, ...)
survives a load/save round trip. Where a person writes the values (a YAML ``cfg``, keyword
overrides) pass ``strict=True``: an unknown key is then most likely a typo, and it is an error
naming the key and the known fields.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class ToyConfig(LobeConfig):
    ...     model_type = "toy"
    ...     width: int = 8
    >>> config = ToyConfig.from_dict({"width": 4, "architectures": ["Toy"]})
    >>> config.width, config.extra, config.to_dict()["model_type"]
    (4, {'architectures': ['Toy']}, 'toy')
    >>> ToyConfig.from_dict({"widht": 4}, strict=True)
    Traceback (most recent call last):
    ...
    ValueError: ToyConfig: unknown fields ['widht']; known fields are ['width']
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

Config = TypeVar("Config", bound="LobeConfig")


@dataclass
class LobeConfig:
    """Base dataclass of lobe configs; see the module docstring for the unknown-key policy.

    A subclass sets ``model_type`` (a class attribute, or a field where one class covers
    several types, as ``Wav2Vec2Config`` does) and declares its fields with defaults.
    """

    model_type: ClassVar[str] = ""
    extra: dict[str, Any] = field(default_factory=dict, kw_only=True)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The modelled fields in declaration order (``extra`` excluded)."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.name != "extra")

    @classmethod
    def accepted_keys(cls) -> tuple[str, ...]:
        """Keys ``from_dict`` understands: the fields plus any a subclass derives fields from."""
        return cls.field_names()

    @classmethod
    def check_keys(cls, keys: Iterable[str]) -> None:
        """Raise a ValueError naming every key of ``keys`` that :meth:`accepted_keys` lacks."""
        unknown = sorted(set(keys) - set(cls.accepted_keys()))
        if unknown:
            raise ValueError(
                f"{cls.__name__}: unknown fields {unknown}; known fields are "
                f"{sorted(cls.accepted_keys())}"
            )

    @classmethod
    def from_dict(cls: type[Config], values: dict[str, Any], strict: bool = False) -> Config:
        """Build from a ``config.json``-style dict (unknown keys: see the module docstring).

        A ``model_type`` key must name this class's type (or be absent).
        """
        values = dict(values)
        model_type = values.get("model_type")
        if model_type is not None and "model_type" not in cls.field_names():
            if cls.model_type and model_type != cls.model_type:
                raise ValueError(
                    f"{cls.__name__} describes model_type {cls.model_type!r}, got {model_type!r}"
                )
            values.pop("model_type")
        if strict:
            cls.check_keys(key for key in values if key != "extra")
        known = cls.field_names()
        unknown = {key: value for key, value in values.items() if key not in known}
        extra = {**unknown.pop("extra", {}), **unknown}
        return cls(**{key: value for key, value in values.items() if key in known}, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        """The fields, ``extra`` and ``model_type`` as one ``config.json``-style dict."""
        values = {name: getattr(self, name) for name in self.field_names()}
        if self.model_type:
            values["model_type"] = self.model_type
        return {**self.extra, **values}

    @classmethod
    def from_json(cls: type[Config], path: str | Path) -> Config:
        with open(path, encoding="utf-8") as handle:
            return cls.from_dict(json.load(handle))

    def to_json(self, path: str | Path) -> None:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(self.to_dict(), handle, indent=2, sort_keys=True)
            handle.write("\n")
