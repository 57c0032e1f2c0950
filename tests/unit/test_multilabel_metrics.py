"""Multi-label metrics against scikit-learn (ties included) and scipy's normal quantile."""

import csv
import math

import numpy as np
import pytest
import torch
from scipy.stats import norm
from sklearn.metrics import average_precision_score, roc_auc_score

from speechlobes.metrics.multilabel import MultiLabelStats, average_precision, d_prime, roc_auc


def random_tagging_batch(samples: int, classes: int, seed: int, decimals: int | None = 1):
    """Scores loosely correlated with the targets; rounding to ``decimals`` creates many ties."""
    generator = torch.Generator().manual_seed(seed)
    targets = (torch.rand(samples, classes, generator=generator) < 0.3).long()
    scores = torch.rand(samples, classes, generator=generator) + 0.5 * targets
    if decimals is not None:
        scores = torch.round(scores, decimals=decimals)
    return scores, targets


@pytest.mark.oracle("scikit-learn")
@pytest.mark.parametrize("decimals", [None, 1, 0])
def test_average_precision_equals_sklearn_including_ties(decimals):
    scores, targets = random_tagging_batch(200, 12, seed=decimals or 7, decimals=decimals)
    expected = average_precision_score(targets.numpy(), scores.numpy(), average=None)
    np.testing.assert_allclose(average_precision(scores, targets).numpy(), expected, rtol=1e-12)


@pytest.mark.oracle("scikit-learn")
@pytest.mark.parametrize("decimals", [None, 1, 0])
def test_roc_auc_equals_sklearn_including_ties(decimals):
    scores, targets = random_tagging_batch(200, 12, seed=(decimals or 7) + 1, decimals=decimals)
    expected = roc_auc_score(targets.numpy(), scores.numpy(), average=None)
    np.testing.assert_allclose(roc_auc(scores, targets).numpy(), expected, rtol=1e-12)


def test_hand_computed_ties():
    # One tie group {0.5, 0.5} holding a positive and a negative, above a lone negative.
    scores = torch.tensor([[0.5], [0.5], [0.1]])
    targets = torch.tensor([[1], [0], [0]])
    assert average_precision(scores, targets).item() == pytest.approx(0.5)
    # Pairs (pos, neg): vs the tied 0.5 counts one half, vs 0.1 counts one.
    assert roc_auc(scores, targets).item() == pytest.approx(0.75)


@pytest.mark.oracle("scikit-learn")
def test_classes_without_positives_or_negatives_are_left_out_of_the_means():
    scores, targets = random_tagging_batch(50, 6, seed=3)
    targets[:, 1] = 0  # no positives: neither AP nor AUC
    targets[:, 4] = 1  # no negatives: AP is 1, AUC undefined
    ap, auc = average_precision(scores, targets), roc_auc(scores, targets)
    assert math.isnan(ap[1]) and math.isnan(auc[1]) and math.isnan(auc[4])
    assert ap[4] == 1.0
    kept_ap, kept_auc = [0, 2, 3, 4, 5], [0, 2, 3, 5]
    stats = MultiLabelStats()
    stats.append([str(i) for i in range(50)], scores, targets)
    summary = stats.summarize()
    expected_map = average_precision_score(targets[:, kept_ap], scores[:, kept_ap], average="macro")
    expected_auc = roc_auc_score(targets[:, kept_auc], scores[:, kept_auc], average="macro")
    assert summary["mAP"] == pytest.approx(expected_map, rel=1e-12)
    assert summary["mAUC"] == pytest.approx(expected_auc, rel=1e-12)
    assert (summary["num_classes_with_ap"], summary["num_classes_with_auc"]) == (5, 4)


def test_metrics_depend_only_on_the_ranking():
    logits = torch.randn(40, 5, generator=torch.Generator().manual_seed(0))
    targets = (torch.rand(40, 5, generator=torch.Generator().manual_seed(1)) < 0.4).long()
    torch.testing.assert_close(
        average_precision(logits, targets), average_precision(torch.sigmoid(logits), targets)
    )
    torch.testing.assert_close(roc_auc(logits, targets), roc_auc(3 * logits + 1, targets))


@pytest.mark.oracle("scipy")
@pytest.mark.parametrize("auc", [0.5, 0.6, 0.75, 0.9, 0.97, 0.999])
def test_d_prime_equals_scipy_formula(auc):
    assert float(d_prime(auc)) == pytest.approx(math.sqrt(2) * norm.ppf(auc), rel=1e-9, abs=1e-12)


@pytest.mark.oracle("scikit-learn")
def test_stats_over_batches_equal_one_pass_and_sklearn():
    scores, targets = random_tagging_batch(90, 8, seed=11)
    stats = MultiLabelStats()
    for start in range(0, 90, 32):
        rows = slice(start, start + 32)
        stats.append(
            [f"clip{i}" for i in range(start, min(start + 32, 90))], scores[rows], targets[rows]
        )
    summary = stats.summarize()
    mean_auc = roc_auc_score(targets.numpy(), scores.numpy(), average="macro")
    assert summary["mAP"] == pytest.approx(
        average_precision_score(targets, scores, average="macro")
    )
    assert summary["mAUC"] == pytest.approx(mean_auc)
    assert summary["d_prime"] == pytest.approx(math.sqrt(2) * norm.ppf(mean_auc))
    assert summary["num_samples"] == 90 and stats.summarize("num_samples") == 90


def test_write_per_class_csv(tmp_path):
    scores = torch.tensor([[0.9, 0.2, 0.1], [0.3, 0.8, 0.2], [0.4, 0.1, 0.7]])
    targets = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 1, 0]])
    stats = MultiLabelStats()
    stats.append(["a", "b", "c"], scores, targets)
    path = tmp_path / "per_class.csv"
    stats.write_per_class_csv(path, ["Speech", "Dog, bark", "Music"])
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["name"] for row in rows] == ["Speech", "Dog, bark", "Music"]
    assert [row["num_positives"] for row in rows] == ["1", "2", "0"]
    assert float(rows[0]["average_precision"]) == 1.0
    assert float(rows[1]["average_precision"]) == pytest.approx((1 / 1 + 2 / 3) / 2, abs=1e-6)
    assert float(rows[1]["roc_auc"]) == pytest.approx(0.5)
    assert rows[2]["average_precision"] == "" and rows[2]["roc_auc"] == ""


def test_bad_input_is_refused_with_a_clear_message(tmp_path):
    stats = MultiLabelStats()
    with pytest.raises(ValueError, match="0/1"):
        stats.append(["a"], torch.rand(1, 3), torch.tensor([[0.5, 0.0, 1.0]]))
    with pytest.raises(ValueError, match="2 ids for 1 rows"):
        stats.append(["a", "b"], torch.rand(1, 3), torch.ones(1, 3))
    with pytest.raises(ValueError, match="nothing appended"):
        stats.summarize()
    stats.append(["a"], torch.rand(1, 3), torch.ones(1, 3))
    with pytest.raises(ValueError, match="4 classes, earlier batches had 3"):
        stats.append(["b"], torch.rand(1, 4), torch.ones(1, 4))
    with pytest.raises(ValueError, match="2 class names for 3 classes"):
        stats.write_per_class_csv(tmp_path / "x.csv", ["a", "b"])
    with pytest.raises(ValueError, match="no samples"):
        roc_auc(torch.zeros(0, 3), torch.zeros(0, 3))
    with pytest.raises(ValueError, match="NaN"):
        average_precision(torch.tensor([[float("nan")]]), torch.ones(1, 1))
