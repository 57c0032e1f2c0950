"""torchrun with 2 gloo processes matches 1 process on the same global batch, and a
distributed run recovers on every rank."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

RECIPE = Path(__file__).parent / "toy_recipe"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
GLOBAL_BATCH = 8
# No dropout and no shuffling: the two ranks' halves (DistributedSampler: rank r takes
# examples r, r + 2, ...) together form exactly the single process's batches.
COMMON = ["--shuffle=False", "--dropout=0.0", "--device=cpu"]


def run(command: list[str]) -> None:
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def recipe_args(output_folder: Path, epochs: int, batch_size: int) -> list[str]:
    return [
        str(RECIPE / "train.py"),
        str(RECIPE / "hparams.yaml"),
        f"--output_folder={output_folder}",
        f"--number_of_epochs={epochs}",
        f"--batch_size={batch_size}",
        *COMMON,
    ]


def torchrun(output_folder: Path, epochs: int) -> None:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    run(launcher + recipe_args(output_folder, epochs, GLOBAL_BATCH // 2))


def step_losses(output_folder: Path) -> list[float]:
    lines = (output_folder / "step_losses.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines]


def test_two_gloo_processes_match_one_process_and_recover_on_every_rank(tmp_path):
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    run([sys.executable, *recipe_args(single, epochs=2, batch_size=GLOBAL_BATCH)])

    torchrun(ddp, epochs=1)
    steps_per_epoch = 64 // GLOBAL_BATCH
    assert len(step_losses(ddp)) == steps_per_epoch
    assert torch.allclose(
        torch.tensor(step_losses(ddp)),
        torch.tensor(step_losses(single)[:steps_per_epoch]),
        rtol=0,
        atol=1e-5,
    )
    assert len(list((ddp / "save").glob("CKPT+*"))) == 1  # rank 0 alone saved

    torchrun(ddp, epochs=2)  # same folder: both ranks recover epoch 1, then train epoch 2
    assert len(step_losses(ddp)) == 2 * steps_per_epoch
    assert torch.allclose(
        torch.tensor(step_losses(ddp)), torch.tensor(step_losses(single)), rtol=0, atol=1e-5
    )
    expected, got = load_file(single / "final.safetensors"), load_file(ddp / "final.safetensors")
    for key in expected:
        assert torch.allclose(expected[key], got[key], rtol=0, atol=1e-5), key
