"""Sentences in real English word order, drawn from the word and word-pair counts of the
Google Books n-grams (intersected with the SCOWL spelling lists) that ship inside the
``symspellpy`` package: 82,834 words and 242,342 distinct word pairs with their counts.

A sentence is a walk along word pairs: it starts on a word that commonly opens a sentence, each
next word is drawn among the words seen after the current one (counts flattened so that rarer
pairs come up too), and it ends on a word that can close a sentence. To reach the whole word
list, not only the ~20,000 words of the pair list, some content words are swapped for another
word with the same last letters (``walking`` -> ``whistling``, ``quickly`` -> ``gently``),
which keeps the part of speech most of the time. Some pairs become contractions
(``do not`` -> ``don't``). The walks read like real phrases strung together rather than like
edited prose: what they teach is English words, their spelling, and their local order.

Example:
    >>> import random
    >>> sampler = SentenceSampler(word_counts())
    >>> words = sampler.sample(random.Random(0)).split()
    >>> 4 <= len(words) <= 20 and all(w.replace("'", "").isalpha() for w in words)
    True
"""

from __future__ import annotations

import bisect
import functools
import importlib.resources
import itertools
import random
from dataclasses import dataclass

UNIGRAM_FILE = "frequency_dictionary_en_82_765.txt"
BIGRAM_FILE = "frequency_bigramdictionary_en_243_342.txt"

# Words that open everyday sentences, with weights.
STARTERS = {
    "the": 12, "i": 10, "we": 6, "it": 5, "he": 5, "she": 5, "they": 5, "you": 5, "this": 4,
    "there": 3, "my": 3, "our": 2, "a": 3, "in": 2, "on": 1, "when": 2, "after": 1, "if": 2,
    "please": 1, "what": 2, "how": 2, "where": 1, "why": 1, "do": 1, "can": 1, "all": 1,
    "some": 1, "many": 1, "today": 1, "every": 1, "his": 1, "her": 1, "your": 1, "one": 1,
    "at": 1, "last": 1, "most": 1, "people": 1, "just": 1, "let": 1, "then": 1, "so": 1,
}  # fmt: skip
# Function words: never swapped, and a sentence does not end on one.
FUNCTION_WORDS = frozenset(
    """a an the and or but if of to in on at by for with from into onto upon about over under
    than then that this these those there their they them he she it its his her him we us our
    you your i me my is are was were be been being am do does did done have has had having will
    would shall should can could may might must not no nor so as such very too also just only
    which who whom whose what when where why how all any each every some many much more most few
    other another own same both either neither one two three up down out off again further once
    here s t""".split()
)
CONTRACTIONS = {
    ("do", "not"): "don't", ("does", "not"): "doesn't", ("did", "not"): "didn't",
    ("is", "not"): "isn't", ("are", "not"): "aren't", ("was", "not"): "wasn't",
    ("were", "not"): "weren't", ("have", "not"): "haven't", ("has", "not"): "hasn't",
    ("had", "not"): "hadn't", ("will", "not"): "won't", ("would", "not"): "wouldn't",
    ("could", "not"): "couldn't", ("should", "not"): "shouldn't", ("can", "not"): "can't",
    ("it", "is"): "it's", ("that", "is"): "that's", ("there", "is"): "there's",
    ("what", "is"): "what's", ("i", "am"): "i'm", ("i", "have"): "i've", ("i", "will"): "i'll",
    ("i", "would"): "i'd", ("you", "are"): "you're", ("we", "are"): "we're",
    ("they", "are"): "they're", ("you", "will"): "you'll", ("we", "will"): "we'll",
    ("he", "is"): "he's", ("she", "is"): "she's", ("let", "us"): "let's",
    ("we", "have"): "we've", ("they", "have"): "they've", ("you", "have"): "you've",
}  # fmt: skip
SUFFIX_LETTERS = 3
# Web-spam and offensive words of the count lists that a speech corpus can do without.
BLOCKED = frozenset(
    """sex sexy sexual porn porno pornography nude nudes naked xxx fuck fucking shit bitch escort
    escorts viagra cialis casino gay lesbian erotic horny slut whore dick cock pussy penis vagina
    rape anal boobs tits milf hentai nigger fag""".split()
)


@dataclass(frozen=True)
class WordCounts:
    """The two count lists: ``unigrams`` (word -> count, most frequent first) and ``bigrams``
    (word -> {next word: count})."""

    unigrams: dict[str, int]
    bigrams: dict[str, dict[str, int]]

    @property
    def rank(self) -> dict[str, int]:
        """Word -> position in the frequency list (0 = most frequent)."""
        return {word: position for position, word in enumerate(self.unigrams)}


@functools.lru_cache(maxsize=1)
def word_counts() -> WordCounts:
    """Read symspellpy's count files (cached: one read per process).

    Example:
        >>> counts = word_counts()
        >>> len(counts.unigrams), counts.bigrams["cup"]["of"] > counts.bigrams["cup"]["and"]
        (82834, True)
    """
    folder = importlib.resources.files("symspellpy")
    unigrams: dict[str, int] = {}
    for line in (folder / UNIGRAM_FILE).read_text(encoding="utf-8").splitlines():
        word, count = line.split()
        unigrams[word] = int(count)
    unigrams = dict(sorted(unigrams.items(), key=lambda item: -item[1]))
    bigrams: dict[str, dict[str, int]] = {}
    for line in (folder / BIGRAM_FILE).read_text(encoding="utf-8").splitlines():
        first, second, count = line.split()
        bigrams.setdefault(first, {})[second] = int(count)
    return WordCounts(unigrams, bigrams)


