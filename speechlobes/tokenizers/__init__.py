"""Tokenizers for recipes: ``sentencepiece`` (SentencePiece, trained from a manifest column) and
``mbart`` (a pretrained MBart(-50) decoder's, over :mod:`speechlobes.processors.mbart`)."""

from speechlobes import lazy_submodules

__getattr__ = lazy_submodules(__name__)
