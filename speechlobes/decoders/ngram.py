"""N-gram language models for CTC prefix beam search: estimation, ARPA files, scoring.

- :func:`kneser_ney` estimates an interpolated Kneser-Ney model (Chen & Goodman's
  formulation, one absolute discount per order) from training sequences of string units
  (words, or characters) and returns it as a :class:`BackoffLM`.
- :class:`BackoffLM` scores with ARPA back-off semantics and reads and writes ARPA files
  (the format of SRILM and KenLM, so models move between toolkits).
- :class:`TokenLM` puts an ARPA file in front of a CTC model's SentencePiece tokens, for
  :class:`~speechlobes.decoders.ctc.CTCPrefixBeamSearcher`; it reads its files on first use,
  so a recipe's YAML can name files that training writes.
- :class:`NGramLM`: the simplest model, add-k smoothing over any hashable units.

Interpolated Kneser-Ney: sentences are padded as ``<s> w1 .. wn </s>``. The highest order
counts n-grams; a lower order counts, for each n-gram, the distinct words seen before it (its
continuation count), except n-grams that start with ``<s>``, which keep their counts. With
``a(h, w)`` those counts, ``D`` the order's discount ``n1 / (n1 + 2 n2)`` (``n1``, ``n2``:
how many n-grams have count 1 and 2)::

    P(w | h) = max(a(h, w) - D, 0) / a(h) + D * N(h) / a(h) * P(w | h without its first word)

where ``a(h)`` sums ``a(h, .)`` and ``N(h)`` counts the distinct words after ``h``. The unigram
level interpolates with the uniform distribution over the vocabulary and ``<unk>``, so every
word, seen or not, has a probability. ``<s>`` is never predicted.

Example:
    >>> lm = kneser_ney([["a", "b"], ["a", "c"], ["a", "b"]], order=2)
    >>> round(math.exp(lm.log_prob([], "a")), 4), round(math.exp(lm.log_prob(["a"], "b")), 4)
    (0.9084, 0.5947)
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Sequence
from pathlib import Path

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
LOG10 = math.log(10.0)


class _SentenceStart:
    """Pads n-gram contexts at the start of a sentence; equal only to itself, whatever the units."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _SentenceStart)

    def __hash__(self) -> int:
        return hash(_SentenceStart.__name__)

    def __repr__(self) -> str:
        return "<s>"


SENTENCE_START = _SentenceStart()


class NGramLM:
    """An n-gram model with add-k smoothing over any hashable units (token ids, characters, words).

    ``P(unit | last order-1 units) = (count(context, unit) + k) / (count(context) + k * V)``,
    where V counts the training units plus one unknown unit, and contexts are padded at the
    sentence start. Units never seen in training all share the unknown unit's estimate.

    Example:
        >>> lm = NGramLM.from_sequences([["a", "b"], ["a", "c"], ["a", "b"]], order=2, k=0.5)
        >>> round(math.exp(lm.log_prob(["a"], "b")), 4)  # (2 + 0.5) / (3 + 0.5 * 4)
        0.5
        >>> round(math.exp(lm.log_prob([], "a")), 4)  # (3 + 0.5) / (3 + 0.5 * 4)
        0.7
    """

    def __init__(self, order: int, k: float, counts: Counter, context_counts: Counter, vocab: set):
        if order < 1 or k <= 0:
            raise ValueError(f"NGramLM: order must be >= 1 and k > 0, got order={order}, k={k}")
        self.order, self.k = order, k
        self.counts, self.context_counts, self.vocab = counts, context_counts, vocab

    @classmethod
    def from_sequences(
        cls, sequences: Iterable[Sequence[Hashable]], order: int = 3, k: float = 0.1
    ) -> NGramLM:
        """Counts the n-grams of ``sequences`` (e.g. token-id lists, or ``split_words`` output)."""
        counts, context_counts, vocab = Counter(), Counter(), set()
        for sequence in sequences:
            padded = [SENTENCE_START] * (order - 1) + list(sequence)
            vocab.update(sequence)
            for end in range(order - 1, len(padded)):
                context = tuple(padded[end - order + 1 : end])
                counts[context + (padded[end],)] += 1
                context_counts[context] += 1
        if not vocab:
            raise ValueError("NGramLM.from_sequences: no units in the training sequences")
        return cls(order, k, counts, context_counts, vocab)

    def start_state(self) -> tuple[Hashable, ...]:
        return (SENTENCE_START,) * (self.order - 1)

    def score(
        self, state: tuple[Hashable, ...], unit: Hashable
    ) -> tuple[float, tuple[Hashable, ...]]:
        numerator = self.counts[state + (unit,)] + self.k
        denominator = self.context_counts[state] + self.k * (len(self.vocab) + 1)
        next_state = (state + (unit,))[1:] if self.order > 1 else ()
        return math.log(numerator / denominator), next_state

    def log_prob(self, history: Sequence[Hashable], unit: Hashable) -> float:
        """Log-probability of ``unit`` after the whole ``history`` (older units first)."""
        state = self.start_state()
        for previous in history:
            state = self.score(state, previous)[1]
        return self.score(state, unit)[0]


