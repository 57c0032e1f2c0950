"""Each recipe runs end to end in debug mode on a tiny generated corpus, and its experiment
folder then serves the inference interface."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from recipe_modules import python_launcher

from speechlobes.dataio.shards import ShardIndex
from tools.mini_data.audioset import AudioSetSizes, make_audioset
from tools.mini_data.covost import CovostSizes, make_covost
from tools.mini_data.librispeech import LibriSpeechSizes, make_librispeech

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "recipes"


def run_recipe(
    folder: Path, hparams: str, *overrides: str, torchrun_processes: int = 0
) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [
        *python_launcher(torchrun_processes),
        "train.py",
        hparams,
        "--debug",
        "--debug_persistently",
    ]
    command += ["--noprogressbar", *overrides]  # debug_persistently: keep the checkpoints
    result = subprocess.run(
        command, cwd=folder, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return result


def last_test_stats(output: Path) -> dict:
    records = [json.loads(line) for line in (output / "train_log.jsonl").read_text().splitlines()]
    return next(record["test"] for record in reversed(records) if "test" in record)


def manifest_size(output: Path, split: str) -> int:
    return len(json.loads((output / f"{split}.json").read_text()))


def assert_streamed(output: Path, sizes: dict[str, int]) -> None:
    """The training and validation splits went whole into shards (the test sets read their
    manifests), and checkpoints hold the streaming loader's position."""
    counts = {split: ShardIndex.load(output / "shards" / split).num_utterances for split in sizes}
    assert counts == sizes
    assert sorted(path.name for path in (output / "shards").iterdir()) == sorted(sizes)
    position = json.loads(
        next(Path(output, "save").glob("CKPT+*/dataloader-TRAIN.ckpt")).read_text()
    )
    assert position["num_workers"] == 2 and position["shards"]


@pytest.fixture(scope="module")
def tiny_corpora(tmp_path_factory):
    root = tmp_path_factory.mktemp("mini")
    make_librispeech(
        root,
        sizes=LibriSpeechSizes(
            train_utterances=8,
            dev_utterances=3,
            test_utterances=3,
            test_other_utterances=2,
            train_speakers=2,
            dev_speakers=1,
            test_speakers=1,
            test_other_speakers=1,
            lm_sentences=40,
        ),
        num_workers=2,
    )
    make_audioset(root, sizes=AudioSetSizes(train_clips=12, eval_clips=4), num_workers=2)
    make_covost(
        root,
        sizes=CovostSizes(
            train=10, dev=3, test=3, train_speakers=2, dev_speakers=1, test_speakers=1
        ),
        num_workers=2,
    )
    return root


def test_librispeech_ctc_recipe_debug_run_and_transcriber(tiny_corpora, tmp_path):
    output = tmp_path / "ctc"
    sentences = tmp_path / "heldout.txt"
    sentences.write_text("The kettle is on.\nIt's 5 past 9.\n")
    run_recipe(
        RECIPES / "LibriSpeech/ASR/CTC",
        "hparams/conformer_small.yaml",
        f"--data_folder={tiny_corpora / 'LibriSpeech'}",
        f"--output_folder={output}",
        f"--heldout_sentences={sentences}",
        f"--heldout_folder={tmp_path / 'heldout'}",
    )
    stats = last_test_stats(output)
    assert 0 <= stats["CER"] and stats["WER"] >= 0
    for test_set in ("test-clean", "test-other", "heldout"):
        assert "REF" in (output / f"wer_{test_set}.txt").read_text().upper()
    assert (output / "save" / "lm" / "characters_7gram.arpa").read_text().startswith("\n\\data\\")
    from speechlobes.inference.transcriber import Transcriber

    asr = Transcriber.from_experiment(output)
    flac = next((tiny_corpora / "LibriSpeech" / "test-clean").rglob("*.flac"))
    assert isinstance(asr.transcribe_file(flac), str)


def test_librispeech_ctc_recipe_under_torchrun_prints_one_results_table(tiny_corpora, tmp_path):
    result = run_recipe(
        RECIPES / "LibriSpeech/ASR/CTC",
        "hparams/conformer_small.yaml",
        f"--data_folder={tiny_corpora / 'LibriSpeech'}",
        f"--output_folder={tmp_path / 'ctc'}",
        "--heldout_sentences=null",
        torchrun_processes=2,
    )
    assert result.stdout.count("Results, error-rate alignments") == 1, result.stdout
    table = [line.split() for line in result.stdout.splitlines() if line.startswith("test-")]
    assert [row[0] for row in table] == ["test-clean", "test-other"]


@pytest.mark.parametrize("data_format", ["json", "shards"])
def test_audioset_beats_recipe_debug_run(tiny_corpora, tmp_path, data_format):
    output = tmp_path / "tagging"
    run_recipe(
        RECIPES / "AudioSet/tagging/BEATs",
        "hparams/beats_small_scratch.yaml",
        f"--data_folder={tiny_corpora / 'AudioSet'}",
        f"--output_folder={output}",
        f"--data_format={data_format}",
    )
    if data_format == "shards":
        assert_streamed(output, {s: manifest_size(output, s) for s in ("train", "valid")})
    stats = last_test_stats(output)
    assert 0 <= stats["mAP"] <= 1
    header = (output / "per_class_test.csv").read_text().splitlines()[0]
    assert header == "index,name,num_positives,average_precision,roc_auc"


@pytest.mark.parametrize("data_format", ["json", "shards"])
def test_covost_st_recipe_debug_run(tiny_corpora, tmp_path, data_format):
    output = tmp_path / "st"
    run_recipe(
        RECIPES / "CoVoST/ST/seq2seq",
        "hparams/conformer_transformer_small.yaml",
        f"--covost_folder={tiny_corpora / 'CoVoST'}",
        f"--output_folder={output}",
        "--vocab_size=56",
        f"--data_format={data_format}",
    )
    if data_format == "shards":
        assert_streamed(output, {s: manifest_size(output, s) for s in ("train", "dev")})
    stats = last_test_stats(output)
    assert 0 <= stats["BLEU"] <= 100
    assert (output / "bleu_test.txt").is_file()


def test_librispeech_recipe_trains_and_tests_from_shards(tiny_corpora, tmp_path):
    output = tmp_path / "ctc"
    run_recipe(
        RECIPES / "LibriSpeech/ASR/CTC",
        "hparams/conformer_small.yaml",
        f"--data_folder={tiny_corpora / 'LibriSpeech'}",
        f"--output_folder={output}",
        "--data_format=shards",
        "--heldout_sentences=null",
    )
    assert_streamed(output, {"train-clean-100": 8, "dev-clean": 3})
    stats = last_test_stats(output)
    assert stats["CER"] >= 0 and stats["WER"] >= 0


def test_a_wrong_data_format_or_balanced_sampling_from_shards_is_refused(tmp_path):
    folder = RECIPES / "AudioSet/tagging/BEATs"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    for options, message in (
        (["--data_format=tar"], "data_format must be 'json' or 'shards', got 'tar'"),
        (["--data_format=shards", "--balanced_sampling=True"], "balanced_sampling draws clips"),
    ):
        command = [sys.executable, "train.py", "hparams/beats_small_scratch.yaml", *options]
        command.append(f"--output_folder={tmp_path / 'out'}")
        done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
        assert done.returncode != 0 and message in done.stderr, done.stderr[-2000:]
        # refused before anything is written (the Checkpointer, as SpeechBrain's, makes its
        # empty folder when the YAML is loaded)
        assert not [path for path in (tmp_path / "out").rglob("*") if path.is_file()]
