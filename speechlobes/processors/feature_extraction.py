"""Raw waveforms -> model inputs, as a folder's ``preprocessor_config.json`` describes them.

Transformers' ``Wav2Vec2FeatureExtractor`` (Wav2Vec2, HuBERT, Wav2Vec2-Conformer and the
SpeechEncoderDecoder models built on them): waveforms are padded with ``padding_value`` and,
with ``do_normalize``, each brought to zero mean and unit variance
(:func:`~speechlobes.processing.waveform.normalize_waveforms`). Which samples the statistics
cover follows transformers: without padding each waveform alone; padded with an attention
mask its valid samples only (the tail reset to ``padding_value``); padded without one
(``return_attention_mask: false``, as wav2vec2-base checkpoints were trained) the whole padded
row, zeros included.

The configuration is read from ``preprocessor_config.json`` or, in folders transformers 5
saved, from the ``feature_extractor`` entry of ``processor_config.json``; unknown keys are kept
and written back.

Example:
    >>> import numpy as np
    >>> extractor = Wav2Vec2FeatureExtractor(return_attention_mask=True)
    >>> waves = [np.linspace(-1, 1, 400), np.linspace(0, 3, 250)]
    >>> inputs = extractor(waves, sampling_rate=16000, padding=True, return_tensors="pt")
    >>> inputs.input_values.shape, inputs.attention_mask.sum(-1).tolist()
    (torch.Size([2, 400]), [400, 250])
    >>> round(float(inputs.input_values[1, :250].std(unbiased=False)), 4)
    1.0
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from speechlobes.processing.waveform import normalize_waveforms
from speechlobes.processors.base import read_json, write_json
from speechlobes.processors.outputs import (
    BatchEncoding,
    as_tensors,
    check_tensor_type,
    padded_length,
)

PREPROCESSOR_CONFIG = "preprocessor_config.json"
PROCESSOR_CONFIG = "processor_config.json"
EXTRACTOR_TYPE = "Wav2Vec2FeatureExtractor"


class Wav2Vec2FeatureExtractor:
    """Pads and normalises raw mono waveforms; see the module docstring.

    Args:
        feature_size: values per time step (1: a raw waveform).
        sampling_rate: the rate the model was trained at (inputs must match it).
        padding_value: what pads the waveforms.
        return_attention_mask: whether an attention mask comes back (and limits the
            normalisation statistics to the valid samples).
        do_normalize: zero mean, unit variance per waveform.
        padding_side: only ``"right"``.
        **extra: other configuration keys, kept for ``save_pretrained``.
    """

    model_input_names = ("input_values", "attention_mask")

    def __init__(
        self,
        feature_size: int = 1,
        sampling_rate: int = 16000,
        padding_value: float = 0.0,
        return_attention_mask: bool = False,
        do_normalize: bool = True,
        padding_side: str = "right",
        **extra: Any,
    ) -> None:
        if padding_side != "right":
            raise ValueError(f"padding_side {padding_side!r}: only 'right' is supported")
        if feature_size != 1:
            raise ValueError(f"feature_size {feature_size}: only raw waveforms (1) are supported")
        self.feature_size = feature_size
        self.sampling_rate = sampling_rate
        self.padding_value = padding_value
        self.return_attention_mask = return_attention_mask
        self.do_normalize = do_normalize
        self.padding_side = padding_side
        self.extra = extra

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> Wav2Vec2FeatureExtractor:
        """Read ``preprocessor_config.json`` (or ``processor_config.json``) of ``folder``."""
        path, config = read_extractor_config(folder)
        kind = config.get("feature_extractor_type", EXTRACTOR_TYPE)
        if kind != EXTRACTOR_TYPE:
            raise ValueError(
                f"{path}: feature_extractor_type {kind!r}; only {EXTRACTOR_TYPE} "
                "(raw waveforms in) is supported"
            )
        try:
            return cls(**config)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from error

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.extra,
            "feature_extractor_type": EXTRACTOR_TYPE,
            "feature_size": self.feature_size,
            "sampling_rate": self.sampling_rate,
            "padding_value": self.padding_value,
            "return_attention_mask": self.return_attention_mask,
            "do_normalize": self.do_normalize,
            "padding_side": self.padding_side,
        }

    def save_pretrained(self, folder: str | Path, **extra_config: Any) -> list[str]:
        """Write ``preprocessor_config.json`` (read by transformers 4 and 5 alike), with
        ``extra_config`` keys added."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / PREPROCESSOR_CONFIG, {**self.to_dict(), **extra_config})
        return [PREPROCESSOR_CONFIG]

    def __call__(
        self,
        raw_speech: Any,
        sampling_rate: int | None = None,
        padding: bool | str = False,
        max_length: int | None = None,
        truncation: bool = False,
        pad_to_multiple_of: int | None = None,
        return_attention_mask: bool | None = None,
        return_tensors: str | None = None,
    ) -> BatchEncoding:
        """One waveform (1-D array, list of floats or tensor) or a batch of them (a list, or a
        2-D array / tensor) -> ``input_values`` (+ ``attention_mask``).

        ``padding``: False (each row keeps its length), True / "longest", or "max_length"
        (with ``max_length``); ``truncation`` cuts rows to ``max_length``.
        ``return_tensors``: None (a list of float32 arrays), "np" or "pt".
        """
        check_tensor_type(return_tensors)
        if sampling_rate is not None and sampling_rate != self.sampling_rate:
            raise ValueError(
                f"audio at {sampling_rate} Hz but the model expects {self.sampling_rate} Hz: "
                "resample it first (speechlobes.dataio.audio.read_audio(path, resample_to=...))"
            )
        rows = waveform_rows(raw_speech)
        if truncation:
            if max_length is None:
                raise ValueError("truncation=True needs max_length")
            rows = [row[:max_length] for row in rows]
        lengths = torch.tensor([len(row) for row in rows])
        length = padded_length(lengths.tolist(), padding, max_length, pad_to_multiple_of)
        with_mask = (
            self.return_attention_mask if return_attention_mask is None else return_attention_mask
        )
        if length is None:
            values = [self._normalized(row[None])[0] for row in rows]
        else:
            batch = torch.full((len(rows), length), float(self.padding_value))
            for i, row in enumerate(rows):
                batch[i, : len(row)] = row
            values = list(self._normalized(batch, lengths if with_mask else None))
        fields = {"input_values": values}
        if with_mask:
            fields["attention_mask"] = [
                (torch.arange(len(v)) < n).int()
                for v, n in zip(values, lengths.tolist(), strict=True)
            ]
        return BatchEncoding({k: stacked(v, return_tensors) for k, v in fields.items()})

    def _normalized(self, batch: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if not self.do_normalize:
            return batch
        return normalize_waveforms(batch, lengths, self.padding_value)


def read_extractor_config(folder: str | Path) -> tuple[Path, dict[str, Any]]:
    """(file read, feature-extractor config) of a folder: ``preprocessor_config.json``, else
    the ``feature_extractor`` entry of ``processor_config.json``."""
    folder = Path(folder)
    path = folder / PREPROCESSOR_CONFIG
    if path.is_file():
        config = read_json(path)
    elif (path := folder / PROCESSOR_CONFIG).is_file():
        config = read_json(path).get("feature_extractor")
        if config is None:
            raise KeyError(f"{path}: no 'feature_extractor' entry")
    else:
        raise FileNotFoundError(
            f"{folder}: no {PREPROCESSOR_CONFIG} (nor {PROCESSOR_CONFIG}) describing the inputs"
        )
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected a JSON object for the feature extractor")
    return path, config


def waveform_rows(raw_speech: Any) -> list[torch.Tensor]:
    """One waveform or a batch -> a list of 1-D float32 tensors (error for anything else)."""
    if isinstance(raw_speech, (np.ndarray, torch.Tensor)):
        if raw_speech.ndim not in (1, 2):
            raise ValueError(
                f"expected mono waveforms: one (samples,) or a batch (batch, samples), got shape "
                f"{tuple(raw_speech.shape)}"
            )
        batch = raw_speech[None] if raw_speech.ndim == 1 else raw_speech
        return [torch.as_tensor(np.asarray(row, dtype=np.float32)) for row in batch]
    if isinstance(raw_speech, (list, tuple)) and raw_speech and not np.isscalar(raw_speech[0]):
        return [row for wave in raw_speech for row in _single_row(wave)]
    return _single_row(raw_speech)


def _single_row(wave: Any) -> list[torch.Tensor]:
    if isinstance(wave, torch.Tensor):
        wave = wave.detach().cpu().numpy()
    row = np.asarray(wave, dtype=np.float32)
    if row.ndim != 1:
        raise ValueError(f"expected a mono 1-D waveform, got shape {row.shape}")
    return [torch.from_numpy(row.copy())]


def stacked(rows: list[torch.Tensor], return_tensors: str | None) -> Any:
    """Rows -> a list of float32/int32 arrays (None), or one array ('np') / tensor ('pt')."""
    arrays = [row.numpy() for row in rows]
    return as_tensors(arrays, return_tensors, dtype=str(arrays[0].dtype))