class BackoffLM:
    """A back-off n-gram model over string units, as an ARPA file holds it.

    ``log_probs`` maps n-grams (tuples of units) to natural-log probabilities, ``backoffs``
    maps contexts to natural-log back-off weights. An n-gram not listed falls back to its
    context's back-off weight plus the score one order lower; a unit outside the vocabulary
    scores as ``<unk>``.

    Example:
        >>> lm = BackoffLM(2, {("a",): math.log(0.6), ("b",): math.log(0.4), (UNK,): -9.0,
        ...                    ("a", "b"): math.log(0.9)}, {("a",): math.log(0.5)})
        >>> round(math.exp(lm.log_prob(["a"], "b")), 2), round(math.exp(lm.log_prob(["a"], "a")), 2)
        (0.9, 0.3)
    """

    def __init__(
        self, order: int, log_probs: dict[tuple[str, ...], float], backoffs: dict[tuple, float]
    ):
        if (UNK,) not in log_probs:
            raise ValueError(f"BackoffLM: the unigrams must include {UNK}")
        self.order, self.log_probs, self.backoffs = order, log_probs, backoffs

    def start_state(self) -> tuple[str, ...]:
        return (BOS,)

    def score(self, state: tuple[str, ...], unit: str) -> tuple[float, tuple[str, ...]]:
        """Natural-log P(unit | state) and the state after it (its last order-1 units)."""
        if (unit,) not in self.log_probs:
            unit = UNK
        total, context = 0.0, state
        while (context + (unit,)) not in self.log_probs:
            total += self.backoffs.get(context, 0.0)
            context = context[1:]
        next_state = (state + (unit,))[-(self.order - 1) :] if self.order > 1 else ()
        return total + self.log_probs[context + (unit,)], next_state

    def log_prob(self, history: Sequence[str], unit: str) -> float:
        """Log-probability of ``unit`` after ``history`` (a sentence start comes first)."""
        state = self.start_state()
        for previous in history:
            state = self.score(state, previous)[1]
        return self.score(state, unit)[0]

    def sentence_log_prob(self, units: Sequence[str]) -> float:
        """Log-probability of a whole sentence, its end ``</s>`` included."""
        state, total = self.start_state(), 0.0
        for unit in [*units, EOS]:
            log_prob, state = self.score(state, unit)
            total += log_prob
        return total

    def write_arpa(self, path: str | Path) -> None:
        """Write the model as an ARPA file (log10 values, as the format wants)."""
        by_order: dict[int, list[tuple[str, ...]]] = {}
        for ngram in self.log_probs:
            by_order.setdefault(len(ngram), []).append(ngram)
        lines = ["", "\\data\\"]
        lines += [f"ngram {n}={len(by_order.get(n, []))}" for n in range(1, self.order + 1)]
        for n in range(1, self.order + 1):
            lines += ["", f"\\{n}-grams:"]
            for ngram in sorted(by_order.get(n, [])):
                fields = [_log10(self.log_probs[ngram]), " ".join(ngram)]
                if n < self.order and ngram in self.backoffs:
                    fields.append(_log10(self.backoffs[ngram]))
                lines.append("\t".join(fields))
        lines += ["", "\\end\\", ""]
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text("\n".join(lines), encoding="utf-8")

    @classmethod
    def read_arpa(cls, path: str | Path) -> BackoffLM:
        """Read an ARPA file (ours, SRILM's or KenLM's)."""
        log_probs, backoffs, order, section = {}, {}, 0, None
        for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("ngram ") or line in ("\\data\\", "\\end\\"):
                continue
            if line.startswith("\\") and line.endswith("-grams:"):
                section = int(line[1:].split("-")[0])
                order = max(order, section)
                continue
            fields = line.split("\t") if "\t" in line else line.split()
            if section is None or len(fields) < 2:
                raise ValueError(f"{path}:{number}: not an ARPA n-gram line: {line!r}")
            if "\t" in line:
                ngram = tuple(fields[1].split())
                backoff = fields[2] if len(fields) > 2 else None
            else:
                ngram = tuple(fields[1 : 1 + section])
                backoff = fields[1 + section] if len(fields) > 1 + section else None
            if len(ngram) != section:
                raise ValueError(f"{path}:{number}: expected a {section}-gram, got {line!r}")
            log_probs[ngram] = float(fields[0]) * LOG10
            if backoff is not None:
                backoffs[ngram] = float(backoff) * LOG10
        if not order:
            raise ValueError(f"{path}: no n-gram sections; is it an ARPA file?")
        log_probs.setdefault((UNK,), -99.0 * LOG10)
        return cls(order, log_probs, backoffs)


