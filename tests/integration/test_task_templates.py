"""Each task template trains from its own folder on the data it synthesises and clearly learns.

The three runs are started together (they are independent) and each test waits for its own.
Chance levels: CER ~100 % (an untrained CTC model emits only blanks), mAP ~0.4 (the class
frequency), BLEU near 0 and exact match ~0 %.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ("speech_recognition", "audio_tagging", "speech_translation")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Start every template (``python train.py train.yaml``) in its folder;
    {name: (process, output)}.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    started = {}
    for name in TEMPLATES:
        output = tmp_path_factory.mktemp(name)
        command = [sys.executable, "train.py", "train.yaml", "--noprogressbar"]
        process = subprocess.Popen(
            [*command, f"--output_folder={output}"],
            cwd=ROOT / "templates" / name,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started[name] = (process, output)
    yield started
    for process, _ in started.values():
        if process.poll() is None:
            process.kill()
            process.wait()


def finished(runs, name: str) -> tuple[list[dict], str]:
    """Wait for one template; its train_log.jsonl records and its printed output."""
    process, output = runs[name]
    printed, _ = process.communicate(timeout=300)
    assert process.returncode == 0, printed[-4000:]
    lines = (output / "train_log.jsonl").read_text().splitlines()
    assert (output / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    return [json.loads(line) for line in lines], printed


def check_trained(records: list[dict], epochs: int) -> dict:
    """Every epoch was logged, the training loss fell, and the test ran; its stats."""
    assert [record["epoch"] for record in records] == [*range(1, epochs + 1), "test"]
    assert records[epochs - 1]["train"]["loss"] < 0.5 * records[0]["train"]["loss"]
    return records[-1]["test"]


def test_speech_recognition_template_reaches_a_low_character_error_rate(runs):
    records, printed = finished(runs, "speech_recognition")
    test = check_trained(records, epochs=6)
    assert test["CER"] < 15.0, test
    assert f"Test CER: {test['CER']:.2f}%" in printed


def test_audio_tagging_template_ranks_present_sounds_first(runs):
    records, printed = finished(runs, "audio_tagging")
    test = check_trained(records, epochs=8)
    assert test["mAP"] > 0.7, test
    assert f"Test mAP: {test['mAP']:.3f}" in printed


def test_speech_translation_template_translates_and_reorders(runs):
    records, printed = finished(runs, "speech_translation")
    test = check_trained(records, epochs=12)
    assert test["BLEU"] > 50.0 and test["exact_match"] > 40.0, test
    assert f"Test BLEU: {test['BLEU']:.1f}" in printed
