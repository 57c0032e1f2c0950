"""Added tokens: strings matched whole in the text before the vocabulary sees it.

A Hugging Face tokenizer lists them in ``tokenizer_config.json`` under ``added_tokens_decoder``
(id -> content and flags) or, in older folders, in ``added_tokens.json`` (content -> id). The
text is cut at every occurrence (leftmost first, the longest token where several start at the
same place); ``lstrip`` / ``rstrip`` eat the spaces on that side of the token, and a
``single_word`` token counts only when it stands between spaces (or the text's ends).

Example:
    >>> tokens = {"<unk>": AddedToken("<unk>", lstrip=True, rstrip=True), "|": AddedToken("|")}
    >>> split_on_added_tokens("ab  <unk> c|d", tokens)
    [('ab', False), ('<unk>', True), ('c', False), ('|', True), ('d', False)]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class AddedToken:
    """One added token and how it is matched (the flags of transformers' ``AddedToken``)."""

    content: str
    lstrip: bool = False
    rstrip: bool = False
    single_word: bool = False
    normalized: bool = False
    special: bool = False

    @classmethod
    def from_config(cls, value: dict[str, Any] | str, where: str) -> AddedToken:
        """Read one entry of ``added_tokens_decoder`` (a dict, or a bare string)."""
        if isinstance(value, str):
            return cls(value)
        if not isinstance(value, dict) or "content" not in value:
            raise ValueError(f"{where}: expected an object with 'content', got {value!r}")
        fields = ("lstrip", "rstrip", "single_word", "normalized", "special")
        return cls(value["content"], **{k: bool(value[k]) for k in fields if k in value})

    def to_config(self) -> dict[str, Any]:
        return asdict(self)


def read_added_tokens(config: dict[str, Any]) -> dict[int, AddedToken]:
    """The ``added_tokens_decoder`` of a tokenizer config: id -> token ({} when absent)."""
    written = config.get("added_tokens_decoder") or {}
    return {
        int(i): AddedToken.from_config(value, f"added_tokens_decoder[{i}]")
        for i, value in written.items()
    }


def split_on_added_tokens(text: str, tokens: dict[str, AddedToken]) -> list[tuple[str, bool]]:
    """Cut ``text`` into (chunk, is_added_token) pieces, empty chunks dropped."""
    pieces: list[list[Any]] = []
    start = cursor = 0
    contents = sorted(tokens, key=len, reverse=True)
    while cursor < len(text):
        match = next((c for c in contents if c and text.startswith(c, cursor)), None)
        if match is None:
            cursor += 1
            continue
        pieces.append([text[start:cursor], False])
        pieces.append([match, True])
        cursor += len(match)
        start = cursor
    pieces.append([text[start:], False])
    for i, (chunk, added) in enumerate(pieces):
        if not added:
            continue
        token = tokens[chunk]
        left = pieces[i - 1] if i > 0 else None
        right = pieces[i + 1] if i + 1 < len(pieces) else None
        if token.rstrip and right is not None:
            right[0] = right[0].lstrip()
        if token.lstrip and left is not None:
            left[0] = left[0].rstrip()
        if token.single_word and not _stands_alone(left, right):
            pieces[i][1] = False
    return _merge_plain_text([(chunk, added) for chunk, added in pieces if chunk])


def _stands_alone(left: list | None, right: list | None) -> bool:
    left_ok = left is None or not left[0] or left[0][-1] == " "
    right_ok = right is None or not right[0] or right[0][0] == " "
    return left_ok and right_ok


def _merge_plain_text(pieces: list[tuple[str, bool]]) -> list[tuple[str, bool]]:
    """Join neighbouring plain chunks (a single_word token demoted to text joins its neighbours)."""
    merged: list[tuple[str, bool]] = []
    for chunk, added in pieces:
        if merged and not added and not merged[-1][1]:
            merged[-1] = (merged[-1][0] + chunk, False)
        else:
            merged.append((chunk, added))
    return merged
