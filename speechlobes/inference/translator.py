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
  (:class:`~speechlobes.processing.waveform.WaveformNormalizer`).

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

Example:
    >>> st = Translator.from_experiment("results/conformer_transformer_small/1986")  # doctest: +SKIP
    >>> st.translate_file("speech.wav")  # doctest: +SKIP
    'Hallo Welt'
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

from speechlobes.dataio.audio import read_resampled, resampled_length
from speechlobes.inference.experiment import ExperimentSpec, Need, load_experiment
from speechlobes.inference.inputs import InputTooLongError, check_long_enough, smallest_input
from speechlobes.nnet.lengths import lengths_to_padding_mask, relative_to_absolute_lengths

if TYPE_CHECKING:
    from speechlobes.processing.waveform import WaveformNormalizer

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


class Translator:
    """Speech translation with a SpeechEncoderDecoderModel; see the module docstring.

    Arguments:
        model: a :class:`SpeechEncoderDecoderModel` (in eval mode, on ``device``).
        tokenizer: turns generated ids (start and EOS removed) into text.
        sample_rate: the model's input rate (files are resampled to it).
        search_options: keyword arguments of ``model.generate`` (beams, lengths, ...).
        normalizer: a :class:`WaveformNormalizer` for models trained on normalised waveforms.
        device: where the inputs go.
        max_seconds: the longest file :meth:`translate_file` takes.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Detokenizer,
        sample_rate: int = 16000,
        search_options: dict[str, Any] | None = None,
        normalizer: WaveformNormalizer | None = None,
        device: str = "cpu",
        max_seconds: float = 60.0,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.sample_rate = sample_rate
        self.search_options = dict(search_options or {})
        self.normalizer = normalizer
        self.device = device
        self.max_seconds = max_seconds

    @classmethod
    def from_experiment(
        cls,
        folder: str | Path,
        min_key: str = "loss",
        device: str = "cpu",
        overrides: dict | None = None,
        trust_code: bool = False,
    ) -> Translator:
        """Load a CoVoST experiment's best checkpoint by ``min_key``; ``overrides`` replace
        YAML keys (a moved pretrained file), ``trust_code`` lifts the trust model (see
        :func:`load_experiment`)."""
        from speechlobes.processing.waveform import WaveformNormalizer

        hparams = load_experiment(
            folder, TRANSLATOR_SPEC, min_key, None, device, overrides, trust_code
        )
        normalizer = None
        if hparams.get("normalize_waveform"):  # the recipe normalised each utterance
            normalizer = WaveformNormalizer(sampling_rate=hparams["sample_rate"])
        return cls(
            hparams["model"],
            tokenizer() if callable(tokenizer := hparams["tokenizer"]) else tokenizer,
            hparams["sample_rate"],
            hparams["search_options"],
            normalizer,
            device,
        )

    @classmethod
    def from_pretrained(
        cls,
        folder: str | Path,
        tokenizer: Detokenizer | None = None,
        device: str = "cpu",
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
        )

    @torch.no_grad()
    def translate_batch(
        self, wavs: torch.Tensor, wav_lens: torch.Tensor | None = None, **generate_overrides: Any
    ) -> list[str]:
        """(batch, time) waveforms at the model's rate and relative lengths -> translations."""
        lengths = relative_to_absolute_lengths(
            wav_lens if wav_lens is not None else torch.ones(wavs.shape[0]), wavs.shape[1]
        )
        if self.normalizer is not None:
            rows = [wav[:length].cpu() for wav, length in zip(wavs, lengths.tolist(), strict=True)]
            wavs, mask = self.normalizer(rows)
        else:
            mask = (~lengths_to_padding_mask(lengths, wavs.shape[1])).long()
        hyps = self.model.generate(
            wavs.to(self.device),
            None if mask is None else mask.to(self.device),
            **{**self.search_options, **generate_overrides},
        )
        return [self.tokenizer.decode(self.strip_special(row)) for row in hyps.tolist()]

    def strip_special(self, ids: list[int]) -> list[int]:
        """Drop the start token and everything from the first EOS on."""
        ids = ids[1:]
        eos = self.model.config.eos_token_id
        return ids[: ids.index(eos)] if eos in ids else ids

    @functools.cached_property
    def min_samples(self) -> int:
        """The fewest samples the model takes (probed once, with one greedy step)."""

        def first_token(wavs: torch.Tensor) -> torch.Tensor:
            mask = torch.ones_like(wavs, dtype=torch.long)
            return self.model.generate(wavs.to(self.device), mask.to(self.device), 1)

        return smallest_input(first_token, limit=self.sample_rate)

    def translate_file(self, path: str | Path, **generate_overrides: Any) -> str:
        """The translation of one audio file (any rate: resampled; at most ``max_seconds``)."""
        path = str(path)
        total = resampled_length(path, self.sample_rate)
        if total > self.max_seconds * self.sample_rate:
            raise InputTooLongError(
                f"{path}: {total / self.sample_rate:.1f} s; the translator takes at most "
                f"{self.max_seconds:g} s in one pass (max_seconds / --max-seconds): split long "
                "recordings at pauses first"
            )
        if total < self.sample_rate:  # probe the model's minimum only for short files
            check_long_enough(path, total, self.min_samples, self.sample_rate)
        wav = read_resampled(path, self.sample_rate).unsqueeze(0)
        return self.translate_batch(wav, **generate_overrides)[0]


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
