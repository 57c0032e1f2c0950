"""Pick a folder's tokenizer from its ``tokenizer_class`` and, where that is silent, its files.

What the folder holds -> the tokenizer it gets:

- ``tokenizer_class`` Wav2Vec2CTCTokenizer, or only ``vocab.json`` -> :class:`~.ctc.CTCTokenizer`
- ``tokenizer_class`` MBart(50)Tokenizer, or only ``sentencepiece.bpe.model``
  -> :class:`~.mbart.MBartTokenizer`
- ``tokenizer_class`` Speech2TextTokenizer, or ``vocab.json`` + one ``*.model``
  -> :class:`~.sentencepiece.Speech2TextTokenizer`
- ``tokenizer.json`` -> :class:`~.fast.FastTokenizer` as written
- ``vocab.txt`` (WordPiece) or ``vocab.json`` + ``merges.txt`` (byte-level BPE)
  -> :class:`~.fast.FastTokenizer` built
- one other ``*.model`` (SpeechT5, a recipe's model)
  -> :class:`~.sentencepiece.SentencePieceTokenizer`

Example:
    >>> import json, tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "vocab.json").write_text(json.dumps({"<pad>": 0, "<unk>": 1, "|": 2, "A": 3}))
    >>> type(AutoTokenizer.from_pretrained(folder)).__name__
    'CTCTokenizer'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from speechlobes.processors.base import Tokenizer, read_tokenizer_config
from speechlobes.processors.ctc import CTCTokenizer
from speechlobes.processors.fast import (
    BPE_MERGES,
    BPE_VOCAB,
    TOKENIZER_FILE,
    WORDPIECE_VOCAB,
    FastTokenizer,
    base_class_name,
)
from speechlobes.processors.mbart import MODEL_FILE as MBART_MODEL_FILE
from speechlobes.processors.mbart import MBartTokenizer
from speechlobes.processors.sentencepiece import SentencePieceTokenizer, Speech2TextTokenizer

CLASSES: dict[str, type[Tokenizer]] = {
    "Wav2Vec2CTCTokenizer": CTCTokenizer,
    "Wav2Vec2Tokenizer": CTCTokenizer,  # the older name of the same character tokenizer
    "MBartTokenizer": MBartTokenizer,
    "MBart50Tokenizer": MBartTokenizer,
    "Speech2TextTokenizer": Speech2TextTokenizer,
}
GENERIC_CLASSES = ("", "PreTrainedTokenizer", "TokenizersBackend", "SpeechT5Tokenizer")


def tokenizer_class(folder: str | Path) -> type[Tokenizer]:
    """The tokenizer class that reads ``folder`` (see the module docstring)."""
    folder = Path(folder)
    name = base_class_name(read_tokenizer_config(folder))
    if name in CLASSES:
        return CLASSES[name]
    files = {path.name for path in folder.iterdir()} if folder.is_dir() else set()
    models = [f for f in files if f.endswith(".model")]
    generic = name in GENERIC_CLASSES
    if TOKENIZER_FILE in files:
        return FastTokenizer
    if generic and models:
        if BPE_VOCAB in files and len(models) == 1:
            return Speech2TextTokenizer
        if models == [MBART_MODEL_FILE] and not name:
            return MBartTokenizer
        return SentencePieceTokenizer
    if WORDPIECE_VOCAB in files or {BPE_VOCAB, BPE_MERGES} <= files:
        return FastTokenizer
    if not name and BPE_VOCAB in files:
        return CTCTokenizer
    raise FileNotFoundError(
        f"{folder}: no tokenizer speechlobes can read (tokenizer_class {name or 'unset'!r}, "
        f"files {sorted(files)}); expected {TOKENIZER_FILE}, {WORDPIECE_VOCAB}, "
        f"{BPE_VOCAB} (+ {BPE_MERGES}) or a SentencePiece *.model. A tokenizer transformers "
        "reads can be re-saved there with save_pretrained, which writes a tokenizer.json"
    )


class AutoTokenizer:
    """``AutoTokenizer.from_pretrained(folder)``: the folder's tokenizer, whatever its kind."""

    @staticmethod
    def from_pretrained(folder: str | Path, **overrides: Any) -> Tokenizer:
        """Load the tokenizer of ``folder``; ``overrides`` replace its config keys."""
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: not a folder (give the model's local folder)")
        return tokenizer_class(folder).from_pretrained(folder, **overrides)
