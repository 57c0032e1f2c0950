"""CTC decoding: greedy best path, and prefix beam search with an optional n-gram LM.

``log_probs`` are (batch, frames, vocab) log-softmax outputs. ``lengths`` may be RELATIVE
(floating point, SpeechBrain's ``wav_lens``) or ABSOLUTE frame counts (integer dtype); None
means every frame is valid.

Prefix beam search keeps, for every label prefix, the probability of all alignments ending
in a blank and of those ending in the prefix's last label, so the acoustic score of a
hypothesis is log P(labels | audio) summed over its alignments (exact when nothing is pruned).
A language model adds ``lm_weight * log P_lm`` and ``insertion_bonus`` per scored LM unit.
LM units are the CTC tokens themselves, or, with ``word_boundary_id`` (given to the searcher,
or named by the LM itself, as :class:`~speechlobes.decoders.ngram.TokenLM` does), words:
tuples of token ids between boundary tokens, scored when a word is closed by a boundary and,
at the end, for the trailing word. There is no end-of-sentence score. N-gram models
(Kneser-Ney estimation, ARPA files) live in :mod:`speechlobes.decoders.ngram`.

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
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import torch

from speechlobes.decoders.ngram import SENTENCE_START, NGramLM
from speechlobes.nnet.lengths import lengths_to_padding_mask, relative_to_absolute_lengths

__all__ = [
    "SENTENCE_START",
    "CTCHypothesis",
    "CTCPrefixBeamSearcher",
    "LanguageModel",
    "NGramLM",
    "ctc_greedy_decode",
    "ctc_prefix_beam_search",
    "frame_counts",
    "split_words",
]

NEG_INF = float("-inf")


def frame_counts(lengths: torch.Tensor | None, batch_size: int, max_frames: int) -> torch.Tensor:
    """Relative (float) or absolute (integer) lengths -> int64 frame counts, checked against
    ``max_frames``.
    """
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
    """What prefix beam search needs from a language model: scoring one unit at a time.

    The state summarises the history the model needs (an n-gram model keeps its last n-1
    units), so that extending a hypothesis costs the same however long it already is. A model
    over words may name the word-break token in a ``word_boundary_id`` attribute.
    """

    def start_state(self) -> Hashable:
        """The state before the first unit of a sentence."""
        ...

    def score(self, state: Hashable, unit: Hashable) -> tuple[float, Hashable]:
        """Natural-log probability of ``unit`` after ``state``, and the state that follows."""
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


@dataclass(frozen=True)
class CTCHypothesis:
    """One n-best entry, scored
    ``score = acoustic_score + lm_weight * lm_score + insertion_bonus * num_lm_units``.
    """

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
        lm: optional ``LanguageModel`` (e.g. ``NGramLM``, ``ngram.TokenLM``) over tokens, or
            over words with ``word_boundary_id``.
        lm_weight, insertion_bonus: weight of the LM log-probability, bonus per LM unit.
        word_boundary_id: the space token's id, to score words instead of tokens (default:
            the LM's own ``word_boundary_id``, if it has one).
        top_k: consider only the k most probable tokens of each frame.
        min_token_log_prob: ignore tokens below this log-probability in a frame (the frame's
            best token is always considered).

    Without ``top_k`` or ``min_token_log_prob`` every frame tries every token: exact up to
    the beam, but slow for large vocabularies. On a trained model's peaky outputs,
    ``min_token_log_prob=-10`` (or ``top_k`` near ``beam_size``) rarely changes the result
    and leaves a few candidates per frame.

    Example:
        >>> searcher = CTCPrefixBeamSearcher(blank_id=0, beam_size=8)
        >>> log_probs = torch.tensor([[[0.5, 0.4, 0.1], [0.5, 0.4, 0.1]]]).log()
        >>> [(h.tokens, round(h.score, 4)) for h in searcher(log_probs)[0]][:2]
        [([1], -0.5798), ([], -1.3863)]
    """

    def __init__(
        self,
        blank_id: int = 0,
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
        batch_size, max_frames, _ = log_probs.shape
        counts = frame_counts(lengths, batch_size, max_frames).tolist()
        # a log_softmax in bfloat16 (or float16) is only normalised to its own precision
        tolerance = max(1e-3, 2 * torch.finfo(log_probs.dtype).eps)
        log_probs = log_probs.detach().cpu().double()
        results = []
        for utterance, num_frames in enumerate(counts):
            valid = log_probs[utterance, :num_frames]
            normaliser = valid.logsumexp(dim=-1)
            if not torch.allclose(normaliser, torch.zeros_like(normaliser), atol=tolerance):
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
        self._boundary = self.word_boundary_id
        if self._boundary is None and self.lm is not None:
            self._boundary = getattr(self.lm, "word_boundary_id", None)
        prefixes = _PrefixTree(self._start_lm_state())
        # prefix node -> [log P(alignments ending in blank),
        #                 log P(alignments ending in its last token)]
        beams: dict[int, list[float]] = {_PrefixTree.ROOT: [0.0, NEG_INF]}
        for frame in frames:
            if len(frame) == 1 and frame[0][0] == blank:
                # Only the blank: every prefix stays, now ending in blank, in the same order.
                step = frame[0][1]
                beams = {node: [_log_add(*ends) + step, NEG_INF] for node, ends in beams.items()}
                continue
            # Candidates are keyed by (parent node, last token), which names a prefix uniquely
            # without creating a tree node for every extension that pruning then discards.
            extended: dict[tuple[int, int], list[float]] = {}
            for node, (blank_end, token_end) in beams.items():
                total = _log_add(blank_end, token_end)
                own_key = prefixes.key(node)
                last = own_key[1]
                for token, lp in frame:
                    if token == blank:
                        entry = extended.setdefault(own_key, [NEG_INF, NEG_INF])
                        entry[0] = _log_add(entry[0], total + lp)
                        continue
                    if token == last:
                        # A repeat collapses into the prefix, unless a blank separates the two.
                        if token_end > NEG_INF:
                            same = extended.setdefault(own_key, [NEG_INF, NEG_INF])
                            same[1] = _log_add(same[1], token_end + lp)
                        if blank_end == NEG_INF:
                            continue
                        new_label = blank_end + lp
                    else:
                        new_label = total + lp
                    entry = extended.setdefault((node, token), [NEG_INF, NEG_INF])
                    entry[1] = _log_add(entry[1], new_label)
            if self.lm is None:
                survivors = heapq.nlargest(
                    self.beam_size, extended.items(), key=lambda item: _log_add(*item[1])
                )
            else:
                survivors = heapq.nlargest(
                    self.beam_size,
                    extended.items(),
                    key=lambda item: self._score(
                        _log_add(*item[1]), prefixes.lm_state_of(item[0], self._extend_lm_state)
                    ),
                )
            beams = {prefixes.node(key, self._extend_lm_state): ends for key, ends in survivors}
        hypotheses = []
        for node, ends in beams.items():
            lm_state = self._final_lm_state(prefixes.lm_state[node])
            acoustic = _log_add(*ends)
            hypotheses.append(
                CTCHypothesis(
                    tokens=prefixes.tokens(node),
                    score=self._score(acoustic, lm_state),
                    acoustic_score=acoustic,
                    lm_score=lm_state.log_prob,
                    num_lm_units=lm_state.num_units,
                )
            )
        return sorted(hypotheses, key=lambda h: h.score, reverse=True)

    def _score(self, acoustic: float, lm_state: _LMState) -> float:
        return (
            acoustic
            + self.lm_weight * lm_state.log_prob
            + self.insertion_bonus * lm_state.num_units
        )

    def _start_lm_state(self) -> _LMState:
        return _LMState(0.0, 0, None if self.lm is None else self.lm.start_state(), ())

    def _extend_lm_state(self, state: _LMState, token: int) -> _LMState:
        """The LM state of a prefix extended by ``token``."""
        if self.lm is None:
            return state
        if self._boundary is None:
            return state.scored(*self.lm.score(state.model_state, token))
        if token != self._boundary:
            return state._replace(partial_word=state.partial_word + (token,))
        if not state.partial_word:
            return state
        return state.scored(*self.lm.score(state.model_state, state.partial_word))

    def _final_lm_state(self, state: _LMState) -> _LMState:
        """Scores the trailing word (not yet closed by a boundary) in word mode."""
        if self.lm is None or self._boundary is None:
            return state
        return self._extend_lm_state(state, self._boundary)


class _LMState(NamedTuple):
    """LM bookkeeping of one prefix: summed log-prob, units scored, model state, open word."""

    log_prob: float
    num_units: int
    model_state: Hashable
    partial_word: tuple[int, ...]

    def scored(self, log_prob: float, model_state: Hashable) -> _LMState:
        return _LMState(self.log_prob + log_prob, self.num_units + 1, model_state, ())


class _PrefixTree:
    """Label prefixes as nodes of a tree; a node is also named by its (parent, last token) key.

    Extending a prefix then costs O(1) instead of copying its tokens, and an LM state is
    computed once per (parent, token), even for candidates that never become nodes.
    """

    ROOT = 0

    def __init__(self, root_lm_state: _LMState):
        self.parent, self.last_token, self.lm_state = [-1], [-1], [root_lm_state]
        self._nodes: dict[tuple[int, int], int] = {(-1, -1): self.ROOT}
        self._pending_lm_states: dict[tuple[int, int], _LMState] = {}

    def key(self, node: int) -> tuple[int, int]:
        return self.parent[node], self.last_token[node]

    def lm_state_of(
        self, key: tuple[int, int], extend: Callable[[_LMState, int], _LMState]
    ) -> _LMState:
        """The LM state of the prefix named ``key``, whether or not it is a node yet."""
        node = self._nodes.get(key)
        if node is not None:
            return self.lm_state[node]
        if key not in self._pending_lm_states:
            parent, token = key
            self._pending_lm_states[key] = extend(self.lm_state[parent], token)
        return self._pending_lm_states[key]

    def node(self, key: tuple[int, int], extend: Callable[[_LMState, int], _LMState]) -> int:
        """The node named ``key``, created if needed."""
        node = self._nodes.get(key)
        if node is None:
            lm_state = self.lm_state_of(key, extend)
            node = self._nodes[key] = len(self.parent)
            self.parent.append(key[0])
            self.last_token.append(key[1])
            self.lm_state.append(lm_state)
        return node

    def tokens(self, node: int) -> list[int]:
        tokens = []
        while node != self.ROOT:
            tokens.append(self.last_token[node])
            node = self.parent[node]
        return tokens[::-1]


def ctc_prefix_beam_search(
    log_probs: torch.Tensor, lengths: torch.Tensor | None = None, **options: Any
) -> list[list[CTCHypothesis]]:
    """Functional form: ``options`` are ``CTCPrefixBeamSearcher``'s arguments (blank_id,
    beam_size, lm, lm_weight, insertion_bonus, word_boundary_id, top_k, min_token_log_prob).
    Returns the n-best per utterance, best first."""
    return CTCPrefixBeamSearcher(**options)(log_probs, lengths)
