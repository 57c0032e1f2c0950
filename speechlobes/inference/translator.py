"""Translate speech: audio file in, target-language text out, with a SpeechEncoderDecoder model.

Two sources of a model:

- an experiment folder of the CoVoST recipe (``recipes/CoVoST/ST/seq2seq``): its YAML provides
  ``model``, ``tokenizer`` (a SentencePiece factory whose model lives in the folder),
  ``search_options`` and ``sample_rate``. The waveform goes in raw, as in training.
- a Hugging Face ``SpeechEncoderDecoderModel`` folder (``config.json``, weights,
  optionally ``generation_config.json`` and ``preprocessor_config.json``) with its
  SentencePiece model, or any tokenizer object with ``decode(ids) -> str``. With a
  ``preprocessor_config.json`` the waveform is normalised as its feature extractor says
  (:class:`~speechlobes.processing.waveform.WaveformNormalizer`).

Tokenizer files: ``sentencepiece.bpe.model`` (the MBart / XLM-R convention) is read with
fairseq's id layout, as transformers' ``MBartTokenizer`` does: ids 0-3 are ``<s> <pad> </s>
<unk>``, SentencePiece piece ``p`` has id ``p + 1``, and ids past the SentencePiece vocabulary
are language codes and ``<mask>``; all of these special ids are dropped when decoding. Any
other single ``*.model`` file is used with its own ids. A folder with neither but a
``tokenizer.json`` (a Hugging Face fast tokenizer) is decoded with the ``tokenizers`` package,
special tokens skipped.

Not supported: ``forced_bos_token_id`` of a generation config (MBart-50 multilingual models
force the target-language code as the first generated token); generation then starts
without it and a warning says so.

Example:
    >>> st = Translator.from_experiment("results/conformer_transformer_small/1986")  # doctest: +SKIP
    >>> st.translate_file("speech.wav")  # doctest: +SKIP
    'Hallo Welt'
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

from speechlobes.inference.experiment import load_experiment, prepare_waveform
from speechlobes.nnet.lengths import lengths_to_padding_mask, relative_to_absolute_lengths

if TYPE_CHECKING:
    from speechlobes.processing.waveform import WaveformNormalizer

logger = logging.getLogger(__name__)

FAIRSEQ_SPM_FILE = "sentencepiece.bpe.model"
FAIRSEQ_SPECIAL_IDS = 4  # <s>, <pad>, </s>, <unk>
FAIRSEQ_OFFSET = 1
GENERATION_KEYS = (
    "num_beams",
    "length_penalty",
    "no_repeat_ngram_size",
    "early_stopping",
    "min_length",
    "max_new_tokens",
)


class Detokenizer(Protocol):
    def decode(self, ids: list[int]) -> str: ...


class FairseqSentencePiece:
    """Decode ids of fairseq-style vocabularies (MBart, XLM-R) built on a SentencePiece model.

    Example:
        >>> tokenizer = FairseqSentencePiece("mbart/sentencepiece.bpe.model")  # doctest: +SKIP
        >>> tokenizer.decode([2, 250004, 35378, 2])  # doctest: +SKIP
        'Hello'
    """

    def __init__(self, model_file: str | Path) -> None:
        import sentencepiece

        self.sp = sentencepiece.SentencePieceProcessor(model_file=str(model_file))

    def decode(self, ids: Sequence[int]) -> str:
        """Text of fairseq ids; special tokens and language codes are skipped."""
        last_piece = self.sp.get_piece_size() - 1 + FAIRSEQ_OFFSET
        pieces = [i - FAIRSEQ_OFFSET for i in ids if FAIRSEQ_SPECIAL_IDS <= i <= last_piece]
        return self.sp.decode(pieces)


class Translator:
    """Speech translation with a SpeechEncoderDecoderModel; see the module docstring.

    Arguments:
        model: a :class:`SpeechEncoderDecoderModel` (in eval mode, on ``device``).
        tokenizer: turns generated ids (start and EOS removed) into text.
        sample_rate: the model's input rate (files are resampled to it).
        search_options: keyword arguments of ``model.generate`` (beams, lengths, ...).
        normalizer: a :class:`WaveformNormalizer` for models trained on normalised waveforms.
        device: where the inputs go.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Detokenizer,
        sample_rate: int = 16000,
        search_options: dict[str, Any] | None = None,
        normalizer: WaveformNormalizer | None = None,
        device: str = "cpu",
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.sample_rate = sample_rate
        self.search_options = dict(search_options or {})
        self.normalizer = normalizer
        self.device = device

    @classmethod
    def from_experiment(
        cls,
        folder: str | Path,
        min_key: str = "loss",
        device: str = "cpu",
        overrides: dict | None = None,
    ) -> Translator:
        """Load a CoVoST experiment's best checkpoint by ``min_key``; ``overrides`` replace
        YAML keys (a moved pretrained file, see :func:`load_experiment`)."""
        hparams = load_experiment(folder, min_key=min_key, device=device, overrides=overrides)
        return cls(
            hparams["model"],
            hparams["tokenizer"](),
            hparams["sample_rate"],
            hparams["search_options"],
            device=device,
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
        folder's SentencePiece model; ``search_options`` override its generation config."""
        from speechlobes.lobes.models.speech_encoder_decoder import SpeechEncoderDecoderModel
        from speechlobes.processing.waveform import WaveformNormalizer

        folder = Path(folder)
        model = SpeechEncoderDecoderModel.from_pretrained(folder).to(device).eval()
        normalizer = None
        if (folder / "preprocessor_config.json").is_file():
            normalizer = WaveformNormalizer.from_pretrained(folder)
        return cls(
            model,
            tokenizer if tokenizer is not None else folder_tokenizer(folder),
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

    def translate_file(self, path: str | Path, **generate_overrides: Any) -> str:
        """The translation of one audio file (any rate: resampled)."""
        wav = prepare_waveform(path, self.sample_rate)
        return self.translate_batch(wav, **generate_overrides)[0]


class FastTokenizerFile:
    """Decode with a Hugging Face ``tokenizer.json`` (needs the ``tokenizers`` package)."""

    def __init__(self, path: str | Path) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError as error:
            raise ImportError(
                f"{path}: reading a tokenizer.json needs the 'tokenizers' package "
                "(pip install tokenizers), or pass tokenizer= to Translator.from_pretrained"
            ) from error
        self.tokenizer = Tokenizer.from_file(str(path))

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)


def folder_tokenizer(folder: Path) -> Detokenizer:
    """The tokenizer shipped in an HF folder (see the module docstring for the order)."""
    from speechlobes.tokenizers.sentencepiece import SentencePiece

    if (folder / FAIRSEQ_SPM_FILE).is_file():
        return FairseqSentencePiece(folder / FAIRSEQ_SPM_FILE)
    models = sorted(folder.glob("*.model"))
    if len(models) == 1:
        return SentencePiece.from_file(models[0])
    if not models and (folder / "tokenizer.json").is_file():
        return FastTokenizerFile(folder / "tokenizer.json")
    raise FileNotFoundError(
        f"{folder}: expected one SentencePiece model ({FAIRSEQ_SPM_FILE} or *.model) or a "
        f"tokenizer.json, found models {[m.name for m in models]}; pass tokenizer= (an object "
        "with decode(ids) -> str)"
    )


def generation_options(folder: Path) -> dict[str, Any]:
    """The search options of ``generation_config.json`` that ``generate`` understands."""
    path = folder / "generation_config.json"
    if not path.is_file():
        return {}
    config = json.loads(path.read_text(encoding="utf-8"))
    if config.get("forced_bos_token_id") is not None:
        logger.warning(
            "%s: forced_bos_token_id=%s is not supported; generation starts without it",
            path,
            config["forced_bos_token_id"],
        )
    options = {key: config[key] for key in GENERATION_KEYS if config.get(key) is not None}
    if "max_new_tokens" not in options and config.get("max_length") is not None:
        options["max_new_tokens"] = config["max_length"] - 1  # max_length counts the start token
    return options
