"""CTC decoders: hand cases, brute-force marginalisation over all alignments, LM hook, n-gram LM."""

import itertools
import math

import pytest
import torch

from speechlobes.decoders.ctc import (
    CTCPrefixBeamSearcher,
    NGramLM,
    ctc_greedy_decode,
    ctc_prefix_beam_search,
    split_words,
)


def collapse(path, blank_id=0):
    return [token for token, _ in itertools.groupby(path) if token != blank_id]


def random_log_probs(batch, frames, vocab, seed):
    generator = torch.Generator().manual_seed(seed)
    return (2 * torch.randn(batch, frames, vocab, generator=generator)).log_softmax(dim=-1)


def brute_force_label_log_probs(log_probs: torch.Tensor, blank_id: int = 0) -> dict:
    """Sums the probability of every alignment path, per collapsed label sequence."""
    frames, vocab = log_probs.shape
    totals = {}
    for path in itertools.product(range(vocab), repeat=frames):
        labels = tuple(collapse(path, blank_id))
        path_log_prob = sum(log_probs[t, token].item() for t, token in enumerate(path))
        totals[labels] = torch.logaddexp(
            torch.tensor(totals.get(labels, -math.inf), dtype=torch.float64),
            torch.tensor(path_log_prob, dtype=torch.float64),
        ).item()
    return totals


def test_greedy_collapses_repeats_and_drops_blanks():
    path = [1, 1, 0, 1, 2, 2, 0, 0, 3]
    log_probs = torch.full((1, len(path), 4), -10.0)
    log_probs[0, torch.arange(len(path)), torch.tensor(path)] = 0.0
    assert ctc_greedy_decode(log_probs, blank_id=0) == [[1, 1, 2, 3]]
    assert ctc_greedy_decode(log_probs, blank_id=3) == [[1, 0, 1, 2, 0]]


def test_greedy_equals_argmax_collapse_with_relative_and_absolute_lengths():
    log_probs = random_log_probs(4, 30, 6, seed=0)
    absolute = torch.tensor([30, 17, 1, 24])
    expected = [collapse(log_probs[i, :n].argmax(-1).tolist()) for i, n in enumerate(absolute)]
    assert ctc_greedy_decode(log_probs, absolute) == expected
    assert ctc_greedy_decode(log_probs, absolute / 30) == expected
    assert ctc_greedy_decode(log_probs)[0] == expected[0]


@pytest.mark.parametrize("frames, vocab", [(1, 2), (2, 3), (3, 2), (4, 3), (5, 3), (5, 2)])
def test_prefix_beam_search_equals_brute_force_marginalisation(frames, vocab):
    for seed in range(3):
        log_probs = random_log_probs(1, frames, vocab, seed=seed + 10 * frames)
        oracle = brute_force_label_log_probs(log_probs[0])
        hypotheses = ctc_prefix_beam_search(log_probs, blank_id=0, beam_size=1000)[0]
        found = {tuple(h.tokens): h.acoustic_score for h in hypotheses}
        assert found.keys() == oracle.keys()
        for labels, log_prob in oracle.items():
            assert found[labels] == pytest.approx(log_prob, abs=1e-9)
        best_labels = max(oracle, key=oracle.get)
        assert tuple(hypotheses[0].tokens) == best_labels
        assert hypotheses[0].score == pytest.approx(oracle[best_labels], abs=1e-9)


def test_prefix_beam_search_handles_a_blank_that_is_not_zero():
    log_probs = random_log_probs(1, 4, 3, seed=5)
    oracle = brute_force_label_log_probs(log_probs[0], blank_id=2)
    best = ctc_prefix_beam_search(log_probs, blank_id=2, beam_size=100)[0][0]
    best_labels = max(oracle, key=oracle.get)
    assert (tuple(best.tokens), best.acoustic_score) == (
        best_labels,
        pytest.approx(oracle[best_labels]),
    )


def test_hand_computed_repeat_needs_a_blank_between():
    # Frames favour 1, blank, 1: the two 1s are separate labels only through the blank.
    probs = torch.tensor([[[0.2, 0.8], [0.7, 0.3], [0.2, 0.8]]])
    hypotheses = ctc_prefix_beam_search(probs.log(), blank_id=0, beam_size=10)[0]
    scores = {tuple(h.tokens): math.exp(h.acoustic_score) for h in hypotheses}
    assert scores[(1, 1)] == pytest.approx(0.8 * 0.7 * 0.8)
    assert scores[()] == pytest.approx(0.2 * 0.7 * 0.2)
    assert scores[(1,)] == pytest.approx(1 - 0.8 * 0.7 * 0.8 - 0.2 * 0.7 * 0.2)


def test_batched_search_equals_one_utterance_at_a_time():
    log_probs = random_log_probs(3, 12, 5, seed=2)
    lengths = torch.tensor([1.0, 0.5, 0.75])
    searcher = CTCPrefixBeamSearcher(blank_id=0, beam_size=5)
    batched = searcher(log_probs, lengths)
    for i, frames in enumerate([12, 6, 9]):
        alone = searcher(log_probs[i : i + 1, :frames])[0]
        assert [h.tokens for h in batched[i]] == [h.tokens for h in alone]
        assert [h.score for h in batched[i]] == pytest.approx([h.score for h in alone])
    assert all(len(nbest) <= 5 for nbest in batched)
    assert all(a.score >= b.score for nbest in batched for a, b in itertools.pairwise(nbest))


