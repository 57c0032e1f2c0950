"""The character tokenizer of a CTC head (transformers' ``Wav2Vec2CTCTokenizer``): a table lookup.

A CTC folder holds ``vocab.json`` (character -> id; ``{language: {character: id}}`` for
multilingual heads, picked by ``target_lang``) and ``tokenizer_config.json``:

- encoding: the text is cut at the added tokens (every vocabulary entry longer than one
  character, e.g. ``<unk>``, eats the spaces beside it; see :mod:`.added_tokens`), the rest is
  upper-cased when ``do_lower_case`` (the vocabulary holds capitals), each space becomes the
  word delimiter ``|`` and each character its id, unknown characters the ``<unk>`` id;
- decoding (the CTC rule): repeated ids collapse into one (``group_tokens``), then the pad
  token (the CTC blank) is dropped, the word delimiter turns into a space, the ends are
  stripped and, with ``do_lower_case``, the text is lower-cased. ``skip_special_tokens``
  removes special tokens *before* the repeats collapse, as transformers does: a letter doubled
  across a blank (``L <pad> L``) then comes out once, so leave it off for CTC output;
- ``output_char_offsets`` / ``output_word_offsets`` give each character / word with the frames
  it covers (:class:`CTCDecoding`), for time stamps;
- special tokens missing from ``vocab.json`` get the next ids (bos, eos, unk, sep, pad, cls,
  mask order), or the ids of ``added_tokens.json`` / ``added_tokens_decoder``.

Example:
    >>> vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4,
    ...          "H": 5, "E": 6, "L": 7, "O": 8}
    >>> tokenizer = CTCTokenizer(vocab, do_lower_case=True)
    >>> tokenizer("hello hex").input_ids
    [5, 6, 7, 7, 8, 4, 5, 6, 3]
    >>> tokenizer.decode([5, 5, 6, 0, 7, 0, 7, 7, 8, 4, 4, 5, 0])  # frames of a CTC head
    'hello h'
    >>> tokenizer.decode([5, 5, 6, 0, 7, 0, 7, 7, 8, 4, 4, 5, 0], output_word_offsets=True)
    CTCDecoding(text='hello h', char_offsets=None,
                word_offsets=[{'word': 'HELLO', 'start_offset': 0, 'end_offset': 9},
                              {'word': 'H', 'start_offset': 11, 'end_offset': 12}])
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any, NamedTuple

from speechlobes.processors.added_tokens import (
    AddedToken,
    read_added_tokens,
    split_on_added_tokens,
)
from speechlobes.processors.base import (
    SPECIAL_TOKEN_ROLES,
    Tokenizer,
    read_json,
    read_tokenizer_config,
    write_json,
)
from speechlobes.processors.outputs import id_list

VOCAB_FILE = "vocab.json"
ADDED_TOKENS_FILE = "added_tokens.json"
TOKENIZER_CLASS = "Wav2Vec2CTCTokenizer"
DEFAULTS = {
    "bos_token": "<s>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "pad_token": "<pad>",
    "word_delimiter_token": "|",
    "replace_word_delimiter_char": " ",
    "do_lower_case": False,
    "target_lang": None,
}


class CharacterSpan(NamedTuple):
    """A decoded character and the frames ``[start, end)`` its run covered."""

    char: str
    start: int
    end: int

    def as_dict(self) -> dict[str, Any]:
        return {"char": self.char, "start_offset": self.start, "end_offset": self.end}


@dataclass
class CTCDecoding:
    """Text with character and word offsets in frames (transformers' tokenizer output)."""

    text: str | list[str]
    char_offsets: list | None = None
    word_offsets: list | None = None


def word_offsets(spans: list[CharacterSpan], delimiter: str = " ") -> list[dict[str, Any]]:
    """Words (runs of characters between delimiters) with the frames they cover."""
    words = []
    for is_word, run in groupby(spans, key=lambda span: span.char != delimiter):
        run = list(run)
        if is_word:
            word = "".join(span.char for span in run)
            words.append({"word": word, "start_offset": run[0].start, "end_offset": run[-1].end})
    return words


class CTCTokenizer(Tokenizer):
    """Characters <-> ids for CTC heads; see the module docstring.

    Args:
        vocab: character -> id (or language -> {character -> id}), or a ``vocab.json`` path.
        added_tokens: the ``added_tokens.json`` table of an older folder (content -> id).
        **config: ``tokenizer_config.json`` keys: special tokens (``unk_token``, ``pad_token``
            ...), ``word_delimiter_token``, ``do_lower_case``, ``target_lang``,
            ``added_tokens_decoder``, ``clean_up_tokenization_spaces``.
    """

    def __init__(
        self,
        vocab: dict[str, Any] | str | Path,
        added_tokens: dict[str, int] | None = None,
        **config: Any,
    ) -> None:
        source = vocab if isinstance(vocab, (str, Path)) else None
        if source is not None:
            vocab = read_json(Path(source))
        super().__init__({**DEFAULTS, **config})
        self.vocab = vocab
        self.word_delimiter_token = self.config["word_delimiter_token"]
        self.replace_word_delimiter_char = self.config["replace_word_delimiter_char"]
        self.do_lower_case = bool(self.config["do_lower_case"])
        self.target_lang = self.config["target_lang"]
        self.encoder = self._language_table(vocab, source or VOCAB_FILE)
        self.decoder = {i: token for token, i in self.encoder.items()}
        self.added_tokens = self._read_added_tokens(added_tokens or {})
        self.added_token_ids = {token.content: i for i, token in self.added_tokens.items()}

    @classmethod
    def from_pretrained(cls, folder: str | Path, **overrides: Any) -> CTCTokenizer:
        """Read ``vocab.json``, ``tokenizer_config.json`` (and older folders' extra files)."""
        folder = Path(folder)
        path = folder / VOCAB_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: a CTC tokenizer folder needs {VOCAB_FILE}")
        added = folder / ADDED_TOKENS_FILE
        added_tokens = read_json(added) if added.is_file() else None
        return cls(path, added_tokens, **{**read_tokenizer_config(folder), **overrides})

    def _language_table(self, vocab: dict[str, Any], where: str | Path) -> dict[str, int]:
        if not isinstance(vocab, dict):
            raise ValueError(
                f"{where}: expected a JSON object (character -> id), got {vocab!r:.80}"
            )
        nested = bool(vocab) and all(isinstance(v, dict) for v in vocab.values())
        if self.target_lang is not None:
            if not nested or self.target_lang not in vocab:
                choices = sorted(vocab) if nested else "none (the vocabulary is not per language)"
                raise ValueError(
                    f"{where}: target_lang {self.target_lang!r}: choose one of {choices}"
                )
            table = vocab[self.target_lang]
        elif nested:
            raise ValueError(
                f"{where}: a vocabulary per language; pass target_lang= one of {sorted(vocab)}"
            )
        else:
            table = vocab
        bad = [(k, v) for k, v in table.items() if not isinstance(v, int) or isinstance(v, bool)]
        if bad:
            raise ValueError(f"{where}: ids must be integers, found {bad[:3]}")
        return table

    def _read_added_tokens(self, added_tokens: dict[str, int]) -> dict[int, AddedToken]:
        """``added_tokens_decoder`` as written, else what transformers derives for the folder."""
        written = read_added_tokens(self.config)
        if written:
            return written
        tokens: dict[int, AddedToken] = {}
        for content, i in added_tokens.items():
            tokens[int(i)] = AddedToken(content)
        for content, i in self.encoder.items():
            if len(content) > 1:
                tokens[i] = AddedToken(content, lstrip=True, rstrip=True)
        delimiter = self.word_delimiter_token
        if delimiter in self.encoder:
            tokens[self.encoder[delimiter]] = AddedToken(delimiter, special=True)
        next_id = max([*self.decoder, *tokens], default=-1) + 1
        known = {token.content for token in tokens.values()} | set(self.encoder)
        for role in SPECIAL_TOKEN_ROLES:
            content = getattr(self, role)
            if content is not None and content not in known:
                tokens[next_id] = AddedToken(content, special=True)
                known.add(content)
                next_id += 1
        return tokens

    # ----------------------------------------------------------------- vocabulary

    @property
    def word_delimiter_token_id(self) -> int | None:
        return self._role_id("word_delimiter_token")

    def get_vocab(self) -> dict[str, int]:
        return {**self.encoder, **self.added_token_ids}

    def __len__(self) -> int:
        return len(self.get_vocab())

    def convert_tokens_to_ids(self, tokens: str | list[str]) -> int | None | list[int | None]:
        if isinstance(tokens, str):
            return self._token_id(tokens)
        return [self._token_id(token) for token in tokens]

    def _token_id(self, token: str) -> int | None:
        if token in self.added_token_ids:
            return self.added_token_ids[token]
        return self.encoder.get(token, self.encoder.get(self.unk_token))

    def convert_ids_to_tokens(self, ids: int | list[int]) -> str | list[str]:
        if isinstance(ids, int):
            return self._id_token(ids)
        return [self._id_token(i) for i in ids]

    def _id_token(self, index: int) -> str:
        if index in self.decoder:
            return self.decoder[index]
        if index in self.added_tokens:
            return self.added_tokens[index].content
        return self.unk_token

    # ----------------------------------------------------------------- text <-> ids

    def tokenize(self, text: str) -> list[str]:
        """The characters (and added tokens) of ``text``, unknown ones kept as written."""
        tokens: list[str] = []
        for chunk, added in split_on_added_tokens(text, _by_content(self.added_tokens)):
            if added or chunk in self.all_special_tokens:
                tokens.append(chunk)
                continue
            if self.do_lower_case:
                chunk = chunk.upper()
            if self.word_delimiter_token is not None:
                chunk = chunk.replace(" ", self.word_delimiter_token)
            tokens.extend(chunk)
        return tokens

    def encode_parts(
        self, text: str, target: bool = False
    ) -> tuple[list[int], list[int], list[int]]:
        return [], [self._token_id(token) for token in self.tokenize(text)], []

    def _decode(
        self,
        ids: list[int],
        skip_special_tokens: bool,
        group_tokens: bool = True,
        spaces_between_special_tokens: bool = False,
    ) -> str:
        spans = self.character_spans(ids, skip_special_tokens, group_tokens)
        return self._text(spans, spaces_between_special_tokens)

    def character_spans(
        self, ids: list[int], skip_special_tokens: bool = False, group_tokens: bool = True
    ) -> list[CharacterSpan]:
        """The characters the CTC rule keeps, each with the frames it spans (end excluded)."""
        return self._spans(self._kept_tokens(ids, skip_special_tokens), group_tokens)

    def _kept_tokens(self, ids: list[int], skip_special_tokens: bool) -> list[str]:
        tokens = [self._id_token(i) for i in ids]
        if not skip_special_tokens:
            return tokens
        special = set(self.all_special_tokens) - {self.word_delimiter_token}
        return [token for token in tokens if token not in special]

    def _spans(self, tokens: list[str], group_tokens: bool) -> list[CharacterSpan]:
        if group_tokens:
            runs = [(token, len(list(run))) for token, run in groupby(tokens)]
        else:
            runs = [(token, 1) for token in tokens]
        spans, start = [], 0
        for token, count in runs:
            if token != self.pad_token:
                char = (
                    self.replace_word_delimiter_char
                    if token == self.word_delimiter_token
                    else token
                )
                spans.append(CharacterSpan(char, start, start + count))
            start += count
        return spans

    def _text(self, spans: list[CharacterSpan], spaces_between_special_tokens: bool = False) -> str:
        text = (" " if spaces_between_special_tokens else "").join(s.char for s in spans).strip()
        return text.lower() if self.do_lower_case else text

    def decode(
        self,
        token_ids: Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        output_char_offsets: bool = False,
        output_word_offsets: bool = False,
        group_tokens: bool = True,
        spaces_between_special_tokens: bool = False,
    ) -> str | CTCDecoding:
        """The text of one id sequence; with ``output_char_offsets`` / ``output_word_offsets``
        a :class:`CTCDecoding` whose offsets count frames (multiply by the model's
        samples per frame over the sampling rate for seconds)."""
        if not (output_char_offsets or output_word_offsets):
            options = dict(
                group_tokens=group_tokens,
                spaces_between_special_tokens=spaces_between_special_tokens,
            )
            return super().decode(
                token_ids, skip_special_tokens, clean_up_tokenization_spaces, **options
            )
        tokens = self._kept_tokens(id_list(token_ids), skip_special_tokens)
        if not tokens:  # transformers gives both offset lists, empty, whatever was asked
            return CTCDecoding("", [], [])
        spans = self._spans(tokens, group_tokens)
        text = self._text(spans, spaces_between_special_tokens)
        return CTCDecoding(
            self.cleaned_up(text, clean_up_tokenization_spaces),
            [s.as_dict() for s in spans] if output_char_offsets else None,
            word_offsets(spans, self.replace_word_delimiter_char) if output_word_offsets else None,
        )

    def batch_decode(self, sequences: Any, **options: Any) -> list[str] | CTCDecoding:
        """The texts of a batch; with offsets asked, one :class:`CTCDecoding` of lists."""
        decoded = super().batch_decode(sequences, **options)
        if not (options.get("output_char_offsets") or options.get("output_word_offsets")):
            return decoded
        return CTCDecoding(
            [d.text for d in decoded],
            [d.char_offsets for d in decoded] if options.get("output_char_offsets") else None,
            [d.word_offsets for d in decoded] if options.get("output_word_offsets") else None,
        )

    # ----------------------------------------------------------------- files

    def tokenizer_config(self) -> dict[str, Any]:
        config = super().tokenizer_config()
        config.update(
            tokenizer_class=TOKENIZER_CLASS,
            word_delimiter_token=self.word_delimiter_token,
            replace_word_delimiter_char=self.replace_word_delimiter_char,
            do_lower_case=self.do_lower_case,
            target_lang=self.target_lang,
            added_tokens_decoder={
                str(i): token.to_config() for i, token in sorted(self.added_tokens.items())
            },
        )
        return config

    def save_vocabulary(self, folder: Path) -> list[str]:
        write_json(folder / VOCAB_FILE, self.vocab)
        extra = {
            token.content: i
            for i, token in sorted(self.added_tokens.items())
            if token.content not in self.encoder
        }
        if not extra:
            return [VOCAB_FILE]
        write_json(folder / ADDED_TOKENS_FILE, extra)
        return [VOCAB_FILE, ADDED_TOKENS_FILE]


def _by_content(tokens: dict[int, AddedToken]) -> dict[str, AddedToken]:
    return {token.content: token for token in tokens.values()}
