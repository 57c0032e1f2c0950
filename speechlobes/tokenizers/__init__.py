"""Tokenizers: ``sentencepiece`` (SentencePiece, trained from a manifest column)."""

from speechlobes import lazy_submodules

__getattr__ = lazy_submodules(__name__)
