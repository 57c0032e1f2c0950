"""What every Hugging Face folder tokenizer shares: special tokens, text -> padded ids, ids -> text.

A tokenizer kind (CTC characters, the ``tokenizers`` library, SentencePiece, MBart) says how one
text becomes ids (:meth:`Tokenizer.encode_parts`: the special ids before, the text's own ids,
the special ids after) and how ids become text (:meth:`Tokenizer._decode`); this base turns that
into the transformers surface: ``tokenizer(texts, padding=True, return_tensors="pt")``,
``decode``, ``batch_decode``, the special tokens and their ids, and ``save_pretrained``.

Folder files: ``tokenizer_config.json`` (special tokens, flags, ``tokenizer_class``) and, in
older folders, ``special_tokens_map.json`` (its entries win, as in transformers). Every key of
them is kept and written back by ``save_pretrained``.

``clean_up_tokenization_spaces`` (off unless the folder's config turns it on, as in
transformers 5) removes the spaces word-piece decoding leaves before punctuation and
contractions: ``"it 's here ."`` -> ``"it's here."``.

Example:
    >>> clean_up_tokenization("do n't stop , it 's here .")
    "don't stop, it's here."
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from speechlobes.processors.outputs import (
    BatchEncoding,
    as_tensors,
    id_list,
    id_rows,
    padded_length,
)

TOKENIZER_CONFIG = "tokenizer_config.json"
SPECIAL_TOKENS_MAP = "special_tokens_map.json"
SPECIAL_TOKEN_ROLES = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)
EXTRA_SPECIAL_KEYS = ("additional_special_tokens", "extra_special_tokens")
UNLIMITED_LENGTH = int(1e12)  # transformers writes ~1e30 for "no maximum length"
CLEAN_UP_REPLACEMENTS = (
    (" .", "."),
    (" ?", "?"),
    (" !", "!"),
    (" ,", ","),
    (" ' ", "'"),
    (" n't", "n't"),
    (" 'm", "'m"),
    (" 's", "'s"),
    (" 've", "'ve"),
    (" 're", "'re"),
)


def clean_up_tokenization(text: str) -> str:
    """Remove the spaces before punctuation and English contractions (transformers' rule)."""
    for old, new in CLEAN_UP_REPLACEMENTS:
        text = text.replace(old, new)
    return text


def read_text(path: Path) -> str:
    """A UTF-8 text file, with an error naming the file when it is not UTF-8."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text ({error})") from error


def read_json(path: Path) -> Any:
    """A JSON file, with an error naming the file when it is not valid JSON."""
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error


def write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def token_content(value: Any) -> str | None:
    """A special token as written in a config: a string, ``{"content": ...}`` or null."""
    if isinstance(value, dict):
        return value.get("content")
    return value


def read_tokenizer_config(folder: str | Path) -> dict[str, Any]:
    """``tokenizer_config.json`` with ``special_tokens_map.json`` laid over it ({} if neither)."""
    folder = Path(folder)
    config: dict[str, Any] = {}
    for name in (TOKENIZER_CONFIG, SPECIAL_TOKENS_MAP):
        path = folder / name
        if path.is_file():
            values = read_json(path)
            if not isinstance(values, dict):
                raise ValueError(f"{path}: expected a JSON object, got {type(values).__name__}")
            config.update(values)
    return config


class Tokenizer:
    """Shared behaviour of the folder tokenizers; subclasses supply the vocabulary.

    Args:
        config: the folder's tokenizer configuration (see the module docstring).

    Subclasses implement ``encode_parts``, ``_decode``, ``convert_tokens_to_ids``,
    ``convert_ids_to_tokens``, ``get_vocab``, ``__len__`` and ``save_vocabulary``.
    """

    model_input_names: tuple[str, ...] = ("input_ids", "attention_mask")
    cleans_up_spaces = True  # whether clean_up_tokenization_spaces applies to this kind

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = dict(config)
        for role in SPECIAL_TOKEN_ROLES:
            setattr(self, role, token_content(config.get(role)))
        extra = next((config[k] for k in EXTRA_SPECIAL_KEYS if config.get(k)), [])
        if isinstance(extra, dict):  # transformers 5: named model-specific tokens
            extra = list(extra.values())
        self.additional_special_tokens = [token_content(t) for t in extra]
        self.model_special_roles = [  # e.g. a CTC tokenizer's word_delimiter_token
            key
            for key, value in config.items()
            if key.endswith("_token")
            and key not in SPECIAL_TOKEN_ROLES
            and isinstance(token_content(value), str)
        ]
        self.padding_side = config.get("padding_side", "right")
        self.truncation_side = config.get("truncation_side", "right")
        self.clean_up_tokenization_spaces = bool(config.get("clean_up_tokenization_spaces", False))
        max_length = config.get("model_max_length")
        self.model_max_length = max_length if max_length and max_length < UNLIMITED_LENGTH else None

    # ----------------------------------------------------------------- the vocabulary (subclasses)

    def encode_parts(
        self, text: str, target: bool = False
    ) -> tuple[list[int], list[int], list[int]]:
        """(special ids before, the text's ids, special ids after); ``target`` for labels."""
        raise NotImplementedError

    def _decode(self, ids: list[int], skip_special_tokens: bool, **options: Any) -> str:
        raise NotImplementedError

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | None | list[int | None]:
        raise NotImplementedError

    def convert_ids_to_tokens(self, ids: int | Sequence[int]) -> str | list[str]:
        raise NotImplementedError

    def get_vocab(self) -> dict[str, int]:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def save_vocabulary(self, folder: Path) -> list[str]:
        """Write the vocabulary files into ``folder``; returns their names."""
        raise NotImplementedError

    # ----------------------------------------------------------------- special tokens

    def _role_id(self, role: str) -> int | None:
        token = getattr(self, role)
        return None if token is None else self.convert_tokens_to_ids(token)

    @property
    def bos_token_id(self) -> int | None:
        return self._role_id("bos_token")

    @property
    def eos_token_id(self) -> int | None:
        return self._role_id("eos_token")

    @property
    def unk_token_id(self) -> int | None:
        return self._role_id("unk_token")

    @property
    def sep_token_id(self) -> int | None:
        return self._role_id("sep_token")

    @property
    def pad_token_id(self) -> int | None:
        return self._role_id("pad_token")

    @property
    def cls_token_id(self) -> int | None:
        return self._role_id("cls_token")

    @property
    def mask_token_id(self) -> int | None:
        return self._role_id("mask_token")

    @property
    def all_special_tokens(self) -> list[str]:
        """The role tokens (bos, eos, unk, sep, pad, cls, mask order), the model's own
        ``*_token`` entries of the config (e.g. ``word_delimiter_token``), the additional ones."""
        tokens = [getattr(self, role) for role in SPECIAL_TOKEN_ROLES]
        tokens += [
            getattr(self, key, token_content(self.config[key])) for key in self.model_special_roles
        ]
        tokens += self.additional_special_tokens
        return list(dict.fromkeys(t for t in tokens if t is not None))

    @property
    def all_special_ids(self) -> list[int]:
        ids = (self.convert_tokens_to_ids(t) for t in self.all_special_tokens)
        return [i for i in ids if i is not None]

    @property
    def vocab_size(self) -> int:
        return len(self)

    # ----------------------------------------------------------------- text -> ids

    def tokenize(self, text: str) -> list[str]:
        """The tokens of ``text`` (no special tokens added)."""
        return self.convert_ids_to_tokens(self.encode(text, add_special_tokens=False))

    def encode(
        self,
        text: str,
        add_special_tokens: bool = True,
        max_length: int | None = None,
        target: bool = False,
    ) -> list[int]:
        """The ids of one text; ``max_length`` cuts the text's own ids so that all fit."""
        before, ids, after = self.encode_parts(text, target)
        if not add_special_tokens:
            before, after = [], []
        if max_length is not None:
            room = max(max_length - len(before) - len(after), 0)
            ids = ids[:room] if self.truncation_side == "right" else ids[len(ids) - room :]
        return before + ids + after

    def __call__(
        self,
        text: str | Sequence[str] | None = None,
        text_target: str | Sequence[str] | None = None,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool = False,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_tensors: str | None = None,
        return_attention_mask: bool | None = None,
        return_token_type_ids: bool | None = None,
    ) -> BatchEncoding:
        """Texts -> ``input_ids`` and ``attention_mask`` (and ``token_type_ids`` where the model
        takes them). ``text_target`` encodes labels (target-language layout where it differs);
        given with ``text`` it comes back as ``labels``.

        ``padding``: False (rows keep their lengths), True / "longest", or "max_length" (with
        ``max_length``); ``truncation`` cuts texts to ``max_length`` ids, special ids kept.
        ``return_tensors``: None (lists), "pt" or "np".
        """
        if text is None and text_target is None:
            raise ValueError("pass text (inputs) or text_target (labels) to encode")
        options = dict(
            add_special_tokens=add_special_tokens,
            padding=padding,
            truncation=truncation,
            max_length=max_length,
            pad_to_multiple_of=pad_to_multiple_of,
            padding_side=padding_side,
            return_tensors=return_tensors,
            return_attention_mask=return_attention_mask,
            return_token_type_ids=return_token_type_ids,
        )
        if text is None:
            return self._encode_batch(text_target, target=True, **options)
        inputs = self._encode_batch(text, target=False, **options)
        if text_target is not None:
            inputs["labels"] = self._encode_batch(text_target, target=True, **options)["input_ids"]
        return inputs

    def _encode_batch(
        self,
        text: str | Sequence[str],
        target: bool,
        add_special_tokens: bool,
        padding: bool | str,
        truncation: bool,
        max_length: int | None,
        pad_to_multiple_of: int | None,
        padding_side: str | None,
        return_tensors: str | None,
        return_attention_mask: bool | None,
        return_token_type_ids: bool | None,
    ) -> BatchEncoding:
        single = isinstance(text, str)
        texts = [text] if single else list(text)
        for i, item in enumerate(texts):
            if not isinstance(item, str):
                raise TypeError(f"text {i}: expected a string, got {type(item).__name__}")
        limit = max_length if max_length is not None else self.model_max_length
        rows = [
            self.encode(t, add_special_tokens, limit if truncation else None, target) for t in texts
        ]
        length = padded_length([len(row) for row in rows], padding, max_length, pad_to_multiple_of)
        side = padding_side or self.padding_side
        masks = [[1] * len(row) for row in rows]
        if length is not None:
            if any(len(row) < length for row in rows) and self.pad_token_id is None:
                raise ValueError(
                    "asking to pad but the tokenizer has no pad token: set tokenizer.pad_token "
                    "(e.g. to tokenizer.eos_token) or pass padding=False"
                )
            rows = [_pad(row, length, self.pad_token_id, side) for row in rows]
            masks = [_pad(mask, length, 0, side) for mask in masks]
        fields: dict[str, list[list[int]]] = {"input_ids": rows}
        if return_token_type_ids or (
            return_token_type_ids is None and "token_type_ids" in self.model_input_names
        ):
            fields["token_type_ids"] = [[0] * len(row) for row in rows]
        if return_attention_mask or (
            return_attention_mask is None and "attention_mask" in self.model_input_names
        ):
            fields["attention_mask"] = masks
        if single and return_tensors is None:
            return BatchEncoding({k: v[0] for k, v in fields.items()})
        return BatchEncoding({k: as_tensors(v, return_tensors) for k, v in fields.items()})

    # ----------------------------------------------------------------- ids -> text

    def decode(
        self,
        token_ids: Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        **options: Any,
    ) -> str:
        """The text of one id sequence (a list, a 1-D tensor or array, or one id)."""
        text = self._decode(id_list(token_ids), skip_special_tokens, **options)
        return self.cleaned_up(text, clean_up_tokenization_spaces)

    def cleaned_up(self, text: str, clean_up_tokenization_spaces: bool | None = None) -> str:
        """``text`` after the clean-up, when asked (None: the folder's default)."""
        if clean_up_tokenization_spaces is None:
            clean_up_tokenization_spaces = self.clean_up_tokenization_spaces
        if clean_up_tokenization_spaces and self.cleans_up_spaces:
            return clean_up_tokenization(text)
        return text

    def batch_decode(
        self,
        sequences: Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        **options: Any,
    ) -> list[str]:
        """The texts of a batch of id sequences (nested lists, a 2-D tensor or array)."""
        return [
            self.decode(row, skip_special_tokens, clean_up_tokenization_spaces, **options)
            for row in id_rows(sequences)
        ]

    # ----------------------------------------------------------------- files

    def special_tokens_map(self) -> dict[str, Any]:
        roles = {role: getattr(self, role) for role in SPECIAL_TOKEN_ROLES}
        values: dict[str, Any] = {k: v for k, v in roles.items() if v is not None}
        if self.additional_special_tokens:
            values["additional_special_tokens"] = list(self.additional_special_tokens)
        return values

    def tokenizer_config(self) -> dict[str, Any]:
        """The configuration ``save_pretrained`` writes: the folder's, with today's values."""
        config = {k: v for k, v in self.config.items() if k not in EXTRA_SPECIAL_KEYS}
        config.update({role: getattr(self, role) for role in SPECIAL_TOKEN_ROLES})
        if self.additional_special_tokens:
            config["additional_special_tokens"] = list(self.additional_special_tokens)
        config["padding_side"] = self.padding_side
        config["clean_up_tokenization_spaces"] = self.clean_up_tokenization_spaces
        return config

    def save_pretrained(self, folder: str | Path, **extra_config: Any) -> list[str]:
        """Write the tokenizer files into ``folder`` (made if missing), ``extra_config`` keys
        added to ``tokenizer_config.json``; returns the files' names."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        names = self.save_vocabulary(folder)
        write_json(folder / TOKENIZER_CONFIG, {**self.tokenizer_config(), **extra_config})
        write_json(folder / SPECIAL_TOKENS_MAP, self.special_tokens_map())
        return [*names, TOKENIZER_CONFIG, SPECIAL_TOKENS_MAP]


def _pad(row: list[int], length: int, value: int, side: str) -> list[int]:
    filler = [value] * (length - len(row))
    return filler + row if side == "left" else row + filler