def _log10(natural_log: float) -> str:
    return f"{max(natural_log / LOG10, -99.0):.6f}"


def _discount(counts: Iterable[int]) -> float:
    """Absolute discount ``n1 / (n1 + 2 n2)`` from how many n-grams have count 1 and 2."""
    histogram = Counter(count for count in counts if count <= 2)
    n1, n2 = histogram[1], histogram[2]
    return n1 / (n1 + 2 * n2) if n1 and n2 else 0.5


def kneser_ney(sequences: Iterable[Sequence[str]], order: int = 3) -> BackoffLM:
    """Estimate an interpolated Kneser-Ney model (see the module docstring).

    Args:
        sequences: training sentences as lists of string units (words or characters).
        order: the n-gram order (1 = unigrams).
    """
    if order < 1:
        raise ValueError(f"kneser_ney: order must be >= 1, got {order}")
    counts: list[Counter] = [Counter() for _ in range(order + 1)]
    for sequence in sequences:
        padded = [BOS, *sequence, EOS]
        for n in range(1, order + 1):
            for start in range(len(padded) - n + 1):
                counts[n][tuple(padded[start : start + n])] += 1
    if not set(counts[1]) - {(BOS,), (EOS,)}:
        raise ValueError("kneser_ney: no units in the training sequences")
    # a[n]: the counts each order's estimate uses (continuation counts below the top order)
    adjusted: list[Counter] = [Counter() for _ in range(order + 1)]
    adjusted[order] = counts[order]
    for n in range(1, order):
        for ngram in counts[n + 1]:
            adjusted[n][ngram[1:]] += 1
        for ngram, count in counts[n].items():
            if ngram[0] == BOS:
                adjusted[n][ngram] = count
    adjusted[1].pop((BOS,), None)
    vocabulary = [ngram[0] for ngram in counts[1] if ngram[0] != BOS] + [UNK]
    log_probs, backoffs = {}, {}

    def uniform(ngram: tuple[str, ...]) -> float:
        return 1.0 / len(vocabulary)

    lower: Callable[[tuple[str, ...]], float] = uniform
    for n in range(1, order + 1):
        discount = _discount(adjusted[n].values())
        totals, types = Counter(), Counter()
        for ngram, count in adjusted[n].items():
            totals[ngram[:-1]] += count
            types[ngram[:-1]] += 1
        probs: dict[tuple[str, ...], float] = {}
        ngrams = list(adjusted[n]) + ([(UNK,)] if n == 1 else [])
        for ngram in ngrams:
            context = ngram[:-1]
            mass = discount * types[context] / totals[context]
            probs[ngram] = max(adjusted[n][ngram] - discount, 0.0) / totals[context] + mass * lower(
                ngram
            )
        for context in totals:
            backoffs[context] = math.log(discount * types[context] / totals[context])
        log_probs.update((ngram, math.log(p)) for ngram, p in probs.items())
        lower = _interpolated_lookup(probs, backoffs, lower)
    log_probs[(BOS,)] = -99.0 * LOG10
    return BackoffLM(order, log_probs, backoffs)


