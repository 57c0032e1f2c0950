import json

from speechlobes.logger import TrainLogger


def test_train_logger_writes_a_text_line_and_a_json_record_per_call(tmp_path):
    train_logger = TrainLogger(tmp_path)
    train_logger.log_stats(
        {"epoch": 1, "lr": 0.001}, {"loss": 2.5}, {"loss": 2.0, "wer": 31.25}, verbose=False
    )
    train_logger.log_stats({"epoch": "test"}, test_stats={"wer": 30.0}, verbose=False)
    lines = (tmp_path / "train_log.txt").read_text().splitlines()
    assert lines == [
        "epoch: 1, lr: 0.001 - train loss: 2.5 - valid loss: 2, valid wer: 31.25",
        "epoch: test - test wer: 30",
    ]
    records = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert records[0] == {
        "epoch": 1,
        "lr": 0.001,
        "train": {"loss": 2.5},
        "valid": {"loss": 2.0, "wer": 31.25},
    }
    assert records[1] == {"epoch": "test", "test": {"wer": 30.0}}


def test_train_logger_converts_tensors_to_numbers(tmp_path):
    import torch

    TrainLogger(tmp_path).log_stats({"epoch": 2}, {"loss": torch.tensor(0.5)}, verbose=False)
    assert json.loads((tmp_path / "train_log.jsonl").read_text())["train"] == {"loss": 0.5}


def test_tensorboard_is_optional(tmp_path, caplog):
    import importlib.util

    train_logger = TrainLogger(tmp_path, tensorboard=True)
    train_logger.log_stats({"epoch": 1}, {"loss": 1.0}, verbose=False)
    if importlib.util.find_spec("tensorboard") is None:
        assert train_logger.writer is None and "pip install tensorboard" in caplog.text
    else:
        assert any((tmp_path / "tensorboard").iterdir())
    assert (tmp_path / "train_log.jsonl").is_file()
