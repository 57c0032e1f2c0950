"""A recipe written for SpeechBrain 1.1 runs here once its imports and YAML class paths are
renamed with the table of docs/migrating_from_speechbrain.md, and nothing else."""

import os
import re
import subprocess
import sys
from pathlib import Path

RECIPE = Path(__file__).parent / "sb_style_recipe"
GUIDE = Path(__file__).resolve().parents[2] / "docs" / "migrating_from_speechbrain.md"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def module_map() -> list[tuple[str, str]]:
    """The guide's rows ``| `speechbrain.x` | `speechlobes.y` |``, longest first."""
    rows = re.findall(
        r"^\| `(speechbrain[\w.]*)` \| `(speechlobes[\w.]*)` \|", GUIDE.read_text(), re.M
    )
    return sorted(rows, key=lambda row: -len(row[0]))


def renamed(text: str) -> str:
    rows = module_map()

    def rename(match: re.Match) -> str:
        path = match[0]
        for old, new in rows:
            if path == old or path.startswith(old + "."):
                return new + path[len(old) :]
        raise AssertionError(f"the migration guide does not map {path}")

    return re.sub(r"(?<![\w.])speechbrain(?:\.\w+)*", rename, text)


def test_the_recipe_is_the_speechbrain_original_with_the_guides_module_map():
    assert len(module_map()) >= 20
    for name in ("train.py", "hparams/train.yaml"):
        original = (RECIPE / "speechbrain_original" / name).read_text()
        assert "speechbrain." in original
        assert (RECIPE / name).read_text() == renamed(original), name


def train(output_folder: Path, epochs: int) -> str:
    command = [
        sys.executable,
        str(RECIPE / "train.py"),
        str(RECIPE / "hparams" / "train.yaml"),
        f"--output_folder={output_folder}",
        f"--number_of_epochs={epochs}",
        "--device=cpu",
        "--noprogressbar",
    ]
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return (output_folder / "train_log.txt").read_text()


def test_the_renamed_recipe_trains_tests_and_resumes(tmp_path):
    log = train(tmp_path, epochs=3).splitlines()
    assert [line.split(",")[0] for line in log[:3]] == ["epoch: 1", "epoch: 2", "epoch: 3"]
    losses = [float(re.search(r"train loss: ([\d.e+-]+)", line)[1]) for line in log[:3]]
    assert losses[2] < 0.5 * losses[0]
    test_line = log[3]
    assert test_line.startswith("Epoch loaded: ") and "test accuracy: " in test_line
    assert float(re.search(r"test error: ([\d.e+-]+)", test_line)[1]) < 0.2
    assert (tmp_path / "save" / "label_encoder.txt").is_file()
    assert (tmp_path / "hyperparams.yaml").read_text().startswith("# Generated ")
    assert len(list((tmp_path / "data" / "train").glob("*.npy"))) == 60

    log = train(tmp_path, epochs=4).splitlines()  # the same folder: epochs 1-3 are recovered
    assert [line.split(",")[0] for line in log if line.startswith("epoch")] == [
        "epoch: 1",
        "epoch: 2",
        "epoch: 3",
        "epoch: 4",
    ]
