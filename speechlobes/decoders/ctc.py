"""CTC decoding: greedy best path, and prefix beam search with an optional n-gram LM.

``log_probs`` are (batch, frames, vocab) log-softmax outputs. ``lengths`` may be RELATIVE
(floating point, SpeechBrain's ``wav_lens``) or ABSOLUTE frame counts (integer dtype); None
means every frame is valid.

Prefix beam search keeps, for every label prefix, the probability of all alignments ending
in a blank and of those ending in the prefix's last label, so the acoustic score of a
hypothesis is log P(labels | audio) summed over its alignments (exact when nothing is pruned).
A language model adds ``lm_weight * log P_lm`` and ``insertion_bonus`` per scored LM unit.
LM units are the CTC tokens themselves, or, with ``word_boundary_id``, words: tuples of token
ids between boundary tokens, scored when a word is closed by a boundary and, at the end, for
the trailing word. There is no end-of-sentence score.

Example:
    >>> log_probs = torch.tensor([[0.1, 0.8, 0.1], [0.1, 0.8, 0.1], [0.6, 0.1, 0.3]]).log()[None]
    >>> ctc_greedy_decode(log_probs, blank_id=0)
    [[1]]
    >>> best = ctc_prefix_beam_search(log_probs, blank_id=0, beam_size=10)[0][0]
    >>> best.tokens, round(best.acoustic_score, 4)  # log(0.553), the sum over 6 alignments
    ([1], -0.5924)
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from speechlobes.nnet.lengths import lengths_to_padding_mask, relative_to_absolute_lengths

NEG_INF = float("-inf")


def frame_counts(lengths: torch.Tensor | None, batch_size: int, max_frames: int) -> torch.Tensor:
    """Relative (float) or absolute (integer) lengths -> int64 frame counts, checked against ``max_frames``."""
    if lengths is None:
        return torch.full((batch_size,), max_frames, dtype=torch.long)
    if lengths.shape != (batch_size,):
        raise ValueError(f"lengths: expected shape ({batch_size},), got {tuple(lengths.shape)}")
    lengths = lengths.detach().cpu()
    if lengths.is_floating_point():
        return relative_to_absolute_lengths(lengths, max_frames)
    if (lengths < 0).any() or (lengths > max_frames).any():
        raise ValueError(
            f"lengths: absolute lengths must lie in [0, {max_frames}], got {lengths.tolist()}"
        )
    return lengths.long()


def _check_log_probs(log_probs: torch.Tensor) -> None:
    if log_probs.dim() != 3:
        raise ValueError(
            f"log_probs: expected (batch, frames, vocab), got shape {tuple(log_probs.shape)}"
        )


def ctc_greedy_decode(
    log_probs: torch.Tensor, lengths: torch.Tensor | None = None, blank_id: int = 0
) -> list[list[int]]:
    """Best path decoding: per-frame argmax, repeats collapsed, blanks dropped.

    Logits or probabilities work as well as log-probabilities (only the argmax matters).
    """
    _check_log_probs(log_probs)
    batch_size, max_frames, _ = log_probs.shape
    best = log_probs.detach().argmax(dim=-1).cpu()
    keep = best != blank_id
    keep[:, 1:] &= best[:, 1:] != best[:, :-1]
    keep &= ~lengths_to_padding_mask(frame_counts(lengths, batch_size, max_frames), max_frames)
    return [row[mask].tolist() for row, mask in zip(best, keep, strict=True)]


class LanguageModel(Protocol):
    """What prefix beam search needs from a language model."""

    def log_prob(self, history: Sequence[Hashable], unit: Hashable) -> float:
        """Natural-log probability of ``unit`` following ``history`` (older units first)."""
        ...


def split_words(tokens: Sequence[int], word_boundary_id: int) -> list[tuple[int, ...]]:
    """Token ids -> words (tuples of ids) between boundary tokens; empty words are dropped.

    Example:
        >>> split_words([5, 6, 1, 1, 7, 1], word_boundary_id=1)
        [(5, 6), (7,)]
    """
    words, current = [], []
    for token in tokens:
        if token == word_boundary_id:
            if current:
                words.append(tuple(current))
            current = []
        else:
            current.append(token)
    if current:
        words.append(tuple(current))
    return words


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

    _START = ("<s>",)  # a tuple, so that it never equals a unit of the training data

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
            padded = [cls._START] * (order - 1) + list(sequence)
            vocab.update(sequence)
            for end in range(order - 1, len(padded)):
                context = tuple(padded[end - order + 1 : end])
                counts[context + (padded[end],)] += 1
                context_counts[context] += 1
        if not vocab:
            raise ValueError("NGramLM.from_sequences: no units in the training sequences")
        return cls(order, k, counts, context_counts, vocab)

    def log_prob(self, history: Sequence[Hashable], unit: Hashable) -> float:
        recent = list(history)[len(history) - self.order + 1 :] if self.order > 1 else []
        context = tuple([self._START] * (self.order - 1 - len(recent)) + recent)
        vocab_size = len(self.vocab) + 1
        numerator = self.counts[context + (unit,)] + self.k
        return math.log(numerator / (self.context_counts[context] + self.k * vocab_size))


@dataclass(frozen=True)
class CTCHypothesis:
    """One n-best entry: ``score = acoustic_score + lm_weight * lm_score + insertion_bonus * num_lm_units``."""

    tokens: list[int]
    score: float
    acoustic_score: float
    lm_score: float
    num_lm_units: int


def _log_add(a: float, b: float) -> float:
    if a < b:
        a, b = b, a
    if b == NEG_INF:
        return a
    return a + math.log1p(math.exp(b - a))


class CTCPrefixBeamSearcher:
    """CTC prefix beam search, configured once (e.g. from YAML) and called on batches.

    Args:
        blank_id: index of the CTC blank.
        beam_size: prefixes kept after every frame; the n-best returned has at most this many.
        lm: optional ``LanguageModel`` (e.g. ``NGramLM``) over tokens, or over words with
            ``word_boundary_id``.
        lm_weight, insertion_bonus: weight of the LM log-probability, bonus per LM unit.
        word_boundary_id: the space token's id, to score words instead of tokens.
        top_k: consider only the k most probable tokens of each frame.
        min_token_log_prob: ignore tokens below this log-probability in a frame (the frame's
            best token is always considered).

    Example:
        >>> searcher = CTCPrefixBeamSearcher(blank_id=0, beam_size=8)
        >>> log_probs = torch.tensor([[[0.5, 0.4, 0.1], [0.5, 0.4, 0.1]]]).log()
        >>> [(h.tokens, round(h.score, 4)) for h in searcher(log_probs)[0]][:2]
        [([1], -0.5798), ([], -1.3863)]
    """

    def __init__(
        self,
        blank_id: int,
        beam_size: int = 10,
        lm: LanguageModel | None = None,
        lm_weight: float = 0.5,
        insertion_bonus: float = 0.0,
        word_boundary_id: int | None = None,
        top_k: int | None = None,
        min_token_log_prob: float | None = None,
    ):
        if beam_size < 1 or (top_k is not None and top_k < 1):
            raise ValueError(f"beam_size and top_k must be >= 1, got {beam_size} and {top_k}")
        self.blank_id, self.beam_size = blank_id, beam_size
        self.lm, self.lm_weight, self.insertion_bonus = lm, lm_weight, insertion_bonus
        self.word_boundary_id = word_boundary_id
        self.top_k, self.min_token_log_prob = top_k, min_token_log_prob

    def __call__(
        self, log_probs: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> list[list[CTCHypothesis]]:
        """(batch, frames, vocab) log-probabilities -> per utterance, hypotheses best first."""
        _check_log_probs(log_probs)
        batch_size, max_frames, vocab_size = log_probs.shape
        counts = frame_counts(lengths, batch_size, max_frames).tolist()
        log_probs = log_probs.detach().cpu().double()
        results = []
        for utterance, num_frames in enumerate(counts):
            valid = log_probs[utterance, :num_frames]
            normaliser = valid.logsumexp(dim=-1)
            if not torch.allclose(normaliser, torch.zeros_like(normaliser), atol=1e-3):
                raise ValueError(
                    f"log_probs[{utterance}]: frames do not sum to probability 1 (max "
                    f"|logsumexp| = {normaliser.abs().max():.3g}); apply log_softmax first"
                )
            results.append(self.search(self._frame_candidates(valid)))
        return results

    def _frame_candidates(self, log_probs: torch.Tensor) -> list[list[tuple[int, float]]]:
        """(frames, vocab) -> per frame, the (token, log-prob) pairs that survive token pruning."""
        vocab_size = log_probs.shape[-1]
        k = vocab_size if self.top_k is None else min(self.top_k, vocab_size)
        top_log_probs, top_tokens = log_probs.topk(k, dim=-1)
        keep = top_log_probs > NEG_INF
        if self.min_token_log_prob is not None:
            keep &= top_log_probs >= self.min_token_log_prob
        keep[:, 0] = True  # every frame keeps its best token
        return [
            [(token, lp) for token, lp, kept in zip(*row, strict=True) if kept]
            for row in zip(top_tokens.tolist(), top_log_probs.tolist(), keep.tolist(), strict=True)
        ]

    def search(self, frames: list[list[tuple[int, float]]]) -> list[CTCHypothesis]:
        """One utterance: per frame, the (token, log-probability) pairs to consider."""
        blank = self.blank_id
        # prefix -> [log P(alignments ending in blank), log P(alignments ending in its last token)]
        beams: dict[tuple[int, ...], list[float]] = {(): [0.0, NEG_INF]}
        lm_states: dict[tuple[int, ...], tuple[float, int]] = {(): (0.0, 0)}
        for frame in frames:
            extended: dict[tuple[int, ...], list[float]] = {}
            for prefix, (blank_end, token_end) in beams.items():
                total = _log_add(blank_end, token_end)
                last = prefix[-1] if prefix else None
                for token, lp in frame:
                    if token == blank:
                        entry = extended.setdefault(prefix, [NEG_INF, NEG_INF])
                        entry[0] = _log_add(entry[0], total + lp)
                        continue
                    if token == last:
                        # A repeat collapses into the prefix, unless a blank separates the two.
                        if token_end > NEG_INF:
                            same = extended.setdefault(prefix, [NEG_INF, NEG_INF])
                            same[1] = _log_add(same[1], token_end + lp)
                        if blank_end == NEG_INF:
                            continue
                        new_label = blank_end + lp
                    else:
                        new_label = total + lp
                    longer = prefix + (token,)
                    if longer not in lm_states:
                        lm_states[longer] = self._extend_lm_state(prefix, lm_states[prefix], token)
                    entry = extended.setdefault(longer, [NEG_INF, NEG_INF])
                    entry[1] = _log_add(entry[1], new_label)
            beams = dict(
                heapq.nlargest(
                    self.beam_size,
                    extended.items(),
                    key=lambda item: self._score(_log_add(*item[1]), *lm_states[item[0]]),
                )
            )
        hypotheses = []
        for prefix, ends in beams.items():
            lm_score, num_units = self._final_lm_state(prefix, lm_states[prefix])
            acoustic = _log_add(*ends)
            hypotheses.append(
                CTCHypothesis(
                    tokens=list(prefix),
                    score=self._score(acoustic, lm_score, num_units),
                    acoustic_score=acoustic,
                    lm_score=lm_score,
                    num_lm_units=num_units,
                )
            )
        return sorted(hypotheses, key=lambda h: h.score, reverse=True)

    def _score(self, acoustic: float, lm_score: float, num_units: int) -> float:
        return acoustic + self.lm_weight * lm_score + self.insertion_bonus * num_units

    def _extend_lm_state(
        self, prefix: tuple[int, ...], state: tuple[float, int], token: int
    ) -> tuple[float, int]:
        """(LM log-prob, scored units) of ``prefix + (token,)`` from those of ``prefix``."""
        if self.lm is None:
            return state
        lm_score, num_units = state
        if self.word_boundary_id is None:
            return lm_score + self.lm.log_prob(prefix, token), num_units + 1
        if token != self.word_boundary_id or not prefix or prefix[-1] == self.word_boundary_id:
            return state
        *history, word = split_words(prefix, self.word_boundary_id)
        return lm_score + self.lm.log_prob(history, word), num_units + 1

    def _final_lm_state(
        self, prefix: tuple[int, ...], state: tuple[float, int]
    ) -> tuple[float, int]:
        """Adds the trailing word (not yet closed by a boundary) in word mode."""
        if self.lm is None or self.word_boundary_id is None:
            return state
        return self._extend_lm_state(prefix, state, self.word_boundary_id)


def ctc_prefix_beam_search(
    log_probs: torch.Tensor,
    lengths: torch.Tensor | None = None,
    blank_id: int = 0,
    beam_size: int = 10,
    lm: LanguageModel | None = None,
    lm_weight: float = 0.5,
    insertion_bonus: float = 0.0,
    word_boundary_id: int | None = None,
    top_k: int | None = None,
    min_token_log_prob: float | None = None,
) -> list[list[CTCHypothesis]]:
    """Functional form of ``CTCPrefixBeamSearcher`` (same arguments); n-best per utterance."""
    searcher = CTCPrefixBeamSearcher(
        blank_id,
        beam_size,
        lm,
        lm_weight,
        insertion_bonus,
        word_boundary_id,
        top_k,
        min_token_log_prob,
    )
    return searcher(log_probs, lengths)
