"""The mini LibriSpeech's text: walks of real English word pairs, the split plan (no dev/test
sentence in training, a test split of unseen words), and the held-out sentence set."""

import random
import re

import pytest

from tools.mini_data.librispeech import (
    DEV,
    TEST,
    TEST_OTHER,
    TRAIN,
    LibriSpeechSizes,
    make_heldout,
    plan_texts,
)
from tools.mini_data.real_english import (
    BLOCKED,
    CONTRACTIONS,
    SentenceSampler,
    contract,
    swappable_words,
    word_counts,
)
from tools.mini_data.text import librispeech_normalise
from tools.mini_data.voices import ALL_ENGLISH_VOICES, make_speakers


def test_the_count_lists_are_read_whole():
    counts = word_counts()
    assert len(counts.unigrams) == 82_834  # the file's name says 82,765
    assert sum(len(followers) for followers in counts.bigrams.values()) == 242_342  # distinct
    assert list(counts.unigrams)[:3] == ["the", "of", "and"]
    assert len(swappable_words(counts)) > 40_000


UNDO = {joined: pair for pair, joined in CONTRACTIONS.items()}


def test_walks_follow_listed_word_pairs_and_avoid_banned_words():
    counts = word_counts()
    banned = frozenset(["and", "of"])
    sampler = SentenceSampler(counts, banned=banned, swap_rate=0.0)
    rng = random.Random(3)
    for _ in range(200):
        words = sampler.sample(rng).split()
        plain = [part for w in words for part in UNDO.get(w, (w,))]
        assert 5 <= len(plain) <= 19 and not set(words) & (banned | BLOCKED)
        pairs = list(zip(plain[:-1], plain[1:], strict=True))
        assert all(second in counts.bigrams[first] for first, second in pairs), plain


def test_favoured_words_come_up_far_more_often():
    counts = word_counts()
    favoured = frozenset(swappable_words(counts)[5000:5500])
    rng = random.Random(0)

    def share(sampler):
        words = [w for _ in range(100) for w in sampler.sample(rng).split()]
        return sum(w in favoured for w in words) / len(words)

    assert share(SentenceSampler(counts, favoured=favoured, favour=50.0)) > 10 * share(
        SentenceSampler(counts)
    )


def test_contractions_join_only_listed_pairs():
    rng = random.Random(0)
    assert contract("we are sure it is not".split(), rng, 1.0) == ["we're", "sure", "it's", "not"]
    assert contract("we are sure".split(), rng, 0.0) == ["we", "are", "sure"]
    assert librispeech_normalise(" ".join(["we're", "it's"])) == "WE'RE IT'S"


SIZES = LibriSpeechSizes(
    train_utterances=300,
    dev_utterances=40,
    test_utterances=40,
    test_other_utterances=40,
    lm_sentences=2000,
)


@pytest.fixture(scope="module")
def texts():
    return plan_texts(SIZES, seed=0)


def test_split_plan_keeps_dev_and_test_sentences_out_of_training(texts):
    training = set(texts.splits[TRAIN]) | set(texts.lm_corpus)
    assert len(texts.splits[TRAIN]) == 300 and len(texts.lm_corpus) == 2000
    for split in (DEV, TEST, TEST_OTHER):
        assert len(texts.splits[split]) == 40 and not set(texts.splits[split]) & training
    every = [s for split in texts.splits.values() for s in split] + texts.lm_corpus
    assert len(every) == len(set(every))
    assert all(re.fullmatch(r"[A-Z']+( [A-Z']+)*", sentence) for sentence in every)


def test_test_other_is_mostly_words_training_never_contains(texts):
    training_words = {w for s in texts.splits[TRAIN] + texts.lm_corpus for w in s.split()}
    assert not {w.upper() for w in texts.held_out_words} & training_words
    for sentence in texts.splits[TEST_OTHER]:
        words = sentence.split()
        assert sum(w not in training_words for w in words) / len(words) >= 0.3, sentence
    clean = [w for s in texts.splits[TEST] for w in s.split()]
    assert sum(w not in training_words for w in clean) / len(clean) < 0.15


def test_everyday_sentences_with_numbers_are_mixed_in(texts):
    train = texts.splits[TRAIN]
    assert any(" NINETEEN " in f" {s} " or " TWENTY " in f" {s} " for s in train)
    assert any("'" in s for s in train)


def test_default_training_text_spans_more_than_twenty_thousand_words():
    texts = plan_texts(LibriSpeechSizes(), seed=0)
    words = {w for s in texts.splits[TRAIN] + texts.lm_corpus for w in s.split()}
    assert len(words) > 20_000


def test_the_plan_is_a_function_of_the_seed(texts):
    assert plan_texts(SIZES, seed=0) == texts
    assert plan_texts(SIZES, seed=1).splits[TRAIN] != texts.splits[TRAIN]


def test_heldout_sentences_are_spoken_by_variants_no_training_speaker_uses(tmp_path):
    root = make_heldout(tmp_path, ["Turn left at light 2.", "Tea, please!"], speakers=2)
    lines = sorted(
        line.split(" ", 1)[1]
        for path in (root / "test-clean").rglob("*.trans.txt")
        for line in path.read_text().splitlines()
    )
    assert lines == ["TEA PLEASE", "TURN LEFT AT LIGHT TWO"]
    assert len(list((root / "test-clean").rglob("*.flac"))) == 2
    speakers = make_speakers(
        {TRAIN: 150, DEV: 8, TEST: 8, TEST_OTHER: 8, "heldout": 2},
        held_out=(DEV, TEST, TEST_OTHER, "heldout"),
        seed=0,
        salt="librispeech",
        held_out_fraction=0.15,
        palette=ALL_ENGLISH_VOICES,
    )
    assert {s.voice.variant for s in speakers["heldout"]}.isdisjoint(
        s.voice.variant for s in speakers[TRAIN]
    )
    with pytest.raises(ValueError, match="non-empty sentences"):
        make_heldout(tmp_path / "none", ["!!"])
