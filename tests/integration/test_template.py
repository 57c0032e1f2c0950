"""The minimal template trains, tests and records its experiment folder."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "templates" / "minimal"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run_template(output_folder: Path, *options: str) -> None:
    command = [sys.executable, str(TEMPLATE / "train.py"), str(TEMPLATE / "train.yaml")]
    result = subprocess.run(
        [*command, f"--output_folder={output_folder}", *options],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_minimal_template_learns_the_toy_task_and_records_the_experiment(tmp_path):
    run_template(tmp_path / "run", "--number_of_epochs=3")
    records = [
        json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()
    ]
    assert [record["epoch"] for record in records] == [1, 2, 3, "test"]
    assert records[-1]["test"]["error_rate"] <= 0.1
    assert records[2]["train"]["loss"] < records[0]["train"]["loss"]
    names = ("hyperparams.yaml", "train.py", "command.txt", "env.json", "log.txt")
    for name in (*names, "training_curves.png"):
        assert (tmp_path / "run" / name).is_file(), name
