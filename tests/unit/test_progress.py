import logging

import pytest

from speechlobes.progress import PlainProgress, format_seconds, progress


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.04, "0.0 s"), (9.94, "9.9 s"), (10, "10 s"), (59.6, "1 min 0 s"), (3600, "1 h 0 min")],
)
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text


def test_plain_progress_logs_a_line_per_interval_and_one_at_the_end(caplog, monkeypatch):
    clock = iter([0.0, 10.0, 70.0, 80.0, 100.0, 100.0])
    monkeypatch.setattr("speechlobes.progress.time.monotonic", lambda: next(clock))
    steps = PlainProgress(range(4), "epoch 2", total=4, interval=60)
    with caplog.at_level(logging.INFO, logger="speechlobes.progress"):
        for _ in steps:
            steps.set_postfix(loss="0.25")
    lines = [record.getMessage() for record in caplog.records]
    # the second item ends at 70 s, a minute after the start: 2 of 4 done, as long again to go
    assert lines == [
        "epoch 2: 2/4 (50 %), 1 min 10 s, ~1 min 10 s left, loss 0.25",
        "epoch 2: 4/4 (100 %), 1 min 40 s, loss 0.25",
    ]


def test_a_resumed_loop_counts_from_where_it_stopped_and_estimates_from_this_run(caplog):
    steps = PlainProgress(range(2), "epoch 1", total=10, initial=8, interval=1e9)
    with caplog.at_level(logging.INFO, logger="speechlobes.progress"):
        list(steps)
    assert caplog.records[-1].getMessage().startswith("epoch 1: 10/10 (100 %)")


def test_a_terminal_gets_a_tqdm_bar_and_a_file_gets_plain_lines():
    assert type(progress([1], "x", stream_is_terminal=True)).__name__ == "tqdm"
    assert isinstance(progress([1], "x", stream_is_terminal=False), PlainProgress)
    assert list(progress([1, 2], "x", enabled=False)) == [1, 2]
