import matplotlib.image

from speechlobes.logger import TrainLogger
from speechlobes.plotting import epoch_curves


def test_curves_take_integer_epochs_the_latest_record_of_an_epoch_and_numbers_only():
    records = [
        {"epoch": 1, "lr": 0.1, "train": {"loss": 3.0}, "valid": {"loss": 4.0, "WER": 90.0}},
        {"epoch": 2, "train": {"loss": 2.0}, "valid": {"loss": 3.0, "WER": 70.0, "note": "x"}},
        {"epoch": 2, "train": {"loss": 1.5}, "valid": {"loss": 2.5, "WER": 60.0}},  # resumed
        {"epoch": "test", "test": {"loss": 2.4, "WER": 59.0}},
    ]
    assert epoch_curves(records) == {
        "loss": {"train": [(1, 3.0), (2, 1.5)], "valid": [(1, 4.0), (2, 2.5)]},
        "WER": {"valid": [(1, 90.0), (2, 60.0)]},
    }


def test_the_train_logger_redraws_the_png_after_each_epoch_but_not_after_the_test(tmp_path):
    train_logger = TrainLogger(tmp_path)
    png = tmp_path / "training_curves.png"
    train_logger.log_stats({"epoch": 1}, {"loss": 2.0}, {"loss": 2.2, "CER": 50.0}, verbose=False)
    first = png.read_bytes()
    train_logger.log_stats({"epoch": 2}, {"loss": 1.0}, {"loss": 1.2, "CER": 30.0}, verbose=False)
    second = png.read_bytes()
    assert first != second
    height, width, _ = matplotlib.image.imread(png).shape
    assert width > 1.5 * height  # two panels side by side: loss, CER
    train_logger.log_stats({"epoch": "test"}, test_stats={"loss": 1.1}, verbose=False)
    assert png.read_bytes() == second
    assert not list(tmp_path.glob(".*tmp"))


def test_plotting_can_be_switched_off(tmp_path):
    TrainLogger(tmp_path, plot=False).log_stats({"epoch": 1}, {"loss": 1.0}, verbose=False)
    assert not (tmp_path / "training_curves.png").exists()
