"""FSDP2 under torchrun with gloo: 2 sharded processes match 1 process step for step, and a
sharded checkpoint written by N processes recovers into M (2 -> 1 and 1 -> 2).

The toy lobe's input projection is frozen in every run here, so the frozen unit is exercised
too (it must come out of training unchanged). Step losses of 2 processes (global batch 8 as
2 x 4) agree with 1 process (batch 8) within 1e-5 absolute: the only difference is the order
of float32 sums in the gradient reduction.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from recipe_modules import python_launcher
from safetensors.torch import load_file

RECIPE = Path(__file__).parent / "toy_recipe"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
GLOBAL_BATCH = 8
STEPS_PER_EPOCH = 64 // GLOBAL_BATCH
TOLERANCE = 1e-5
COMMON = [
    "--shuffle=False",
    "--dropout=0.0",
    "--device=cpu",
    "--distributed_strategy=fsdp",
    "--freeze_input=True",
]


def run(command: list[str]) -> None:
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def train(output_folder: Path, epochs: int, processes: int, torchrun: bool = True) -> None:
    launcher = python_launcher(processes if torchrun else 0)
    run(
        launcher
        + [
            str(RECIPE / "train.py"),
            str(RECIPE / "hparams.yaml"),
            f"--output_folder={output_folder}",
            f"--number_of_epochs={epochs}",
            f"--batch_size={GLOBAL_BATCH // processes}",
            *COMMON,
        ]
    )


def step_losses(output_folder: Path) -> torch.Tensor:
    lines = (output_folder / "step_losses.jsonl").read_text().splitlines()
    return torch.tensor([json.loads(line)["loss"] for line in lines])


def assert_same_weights(expected_folder: Path, got_folder: Path) -> None:
    expected = load_file(expected_folder / "final.safetensors")
    got = load_file(got_folder / "final.safetensors")
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.allclose(expected[key], got[key], rtol=0, atol=TOLERANCE), key


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """One process without torchrun, two epochs (FSDP asked for, nothing to shard: the
    checkpoint is still the sharded kind, holding whole tensors)."""
    folder = tmp_path_factory.mktemp("fsdp") / "single"
    train(folder, epochs=2, processes=1, torchrun=False)
    return folder


def only_checkpoint(output_folder: Path) -> Path:
    (checkpoint,) = (output_folder / "save").glob("CKPT+*")
    return checkpoint


def test_two_sharded_processes_match_one_and_their_checkpoint_recovers_into_one(
    reference, tmp_path
):
    sharded = tmp_path / "sharded"
    train(sharded, epochs=1, processes=2)
    assert len(step_losses(sharded)) == STEPS_PER_EPOCH
    difference = (step_losses(sharded) - step_losses(reference)[:STEPS_PER_EPOCH]).abs().max()
    assert difference <= TOLERANCE
    checkpoint = only_checkpoint(sharded)
    assert not (checkpoint / "model.safetensors").exists()  # the model is in sharded.ckpt
    shards = sorted(p.name for p in (checkpoint / "sharded.ckpt").glob("*.safetensors"))
    assert len(shards) == 2, shards  # one file per rank

    train(sharded, epochs=2, processes=1, torchrun=False)  # 2 ranks' epoch 1 into 1 process
    assert "loaded checkpoint" in (sharded / "log.txt").read_text()
    assert len(step_losses(sharded)) == 2 * STEPS_PER_EPOCH
    assert (step_losses(sharded) - step_losses(reference)).abs().max() <= TOLERANCE
    assert_same_weights(reference, sharded)


def test_a_checkpoint_of_one_process_recovers_into_two_sharded_processes(reference, tmp_path):
    """The one process is a torchrun world of one: sharded (one shard, as on one GPU)."""
    single = tmp_path / "single"
    train(single, epochs=1, processes=1)
    assert "model sharded in 2 blocks" in (single / "log.txt").read_text()
    train(single, epochs=2, processes=2)
    assert "loaded checkpoint" in (single / "log.txt").read_text()
    assert (step_losses(single) - step_losses(reference)).abs().max() <= TOLERANCE
    assert_same_weights(reference, single)


def test_frozen_parameters_come_out_of_sharded_training_unchanged(reference, tmp_path):
    sys.path.insert(0, str(RECIPE))
    try:
        from toy_model import ToyLobe
    finally:
        sys.path.remove(str(RECIPE))
    torch.manual_seed(7)  # the recipe's seed, applied before its model is built
    initial = ToyLobe(4, 16, 2, freeze_input=True).state_dict()
    final = load_file(reference / "final.safetensors")
    assert torch.equal(final["input.weight"], initial["input.weight"])
    assert not torch.equal(final["head.weight"], initial["head.weight"])


def test_consolidate_writes_the_whole_modules_of_a_sharded_checkpoint(reference, tmp_path):
    from speechlobes.distributed_checkpoint import consolidate

    checkpoints = (reference / "save").glob("CKPT+*")
    last = max(checkpoints, key=lambda p: json.loads((p / "CKPT.json").read_text())["unixtime"])
    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(last, checkpoint)  # saved after the last epoch: the final weights
    written = consolidate(checkpoint)
    assert sorted(written) == ["model"]
    weights, final = load_file(written["model"]), load_file(reference / "final.safetensors")
    assert weights.keys() == final.keys()
    assert all(torch.equal(weights[key], final[key]) for key in final)
