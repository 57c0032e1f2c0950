"""Exact resume under torchrun: 2 gloo processes, one killed with SIGKILL mid-epoch (torchrun
then ends the other), the same command again: the final weights are bit-identical to an
uninterrupted 2-process run, with DDP and with FSDP (sharded checkpoints)."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from recipe_modules import python_launcher
from safetensors.torch import load_file

RECIPE = Path(__file__).resolve().parents[1] / "integration" / "toy_recipe"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}


def torchrun_command(output_folder: Path, *options: str) -> list[str]:
    return [
        *python_launcher(2),
        str(RECIPE / "train.py"),
        str(RECIPE / "hparams.yaml"),
        f"--output_folder={output_folder}",
        "--number_of_epochs=2",
        "--batch_size=4",
        "--ckpt_interval_steps=2",
        "--device=cpu",
        *options,
    ]


def mid_epoch_checkpoint_of(save_folder: Path, epoch: int) -> bool:
    for folder in save_folder.glob("CKPT+*"):
        try:
            position = json.loads((folder / "dataloader-TRAIN.ckpt").read_text())
        except (OSError, ValueError):
            continue
        if position["epoch"] == epoch and 0 < position["batches_consumed"] <= 4:
            return True
    return False


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_sigkill_of_one_rank_then_restart_gives_bit_identical_weights(tmp_path, strategy):
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    strategy_option = f"--distributed_strategy={strategy}"
    done = subprocess.run(
        torchrun_command(reference, strategy_option),
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    command = torchrun_command(resumed, strategy_option, "--sleep_per_batch=0.1")
    launcher = subprocess.Popen(
        command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.time() + 180
        while not mid_epoch_checkpoint_of(resumed / "save", epoch=2):
            assert launcher.poll() is None and time.time() < deadline, "no mid-epoch checkpoint"
            time.sleep(0.01)
        os.kill(int((resumed / "pids" / "rank1").read_text()), signal.SIGKILL)
        assert launcher.wait(timeout=120) != 0, "torchrun should fail when a rank dies"
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    rank0 = int((resumed / "pids" / "rank0").read_text())
    deadline = time.time() + 30
    while Path(f"/proc/{rank0}").exists() and time.time() < deadline:
        time.sleep(0.05)  # torchrun ends the other rank
    assert not (resumed / "final.safetensors").exists()

    again = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming epoch 2 after batch" in (resumed / "log.txt").read_text()
    sharded = list((resumed / "save").glob("CKPT+*/sharded.ckpt"))
    assert bool(sharded) == (strategy == "fsdp")
    expected = load_file(reference / "final.safetensors")
    got = load_file(resumed / "final.safetensors")
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), f"{key} differs after the resumed run"
