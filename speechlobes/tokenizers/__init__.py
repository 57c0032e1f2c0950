"""Tokenizers: ``sentencepiece`` (SentencePiece, trained from a manifest column)."""
