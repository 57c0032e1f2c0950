"""The MBart / MBart-50 tokenizer: a SentencePiece model with fairseq ids and language codes.

A pretrained MBart folder holds ``sentencepiece.bpe.model`` (a SentencePiece model whose ids are
``<unk>=0, <s>=1, </s>=2``, then the pieces). The model sees the fairseq numbering instead:

- ``<s>=0, <pad>=1, </s>=2, <unk>=3``; piece ``p`` (SentencePiece id >= 3) has id ``p + 1``;
- the language codes follow the vocabulary in a fixed order (25 codes for MBart, 52 for
  MBart-50): code ``i`` has id ``len(sentencepiece) + 1 + i``;
- ``<mask>`` is last; ``len(tokenizer)`` counts everything.

``encode_as_ids`` gives the ids of the text's pieces only (like our SentencePiece tokenizer);
``encode_target`` lays them out as transformers' ``tokenizer(text_target=...)`` does:
MBart-50: ``[language code] tokens </s>``; MBart: ``tokens </s> [language code]``. For MBart-50
translation the decoder starts from ``</s>`` and the target language code is forced as the first
generated token (``forced_bos_token_id = tokenizer.target_language_id``).
"""

from __future__ import annotations

import os
from pathlib import Path

import sentencepiece

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


class MBartTokenizer:
    """Encode targets and decode hypotheses with an MBart(-50) SentencePiece model.

    Args:
        folder: folder holding ``sentencepiece.bpe.model`` (e.g. the decoder's folder), or the
            model file itself.
        target_language: language code of the targets, e.g. ``"de_DE"``.
        variant: ``"mbart-50"`` (52 language codes, targets ``[code] tokens </s>``) or
            ``"mbart"`` (25 codes, targets ``tokens </s> [code]``).

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
        >>> tokenizer.decode(ids), len(tokenizer)
        ('ein haus', 70)
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        target_language: str | None = None,
        variant: str = "mbart-50",
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"MBart tokenizer variant {variant!r}: choose one of {list(VARIANTS)}")
        path = Path(folder)
        if path.is_dir():
            path = path / MODEL_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: no MBart SentencePiece model; give the folder holding {MODEL_FILE}"
            )
        self.sp = sentencepiece.SentencePieceProcessor(model_file=str(path))
        layout = (self.sp.unk_id(), self.sp.bos_id(), self.sp.eos_id())
        if layout != (0, 1, 2):
            raise ValueError(
                f"{path}: MBart expects SentencePiece ids <unk>=0, <s>=1, </s>=2, found {layout}"
            )
        self.variant = variant
        first_code = len(self.sp) + FAIRSEQ_OFFSET
        self.lang_code_to_id = {code: first_code + i for i, code in enumerate(VARIANTS[variant])}
        self.mask_id = first_code + len(self.lang_code_to_id)
        if target_language is not None and target_language not in self.lang_code_to_id:
            raise ValueError(
                f"target_language {target_language!r} is not an {variant} language code; "
                f"choose one of {list(self.lang_code_to_id)}"
            )
        self.target_language = target_language
        self.target_language_id = self.lang_code_to_id.get(target_language)

    def __len__(self) -> int:
        return self.mask_id + 1

    def encode_as_ids(self, text: str) -> list[int]:
        """Model ids of the text's pieces, no special tokens."""
        return [UNK if i == 0 else i + FAIRSEQ_OFFSET for i in self.sp.encode(text)]

    def encode_target(self, text: str) -> list[int]:
        """Target ids: ``[code] tokens </s>`` (MBart-50) or ``tokens </s> [code]`` (MBart)."""
        if self.target_language_id is None:
            raise ValueError("encode_target needs the tokenizer's target_language")
        tokens = self.encode_as_ids(text)
        if self.variant == "mbart-50":
            return [self.target_language_id, *tokens, EOS]
        return [*tokens, EOS, self.target_language_id]

    def is_special(self, token_id: int) -> bool:
        """``<s>``, ``<pad>``, ``</s>``, ``<unk>``, language codes and ``<mask>``."""
        return token_id <= UNK or token_id >= len(self.sp) + FAIRSEQ_OFFSET

    def decode(self, ids: list[int]) -> str:
        """Text of the ids, special tokens (``<unk>`` included) left out, as transformers does:
        the pieces joined, word marks turned to spaces, the one leading space dropped."""
        for token_id in ids:
            if not 0 <= token_id < len(self):
                raise ValueError(
                    f"token id {token_id} is outside the vocabulary (0..{len(self) - 1})"
                )
        pieces = [self.sp.id_to_piece(i - FAIRSEQ_OFFSET) for i in ids if not self.is_special(i)]
        text = "".join(pieces).replace(SPACE, " ")
        return text[1:] if text.startswith(" ") else text