def test_top_one_token_per_frame_reduces_to_the_greedy_path():
    log_probs = random_log_probs(2, 15, 4, seed=3)
    hypotheses = ctc_prefix_beam_search(log_probs, blank_id=0, beam_size=4, top_k=1)
    for i, greedy in enumerate(ctc_greedy_decode(log_probs)):
        assert len(hypotheses[i]) == 1 and hypotheses[i][0].tokens == greedy
        best_path_score = log_probs[i].max(-1).values.sum().item()
        assert hypotheses[i][0].acoustic_score == pytest.approx(best_path_score)


def test_token_pruning_by_log_prob_keeps_the_best_token_of_each_frame():
    log_probs = random_log_probs(1, 10, 4, seed=4)
    pruned = ctc_prefix_beam_search(log_probs, beam_size=8, min_token_log_prob=0.0)[0]
    assert [h.tokens for h in pruned] == ctc_greedy_decode(log_probs)
    loose = ctc_prefix_beam_search(log_probs, beam_size=8, min_token_log_prob=-1e9)[0]
    exact = ctc_prefix_beam_search(log_probs, beam_size=8)[0]
    assert [h.tokens for h in loose] == [h.tokens for h in exact]


def test_frames_left_with_the_blank_alone_change_nothing_but_the_scores():
    # A blank-only frame takes a shortcut; the same frame with a second, impossible blank
    # entry goes through the general update: both must give identical n-bests.
    log_probs = random_log_probs(1, 30, 6, seed=7)[0]
    log_probs[::3] = torch.tensor([-1e-4] + [-12.0] * 5)  # blank-dominated frames
    lm = NGramLM.from_sequences([[1, 2, 3], [2, 4, 5], [1, 5]] * 3, order=3, k=0.5)
    searcher = CTCPrefixBeamSearcher(beam_size=6, lm=lm, lm_weight=0.7, min_token_log_prob=-6)
    frames = searcher._frame_candidates(log_probs.double())
    assert sum(frame == [(0, pytest.approx(-1e-4))] for frame in frames) >= 10
    padded = [frame + [(0, -math.inf)] if len(frame) == 1 else frame for frame in frames]
    fast, general = searcher.search(frames), searcher.search(padded)
    assert [(h.tokens, h.score, h.lm_score) for h in fast] == [
        (h.tokens, h.score, h.lm_score) for h in general
    ]


def token_case():
    """Blank 0, tokens 1..3. Acoustically "1 2" beats "1 3" (0.5 vs 0.4 in the second frame)."""
    probs = torch.tensor([[[0.05, 0.9, 0.03, 0.02], [0.05, 0.05, 0.5, 0.4]]])
    return probs.log()


def test_token_lm_changes_the_ranking_and_scores_add_up():
    lm = NGramLM.from_sequences([[1, 3]] * 10 + [[1, 2]], order=2, k=0.1)
    without = ctc_prefix_beam_search(token_case(), beam_size=10)[0][0]
    assert without.tokens == [1, 2] and without.lm_score == 0.0
    with_lm = ctc_prefix_beam_search(
        token_case(), beam_size=10, lm=lm, lm_weight=1.0, insertion_bonus=0.5
    )
    best = with_lm[0][0]
    assert best.tokens == [1, 3]
    expected_lm = lm.log_prob([], 1) + lm.log_prob([1], 3)
    assert best.lm_score == pytest.approx(expected_lm)
    assert best.num_lm_units == 2
    assert best.score == pytest.approx(best.acoustic_score + expected_lm + 0.5 * 2)
    assert best.acoustic_score == pytest.approx(math.log(0.9 * 0.4))


def test_word_lm_scores_whole_words_including_the_last_one():
    # Blank 0, space 1, letters 2..4. Audio: "2 3 _ 2 ?" where ? is 3 (0.5) or 4 (0.45).
    probs = torch.full((1, 5, 5), 0.01)
    for frame, (token, p) in enumerate([(2, 0.96), (3, 0.96), (1, 0.96), (2, 0.96)]):
        probs[0, frame, token] = p
    probs[0, 4] = torch.tensor([0.03, 0.01, 0.01, 0.5, 0.45])
    log_probs = probs.log()
    training = [split_words([2, 3, 1, 2, 4], word_boundary_id=1)] * 5
    lm = NGramLM.from_sequences(training, order=2, k=0.1)
    without = ctc_prefix_beam_search(log_probs, beam_size=10)[0][0]
    assert without.tokens == [2, 3, 1, 2, 3]
    best = ctc_prefix_beam_search(log_probs, beam_size=10, lm=lm, lm_weight=1.0, word_boundary_id=1)
    best = best[0][0]
    assert best.tokens == [2, 3, 1, 2, 4]
    expected_lm = lm.log_prob([], (2, 3)) + lm.log_prob([(2, 3)], (2, 4))
    assert (best.lm_score, best.num_lm_units) == (pytest.approx(expected_lm), 2)


