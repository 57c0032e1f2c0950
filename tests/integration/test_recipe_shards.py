"""The LibriSpeech recipe switches to streaming tar shards with one option (data_format)."""

import json
from pathlib import Path

from test_recipes_debug import RECIPES, last_test_stats, run_recipe

from speechlobes.dataio.shards import ShardIndex
from tools.mini_data.librispeech import LibriSpeechSizes, make_librispeech


def test_librispeech_recipe_trains_and_tests_from_shards(tmp_path):
    sizes = LibriSpeechSizes(
        train_utterances=8,
        dev_utterances=3,
        test_utterances=3,
        train_speakers=2,
        dev_speakers=1,
        test_speakers=1,
        sentences=20,
        held_out_sentences=5,
    )
    make_librispeech(tmp_path, sizes=sizes, num_workers=2)
    output = tmp_path / "ctc"
    run_recipe(
        RECIPES / "LibriSpeech/ASR/CTC",
        "hparams/conformer_small.yaml",
        f"--data_folder={tmp_path / 'LibriSpeech'}",
        f"--output_folder={output}",
        "--data_format=shards",
    )
    counts = {
        split: ShardIndex.load(output / "shards" / split).num_utterances
        for split in ("train-clean-100", "dev-clean", "test-clean")
    }
    assert counts == {"train-clean-100": 8, "dev-clean": 3, "test-clean": 3}
    stats = last_test_stats(output)
    assert stats["CER"] >= 0 and stats["WER"] >= 0
    position = json.loads(
        next(Path(output, "save").glob("CKPT+*/dataloader-TRAIN.ckpt")).read_text()
    )
    assert position["num_workers"] == 2 and position["shards"]
