"""Kneser-Ney estimation against hand-computed probabilities, ARPA round trips, and the token
adapter the CTC prefix beam search uses."""

import math

import pytest
import torch

from speechlobes.decoders.ctc import CTCPrefixBeamSearcher
from speechlobes.decoders.ngram import UNK, BackoffLM, TokenLM, kneser_ney

CORPUS = [["a", "b"], ["a", "c"], ["a", "b"]]


def _p(lm, history, unit):
    return math.exp(lm.log_prob(history, unit))


def test_bigram_kneser_ney_matches_hand_computed_probabilities():
    # Padded: <s> a b </s> (twice), <s> a c </s>.
    # Bigram counts: <s>a 3, ab 2, ac 1, b</s> 2, c</s> 1 -> n1 = 2, n2 = 2, D2 = 2 / (2 + 4).
    # Unigram continuation counts: a 1 (<s>a is kept as the count of an <s>-n-gram but <s>
    # itself is never predicted), b 1, c 1, </s> 2 -> total 5, 4 types; n1 = 3, n2 = 1,
    # D1 = 3 / 5; vocabulary a b c </s> <unk> -> uniform 1/5.
    lm = kneser_ney(CORPUS, order=2)
    d1, d2 = 3 / 5, 1 / 3
    p1 = {w: max(c - d1, 0) / 5 + d1 * 4 / 5 / 5 for w, c in {"a": 1, "b": 1, "c": 1}.items()}
    p1["</s>"] = (2 - d1) / 5 + d1 * 4 / 5 / 5
    p1[UNK] = d1 * 4 / 5 / 5
    assert _p(lm, [], "a") == pytest.approx((3 - d2) / 3 + d2 * 1 / 3 * p1["a"])
    assert _p(lm, ["a"], "b") == pytest.approx((2 - d2) / 3 + d2 * 2 / 3 * p1["b"])
    assert _p(lm, ["a"], "c") == pytest.approx((1 - d2) / 3 + d2 * 2 / 3 * p1["c"])
    # "a" never followed "b": the back-off weight of context b times the unigram estimate
    assert _p(lm, ["b"], "a") == pytest.approx(d2 * 1 / 2 * p1["a"])
    assert _p(lm, ["a"], "zebra") == pytest.approx(d2 * 2 / 3 * p1[UNK])


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_every_context_is_a_probability_distribution(order):
    corpus = [s.split() for s in ("the cat sat", "the dog sat down", "a cat ran", "the cat ran")]
    lm = kneser_ney(corpus, order=order)
    vocabulary = ["the", "cat", "sat", "dog", "down", "a", "ran", "</s>", UNK]
    for history in ([], ["the"], ["the", "cat"], ["cat", "ran"], ["zzz", "qq"]):
        assert sum(_p(lm, history, w) for w in vocabulary) == pytest.approx(1.0)


def test_higher_order_prefers_the_continuation_seen_in_training():
    corpus = [["i", "like", "tea"]] * 3 + [["you", "like", "coffee"]] * 3
    lm = kneser_ney(corpus, order=3)
    assert _p(lm, ["i", "like"], "tea") > 0.5 > _p(lm, ["i", "like"], "coffee")
    assert lm.sentence_log_prob(["i", "like", "tea"]) > lm.sentence_log_prob(["tea", "like", "i"])


def test_arpa_round_trip_keeps_scores(tmp_path):
    lm = kneser_ney([s.split() for s in ("a b c", "a b d", "b c d e")], order=3)
    path = tmp_path / "lm.arpa"
    lm.write_arpa(path)
    text = path.read_text()
    assert text.startswith("\n\\data\\\nngram 1=") and text.rstrip().endswith("\\end\\")
    again = BackoffLM.read_arpa(path)
    for history, unit in ((["a", "b"], "c"), (["b"], "e"), (["e"], "a"), ([], "zz")):
        assert again.log_prob(history, unit) == pytest.approx(lm.log_prob(history, unit), abs=1e-5)


def test_reads_a_space_separated_arpa_file_and_names_bad_lines(tmp_path):
    path = tmp_path / "lm.arpa"
    path.write_text(
        "\\data\\\nngram 1=3\nngram 2=1\n\n\\1-grams:\n-1.0 <unk>\n-0.5 <s> -0.3\n-0.2 x -0.1\n"
        "\n\\2-grams:\n-0.1 <s> x\n\n\\end\\\n"
    )
    lm = BackoffLM.read_arpa(path)
    assert lm.log_prob([], "x") == pytest.approx(-0.1 * math.log(10))
    assert lm.log_prob(["x"], "x") == pytest.approx((-0.1 - 0.2) * math.log(10))
    path.write_text("\\data\\\n\\1-grams:\n-1.0\n")
    with pytest.raises(ValueError, match="lm.arpa:3"):
        BackoffLM.read_arpa(path)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="order"):
        kneser_ney(CORPUS, order=0)
    with pytest.raises(ValueError, match="no units"):
        kneser_ney([[]], order=2)
    with pytest.raises(ValueError, match="units"):
        TokenLM("x.arpa", tokenizer=None, units="phones")


