"""Hugging Face model folders for the inference interfaces.

- :func:`load_ctc_folder`: what an HF CTC folder (``config.json`` of a Wav2Vec2 / HuBERT /
  Wav2Vec2-Conformer ``*ForCTC`` model, its weights, ``preprocessor_config.json`` and a CTC
  tokenizer) gives :class:`~speechlobes.inference.transcriber.Transcriber`: the model behind
  the feature extractor's normalisation (:class:`CTCFolderModel`), greedy CTC (or, with
  ``beam_size > 1``, the prefix beam search of :mod:`speechlobes.decoders.ctc`) and the
  characters decoded as the tokenizer does.
- :func:`folder_detokenizer` / :func:`folder_normalizer`: what a SpeechEncoderDecoder folder
  says about its text and its waveforms, for :class:`~.translator.Translator`.

Example:
    >>> from speechlobes.inference.transcriber import Transcriber
    >>> asr = Transcriber.from_pretrained("wav2vec2-base-960h")  # doctest: +SKIP
    >>> asr.transcribe_file("speech.flac")  # doctest: +SKIP
    'HELLO WORLD'
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from speechlobes.decoders.ctc import CTCPrefixBeamSearcher, ctc_greedy_decode
from speechlobes.nnet.lengths import relative_to_absolute_lengths
from speechlobes.processing.waveform import normalize_waveforms
from speechlobes.processors import AutoProcessor, AutoTokenizer, Tokenizer
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


def normalized_rows(
    extractor: Wav2Vec2FeatureExtractor | None, wavs: torch.Tensor, wav_lens: torch.Tensor
) -> torch.Tensor:
    """A padded batch (batch, samples) with each row normalised over its own samples, as
    the extractor normalises one unpadded waveform (unchanged without normalisation)."""
    if extractor is None or not extractor.do_normalize:
        return wavs
    lengths = relative_to_absolute_lengths(wav_lens, wavs.shape[1])
    return normalize_waveforms(wavs, lengths, extractor.padding_value)


class CTCFolderModel(torch.nn.Module):
    """An HF ``*ForCTC`` model as the transcriber calls it: (waveforms, relative lengths) ->
    logits and relative frame lengths, each row normalised over its own samples (when the
    feature extractor normalises) and encoded as its own run (the speech-encoder contract;
    without an attention mask in the folder's config transformers would normalise and encode
    a padded row with its padding, so batches would change the text).

    Args:
        ctc: a ``*ForCTC`` model.
        extractor: the folder's feature extractor (normalisation and padding value).
    """

    def __init__(self, ctc: torch.nn.Module, extractor: Wav2Vec2FeatureExtractor) -> None:
        super().__init__()
        self.ctc = ctc
        self.extractor = extractor

    def encode(
        self, wavs: torch.Tensor, wav_lens: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if wav_lens is None:
            wav_lens = torch.ones(wavs.shape[0], device=wavs.device)
        wavs = normalized_rows(self.extractor, wavs, wav_lens)
        frames, frame_lens = self.ctc.base_model.encode(wavs, wav_lens)
        return self.ctc.lm_head(frames), frame_lens

    def forward(self, wavs: torch.Tensor, wav_lens: torch.Tensor | None = None) -> torch.Tensor:
        return self.encode(wavs, wav_lens)[0]


class CTCTokenizerText:
    """A folder's CTC tokenizer decoding ids the CTC search already collapsed (no grouping).

    Args:
        tokenizer: the folder's :mod:`speechlobes.processors` CTC tokenizer.
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, group_tokens=False)


def load_ctc_folder(
    folder: str | Path, beam_size: int = 1, device: str = "cpu"
) -> tuple[CTCFolderModel, CTCTokenizerText, Callable, int]:
    """(model, tokenizer, CTC search, sample rate) of an HF CTC folder, for
    :class:`~speechlobes.inference.transcriber.Transcriber`: greedy CTC for ``beam_size``
    1, else the prefix beam search of that width, the blank being the tokenizer's pad."""
    from speechlobes.lobes.hf_io import read_config

    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    model_type = read_config(folder).get("model_type")
    if model_type not in CTC_MODEL_TYPES:
        raise ValueError(
            f"{Path(folder) / CONFIG_FILE}: model_type {model_type!r}; a CTC folder must be "
            f"one of {list(CTC_MODEL_TYPES)}"
        )
    ctc = ctc_model_class(model_type).from_pretrained(folder)
    processor = AutoProcessor.from_pretrained(folder)
    model = CTCFolderModel(ctc, processor.feature_extractor).to(device).eval()
    blank = processor.tokenizer.pad_token_id
    if beam_size == 1:
        search = functools.partial(ctc_greedy_decode, blank_id=blank)
    else:
        search = CTCPrefixBeamSearcher(blank_id=blank, beam_size=beam_size)
    return model, CTCTokenizerText(processor.tokenizer), search, processor.sampling_rate


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


def folder_normalizer(folder: str | Path) -> Wav2Vec2FeatureExtractor | None:
    """The folder's feature extractor (how its waveforms are normalised); None without one."""
    try:
        return Wav2Vec2FeatureExtractor.from_pretrained(folder)
    except FileNotFoundError:
        return None
