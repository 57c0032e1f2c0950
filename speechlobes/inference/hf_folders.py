"""Hugging Face model folders for the inference interfaces.

- :class:`CTCFolderTranscriber`: an HF CTC folder (``config.json`` of a Wav2Vec2 / HuBERT /
  Wav2Vec2-Conformer ``*ForCTC`` model, its weights, ``preprocessor_config.json`` and a CTC
  tokenizer) transcribes audio: the folder's processor prepares the waveforms, the model gives
  per-frame logits, and greedy CTC (or, with ``beam_size > 1``, the prefix beam search of
  :mod:`speechlobes.decoders.ctc`) gives the characters, decoded as the tokenizer does.
- :func:`folder_detokenizer` / :func:`folder_normalizer`: what a SpeechEncoderDecoder folder
  says about its text and its waveforms, for :class:`~.translator.Translator`.

Example:
    >>> asr = CTCFolderTranscriber.from_pretrained("wav2vec2-base-960h")  # doctest: +SKIP
    >>> asr.transcribe_file("speech.flac")  # doctest: +SKIP
    'HELLO WORLD'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from speechlobes.nnet.lengths import relative_to_absolute_lengths
from speechlobes.processors import AutoProcessor, AutoTokenizer, Processor, Tokenizer
from speechlobes.processors.feature_extraction import Wav2Vec2FeatureExtractor

CONFIG_FILE = "config.json"
CTC_MODEL_TYPES = ("wav2vec2", "hubert", "wav2vec2-conformer")


def ctc_model_class(model_type: str) -> type[torch.nn.Module]:
    """The CTC head class of a Wav2Vec2-family ``model_type``."""
    from speechlobes.lobes.wav2vec2 import (
        HubertForCTC,
        Wav2Vec2ConformerForCTC,
        Wav2Vec2ForCTC,
    )

    classes = (Wav2Vec2ForCTC, HubertForCTC, Wav2Vec2ConformerForCTC)
    return dict(zip(CTC_MODEL_TYPES, classes, strict=True))[model_type]


def is_hf_ctc_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder whose ``config.json`` names a ``*ForCTC`` model."""
    from speechlobes.lobes.hf_io import read_config

    if not (Path(path) / CONFIG_FILE).is_file():
        return False
    config = read_config(path)
    return any(name.endswith("ForCTC") for name in config.get("architectures") or [])


class CTCFolderTranscriber:
    """Speech recognition with an HF CTC folder; see the module docstring.

    Args:
        model: a ``*ForCTC`` model (in eval mode, on ``device``).
        processor: the folder's feature extractor and CTC tokenizer.
        beam_size: 1 for greedy CTC, more for the prefix beam search.
        device: where the inputs go.
    """

    def __init__(
        self, model: torch.nn.Module, processor: Processor, beam_size: int = 1, device: str = "cpu"
    ) -> None:
        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam_size}")
        self.model = model
        self.processor = processor
        self.beam_size = beam_size
        self.device = device

    @classmethod
    def from_pretrained(
        cls, folder: str | Path, beam_size: int = 1, device: str = "cpu"
    ) -> CTCFolderTranscriber:
        """Load the model and the processor of an HF CTC folder."""
        from speechlobes.lobes.hf_io import read_config

        model_type = read_config(folder).get("model_type")
        if model_type not in CTC_MODEL_TYPES:
            raise ValueError(
                f"{Path(folder) / CONFIG_FILE}: model_type {model_type!r}; a CTC folder must be "
                f"one of {list(CTC_MODEL_TYPES)}"
            )
        model = ctc_model_class(model_type).from_pretrained(folder).to(device).eval()
        return cls(model, AutoProcessor.from_pretrained(folder), beam_size, device)

    @property
    def sample_rate(self) -> int:
        return self.processor.sampling_rate

    @torch.no_grad()
    def transcribe_batch(
        self, wavs: torch.Tensor, wav_lens: torch.Tensor | None = None
    ) -> list[str]:
        """(batch, time) waveforms at the model's rate and relative lengths -> texts."""
        lengths = relative_to_absolute_lengths(
            wav_lens if wav_lens is not None else torch.ones(wavs.shape[0]), wavs.shape[1]
        )
        rows = [wav[:n].cpu() for wav, n in zip(wavs, lengths.tolist(), strict=True)]
        inputs = self.processor(
            rows, sampling_rate=self.sample_rate, padding=True, return_tensors="pt"
        ).to(self.device)
        logits = self.model(inputs.input_values, inputs.get("attention_mask")).logits
        frames = self.model.output_lengths(lengths).clamp(max=logits.shape[1]).tolist()
        tokenizer = self.processor.tokenizer
        if self.beam_size == 1:
            best = logits.argmax(-1).cpu()
            return [tokenizer.decode(row[:n]) for row, n in zip(best, frames, strict=True)]
        from speechlobes.decoders.ctc import ctc_prefix_beam_search

        nbests = ctc_prefix_beam_search(
            logits.log_softmax(-1).cpu(),
            torch.tensor(frames),
            blank_id=tokenizer.pad_token_id,
            beam_size=self.beam_size,
        )
        return [tokenizer.decode(nbest[0].tokens, group_tokens=False) for nbest in nbests]

    def transcribe_file(self, path: str | Path) -> str:
        """The transcript of one audio file (any rate: resampled)."""
        from speechlobes.dataio.audio import read_resampled

        return self.transcribe_batch(read_resampled(path, self.sample_rate).unsqueeze(0))[0]


class SpecialTokensSkipped:
    """A folder tokenizer as the translator uses it: ``decode(ids)`` leaves special tokens out.

    Args:
        tokenizer: a :mod:`speechlobes.processors` tokenizer.
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer

    def decode(self, ids: Any) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)


def folder_detokenizer(folder: str | Path) -> SpecialTokensSkipped:
    """The tokenizer an HF folder holds (any kind :mod:`speechlobes.processors.auto` reads)."""
    try:
        return SpecialTokensSkipped(AutoTokenizer.from_pretrained(folder))
    except FileNotFoundError as error:
        raise FileNotFoundError(
            f"{error}; or pass tokenizer= (an object with decode(ids) -> str)"
        ) from error


def folder_normalizer(folder: str | Path):
    """The waveform normaliser the folder's feature extractor describes (None without one)."""
    from speechlobes.processing.waveform import WaveformNormalizer

    try:
        extractor = Wav2Vec2FeatureExtractor.from_pretrained(folder)
    except FileNotFoundError:
        return None
    return WaveformNormalizer(
        do_normalize=extractor.do_normalize,
        return_attention_mask=extractor.return_attention_mask,
        padding_value=extractor.padding_value,
        sampling_rate=extractor.sampling_rate,
    )
