"""Load a finished experiment folder for inference: its resolved hyperparameters and best weights.

A recipe's experiment folder holds ``hyperparams.yaml`` (written by
``create_experiment_directory`` with every reference resolved) and the checkpoints of its
``checkpointer``. Paths in it are relative to where training ran; they are re-rooted at the
folder as found now, so an experiment can be moved or used from any working directory.

Example:
    >>> hparams = load_experiment("results/conformer_small/1986", min_key="CER")  # doctest: +SKIP
    >>> hparams["asr_model"]  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import torch
from hyperpyyaml import load_hyperpyyaml

logger = logging.getLogger(__name__)

HPARAMS_FILE = "hyperparams.yaml"


def is_experiment_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding an experiment's ``hyperparams.yaml``."""
    return (Path(path) / HPARAMS_FILE).is_file()


def load_experiment(
    folder: str | Path,
    min_key: str | None = None,
    max_key: str | None = None,
    device: str = "cpu",
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Instantiate ``folder/hyperparams.yaml``, recover the best checkpoint, switch to eval mode.

    Arguments:
        folder: the experiment folder (``output_folder`` of the training run).
        min_key, max_key: the checkpoint metric to select by (e.g. ``min_key="CER"``); the
            most recent checkpoint when both are None.
        device: where the modules go.
        overrides: YAML keys to replace (nested mappings merge), e.g.
            ``{"beats": {"ckp_path": "/models/BEATs_iter3.pt"}}`` when the pretrained file a
            module is built from (before the trained weights are loaded) has moved since
            training. References in ``hyperparams.yaml`` are already resolved: override the
            key that is used, not the one it was copied from.
    """
    folder = Path(folder).resolve()
    hparams_file = folder / HPARAMS_FILE
    if not hparams_file.is_file():
        raise FileNotFoundError(f"{hparams_file}: not an experiment folder (no {HPARAMS_FILE})")
    text = hparams_file.read_text(encoding="utf-8")
    hparams = load_hyperpyyaml(_rerooted(text, hparams_file, folder), overrides)
    checkpointer = hparams.get("checkpointer")
    if checkpointer is None:
        raise KeyError(f"{hparams_file}: no 'checkpointer' to recover the trained weights from")
    if checkpointer.recover_if_possible(min_key=min_key, max_key=max_key) is None:
        raise FileNotFoundError(f"{checkpointer.checkpoints_dir}: no checkpoint to load")
    for module in hparams.get("modules", {}).values():
        module.to(device).eval()
    return hparams


def _rerooted(text: str, hparams_file: Path, folder: Path) -> str:
    """Replace the training-time ``output_folder`` by the folder's location now."""
    match = re.search(r"^output_folder:\s*(\S+)\s*$", text, flags=re.MULTILINE)
    if match is None:
        raise KeyError(f"{hparams_file}: no top-level 'output_folder' key")
    old = match.group(1).strip("'\"").rstrip("/")
    if old == str(folder):
        return text
    return text.replace(f"{old}/", f"{folder}/").replace(f": {old}\n", f": {folder}\n")


@torch.no_grad()
def prepare_waveform(path: str | Path, sample_rate: int, device: str = "cpu") -> torch.Tensor:
    """Read ``path`` as mono at ``sample_rate``: a (1, time) batch of one."""
    from speechlobes.dataio.audio import read_audio

    wav, _ = read_audio(path, resample_to=sample_rate)
    return wav.unsqueeze(0).to(device)
