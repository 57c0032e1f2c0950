"""The MBart / MBart-50 tokenizer as recipes use it; it lives in
:mod:`speechlobes.processors.mbart`.

Recipes hold tokenizers that encode with ``encode_as_ids`` / ``encode_target`` and decode
hypotheses with ``decode(ids)``, special tokens (start, language code, ``</s>``) never reaching
the text; a recipe YAML's callable ``tokenizer`` is a factory to train. The processors' class
follows transformers instead (``tokenizer(text)``, ``decode`` keeping special tokens unless
``skip_special_tokens=True``), so recipes get this thin face over it; ``.tokenizer`` is the
transformers-style object.

Example:
    >>> import sentencepiece, tempfile
    >>> spm = f"{tempfile.mkdtemp()}/sentencepiece.bpe"
    >>> sentences = iter(["der hund spielt", "die katze schläft"] * 20)
    >>> sentencepiece.SentencePieceTrainer.train(
    ...     sentence_iterator=sentences, model_prefix=spm, vocab_size=24, minloglevel=2)
    >>> mbart = MBartTokenizer(f"{spm}.model", target_language="fr_XX", variant="mbart")
    >>> targets = mbart.encode_target("die katze")  # tokens </s> fr_XX
    >>> targets[-2:] == [2, mbart.target_language_id], mbart.decode(targets)
    (True, 'die katze')
"""

from __future__ import annotations

import os
from typing import Any

from speechlobes.processors import mbart
from speechlobes.processors.mbart import (
    MBART50_LANGUAGE_CODES,
    MBART_LANGUAGE_CODES,
    MODEL_FILE,
    VARIANTS,
)
from speechlobes.processors.outputs import id_list

__all__ = [
    "MBART50_LANGUAGE_CODES",
    "MBART_LANGUAGE_CODES",
    "MODEL_FILE",
    "VARIANTS",
    "MBartTokenizer",
]


class MBartTokenizer:
    """Encode targets and decode hypotheses with an MBart(-50) SentencePiece model.

    Args:
        folder: folder holding ``sentencepiece.bpe.model`` (e.g. the decoder's folder), or the
            model file itself.
        target_language: language code of the targets, e.g. ``"de_DE"``.
        variant: ``"mbart-50"`` (52 language codes, targets ``[code] tokens </s>``) or
            ``"mbart"`` (25 codes, targets ``tokens </s> [code]``).
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        target_language: str | None = None,
        variant: str = "mbart-50",
    ) -> None:
        self.tokenizer = mbart.MBartTokenizer(folder, target_language, variant)

    @property
    def variant(self) -> str:
        return self.tokenizer.variant

    @property
    def target_language(self) -> str | None:
        return self.tokenizer.target_language

    @property
    def target_language_id(self) -> int | None:
        return self.tokenizer.target_language_id

    @property
    def lang_code_to_id(self) -> dict[str, int]:
        return self.tokenizer.lang_code_to_id

    @property
    def mask_id(self) -> int:
        return self.tokenizer.mask_id

    def __len__(self) -> int:
        return len(self.tokenizer)

    def encode_as_ids(self, text: str) -> list[int]:
        """Model ids of the text's pieces, no special tokens."""
        return self.tokenizer.encode_as_ids(text)

    def encode_target(self, text: str) -> list[int]:
        """Target ids: ``[code] tokens </s>`` (MBart-50) or ``tokens </s> [code]`` (MBart)."""
        return self.tokenizer.encode_target(text)

    def is_special(self, token_id: int) -> bool:
        return self.tokenizer.is_special(token_id)

    def decode(self, ids: Any) -> str:
        """Text of the ids, special tokens (``<unk>`` included) left out; an id outside the
        vocabulary is an error (transformers would drop it silently)."""
        ids = id_list(ids)
        for token_id in ids:
            if not 0 <= token_id < len(self):
                raise ValueError(
                    f"token id {token_id} is outside the vocabulary (0..{len(self) - 1})"
                )
        return self.tokenizer.decode(ids, skip_special_tokens=True)