def swappable_words(counts: WordCounts, max_rank: int = 50_000) -> list[str]:
    """Content words of the list that a walk may swap in: alphabetic, 3+ letters, among the
    ``max_rank`` most frequent, not function words."""
    return [
        word
        for word in itertools.islice(counts.unigrams, max_rank)
        if len(word) >= 3 and word.isalpha() and word not in FUNCTION_WORDS
    ]


def contract(words: list[str], rng: random.Random, probability: float = 0.5) -> list[str]:
    """Join pairs such as ``do not`` into ``don't``, each with ``probability``.

    Example:
        >>> contract("i do not know".split(), random.Random(0), probability=1.0)
        ['i', "don't", 'know']
    """
    out: list[str] = []
    for word in words:
        joined = CONTRACTIONS.get((out[-1], word)) if out else None
        if joined and rng.random() < probability:
            out[-1] = joined
        else:
            out.append(word)
    return out


class _Choice:
    """Weighted choice among fixed options, by bisection of cumulative weights."""

    def __init__(self, options: list[str], weights: list[float]):
        self.options = options
        self.cumulative = list(itertools.accumulate(weights))

    def __call__(self, rng: random.Random) -> str:
        position = bisect.bisect_right(self.cumulative, rng.random() * self.cumulative[-1])
        return self.options[min(position, len(self.options) - 1)]


class SentenceSampler:
    """Walks of word pairs (see the module docstring), lower case, words separated by spaces.

    Args:
        counts: the word and word-pair counts.
        banned: words that never appear (e.g. held out of training).
        favoured: words whose chance is multiplied by ``favour`` at every step and swap.
        favour: the multiplier for ``favoured`` words.
        swap_rate: chance that a content word is swapped for one with the same ending.
        min_words, max_words: the target length is drawn between these.
        flatten: pair counts are raised to this power (below 1: rarer pairs come up more).

    Example:
        >>> sampler = SentenceSampler(word_counts(), banned=frozenset({"the"}))
        >>> "the" in sampler.sample(random.Random(1)).split()
        False
    """

    def __init__(
        self,
        counts: WordCounts,
        banned: frozenset[str] = frozenset(),
        favoured: frozenset[str] = frozenset(),
        favour: float = 1.0,
        swap_rate: float = 0.25,
        min_words: int = 5,
        max_words: int = 14,
        flatten: float = 0.75,
    ):
        if not 1 <= min_words <= max_words:
            raise ValueError(f"need 1 <= min_words <= max_words, got {min_words}, {max_words}")
        self.swap_rate, self.min_words, self.max_words = swap_rate, min_words, max_words
        banned = banned | BLOCKED

        def weight(word: str, count: float) -> float:
            return count**flatten * (favour if word in favoured else 1.0)

        self.next_word: dict[str, _Choice] = {}
        for word, followers in counts.bigrams.items():
            allowed = [w for w in followers if w not in banned]
            if allowed:
                weights = [weight(w, followers[w]) for w in allowed]
                self.next_word[word] = _Choice(allowed, weights)
        starters = [w for w in STARTERS if w in self.next_word]
        self.start = _Choice(starters, [STARTERS[w] for w in starters])
        classes: dict[str, list[str]] = {}
        for word in swappable_words(counts):
            if word not in banned:
                classes.setdefault(word[-SUFFIX_LETTERS:], []).append(word)
        self.swaps = {
            ending: _Choice(words, [favour if w in favoured else 1.0 for w in words])
            for ending, words in classes.items()
            if len(words) >= 2
        }

    def sample(self, rng: random.Random, max_attempts: int = 100) -> str:
        """One sentence (walks that dead-end too early are redrawn)."""
        for _ in range(max_attempts):
            words = self._walk(rng)
            if words:
                return " ".join(contract(words, rng))
        raise RuntimeError(f"no sentence after {max_attempts} walks; relax the banned words")

    def _walk(self, rng: random.Random) -> list[str] | None:
        target = rng.randint(self.min_words, self.max_words)
        word = self.start(rng)
        walk = [word]
        while len(walk) < target + 5:
            if len(walk) >= target and word not in FUNCTION_WORDS:
                break
            choice = self.next_word.get(word)
            if choice is None:
                return None
            word = choice(rng)
            walk.append(word)
        if len(walk) < self.min_words or word in FUNCTION_WORDS:
            return None
        if max(walk.count(w) for w in walk) > 2:
            return None
        return [self._maybe_swap(w, rng) for w in walk]

    def _maybe_swap(self, word: str, rng: random.Random) -> str:
        if len(word) < 5 or word in FUNCTION_WORDS or rng.random() >= self.swap_rate:
            return word
        choice = self.swaps.get(word[-SUFFIX_LETTERS:])
        return choice(rng) if choice else word
