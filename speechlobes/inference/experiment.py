"""Load a finished experiment folder for inference: what an interface needs, and nothing else.

A recipe's experiment folder holds ``hyperparams.yaml`` (written by
``create_experiment_directory`` with every reference resolved) and the checkpoints of its
``checkpointer``. Each inference interface declares what it reads from that file as an
:class:`ExperimentSpec` (key, expected type, purpose); :func:`load_experiment`:

1. parses the YAML without building anything;
2. re-roots it: every string value under the training-time ``output_folder`` (as a path
   prefix) is moved under the folder as found now, so an experiment may be moved (to a path
   with spaces, too) and used from any working directory;
3. applies ``overrides``, then checks that every key the spec needs is there (an error names
   the file and each missing key with its purpose);
4. keeps only those keys (and ``checkpointer``): nothing else in the file is built, so a
   training-only entry (a logger, a data pipeline) neither runs nor can fail the load;
5. checks what remains against the trust model (:mod:`speechlobes.utils.yaml_trust`) unless
   ``trust_code`` is set: by default only objects of speechlobes, torch.nn/torch.optim and
   harmless standard types are built, never ``os.system`` and friends;
6. builds it, checks each value's type, recovers the best checkpoint (read-only) and puts
   the modules in eval mode on the device.

Example:
    >>> spec = ExperimentSpec("demo", (Need("sample_rate", int, "the input rate"),))
    >>> hparams = load_experiment("results/conformer_small/1986", spec)  # doctest: +SKIP
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ruamel.yaml
import torch
from hyperpyyaml import load_hyperpyyaml
from hyperpyyaml.core import recursive_update
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.error import YAMLError

from speechlobes.checkpoints import Checkpointer
from speechlobes.utils.hparams import HparamsError, closest_keys
from speechlobes.utils.yaml_trust import check_trusted_tree

logger = logging.getLogger(__name__)

HPARAMS_FILE = "hyperparams.yaml"
OUTPUT_FOLDER_KEY = "output_folder"
CHECKPOINTER_KEY = "checkpointer"


class ExperimentError(ValueError):
    """An experiment folder cannot serve an interface; the message names the file and why."""


@dataclass(frozen=True)
class Need:
    """One key an interface reads from ``hyperparams.yaml``: its name, the type its built
    value must have, and what it is for (shown when it is missing)."""

    key: str
    kind: type | tuple[type, ...]
    purpose: str


@dataclass(frozen=True)
class ExperimentSpec:
    """What an interface needs from an experiment folder (``checkpointer`` is always needed).

    Example:
        >>> spec = ExperimentSpec("tagging", (Need("sample_rate", int, "the input rate"),))
        >>> spec.check_keys("exp/hyperparams.yaml", ["checkpointer", "model"])
        Traceback (most recent call last):
        ...
        speechlobes.inference.experiment.ExperimentError: exp/hyperparams.yaml: a tagging
        experiment needs 'sample_rate' (the input rate), missing from the file (closest keys:
        sample_rate: none). Is this the experiment of another task?
    """

    task: str
    needs: tuple[Need, ...]
    optional: tuple[Need, ...] = ()

    @property
    def keys(self) -> list[str]:
        """Every key this spec reads, needed or optional, and ``checkpointer``."""
        return [CHECKPOINTER_KEY, *(need.key for need in (*self.needs, *self.optional))]

    def check_keys(self, source: str | Path, keys: Iterable[str]) -> None:
        """Raise :class:`ExperimentError` naming each needed key absent from ``keys``."""
        keys = [str(key) for key in keys]
        needs = (Need(CHECKPOINTER_KEY, Checkpointer, "the trained weights"), *self.needs)
        missing = [need for need in needs if need.key not in keys]
        if missing:
            described = ", ".join(f"{need.key!r} ({need.purpose})" for need in missing)
            closest = "; ".join(
                f"{need.key}: {', '.join(closest_keys(need.key, keys, 3)) or 'none'}"
                for need in missing
            )
            raise ExperimentError(
                f"{source}: a {self.task} experiment needs {described}, missing from the file "
                f"(closest keys: {closest}). Is this the experiment of another task?"
            )

    def check_values(self, source: str | Path, hparams: dict[str, Any]) -> None:
        """Raise :class:`ExperimentError` if a built value has the wrong type."""
        for need in (*self.needs, *self.optional):
            if need.key in hparams and not isinstance(hparams[need.key], need.kind):
                raise ExperimentError(
                    f"{source}: {need.key!r} should be {_type_names(need.kind)} ({need.purpose}), "
                    f"got {type(hparams[need.key]).__name__}"
                )


def _type_names(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(getattr(k, "__name__", str(k)) for k in kinds)


def is_experiment_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding an experiment's ``hyperparams.yaml``."""
    return (Path(path) / HPARAMS_FILE).is_file()


