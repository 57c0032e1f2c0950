"""A processor: the feature extractor and the tokenizer of one model folder, called as one.

``processor(waveforms, sampling_rate=16000, padding=True, return_tensors="pt")`` gives the
model's ``input_values`` (+ ``attention_mask``); ``processor(text=..., return_tensors="pt")``
gives label ids; with both, the label ids come back as ``labels`` beside the inputs, ready for
``model(**inputs).loss``. ``decode`` / ``batch_decode`` are the tokenizer's (CTC grouping for a
CTC tokenizer). ``save_pretrained`` writes ``preprocessor_config.json`` and the tokenizer files;
``from_pretrained`` reads them back (or a transformers 5 ``processor_config.json``).

Example:
    >>> import json, tempfile, torch
    >>> folder = tempfile.mkdtemp()
    >>> vocab = {"<pad>": 0, "<unk>": 1, "|": 2, "A": 3, "B": 4}
    >>> _ = open(f"{folder}/vocab.json", "w").write(json.dumps(vocab))
    >>> _ = open(f"{folder}/preprocessor_config.json", "w").write("{}")
    >>> processor = AutoProcessor.from_pretrained(folder)
    >>> inputs = processor(torch.randn(800), sampling_rate=16000, text="ab ba",
    ...                    return_tensors="pt")
    >>> inputs.input_values.shape, inputs.labels.tolist()
    (torch.Size([1, 800]), [[1, 1, 2, 1, 1]])
    >>> processor.batch_decode(torch.tensor([[3, 3, 0, 4, 2, 4, 0, 0]]))
    ['AB B']
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from speechlobes.processors.auto import AutoTokenizer
from speechlobes.processors.base import Tokenizer
from speechlobes.processors.feature_extraction import Wav2Vec2FeatureExtractor
from speechlobes.processors.outputs import BatchEncoding

PROCESSOR_CLASS = "Wav2Vec2Processor"


class Processor:
    """A feature extractor and a tokenizer; see the module docstring.

    Args:
        feature_extractor: turns waveforms into model inputs.
        tokenizer: turns text into ids and ids into text.
    """

    def __init__(self, feature_extractor: Wav2Vec2FeatureExtractor, tokenizer: Tokenizer) -> None:
        self.feature_extractor = feature_extractor
        self.tokenizer = tokenizer

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> Processor:
        """The feature extractor and the tokenizer of a local model folder."""
        return cls(
            Wav2Vec2FeatureExtractor.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
        )

    def save_pretrained(self, folder: str | Path) -> list[str]:
        """Write ``preprocessor_config.json`` and the tokenizer files, both naming the
        processor class transformers builds from them; returns the files' names."""
        names = self.feature_extractor.save_pretrained(folder, processor_class=PROCESSOR_CLASS)
        return names + self.tokenizer.save_pretrained(folder, processor_class=PROCESSOR_CLASS)

    @property
    def sampling_rate(self) -> int:
        return self.feature_extractor.sampling_rate

    @property
    def model_input_names(self) -> list[str]:
        return [*self.feature_extractor.model_input_names, "labels"]

    def __call__(self, audio: Any = None, text: Any = None, **options: Any) -> BatchEncoding:
        """Waveforms -> model inputs, text -> label ids, or both (labels beside the inputs).

        Options go to whichever of the feature extractor and the tokenizer takes them
        (``sampling_rate``, ``padding``, ``max_length``, ``return_tensors``, ...).
        """
        if audio is None and text is None:
            raise ValueError("pass audio (waveforms) or text (labels) to the processor")
        audio_options = _accepted(self.feature_extractor.__call__, options)
        text_options = _accepted(self.tokenizer.__call__, options)
        unknown = set(options) - set(audio_options) - set(text_options)
        if unknown:
            raise TypeError(f"unknown processor options {sorted(unknown)}")
        if text is not None:
            encodings = self.tokenizer(text, **text_options)
            if audio is None:
                return encodings
        inputs = self.feature_extractor(audio, **audio_options)
        if text is not None:
            inputs["labels"] = encodings["input_ids"]
        return inputs

    def decode(self, token_ids: Any, **options: Any) -> str:
        """The tokenizer's ``decode``."""
        return self.tokenizer.decode(token_ids, **options)

    def batch_decode(self, sequences: Any, **options: Any) -> list[str]:
        """The tokenizer's ``batch_decode``."""
        return self.tokenizer.batch_decode(sequences, **options)


class AutoProcessor:
    """``AutoProcessor.from_pretrained(folder)``: the :class:`Processor` of a model folder."""

    @staticmethod
    def from_pretrained(folder: str | Path) -> Processor:
        return Processor.from_pretrained(folder)


def _accepted(function: Any, options: dict[str, Any]) -> dict[str, Any]:
    """The options ``function`` names among its parameters."""
    names = inspect.signature(function).parameters
    return {key: value for key, value in options.items() if key in names}