def _interpolated_lookup(
    probs: dict[tuple[str, ...], float],
    backoffs: dict[tuple[str, ...], float],
    lower: Callable[[tuple[str, ...]], float],
) -> Callable[[tuple[str, ...]], float]:
    """P(w | h[1:]) for an n-gram one order up, ``h w``: this order's estimate if listed,
    else this order's back-off weight times the order below."""

    def lookup(ngram: tuple[str, ...]) -> float:
        shorter = ngram[1:]
        if shorter in probs:
            return probs[shorter]
        return math.exp(backoffs.get(shorter[:-1], 0.0)) * lower(shorter)

    return lookup


class TokenLM:
    """An ARPA model over words or characters, scoring a CTC model's SentencePiece token ids.

    Args:
        arpa_path: the model (read on first use).
        tokenizer: the SentencePiece tokenizer (anything with ``id_to_piece``), or a factory
            returning it (called on first use).
        units: ``"words"``: the searcher hands over whole words (tuples of character ids) and
            learns the word-break id from ``word_boundary_id``; ``"characters"``: every token
            is a unit, ``"▁"`` standing for the break between words.
        cache_size: scores remembered (beams, frames and files ask for the same (context,
            unit) again and again); when full the cache starts again empty; 0 remembers none.

    Example:
        >>> lm = TokenLM("lm.arpa", tokenizer=lambda: None, units="words")  # reads nothing yet
        >>> lm.units
        'words'
    """

    WORD_BREAK = "\u2581"

    def __init__(
        self, arpa_path: str | Path, tokenizer, units: str = "words", cache_size: int = 1 << 20
    ):
        if units not in ("words", "characters"):
            raise ValueError(f"TokenLM: units must be 'words' or 'characters', got {units!r}")
        self.arpa_path, self.units = Path(arpa_path), units
        self._tokenizer_source = tokenizer
        self._model: BackoffLM | None = None
        self._pieces: list[str] = []
        self.cache_size = cache_size
        self._scores: dict[tuple, tuple[float, tuple[str, ...]]] = {}

    def _load(self) -> BackoffLM:
        if self._model is None:
            if not self.arpa_path.is_file():
                raise FileNotFoundError(
                    f"{self.arpa_path}: no language model file; train the recipe (it writes "
                    "one) or set test_search's lm to null"
                )
            tokenizer = self._tokenizer_source
            # a factory: a class or a function; a tokenizer itself may be callable too
            if isinstance(tokenizer, type) or not hasattr(tokenizer, "id_to_piece"):
                tokenizer = tokenizer()
            self._pieces = [tokenizer.id_to_piece(i) for i in range(len(tokenizer))]
            self._model = BackoffLM.read_arpa(self.arpa_path)
        return self._model

    @property
    def word_boundary_id(self) -> int | None:
        """The word-break token's id in word mode (None in character mode)."""
        if self.units == "characters":
            return None
        self._load()
        if self.WORD_BREAK not in self._pieces:
            raise ValueError(
                f"{self.arpa_path}: word units need a tokenizer with a separate word-break "
                f"token {self.WORD_BREAK!r} (a character model)"
            )
        return self._pieces.index(self.WORD_BREAK)

    def start_state(self) -> tuple[str, ...]:
        return self._load().start_state()

    def score(self, state: tuple[str, ...], unit) -> tuple[float, tuple[str, ...]]:
        """``unit``: a token id (characters) or a tuple of token ids (words). Scores are
        remembered: a search asks for the same (context, unit) again and again, across beams,
        frames and files."""
        if not self.cache_size:
            return self._score(state, unit)
        key = (state, unit)
        scored = self._scores.get(key)
        if scored is None:
            if len(self._scores) >= self.cache_size:
                self.clear_cache()
            scored = self._scores[key] = self._score(state, unit)
        return scored

    def clear_cache(self) -> None:
        """Forget the remembered scores."""
        self._scores.clear()

    def _score(self, state: tuple[str, ...], unit) -> tuple[float, tuple[str, ...]]:
        model = self._load()
        if self.units == "words":
            text = "".join(self._piece(token) for token in unit)
        else:
            text = self._piece(unit)
        return model.score(state, text)

    def _piece(self, token: int) -> str:
        """A CTC head may be wider than the tokenizer: ids past it score as ``<unk>``."""
        return self._pieces[token] if token < len(self._pieces) else UNK
