"""BLEUStats is sacrebleu's corpus BLEU, accumulated over batches."""

import io
import random

import pytest
import sacrebleu

from speechlobes.metrics.bleu import BLEUStats

WORDS = ["The", "cat", "sat", "on", "the", "mat", ",", "a", "dog", "barked", "loudly", "."]


def noisy_copy(words: list[str], rng: random.Random) -> str:
    kept = [w if rng.random() < 0.8 else rng.choice(WORDS) for w in words if rng.random() < 0.9]
    return " ".join(kept)


def random_corpus(count: int, num_refs: int, seed: int = 0):
    rng = random.Random(seed)
    hypotheses, references = [], []
    for _ in range(count):
        source = [rng.choice(WORDS) for _ in range(rng.randint(3, 15))]
        # Punctuation glued to words, so that the 13a tokenizer has work to do.
        hypotheses.append(noisy_copy(source, rng).replace(" ,", ",").replace(" .", "."))
        references.append([noisy_copy(source, rng) for _ in range(num_refs)])
    return hypotheses, references


@pytest.mark.oracle("sacrebleu")
@pytest.mark.parametrize("num_refs", [1, 3])
def test_corpus_bleu_equals_sacrebleu(num_refs):
    hypotheses, references = random_corpus(120, num_refs, seed=num_refs)
    stats = BLEUStats()
    for start in range(0, 120, 16):
        batch = range(start, min(start + 16, 120))
        refs = [references[i][0] if num_refs == 1 else references[i] for i in batch]
        stats.append([f"utt{i}" for i in batch], [hypotheses[i] for i in batch], refs)
    streams = [[refs[k] for refs in references] for k in range(num_refs)]
    expected = sacrebleu.corpus_bleu(hypotheses, streams)
    summary = stats.summarize()
    assert 0 < expected.score < 100
    assert summary["BLEU"] == pytest.approx(expected.score, rel=1e-12)
    assert summary["precisions"] == pytest.approx(expected.precisions)
    assert (summary["sys_len"], summary["ref_len"]) == (expected.sys_len, expected.ref_len)
    assert summary["BP"] == pytest.approx(expected.bp)
    assert summary["signature"].startswith(f"nrefs:{num_refs}|case:mixed|eff:no|tok:13a|")
    assert summary["num_sentences"] == 120


@pytest.mark.oracle("sacrebleu")
def test_lowercase_and_tokenizer_options_reach_sacrebleu():
    hypotheses, references = ["THE CAT sat."], ["the cat sat ."]
    stats = BLEUStats(lowercase=True, tokenize="none")
    stats.append(["u"], hypotheses, references)
    expected = sacrebleu.corpus_bleu(hypotheses, [references], lowercase=True, tokenize="none")
    assert stats.summarize("BLEU") == pytest.approx(expected.score)
    assert "case:lc" in stats.summarize("signature") and "tok:none" in stats.summarize("signature")


@pytest.mark.oracle("sacrebleu")
def test_write_stats_lists_corpus_score_and_each_utterance():
    stats = BLEUStats()
    stats.append(["u1", "u2"], ["a b c d", "x y"], ["a b c d", "x z"])
    stream = io.StringIO()
    stats.write_stats(stream)
    text = stream.getvalue()
    expected = sacrebleu.corpus_bleu(["a b c d", "x y"], [["a b c d", "x z"]])
    assert text.startswith(f"BLEU = {expected.score:.2f} ")
    assert "signature: nrefs:1|" in text
    assert "u1, sentence BLEU 100.00\nHYP: a b c d\nREF: a b c d\n" in text
    sentence = sacrebleu.sentence_bleu("x y", ["x z"])
    assert f"u2, sentence BLEU {sentence.score:.2f}\nHYP: x y\nREF: x z\n" in text


def test_bad_input_is_refused_with_a_clear_message():
    stats = BLEUStats()
    with pytest.raises(ValueError, match="nothing appended"):
        stats.summarize()
    with pytest.raises(TypeError, match="detokenized strings"):
        stats.append(["u"], [["a", "b"]], ["a b"])
    with pytest.raises(ValueError, match="2 ids, 1 hypotheses"):
        stats.append(["u", "v"], ["a"], ["a"])
    stats.append(["u"], ["a"], ["a"])
    with pytest.raises(ValueError, match="2 references, earlier utterances had 1"):
        stats.append(["v"], ["a"], [["a", "b"]])
    with pytest.raises(KeyError, match="fields are"):
        stats.summarize("bleu")
