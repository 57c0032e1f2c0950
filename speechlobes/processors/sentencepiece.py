"""Tokenizers over a plain SentencePiece model, run by the ``sentencepiece`` library.

:class:`SentencePieceTokenizer`: one ``*.model`` file whose own ids are the model's ids
(SpeechT5's ``spm_char.model``, or a model a recipe trained). Special tokens (the config's, else
the model's own ``<unk>``, ``<s>``, ``</s>``, ``<pad>`` pieces) are cut out of the text whole;
the rest is split by SentencePiece. ``add_bos_token`` / ``add_eos_token`` put ``<s>`` / ``</s>``
around (SpeechT5 appends ``</s>``). Decoding joins the pieces, turns the word marks into spaces
and strips the ends, as transformers' SentencePiece tokenizers do (an unknown id reads
``<unk>`` unless special tokens are skipped).

:class:`Speech2TextTokenizer`: a Speech2Text folder, ``vocab.json`` (piece -> id, fairseq's
numbering) beside ``sentencepiece.bpe.model``: pieces are looked up in ``vocab.json``, ``</s>``
is appended (after a leading ``<lang:xx>`` code for multilingual models, ``tgt_lang``), and
decoding runs SentencePiece over the pieces between special tokens (upper-cased with
``do_upper_case``).

Example:
    >>> import tempfile, sentencepiece
    >>> folder = tempfile.mkdtemp()
    >>> sentencepiece.SentencePieceTrainer.train(
    ...     sentence_iterator=iter(["ein haus am see", "der hund im garten"] * 10),
    ...     model_prefix=f"{folder}/spm", vocab_size=16, minloglevel=2)
    >>> tokenizer = SentencePieceTokenizer(f"{folder}/spm.model", add_eos_token=True)
    >>> ids = tokenizer("der hund").input_ids
    >>> ids[-1] == tokenizer.eos_token_id, tokenizer.decode(ids, skip_special_tokens=True)
    (True, 'der hund')
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import sentencepiece

from speechlobes.processors.added_tokens import (
    AddedToken,
    read_added_tokens,
    split_on_added_tokens,
)
from speechlobes.processors.base import Tokenizer, read_json, read_tokenizer_config, write_json

SPACE = "\u2581"  # SentencePiece's word-start mark
SPEECHT5_CLASS = "SpeechT5Tokenizer"
SPEECH2TEXT_CLASS = "Speech2TextTokenizer"
SPEECH2TEXT_VOCAB = "vocab.json"
SPEECH2TEXT_MODEL = "sentencepiece.bpe.model"
SPEECH2TEXT_LANGUAGES = {"mustc": ["pt", "fr", "ru", "nl", "ro", "it", "es", "de"]}


class SentencePieceTokenizer(Tokenizer):
    """A plain SentencePiece model; see the module docstring.

    Args:
        model_file: the ``*.model`` file.
        **config: ``tokenizer_config.json`` keys (special tokens, ``add_bos_token``,
            ``add_eos_token``, ``added_tokens_decoder``, ``tokenizer_class``).
    """

    def __init__(self, model_file: str | os.PathLike, **config: Any) -> None:
        path = Path(model_file)
        self.sp = load_sentencepiece(path)
        self.model_file_name = path.name
        self.model_bytes = path.read_bytes()
        speecht5 = config.get("tokenizer_class") == SPEECHT5_CLASS
        defaults = {"add_eos_token": speecht5, **self.model_special_tokens()}
        super().__init__({**defaults, **config})
        self.add_bos_token = bool(self.config.get("add_bos_token"))
        self.add_eos_token = bool(self.config.get("add_eos_token"))
        self.added_tokens = self._read_added_tokens()
        self.added_token_ids = {token.content: i for i, token in self.added_tokens.items()}

    @classmethod
    def from_pretrained(cls, folder: str | Path, **overrides: Any) -> SentencePieceTokenizer:
        """The folder's one ``*.model`` file (``vocab_file`` of the config when it names it)."""
        folder = Path(folder)
        config = {**read_tokenizer_config(folder), **overrides}
        return cls(single_model_file(folder, config.get("vocab_file")), **config)

    def model_special_tokens(self) -> dict[str, str]:
        """The special pieces the model was trained with (those whose id is not -1)."""
        ids = {
            "unk_token": self.sp.unk_id(),
            "bos_token": self.sp.bos_id(),
            "eos_token": self.sp.eos_id(),
            "pad_token": self.sp.pad_id(),
        }
        return {role: self.sp.id_to_piece(i) for role, i in ids.items() if i >= 0}

    def _read_added_tokens(self) -> dict[int, AddedToken]:
        written = read_added_tokens(self.config)
        if written:
            return written
        tokens: dict[int, AddedToken] = {}
        next_id = self.base_vocab_size()
        for content in self.all_special_tokens:
            index = self.piece_id(content)
            if self.piece(index) != content:
                index, next_id = next_id, next_id + 1
            tokens[index] = AddedToken(content, special=True)
        return tokens

    # ------------------------------------------------------------- pieces (Speech2Text: vocab.json)

    def base_vocab_size(self) -> int:
        return len(self.sp)

    def piece_id(self, piece: str) -> int:
        return self.sp.piece_to_id(piece)

    def piece(self, index: int) -> str:
        if not 0 <= index < len(self.sp):
            raise ValueError(f"token id {index} is outside the vocabulary (0..{len(self) - 1})")
        return self.sp.id_to_piece(index)

    def pieces_to_string(self, pieces: list[str]) -> str:
        return "".join(pieces).replace(SPACE, " ").strip()

    # ----------------------------------------------------------------- vocabulary

    def get_vocab(self) -> dict[str, int]:
        vocab = {self.piece(i): i for i in range(self.base_vocab_size())}
        return {**vocab, **self.added_token_ids}

    def __len__(self) -> int:
        return len(self.get_vocab())

    def convert_tokens_to_ids(self, tokens: str | list[str]) -> int | list[int]:
        if isinstance(tokens, str):
            return self.added_token_ids.get(tokens, self.piece_id(tokens))
        return [self.convert_tokens_to_ids(token) for token in tokens]

    def convert_ids_to_tokens(self, ids: int | list[int]) -> str | list[str]:
        if isinstance(ids, int):
            token = self.added_tokens.get(ids)
            return token.content if token is not None else self.piece(ids)
        return [self.convert_ids_to_tokens(i) for i in ids]

    # ----------------------------------------------------------------- text <-> ids

    def encode_parts(
        self, text: str, target: bool = False
    ) -> tuple[list[int], list[int], list[int]]:
        by_content = {token.content: token for token in self.added_tokens.values()}
        ids: list[int] = []
        for chunk, added in split_on_added_tokens(text, by_content):
            if added:
                ids.append(self.added_token_ids[chunk])
            else:
                ids.extend(self.piece_id(p) for p in self.sp.encode(chunk, out_type=str))
        before = [self.bos_token_id] if self.add_bos_token and self.bos_token else []
        after = [self.eos_token_id] if self.add_eos_token and self.eos_token else []
        return before, ids, after

    def _decode(self, ids: list[int], skip_special_tokens: bool) -> str:
        skipped = set(self.all_special_ids) if skip_special_tokens else set()
        return self.pieces_to_string(
            [self.convert_ids_to_tokens(i) for i in ids if i not in skipped]
        )

    # ----------------------------------------------------------------- files

    def tokenizer_config(self) -> dict[str, Any]:
        config = super().tokenizer_config()
        config.update(
            add_bos_token=self.add_bos_token,
            add_eos_token=self.add_eos_token,
            added_tokens_decoder={
                str(i): token.to_config() for i, token in sorted(self.added_tokens.items())
            },
        )
        config.setdefault("vocab_file", self.model_file_name)
        return config

    def save_vocabulary(self, folder: Path) -> list[str]:
        (folder / self.model_file_name).write_bytes(self.model_bytes)
        return [self.model_file_name]