def load_experiment(
    folder: str | Path,
    spec: ExperimentSpec,
    min_key: str | None = None,
    max_key: str | None = None,
    device: str = "cpu",
    overrides: dict[str, Any] | None = None,
    trust_code: bool = False,
) -> dict[str, Any]:
    """Build what ``spec`` needs from ``folder/hyperparams.yaml`` and recover the best checkpoint.

    Arguments:
        folder: the experiment folder (``output_folder`` of the training run).
        spec: what the interface needs (see the module docstring for the steps).
        min_key, max_key: the checkpoint metric to select by (e.g. ``min_key="CER"``); the
            most recent checkpoint when both are None.
        device: where the modules go.
        overrides: YAML keys to replace (nested mappings merge), e.g.
            ``{"beats": {"ckp_path": "/models/BEATs_iter3.pt"}}`` when the pretrained file a
            module is built from (before the trained weights are loaded) has moved since
            training. References in ``hyperparams.yaml`` are already resolved: override the
            key that is used, not the one it was copied from.
        trust_code: build whatever the file asks for (only for folders you trust).

    Returns:
        ``{key: built value}`` for the spec's keys (and ``checkpointer``).
    """
    folder = Path(folder).resolve()
    hparams_file = folder / HPARAMS_FILE
    if not hparams_file.is_file():
        raise FileNotFoundError(f"{hparams_file}: not an experiment folder (no {HPARAMS_FILE})")
    tree = _parse(hparams_file)
    _reroot(tree, folder)
    if overrides:
        try:
            recursive_update(tree, overrides, must_match=True)
        except (KeyError, TypeError) as error:
            raise ExperimentError(f"{hparams_file}: override {error} matches no key") from error
    spec.check_keys(hparams_file, tree)
    kept = _plain_copy(CommentedMap((key, tree[key]) for key in spec.keys if key in tree), {})
    if not trust_code:
        check_trusted_tree(kept, str(hparams_file))
    hparams = _build(kept, hparams_file)
    spec.check_values(hparams_file, hparams)
    checkpointer = hparams[CHECKPOINTER_KEY]
    if not isinstance(checkpointer, Checkpointer):
        raise ExperimentError(f"{hparams_file}: 'checkpointer' is not a speechlobes Checkpointer")
    if checkpointer.recover_if_possible(min_key=min_key, max_key=max_key) is None:
        raise FileNotFoundError(f"{checkpointer.checkpoints_dir}: no checkpoint to load")
    for value in hparams.values():
        if isinstance(value, torch.nn.Module):
            value.to(device).eval()
    return hparams


def _parse(hparams_file: Path) -> Any:
    try:
        tree = ruamel.yaml.YAML(typ="rt").load(hparams_file.read_text(encoding="utf-8"))
    except (YAMLError, UnicodeDecodeError) as error:
        raise HparamsError(f"{hparams_file}: not readable YAML ({error})") from error
    if not isinstance(tree, dict):
        raise HparamsError(f"{hparams_file}: expected a mapping of keys, got {type(tree).__name__}")
    return tree


def _reroot(tree: dict, folder: Path) -> None:
    """Move every string under the training-time ``output_folder`` to ``folder``."""
    old = tree.get(OUTPUT_FOLDER_KEY)
    if not isinstance(old, str):
        logger.info("no %r in the experiment's YAML: paths are used as written", OUTPUT_FOLDER_KEY)
        return
    old = old.rstrip("/")
    if old and old != str(folder):
        _replace_prefix(tree, old, str(folder), set())


def _replace_prefix(node: Any, old: str, new: str, seen: set[int]) -> None:
    if id(node) in seen:
        return
    seen.add(id(node))
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    for key, value in list(items):
        if isinstance(value, str) and (value == old or value.startswith(f"{old}/")):
            node[key] = type(value)(new + value[len(old) :])
        else:
            _replace_prefix(value, old, new, seen)


def _plain_copy(node: Any, copies: dict[int, Any]) -> Any:
    """``node`` without the layout and comments ruamel keeps for round trips (tags and shared
    objects kept): moved out of their original places, kept layouts no longer dump right."""
    if id(node) in copies:
        return copies[id(node)]
    if isinstance(node, TaggedScalar):
        copies[id(node)] = TaggedScalar(node.value, node.style, tag=node.tag.value)
        return copies[id(node)]
    if not isinstance(node, dict | list):
        return node
    copy = copies[id(node)] = CommentedMap() if isinstance(node, dict) else CommentedSeq()
    if isinstance(node, dict):
        copy.update((key, _plain_copy(value, copies)) for key, value in node.items())
    else:
        copy.extend(_plain_copy(value, copies) for value in node)
    if getattr(getattr(node, "tag", None), "value", None) is not None:
        copy.yaml_set_ctag(node.tag)
    return copy


def _build(tree: dict, hparams_file: Path) -> dict[str, Any]:
    text = io.StringIO()
    ruamel.yaml.YAML(typ="rt").dump(tree, text)
    try:
        return load_hyperpyyaml(text.getvalue())
    except Exception as error:
        raise HparamsError(
            f"{hparams_file}: building the experiment's objects failed: "
            f"{type(error).__name__}: {error}"
        ) from error
