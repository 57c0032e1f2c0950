"""torchrun with 2 gloo processes matches 1 process on the same global batch, and a
distributed run recovers on every rank."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from recipe_modules import python_launcher
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
    run(python_launcher(2) + recipe_args(output_folder, epochs, GLOBAL_BATCH // 2))


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


def test_srun_tasks_train_a_partly_used_and_partly_frozen_lobe_like_one_process(tmp_path):
    """Two tasks as srun starts them (SLURM's variables only, no torchrun); the lobe has a
    frozen input projection and a head outside the loss, which DDP is told about with
    find_unused_parameters."""
    import socket

    options = ["--freeze_input=True", "--unused_head=True", "--find_unused_parameters=True"]
    single, srun = tmp_path / "single", tmp_path / "srun"
    run([sys.executable, *recipe_args(single, epochs=1, batch_size=GLOBAL_BATCH), *options])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    launcher = {k: v for k, v in ENV.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    launcher.update(SLURM_NTASKS="2", SLURM_JOB_NODELIST="localhost", MASTER_PORT=port)
    command = [sys.executable, *recipe_args(srun, epochs=1, batch_size=GLOBAL_BATCH // 2), *options]
    tasks = [
        subprocess.Popen(
            command,
            env={**launcher, "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    for task in tasks:
        _, stderr = task.communicate(timeout=300)
        assert task.returncode == 0, stderr[-3000:]
    assert len(step_losses(srun)) == 64 // GLOBAL_BATCH
    assert torch.allclose(
        torch.tensor(step_losses(srun)), torch.tensor(step_losses(single)), rtol=0, atol=1e-5
    )
    expected, got = load_file(single / "final.safetensors"), load_file(srun / "final.safetensors")
    for key in expected:
        assert torch.allclose(expected[key], got[key], rtol=0, atol=1e-5), key
    assert torch.equal(got["unused_head.weight"], expected["unused_head.weight"])
