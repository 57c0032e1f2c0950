"""Error rates: hand-computed alignments, jiwer as the oracle for WER/CER, input formats, report."""

import io
import random

import jiwer
import pytest
import torch

from speechlobes.metrics.error_rate import (
    ErrorRateStats,
    edit_distance,
    extract_concepts,
    format_alignment,
)

VOCAB = ["the", "a", "cat", "dog", "sat", "on", "mat", "ran", "big", "red"]


def random_sentence_pairs(count: int, seed: int = 0) -> list[tuple[str, str]]:
    """Hypotheses are noisy copies of references, so matches, edits and ties all occur."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(count):
        reference = [rng.choice(VOCAB) for _ in range(rng.randint(1, 12))]
        hypothesis = []
        for word in reference:
            roll = rng.random()
            if roll < 0.6:
                hypothesis.append(word)
            elif roll < 0.75:
                hypothesis.append(rng.choice(VOCAB))
            elif roll < 0.9:
                hypothesis += [word, rng.choice(VOCAB)]
        pairs.append((" ".join(reference), " ".join(hypothesis)))
    return pairs


def rebuild(alignment, reference, hypothesis):
    """The reference and hypothesis the alignment spells out, and whether each step is
    consistent.
    """
    ref_out, hyp_out, consistent = [], [], True
    for op, i, j in alignment:
        if i is not None:
            ref_out.append(reference[i])
        if j is not None:
            hyp_out.append(hypothesis[j])
        if op == "=":
            consistent &= reference[i] == hypothesis[j]
        elif op == "S":
            consistent &= reference[i] != hypothesis[j]
        else:
            consistent &= (op == "I") == (i is None) and (op == "D") == (j is None)
    return ref_out, hyp_out, consistent


@pytest.mark.parametrize(
    "reference, hypothesis, expected_ops, counts",
    [
        ("a b c", "a b c", "===", (0, 0, 0)),
        ("a b c", "a x c", "=S=", (1, 0, 0)),
        ("a b c", "a c", "=D=", (0, 0, 1)),
        ("a c", "a b c", "=I=", (0, 1, 0)),
        ("a b", "", "DD", (0, 0, 2)),
        ("", "a b", "II", (0, 2, 0)),
        # Equal-cost choices as SpeechBrain (and Kaldi) make them.
        ("a b", "a c d", "=SI", (1, 1, 0)),
        ("a b", "b c", "D=I", (0, 1, 1)),
        ("a b c d", "b c d e", "D===I", (0, 1, 1)),
        ("kitten sitting on", "sitting on the", "D==I", (0, 1, 1)),
        ("x a b c", "a b c", "D===", (0, 0, 1)),
    ],
)
def test_edit_distance_gives_hand_computed_alignment(reference, hypothesis, expected_ops, counts):
    ref, hyp = reference.split(), hypothesis.split()
    details = edit_distance(ref, hyp)
    assert "".join(op for op, _, _ in details.alignment) == expected_ops
    assert (details.substitutions, details.insertions, details.deletions) == counts
    assert rebuild(details.alignment, ref, hyp) == (ref, hyp, True)


def test_edit_distance_indices_point_into_both_sequences():
    details = edit_distance(["a", "b", "c"], ["a", "x", "y", "c"])
    assert details.alignment == (("=", 0, 0), ("S", 1, 1), ("I", None, 2), ("=", 2, 3))
    assert details.error_rate == pytest.approx(200 / 3)


def test_error_rate_of_empty_reference():
    assert edit_distance([], []).error_rate == 0.0
    assert edit_distance([], ["a"]).error_rate == float("inf")


@pytest.mark.oracle("jiwer")
def test_wer_equals_jiwer_per_utterance_and_corpus():
    pairs = random_sentence_pairs(300)
    stats = ErrorRateStats()
    for index, (reference, hypothesis) in enumerate(pairs):
        details = edit_distance(reference.split(), hypothesis.split())
        oracle = jiwer.process_words(reference, hypothesis)
        oracle_edits = oracle.substitutions + oracle.insertions + oracle.deletions
        assert details.num_edits == oracle_edits, (reference, hypothesis)
        assert rebuild(details.alignment, reference.split(), hypothesis.split())[2]
        stats.append([f"utt{index}"], [hypothesis], [reference])
    references, hypotheses = zip(*pairs, strict=True)
    assert stats.summarize("WER") == pytest.approx(
        100 * jiwer.wer(list(references), list(hypotheses))
    )
    assert stats.summarize("num_scored_tokens") == sum(len(r.split()) for r in references)


@pytest.mark.oracle("jiwer")
def test_cer_equals_jiwer_with_spaces_counted():
    pairs = random_sentence_pairs(200, seed=1)
    references, hypotheses = (list(side) for side in zip(*pairs, strict=True))
    stats = ErrorRateStats(split_tokens=True)
    stats.append(
        [str(i) for i in range(len(pairs))],
        [h.split() for h in hypotheses],
        [r.split() for r in references],
    )
    assert stats.summarize("error_rate") == pytest.approx(100 * jiwer.cer(references, hypotheses))
    assert stats.summarize("num_scored_tokens") == sum(len(r) for r in references)


def test_padded_tensors_with_relative_lengths_and_ind2lab():
    labels = {1: "the", 2: "cat", 3: "sat", 4: "hat"}
    predict = torch.tensor([[1, 4, 3], [2, 0, 0]])
    target = torch.tensor([[1, 2, 3, 0], [2, 3, 0, 0]])
    stats = ErrorRateStats()
    stats.append(
        ["u1", "u2"],
        predict,
        target,
        predict_len=torch.tensor([1.0, 1 / 3]),
        target_len=torch.tensor([0.75, 0.5]),
        ind2lab=lambda batch: [[labels[i] for i in seq] for seq in batch],
    )
    summary = stats.summarize()
    assert (summary["substitutions"], summary["deletions"], summary["insertions"]) == (1, 1, 0)
    assert summary["WER"] == pytest.approx(40.0)
    assert summary["SER"] == 100.0
    assert stats.utterances[1].reference == ["cat", "sat"]


def test_write_stats_reports_summary_and_alignments():
    stats = ErrorRateStats()
    stats.append(["good", "bad"], ["a b", "a c d"], ["a b", "a b"])
    stream = io.StringIO()
    stats.write_stats(stream)
    text = stream.getvalue()
    assert text.startswith("%WER 50.00 [ 2 / 4, 1 ins, 0 del, 1 sub ]\n%SER 50.00 [ 1 / 2 ]\n")
    assert "good, %WER 0.00 [ 0 / 2, 0 ins, 0 del, 0 sub ]\na ; b\n= ; =\na ; b\n" in text
    expected_bad = "bad, %WER 100.00 [ 2 / 2, 1 ins, 0 del, 1 sub ]\n" + format_alignment(
        ["a", "b"], ["a", "c", "d"], edit_distance(["a", "b"], ["a", "c", "d"]).alignment
    )
    assert expected_bad in text
    assert "a ; b ; <eps>\n= ; S ;   I\na ; c ;   d" in text


def test_bad_input_is_refused_with_a_clear_message():
    stats = ErrorRateStats()
    with pytest.raises(ValueError, match="2 ids, 1 predictions"):
        stats.append(["u1", "u2"], ["a"], ["a"])
    with pytest.raises(ValueError, match="padded"):
        stats.append(["u1"], torch.zeros(1, 2, 3), torch.zeros(1, 2))
    with pytest.raises(KeyError, match="fields are"):
        stats.summarize("wer")


def test_clear_forgets_everything():
    stats = ErrorRateStats()
    stats.append(["u1"], ["a"], ["b"])
    stats.clear()
    assert stats.summarize("num_scored_sents") == 0
    assert stats.summarize("WER") == 0.0


def test_scores_hold_speechbrain_details_per_utterance():
    stats = ErrorRateStats()
    i2l = {0: "a", 1: "b"}
    stats.append(
        ids=["utterance1"],
        predict=torch.tensor([[0, 1, 1]]),
        target=torch.tensor([[0, 1, 0]]),
        target_len=torch.ones(1),
        ind2lab=lambda batch: [[i2l[int(x)] for x in seq] for seq in batch],
    )
    (details,) = stats.scores
    assert details["key"] == "utterance1" and details["WER"] == pytest.approx(100 / 3)
    assert (details["insertions"], details["deletions"], details["substitutions"]) == (0, 0, 1)
    assert details["alignment"] == [("=", 0, 0), ("=", 1, 1), ("S", 2, 2)]
    assert details["ref_tokens"] == ["a", "b", "a"] and details["hyp_tokens"] == ["a", "b", "b"]
    assert stats.ids == ["utterance1"]
    summary = stats.summarize()
    assert summary is stats.summary and summary["num_ref_sents"] == 1
    assert summary["num_absent_sents"] == 0


def test_merge_tokens_and_a_custom_equality():
    stats = ErrorRateStats(merge_tokens=True)
    stats.append(["u"], [list("ab_c_de")], [list("ab_x_de")])
    assert stats.scores[0]["ref_tokens"] == ["ab", "x", "de"] and stats.summarize(
        "WER"
    ) == pytest.approx(100 / 3)
    lenient = ErrorRateStats(equality_comparator=lambda a, b: a.lower() == b.lower())
    lenient.append(["u"], [["The", "Cat"]], [["the", "cat"]])
    assert lenient.summarize("WER") == 0.0


def test_concept_extraction_as_speechbrain_documents_it():
    sequences = [
        ["<response>", "_", "n", "o", "_", ">", "_", "<localisation-ville>",
         "_", "L", "e", "_", "M", "a", "n", "s", "_", ">"],
        ["<response>", "_", "s", "i", "_", ">"],
        ["v", "a", "_", "b", "e", "n", "e"],
    ]  # fmt: skip
    results = [extract_concepts(seq, True, "<", ">", "_") for seq in sequences]
    assert results == [["<response> no", "<localisation-ville> Le Mans"], ["<response> si"], [""]]
    stats = ErrorRateStats(extract_concepts_values=True, tag_in="<", tag_out=">")
    stats.append(["u"], [sequences[1]], [sequences[0]])
    assert stats.summarize("num_scored_tokens") == 2
