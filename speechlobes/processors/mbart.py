"""The MBart / MBart-50 tokenizer: a SentencePiece vocabulary with fairseq ids and language codes.

A pretrained MBart folder holds ``sentencepiece.bpe.model`` (SentencePiece ids ``<unk>=0,
<s>=1, </s>=2``, then the pieces) or, saved by transformers 5, a ``tokenizer.json``. The model
sees the fairseq numbering:

- ``<s>=0, <pad>=1, </s>=2, <unk>=3``; piece ``p`` (SentencePiece id >= 3) has id ``p + 1``;
- the language codes follow the vocabulary in a fixed order (25 codes for MBart, 52 for
  MBart-50): code ``i`` has id ``len(sentencepiece) + 1 + i``;
- ``<mask>`` is last; ``len(tokenizer)`` counts everything.

The text is cut into pieces as transformers 5 does (a Unigram model over the pieces' scores in
the ``tokenizers`` library; MBart-50 first applies the model's normalisation table and folds
runs of spaces). Layouts (``tokenizer(text)`` for sources, ``tokenizer(text_target=...)`` for
labels): MBart-50 ``[language code] tokens </s>``; MBart ``tokens </s> [language code]``, with
``src_lang`` / ``tgt_lang``. For MBart-50 translation the decoder starts from ``</s>`` and the
target language code is forced as the first generated token
(``forced_bos_token_id = tokenizer.target_language_id``).

Example:
    >>> import tempfile, sentencepiece
    >>> folder = tempfile.mkdtemp()
    >>> sentencepiece.SentencePieceTrainer.train(
    ...     sentence_iterator=iter(["ein haus am see", "der hund im garten"] * 10),
    ...     model_prefix=f"{folder}/sentencepiece.bpe", vocab_size=16, minloglevel=2)
    >>> tokenizer = MBartTokenizer(folder, target_language="de_DE")
    >>> ids = tokenizer.encode_target("ein haus")
    >>> ids[0] == tokenizer.target_language_id == 16 + 1 + 2, ids[-1]
    (True, 2)
    >>> tokenizer.decode(ids, skip_special_tokens=True), len(tokenizer)
    ('ein haus', 70)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tokenizers import AddedToken as BackendAddedToken
from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers
from tokenizers import Tokenizer as Backend

from speechlobes.processors.base import read_tokenizer_config
from speechlobes.processors.fast import (
    FAIRSEQ_SPECIAL_TOKENS,
    TOKENIZER_FILE,
    FastTokenizer,
    load_tokenizer_file,
)
from speechlobes.processors.sentencepiece import load_sentencepiece

MODEL_FILE = "sentencepiece.bpe.model"

BOS, PAD, EOS, UNK = 0, 1, 2, 3
FAIRSEQ_OFFSET = 1  # SentencePiece id + 1 = model id, for ordinary pieces
SPACE = "\u2581"  # SentencePiece's word-start mark

MBART_LANGUAGE_CODES = (
    "ar_AR", "cs_CZ", "de_DE", "en_XX", "es_XX", "et_EE", "fi_FI", "fr_XX", "gu_IN", "hi_IN",
    "it_IT", "ja_XX", "kk_KZ", "ko_KR", "lt_LT", "lv_LV", "my_MM", "ne_NP", "nl_XX", "ro_RO",
    "ru_RU", "si_LK", "tr_TR", "vi_VN", "zh_CN",
)  # fmt: skip
MBART50_LANGUAGE_CODES = MBART_LANGUAGE_CODES + (
    "af_ZA", "az_AZ", "bn_IN", "fa_IR", "he_IL", "hr_HR", "id_ID", "ka_GE", "km_KH", "mk_MK",
    "ml_IN", "mn_MN", "mr_IN", "pl_PL", "ps_AF", "pt_XX", "sv_SE", "sw_KE", "ta_IN", "te_IN",
    "th_TH", "tl_XX", "uk_UA", "ur_PK", "xh_ZA", "gl_ES", "sl_SI",
)  # fmt: skip
VARIANTS = {"mbart-50": MBART50_LANGUAGE_CODES, "mbart": MBART_LANGUAGE_CODES}
TOKENIZER_CLASSES = {"mbart-50": "MBart50Tokenizer", "mbart": "MBartTokenizer"}


class MBartTokenizer(FastTokenizer):
    """MBart(-50) targets and hypotheses <-> ids; see the module docstring.

    Args:
        folder: folder holding ``sentencepiece.bpe.model`` or ``tokenizer.json`` (the latter
            is preferred, as in transformers), or the SentencePiece model file itself.
        target_language: language code of the targets (``tgt_lang``), e.g. ``"de_DE"``.
        variant: ``"mbart-50"`` (52 language codes, ``[code] tokens </s>``) or ``"mbart"``
            (25 codes, ``tokens </s> [code]``).
        source_language: language code of the inputs (``src_lang``).
        **config: further ``tokenizer_config.json`` keys.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        target_language: str | None = None,
        variant: str = "mbart-50",
        source_language: str = "en_XX",
        **config: Any,
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"MBart tokenizer variant {variant!r}: choose one of {list(VARIANTS)}")
        path = Path(folder)
        model_file = path / MODEL_FILE if path.is_dir() else path
        if path.is_dir() and (path / TOKENIZER_FILE).is_file():
            backend, files = load_tokenizer_file(path / TOKENIZER_FILE), {}
        elif model_file.is_file():
            backend = sentencepiece_backend(model_file, variant)
            files = {MODEL_FILE: model_file.read_bytes()}
        else:
            raise FileNotFoundError(
                f"{model_file}: no MBart SentencePiece model; give the folder holding "
                f"{MODEL_FILE} (or a {TOKENIZER_FILE})"
            )
        codes = VARIANTS[variant]
        defaults = dict(FAIRSEQ_SPECIAL_TOKENS)
        if variant == "mbart-50":
            del defaults["bos_token"]  # transformers' MBart-50 tokenizer has none (cls is <s>)
        super().__init__(
            backend, {**defaults, **config, "additional_special_tokens": list(codes)}, files
        )
        self.variant = variant
        self.lang_code_to_id = {code: self.backend.token_to_id(code) for code in codes}
        missing = [code for code, i in self.lang_code_to_id.items() if i is None]
        if missing:
            raise ValueError(f"{path}: the {variant} language codes {missing} are not in it")
        self.mask_id = self.backend.token_to_id(self.mask_token)
        self.src_lang = self._checked_language(source_language, "source_language")
        self.tgt_lang = self._checked_language(target_language, "target_language")

    @classmethod
    def from_pretrained(cls, folder: str | Path, **overrides: Any) -> MBartTokenizer:
        """A folder with its ``tokenizer_config.json`` (``tokenizer_class``, ``src_lang``,
        ``tgt_lang``); MBart-50 when the class does not say."""
        config = {**read_tokenizer_config(folder), **overrides}
        variant = (
            "mbart"
            if config.get("tokenizer_class", "").startswith("MBartTokenizer")
            else ("mbart-50")
        )
        return cls(
            folder,
            target_language=config.pop("tgt_lang", None),
            variant=variant,
            source_language=config.pop("src_lang", None) or "en_XX",
            **config,
        )

    def _checked_language(self, code: str | None, name: str) -> str | None:
        if code is not None and code not in self.lang_code_to_id:
            raise ValueError(
                f"{name} {code!r} is not an {self.variant} language code; "
                f"choose one of {list(self.lang_code_to_id)}"
            )
        return code

    @property
    def target_language(self) -> str | None:
        return self.tgt_lang

    @property
    def target_language_id(self) -> int | None:
        return self.lang_code_to_id.get(self.tgt_lang)

    # ----------------------------------------------------------------- text -> ids

    def encode_as_ids(self, text: str) -> list[int]:
        """Model ids of the text's pieces, no special tokens."""
        return self.encode_parts(text)[1]

    def encode_target(self, text: str) -> list[int]:
        """Target ids: ``[code] tokens </s>`` (MBart-50) or ``tokens </s> [code]`` (MBart)."""
        if self.tgt_lang is None:
            raise ValueError("encode_target needs the tokenizer's target_language")
        return self.encode(text, target=True)

    def encode_parts(
        self, text: str, target: bool = False
    ) -> tuple[list[int], list[int], list[int]]:
        ids = self.backend.encode(text, add_special_tokens=False).ids
        language = (self.tgt_lang or self.src_lang) if target else self.src_lang
        code = [self.lang_code_to_id[language]] if language is not None else []
        if self.variant == "mbart-50":
            return code, ids, [self.eos_token_id]
        return [], ids, [self.eos_token_id, *code]

    def is_special(self, token_id: int) -> bool:
        """``<s>``, ``<pad>``, ``</s>``, ``<unk>``, language codes and ``<mask>``."""
        return token_id in self.all_special_ids

    # ----------------------------------------------------------------- files

    def tokenizer_config(self) -> dict[str, Any]:
        config = super().tokenizer_config()
        config.update(
            tokenizer_class=TOKENIZER_CLASSES[self.variant],
            src_lang=self.src_lang,
            tgt_lang=self.tgt_lang,
        )
        return config