class Speech2TextTokenizer(SentencePieceTokenizer):
    """A Speech2Text folder: ``vocab.json`` ids over a SentencePiece model; see the module
    docstring.

    Args:
        vocab: piece -> id (``vocab.json``).
        model_file: the SentencePiece model (``sentencepiece.bpe.model``).
        **config: ``tokenizer_config.json`` keys (``do_upper_case``, ``tgt_lang``,
            ``lang_codes``, special tokens).
    """

    def __init__(self, vocab: dict[str, int], model_file: str | os.PathLike, **config: Any) -> None:
        self.encoder = dict(vocab)
        self.decoder = {i: piece for piece, i in self.encoder.items()}
        defaults = {
            "bos_token": "<s>",
            "eos_token": "</s>",
            "unk_token": "<unk>",
            "pad_token": "<pad>",
        }
        languages = SPEECH2TEXT_LANGUAGES.get(config.get("lang_codes"), [])
        lang_tokens = [f"<lang:{code}>" for code in languages]
        given = config.pop("additional_special_tokens", None) or []
        extra = list(dict.fromkeys([*lang_tokens, *given]))
        super().__init__(
            model_file,
            **{**defaults, **config, "add_eos_token": True, "additional_special_tokens": extra},
        )
        self.do_upper_case = bool(self.config.get("do_upper_case", False))
        # transformers takes the codes' ids from the SentencePiece model, not from vocab.json
        self.lang_code_to_id = {
            code: self.sp.piece_to_id(t) for code, t in zip(languages, lang_tokens, strict=True)
        }
        self.tgt_lang = self.config.get("tgt_lang") or (languages[0] if languages else None)

    @classmethod
    def from_pretrained(cls, folder: str | Path, **overrides: Any) -> Speech2TextTokenizer:
        folder = Path(folder)
        config = {**read_tokenizer_config(folder), **overrides}
        vocab_path = folder / SPEECH2TEXT_VOCAB
        if not vocab_path.is_file():
            raise FileNotFoundError(f"{vocab_path}: a Speech2Text folder needs {SPEECH2TEXT_VOCAB}")
        model = single_model_file(folder, config.get("spm_file", SPEECH2TEXT_MODEL))
        return cls(read_json(vocab_path), model, **config)

    def base_vocab_size(self) -> int:
        return len(self.encoder)

    def piece_id(self, piece: str) -> int:
        return self.encoder.get(piece, self.encoder.get(self.unk_token))

    def piece(self, index: int) -> str:
        return self.decoder.get(index, self.unk_token)

    def get_vocab(self) -> dict[str, int]:
        return {**self.encoder, **self.added_token_ids}

    def encode_parts(
        self, text: str, target: bool = False
    ) -> tuple[list[int], list[int], list[int]]:
        _, ids, after = super().encode_parts(text, target)
        before = [self.lang_code_to_id[self.tgt_lang]] if self.lang_code_to_id else []
        return before, ids, after

    def pieces_to_string(self, pieces: list[str]) -> str:
        special = set(self.all_special_tokens)
        text, run = "", []
        for piece in [*pieces, None]:
            if piece is not None and piece not in special:
                run.append(piece)
                continue
            decoded = self.sp.decode(run)
            text += (decoded.upper() if self.do_upper_case else decoded) + (
                f"{piece} " if piece is not None else ""
            )
            run = []
        return text.strip()

    def tokenizer_config(self) -> dict[str, Any]:
        config = super().tokenizer_config()
        config.pop("vocab_file", None)
        config.update(
            tokenizer_class=SPEECH2TEXT_CLASS,
            do_upper_case=self.do_upper_case,
            tgt_lang=self.tgt_lang,
            spm_file=self.model_file_name,
        )
        return config

    def save_vocabulary(self, folder: Path) -> list[str]:
        write_json(folder / SPEECH2TEXT_VOCAB, self.encoder)
        return [SPEECH2TEXT_VOCAB, *super().save_vocabulary(folder)]


def load_sentencepiece(path: Path) -> sentencepiece.SentencePieceProcessor:
    """A SentencePiece model, with an error naming the file when it cannot be read."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no SentencePiece model there")
    try:
        return sentencepiece.SentencePieceProcessor(model_file=str(path))
    except (RuntimeError, OSError) as error:
        raise ValueError(f"{path}: not a SentencePiece model ({error})") from error


def single_model_file(folder: Path, name: str | None = None) -> Path:
    """``folder/name`` when given and present, else the folder's only ``*.model`` file."""
    if name and (folder / Path(name).name).is_file():
        return folder / Path(name).name
    models = sorted(folder.glob("*.model"))
    if len(models) != 1:
        raise FileNotFoundError(
            f"{folder}: expected one SentencePiece *.model file, found {[m.name for m in models]}"
        )
    return models[0]
