"""EER, minDCF, BinaryMetricStats and ClassificationStats: SpeechBrain's definitions, checked
on hand-computed cases."""

import io

import pytest
import torch

from speechlobes.metrics.binary import EER, BinaryMetricStats, minDCF
from speechlobes.metrics.classification import ClassificationStats


def test_eer_of_separable_scores_is_zero_at_the_gap():
    eer, threshold = EER(torch.tensor([0.6, 0.7, 0.8, 0.5]), torch.tensor([0.4, 0.3, 0.2, 0.1]))
    assert eer == 0.0 and 0.4 <= threshold < 0.5


def test_eer_of_overlapping_scores_is_the_mean_of_the_closest_rates():
    # thresholds: scores and midpoints; at 0.5, misses 1/4 (0.5 <= 0.5), false alarms 1/3
    # (0.55 > 0.5): the closest pair of rates, mean 7/24.
    eer, threshold = EER(torch.tensor([0.6, 0.7, 0.8, 0.5]), torch.tensor([0.4, 0.3, 0.55]))
    assert eer == pytest.approx(7 / 24) and threshold == pytest.approx(0.5)


def test_min_dcf_weighs_misses_and_false_alarms_by_their_costs_and_prior():
    positive, negative = torch.tensor([0.9, 0.2]), torch.tensor([0.8, 0.1])
    # threshold 0.15: no miss, one false alarm out of two -> 0.5 * 0.99; threshold 0.85: one
    # miss of two, no false alarm -> 0.5 * 0.01: the minimum.
    cost, threshold = minDCF(positive, negative)
    assert cost == pytest.approx(0.005) and 0.8 <= threshold < 0.9
    cost, _ = minDCF(positive, negative, c_miss=1.0, c_fa=1.0, p_target=0.9)
    assert cost == pytest.approx(0.05)  # now a false alarm (0.5 * 0.1) is cheaper


def test_binary_stats_count_at_the_eer_threshold_or_a_given_one():
    stats = BinaryMetricStats()
    stats.append(["a", "b"], torch.tensor([0.9, 0.8]), torch.tensor([1, 1]))
    stats.append(["c", "d"], torch.tensor([0.3, 0.85]), torch.tensor([0, 0]))
    summary = stats.summarize(threshold=0.5)
    assert (summary["TP"], summary["TN"], summary["FP"], summary["FN"]) == (2.0, 1.0, 1.0, 0.0)
    assert summary["precision"] == pytest.approx(2 / 3) and summary["recall"] == pytest.approx(1.0)
    assert summary["F-score"] == pytest.approx(0.8) and summary["FAR"] == pytest.approx(0.5)
    # EER: at 0.8 one miss (0.8 <= 0.8) and one false alarm (0.85), the lowest such threshold
    assert stats.summarize("threshold") == pytest.approx(0.8)
    with pytest.raises(ValueError, match="2 ids, 1 scores"):
        stats.append(["e", "f"], torch.tensor([0.1]), torch.tensor([0, 1]))


def test_classification_stats_as_speechbrain_documents_them():
    stats = ClassificationStats()
    stats.append(
        ids=["ITEM1", "ITEM2", "ITEM3", "ITEM4"],
        predictions=["M EY K AH", "T EY K", "B AE D", "M EY K"],
        targets=["M EY K", "T EY K", "B AE D", "M EY K"],
        categories=["make", "take", "bad", "make"],
    )
    stream = io.StringIO()
    stats.write_stats(stream)
    assert stream.getvalue() == (
        "Overall Accuracy: 75%\n\nClass-Wise Accuracy\n-------------------\n"
        "bad -> B AE D : 1 / 1 (100.00%)\nmake -> M EY K: 1 / 2 (50.00%)\n"
        "take -> T EY K: 1 / 1 (100.00%)\n\nConfusion\n---------\n"
        "Target: bad -> B AE D\n  -> B AE D   : 1 / 1 (100.00%)\n"
        "Target: make -> M EY K\n  -> M EY K   : 1 / 2 (50.00%)\n  -> M EY K AH: 1 / 2 (50.00%)\n"
        "Target: take -> T EY K\n  -> T EY K   : 1 / 1 (100.00%)\n"
    )
    summary = stats.summarize()
    assert summary["accuracy"] == 0.75
    assert summary["classwise_stats"][("make", "M EY K")] == {
        "total": 2.0,
        "correct": 1.0,
        "accuracy": 0.5,
    }
    assert summary["keys"] == [("bad", "B AE D"), ("make", "M EY K"), ("take", "T EY K")]
    assert summary["predictions"] == ["B AE D", "M EY K", "M EY K AH", "T EY K"]
    assert summary["confusion_matrix"].tolist() == [
        [1, 0, 0, 0],
        [0, 1, 1, 0],
        [0, 0, 0, 1],
    ]


def test_classification_without_categories_and_bad_input():
    stats = ClassificationStats()
    stats.append(["1", "2", "3"], ["dog", "cat", "cat"], ["dog", "dog", "cat"])
    assert stats.summarize("classwise_accuracy") == {"cat": 1.0, "dog": 0.5}
    assert stats.summarize("classwise_correct") == {"cat": 1.0, "dog": 1.0}
    with pytest.raises(ValueError, match="3 ids, 2 predictions"):
        stats.append(["4", "5", "6"], ["a", "b"], ["a", "b", "c"])
    with pytest.raises(ValueError, match="nothing appended"):
        ClassificationStats().summarize()