def sentencepiece_backend(model_file: Path, variant: str) -> Backend:
    """The pipeline transformers 5 builds from an MBart SentencePiece model (fairseq ids)."""
    sp = load_sentencepiece(model_file)
    layout = (sp.unk_id(), sp.bos_id(), sp.eos_id())
    if layout != (0, 1, 2):
        raise ValueError(
            f"{model_file}: MBart expects SentencePiece ids <unk>=0, <s>=1, </s>=2, found {layout}"
        )
    fairseq_first = ("bos_token", "pad_token", "eos_token", "unk_token")  # ids 0, 1, 2, 3
    vocab = [(FAIRSEQ_SPECIAL_TOKENS[role], 0.0) for role in fairseq_first]
    vocab += [(sp.id_to_piece(i), sp.get_score(i)) for i in range(3, len(sp))]
    vocab += [(code, 0.0) for code in VARIANTS[variant]]
    vocab += [(FAIRSEQ_SPECIAL_TOKENS["mask_token"], 0.0)]
    backend = Backend(models.Unigram(vocab, unk_id=UNK, byte_fallback=False))
    metaspace = dict(replacement=SPACE, prepend_scheme="always", split=True)
    if variant == "mbart-50":
        steps = [normalizers.Replace(Regex(" {2,}"), " ")]
        charsmap = precompiled_charsmap(model_file)
        if charsmap:
            steps.insert(0, normalizers.Precompiled(charsmap))
        backend.normalizer = normalizers.Sequence(steps)
        backend.pre_tokenizer = pre_tokenizers.Metaspace(**metaspace)
    else:
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(**metaspace)]
        )
    backend.decoder = decoders.Metaspace(**metaspace)
    mask = BackendAddedToken(FAIRSEQ_SPECIAL_TOKENS["mask_token"], lstrip=True, special=True)
    backend.add_special_tokens([mask])
    return backend


def precompiled_charsmap(model_file: Path) -> bytes:
    """The normalisation table SentencePiece stores in a model (empty when it has none)."""
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model_file.read_bytes())
    return proto.normalizer_spec.precompiled_charsmap
