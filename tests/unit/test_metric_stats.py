"""MetricStats: averages any per-utterance metric and reports extremes."""

import io

import pytest
import torch

from speechlobes.metrics.stats import MetricStats


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
    assert lines[0] == "Average score: 0.25"
    assert lines[1] == "u2: 1.0" and len(lines) == 5


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