class PenaliseToken:
    """A hand-made LM following the protocol: every unit costs 0 except ``token`` (log-prob -3)."""

    def __init__(self, token):
        self.token, self.calls = token, []

    def start_state(self):
        return ()

    def score(self, state, unit):
        self.calls.append((state, unit))
        return (-3.0 if unit == self.token else 0.0), state + (unit,)


def test_any_lm_with_start_state_and_score_can_rerank():
    lm = PenaliseToken(2)
    nbest = ctc_prefix_beam_search(token_case(), beam_size=10, lm=lm, lm_weight=1.0)[0]
    assert nbest[0].tokens == [1, 3] and nbest[0].lm_score == 0.0
    penalised = next(h for h in nbest if h.tokens == [1, 2])
    assert penalised.lm_score == -3.0
    assert penalised.score == pytest.approx(math.log(0.9 * 0.5) - 3.0)
    assert ((), 1) in lm.calls and ((1,), 2) in lm.calls


def test_word_mode_ignores_empty_words_from_repeated_boundaries():
    # Blank 0, space 1, letters 2..3; the audio says "_ 2 _ _ 3 _" with certainty.
    path = [1, 2, 1, 0, 1, 3, 1]
    log_probs = torch.full((1, len(path), 4), 1e-4)
    log_probs[0, torch.arange(len(path)), torch.tensor(path)] = 1.0
    log_probs = (log_probs / log_probs.sum(-1, keepdim=True)).log()
    lm = NGramLM.from_sequences([[(2,), (3,)]], order=2, k=0.5)
    best = ctc_prefix_beam_search(log_probs, beam_size=4, lm=lm, word_boundary_id=1)[0][0]
    assert best.tokens == [1, 2, 1, 1, 3, 1]
    assert best.num_lm_units == 2
    assert best.lm_score == pytest.approx(lm.log_prob([], (2,)) + lm.log_prob([(2,)], (3,)))


def test_ngram_lm_is_a_normalised_add_k_estimate():
    lm = NGramLM.from_sequences(["abcab", "abd"], order=3, k=0.5)
    vocabulary = ["a", "b", "c", "d"]
    for history in ["", "a", "ab", "xyab", "zz"]:
        total = sum(math.exp(lm.log_prob(history, unit)) for unit in vocabulary)
        total += math.exp(lm.log_prob(history, "<never seen>"))
        assert total == pytest.approx(1.0)
    # Context ("a", "b") seen twice, followed by "c" once and "d" once; V = 4 units + unknown.
    assert math.exp(lm.log_prob("xab", "c")) == pytest.approx((1 + 0.5) / (2 + 0.5 * 5))
    # Sentence start: context (<s>, <s>) seen twice, always followed by "a".
    assert math.exp(lm.log_prob("", "a")) == pytest.approx((2 + 0.5) / (2 + 0.5 * 5))
    unigram = NGramLM.from_sequences(["aab"], order=1, k=1.0)
    assert math.exp(unigram.log_prob("bbbb", "a")) == pytest.approx(3 / 6)


def test_split_words_drops_empty_words():
    assert split_words([1, 1, 5, 1, 6, 7], word_boundary_id=1) == [(5,), (6, 7)]
    assert split_words([], word_boundary_id=1) == []


def test_prefix_search_takes_log_probs_normalised_to_their_own_precision():
    log_probs = random_log_probs(1, 30, 6, seed=3)
    low = log_probs.bfloat16()  # a bf16 log_softmax sums to 1 within ~0.005, not 1e-3
    assert (low.double().logsumexp(-1).abs().max() > 1e-3).item()
    best = ctc_prefix_beam_search(log_probs, beam_size=4)[0][0].tokens
    assert ctc_prefix_beam_search(low, beam_size=4)[0][0].tokens == best
    with pytest.raises(ValueError, match="log_softmax"):
        ctc_prefix_beam_search((log_probs + 0.1).bfloat16(), beam_size=4)


def test_bad_input_is_refused_with_a_clear_message():
    with pytest.raises(ValueError, match="log_softmax"):
        ctc_prefix_beam_search(torch.randn(1, 4, 3), beam_size=2)
    with pytest.raises(ValueError, match="batch, frames, vocab"):
        ctc_greedy_decode(torch.randn(4, 3))
    with pytest.raises(ValueError, match=r"expected shape \(2,\)"):
        ctc_greedy_decode(random_log_probs(2, 4, 3, seed=0), torch.tensor([4]))
    with pytest.raises(ValueError, match=r"lie in \[0, 4\]"):
        ctc_greedy_decode(random_log_probs(1, 4, 3, seed=0), torch.tensor([5]))
    with pytest.raises(ValueError, match="k > 0"):
        NGramLM.from_sequences([[1]], k=0.0)
    with pytest.raises(ValueError, match="no units"):
        NGramLM.from_sequences([[]])
