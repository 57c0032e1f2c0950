"""MetricStats: averages any per-utterance metric and reports extremes."""

import io

import pytest
import torch

from speechlobes.metrics.stats import MetricStats, MultiMetricStats


def classification_error(logits, labels):
    return (logits.argmax(-1) != labels).float()


def test_average_and_extremes_over_batches():
    stats = MetricStats(lambda predictions, targets: (predictions - targets) ** 2)
    stats.append(["a", "b"], torch.tensor([1.0, 3.0]), torch.tensor([0.0, 0.0]))
    stats.append(["c"], torch.tensor([2.0]), targets=torch.tensor([0.0]))
    assert stats.summarize() == {
        "average": pytest.approx((1 + 9 + 4) / 3),
        "min_score": 1.0,
        "min_id": "a",
        "max_score": 9.0,
        "max_id": "b",
    }


def test_classification_error_rate_and_report():
    stats = MetricStats(classification_error)
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0], [0.0, 1.0]])
    stats.append(["u1", "u2", "u3", "u4"], logits, torch.tensor([0, 0, 0, 1]))
    assert stats.summarize("average") == 0.25
    stream = io.StringIO()
    stats.write_stats(stream)
    lines = stream.getvalue().splitlines()
    assert lines[:3] == ["Average score: 0.25", "Min error: 0.0 id: u1", "Max error: 1.0 id: u2"]
    assert lines[3] == "u2: 1.0" and len(lines) == 7


def test_bad_input_is_refused_with_a_clear_message():
    stats = MetricStats(classification_error)
    with pytest.raises(ValueError, match="nothing appended"):
        stats.summarize()
    with pytest.raises(ValueError, match="one value per utterance"):
        stats.append(["a"], torch.zeros(2, 3), torch.zeros(2, dtype=torch.long))
    stats.append(["a"], torch.zeros(1, 3), torch.zeros(1, dtype=torch.long))
    with pytest.raises(KeyError, match="fields are"):
        stats.summarize("mean")
    stats.clear()
    assert stats.ids == [] and stats.scores == []


def test_item_by_item_evaluation_cuts_padding_with_relative_lengths():
    stats = MetricStats(lambda p, t: float((p - t).abs().sum()), batch_eval=False)
    predict = torch.tensor([[1.0, 2.0, 9.0], [1.0, 9.0, 9.0]])
    target = torch.zeros(2, 3)
    stats.append(["a", "b"], predict=predict, target=target, lengths=torch.tensor([2 / 3, 1 / 3]))
    assert stats.scores == [3.0, 1.0]
    with pytest.raises(ValueError, match="pass predict= and target="):
        stats.append(["c"], predict)


def test_multi_metric_stats_keeps_one_summary_per_metric():
    def metric(a, b):
        return {"sum": a + b, "diff": a - b, "sum_sq": a**2 + b**2}

    stats = MultiMetricStats(metric, batch_eval=True)
    for ids, a, b in (([1, 2], [2.0, 1.0], [1.0, 2.0]), ([3, 4], [4.0, 5.0], [0.0, 1.0])):
        stats.append(ids, a=torch.tensor(a), b=torch.tensor(b))
    summary = stats.summarize()
    assert summary["sum"] == {
        "average": 4.0,
        "min_score": 3.0,
        "min_id": 1,
        "max_score": 6.0,
        "max_id": 4,
    }
    assert stats.summarize(flat=True)["diff_max_id"] == 3
    per_item = MultiMetricStats(lambda p, t: {"err": abs(p - t).sum().item()})
    per_item.append(["x"], predict=torch.ones(1, 2), target=torch.zeros(1, 2))
    assert per_item.summarize("average") == {"err": 2.0}
