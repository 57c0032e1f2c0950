"""LibriSpeech-style text normalisation: upper-case letters, apostrophes and single spaces,
numbers spelled out.

Example:
    >>> librispeech_normalise("In 1984, she bought 21 apples -- and didn't pay!")
    "IN NINETEEN EIGHTY FOUR SHE BOUGHT TWENTY ONE APPLES AND DIDN'T PAY"
"""

from __future__ import annotations

import re

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_to_words(number: int) -> str:
    """Spell a whole number 0..999999 the way LibriSpeech transcripts do (no "and", no hyphen).

    Four-digit numbers from 1100 to 1999 and 2010 to 2099 are read as years
    ("nineteen eighty four"), as readers of the books did.

    Example:
        >>> number_to_words(1905), number_to_words(342), number_to_words(2000)
        ('nineteen oh five', 'three hundred forty two', 'two thousand')
    """
    if not 0 <= number <= 999_999:
        raise ValueError(f"number_to_words handles 0..999999, got {number}")
    if 1100 <= number <= 1999 or 2010 <= number <= 2099:
        high, low = divmod(number, 100)
        if low == 0:
            return f"{_below_hundred(high)} hundred"
        low_words = _below_hundred(low) if low >= 10 else f"oh {_ONES[low]}"
        return f"{_below_hundred(high)} {low_words}"
    return _below_million(number)


def _below_hundred(number: int) -> str:
    if number < 20:
        return _ONES[number]
    tens, ones = divmod(number, 10)
    return _TENS[tens] if ones == 0 else f"{_TENS[tens]} {_ONES[ones]}"


def _below_thousand(number: int) -> str:
    hundreds, rest = divmod(number, 100)
    if hundreds == 0:
        return _below_hundred(rest)
    head = f"{_ONES[hundreds]} hundred"
    return head if rest == 0 else f"{head} {_below_hundred(rest)}"


def _below_million(number: int) -> str:
    thousands, rest = divmod(number, 1000)
    if thousands == 0:
        return _below_thousand(rest)
    head = f"{_below_thousand(thousands)} thousand"
    return head if rest == 0 else f"{head} {_below_thousand(rest)}"


def librispeech_normalise(text: str) -> str:
    """Upper-case words of letters and apostrophes; digits spelled out; all else a word break."""
    spelled = re.sub(r"\d+", lambda match: f" {number_to_words(int(match.group()))} ", text)
    words = (word.strip("'") for word in re.sub(r"[^A-Za-z']+", " ", spelled).split())
    return " ".join(word for word in words if word).upper()