class _CharTokenizer:
    """Stands in for a SentencePiece character model: 0 pad, 1 unk, then the pieces."""

    pieces = ["<pad>", "<unk>", "\u2581", "A", "B"]

    def __len__(self):
        return len(self.pieces)

    def id_to_piece(self, token_id):
        return self.pieces[token_id]


class _CallableCharTokenizer(_CharTokenizer):
    """A tokenizer that also encodes when called, as speechlobes' SentencePiece does."""

    def __call__(self, batch):
        return [[self.pieces.index(c) for c in text] for text in batch]


def test_token_lm_takes_a_callable_tokenizer_as_the_tokenizer_not_a_factory(tmp_path):
    arpa = tmp_path / "chars.arpa"
    kneser_ney([list("\u2581AB")] * 5, order=3).write_arpa(arpa)
    by_instance = TokenLM(arpa, tokenizer=_CallableCharTokenizer(), units="characters")
    by_factory = TokenLM(arpa, tokenizer=_CallableCharTokenizer, units="characters")
    for lm in (by_instance, by_factory):
        assert lm.score(lm.start_state(), 3) == by_factory.score(by_factory.start_state(), 3)


def test_token_lm_scores_words_and_lets_the_searcher_pick_the_likely_spelling(tmp_path):
    arpa = tmp_path / "words.arpa"
    kneser_ney([["AB"]] * 20 + [["BA"]], order=2).write_arpa(arpa)
    lm = TokenLM(arpa, tokenizer=_CharTokenizer, units="words")
    assert lm.word_boundary_id == 2
    assert lm.score(lm.start_state(), (3, 4))[0] > lm.score(lm.start_state(), (4, 3))[0]
    # The acoustics slightly prefer "BA"; the LM knows "AB" far better.
    frames = [[0.1, 0, 0, 0.4, 0.5], [0.9, 0, 0, 0.05, 0.05], [0.1, 0, 0, 0.5, 0.4]]
    log_probs = torch.tensor(frames).clamp_min(1e-4).log().log_softmax(-1)[None]
    plain = CTCPrefixBeamSearcher(beam_size=8)(log_probs)[0][0].tokens
    with_lm = CTCPrefixBeamSearcher(beam_size=8, lm=lm, lm_weight=1.0)(log_probs)[0][0].tokens
    assert (plain, with_lm) == ([4, 3], [3, 4])


def test_token_lm_over_characters_and_a_missing_file(tmp_path):
    arpa = tmp_path / "chars.arpa"
    kneser_ney([list("\u2581AB")] * 5, order=3).write_arpa(arpa)
    lm = TokenLM(arpa, tokenizer=_CharTokenizer(), units="characters")
    assert lm.word_boundary_id is None
    state = lm.score(lm.start_state(), 2)[1]
    assert lm.score(state, 3)[0] > lm.score(state, 4)[0]
    # a CTC head wider than the tokenizer: ids past it are unknown units
    assert lm.score(state, 7)[0] == lm.score(state, 1)[0] == lm._load().score(state, UNK)[0]
    with pytest.raises(FileNotFoundError, match="missing.arpa"):
        TokenLM(tmp_path / "missing.arpa", tokenizer=_CharTokenizer).start_state()


def test_token_lm_remembers_scores_within_its_bound(tmp_path):
    arpa = tmp_path / "chars.arpa"
    kneser_ney([list("\u2581AB"), list("\u2581BA")] * 5, order=3).write_arpa(arpa)
    lm = TokenLM(arpa, tokenizer=_CharTokenizer(), units="characters", cache_size=2)
    model = lm._load()
    start = lm.start_state()
    # the same answers as the ARPA model's, asked once or twice
    for token, piece in ((3, "A"), (4, "B"), (3, "A")):
        assert lm.score(start, token) == model.score(start, piece)
    assert len(lm._scores) == 2
    assert lm.score(start, 2) == model.score(start, "\u2581")  # full: forgotten, then kept
    assert len(lm._scores) == 1
    uncached = TokenLM(arpa, tokenizer=_CharTokenizer(), units="characters", cache_size=0)
    assert uncached.score(start, 3) == model.score(start, "A") and not uncached._scores
