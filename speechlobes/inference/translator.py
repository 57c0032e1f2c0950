"""Translate speech: audio file in, target-language text out, with a SpeechEncoderDecoder model.

Two sources of a model:

- an experiment folder of the CoVoST recipe (``recipes/CoVoST/ST/seq2seq``): its YAML provides
  what :data:`TRANSLATOR_SPEC` lists: ``model``, ``tokenizer`` (a SentencePiece factory whose
  model lives in the folder), ``search_options``, ``sample_rate`` and, optionally,
  ``normalize_waveform`` (each utterance normalised to zero mean and unit variance, as in
  training).
- a Hugging Face ``SpeechEncoderDecoderModel`` folder (``config.json``, weights,
  optionally ``generation_config.json`` and ``preprocessor_config.json``) with its
  SentencePiece model, or any tokenizer object with ``decode(ids) -> str``. With a
  ``preprocessor_config.json`` the waveform is normalised as its feature extractor says
  (:class:`~speechlobes.processors.feature_extraction.Wav2Vec2FeatureExtractor`).

The folder's tokenizer is read by :mod:`speechlobes.processors` (MBart / MBart-50
SentencePiece, a plain ``*.model``, Speech2Text, ``tokenizer.json``, WordPiece ``vocab.txt``,
byte-level ``vocab.json`` + ``merges.txt``; see :mod:`speechlobes.processors.auto`), special
tokens left out of the text; its feature extractor (``preprocessor_config.json`` or a
transformers 5 ``processor_config.json``) says how waveforms are normalised.

A generation config's ``forced_bos_token_id`` (MBart-50 forces the target-language code as
the first generated token) is passed on to ``generate``.

A file is translated in one pass, so its length is limited to ``max_seconds`` (default 60 s):
a longer file is an error saying so (split long recordings at pauses first; a translation cut
at arbitrary points would not be one). A file too short for the model is an error naming its
minimum.

Many files go through the model in length-sorted, padded batches (:meth:`Translator.
translate_files`, :mod:`speechlobes.inference.batching`). Each row is normalised over its own
samples and encoded as its own run (``generate(..., wav_lens=...)``), and the search is per
utterance, so a batch gives every file the translation of its one-by-one run (transformers'
padded batches without an attention mask normalise and encode the padding too).

Example:
    >>> st = Translator.from_experiment(  # doctest: +SKIP
    ...     "results/conformer_transformer_small/1986")
    >>> st.translate_file("speech.wav")  # doctest: +SKIP
    'Hallo Welt'
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import torch

from speechlobes.inference.batching import FileBatcher, FileResult
from speechlobes.inference.experiment import ExperimentSpec, Need, load_experiment
from speechlobes.inference.hf_folders import normalized_rows
from speechlobes.inference.inputs import Chunk, InputTooLongError
from speechlobes.processors.feature_extraction import Wav2Vec2FeatureExtractor

TRANSLATOR_SPEC = ExperimentSpec(
    "speech translation",
    (
        Need("model", torch.nn.Module, "a SpeechEncoderDecoderModel"),
        Need("tokenizer", object, "the target SentencePiece tokenizer or its factory"),
        Need("search_options", dict, "keyword arguments of generate"),
        Need("sample_rate", int, "the model's input rate"),
    ),
    optional=(Need("normalize_waveform", bool, "normalise each utterance as in training"),),
)
GENERATION_KEYS = (
    "num_beams",
    "length_penalty",
    "no_repeat_ngram_size",
    "early_stopping",
    "min_length",
    "max_new_tokens",
    "forced_bos_token_id",
)


class Detokenizer(Protocol):
    def decode(self, ids: list[int]) -> str: ...


class Translator(FileBatcher):
    """Speech translation with a SpeechEncoderDecoderModel; see the module docstring.

    Arguments:
        model: a :class:`SpeechEncoderDecoderModel` (in eval mode, on ``device``).
        tokenizer: turns generated ids (start and EOS removed) into text.
        sample_rate: the model's input rate (files are resampled to it).
        search_options: keyword arguments of ``model.generate`` (beams, lengths, ...).
        normalizer: the feature extractor of models trained on normalised waveforms.
        device: where the inputs go.
        max_seconds: the longest file :meth:`translate_file` takes.
        precision: ``fp32``, ``bf16`` or ``fp16`` (autocast; see :mod:`.batching`).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Detokenizer,
        sample_rate: int = 16000,
        search_options: dict[str, Any] | None = None,
        normalizer: Wav2Vec2FeatureExtractor | None = None,
        device: str = "cpu",
        max_seconds: float = 60.0,
        precision: str = "fp32",
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.sample_rate = sample_rate
        self.search_options = dict(search_options or {})
        self.normalizer = normalizer
        self.device = device
        self.max_seconds = max_seconds
        self.precision = precision

    @classmethod
    def from_experiment(
        cls,
        folder: str | Path,
        min_key: str = "loss",
        device: str = "cpu",
        overrides: dict | None = None,
        trust_code: bool = False,
        **options: Any,
    ) -> Translator:
        """Load a CoVoST experiment's best checkpoint by ``min_key``; ``overrides`` replace
        YAML keys (a moved pretrained file), ``trust_code`` lifts the trust model (see
        :func:`load_experiment`); ``options``: ``max_seconds``, ``precision``."""
        hparams = load_experiment(
            folder, TRANSLATOR_SPEC, min_key, None, device, overrides, trust_code
        )
        normalizer = None
        if hparams.get("normalize_waveform"):  # the recipe normalised each utterance
            normalizer = Wav2Vec2FeatureExtractor(sampling_rate=hparams["sample_rate"])
        return cls(
            hparams["model"],
            tokenizer() if callable(tokenizer := hparams["tokenizer"]) else tokenizer,
            hparams["sample_rate"],
            hparams["search_options"],
            normalizer,
            device,
            **options,
        )

    @classmethod
    def from_pretrained(
        cls,
        folder: str | Path,
        tokenizer: Detokenizer | None = None,
        device: str = "cpu",
        max_seconds: float = 60.0,
        precision: str = "fp32",
        **search_options: Any,
    ) -> Translator:
        """Load an HF-layout SpeechEncoderDecoder folder. ``tokenizer`` defaults to the
        folder's own; ``search_options`` override its generation config."""
        from speechlobes.inference.hf_folders import folder_detokenizer, folder_normalizer
        from speechlobes.lobes.speech_encoder_decoder import SpeechEncoderDecoderModel

        folder = Path(folder)
        model = SpeechEncoderDecoderModel.from_pretrained(folder).to(device).eval()
        normalizer = folder_normalizer(folder)
        return cls(
            model,
            tokenizer if tokenizer is not None else folder_detokenizer(folder),
            normalizer.sampling_rate if normalizer is not None else 16000,
            {**generation_options(folder), **search_options},
            normalizer,
            device,
            max_seconds,
            precision,
        )

    @torch.no_grad()
    def translate_batch(
        self, wavs: torch.Tensor, wav_lens: torch.Tensor | None = None, **generate_overrides: Any
    ) -> list[str]:
        """(batch, time) waveforms at the model's rate and relative lengths -> translations."""
        if wav_lens is None:
            wav_lens = torch.ones(wavs.shape[0])
        wavs = normalized_rows(self.normalizer, wavs.float(), wav_lens)
        hyps = self.model.generate(
            wavs.to(self.device),
            wav_lens=wav_lens.to(self.device),
            **{**self.search_options, **generate_overrides},
        )
        return [self.tokenizer.decode(self.strip_special(row)) for row in hyps.tolist()]

    def strip_special(self, ids: list[int]) -> list[int]:
        """Drop the start token and everything from the first EOS on."""
        ids = ids[1:]
        eos = self.model.config.eos_token_id
        return ids[: ids.index(eos)] if eos in ids else ids

    def probe(self, wavs: torch.Tensor) -> torch.Tensor:
        """One greedy step (for :attr:`min_samples`)."""
        return self.model.generate(wavs.to(self.device), max_new_tokens=1)

    # ------------------------------------------------------------------ the batching engine
    def plan(self, path: str, total: int) -> list[Chunk]:
        """The whole file, or an error for a file longer than ``max_seconds``."""
        if total > self.max_seconds * self.sample_rate:
            raise InputTooLongError(
                f"{path}: {total / self.sample_rate:.1f} s; the translator takes at most "
                f"{self.max_seconds:g} s in one pass (max_seconds / --max-seconds): split long "
                "recordings at pauses first"
            )
        return [Chunk(0, total, 0, None)]

    def run(self, wavs: torch.Tensor, wav_lens: torch.Tensor) -> list[str]:
        return self.translate_batch(wavs, wav_lens)

    def finish(self, path: str, chunks: list[Chunk], outputs: list[str]) -> str:
        return outputs[0]

    def translate_file(self, path: str | Path, **generate_overrides: Any) -> str:
        """The translation of one audio file (any rate: resampled; at most ``max_seconds``)."""
        if not generate_overrides:
            return self.process_file(str(path))
        variant = copy.copy(self)
        variant.search_options = {**self.search_options, **generate_overrides}
        return variant.process_file(str(path))

    def translate_files(
        self, paths: Iterable[str | Path], batch_size: int = 8, jobs: int = 0
    ) -> list[FileResult]:
        """One :class:`FileResult` (``value``: the translation) per file, in order, the files
        run in length-sorted batches of ``batch_size``."""
        return list(self.process(map(str, paths), batch_size, jobs))


def generation_options(folder: Path) -> dict[str, Any]:
    """The search options of ``generation_config.json`` that ``generate`` understands."""
    path = folder / "generation_config.json"
    if not path.is_file():
        return {}
    config = json.loads(path.read_text(encoding="utf-8"))
    options = {key: config[key] for key in GENERATION_KEYS if config.get(key) is not None}
    if "max_new_tokens" not in options and config.get("max_length") is not None:
        options["max_new_tokens"] = config["max_length"] - 1  # max_length counts the start token
    return options
