"""A run killed with SIGKILL and restarted with the same command ends bit-identical to an
uninterrupted one; a kill during a save never leaves a checkpoint that recovery picks up."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from speechlobes.checkpoints import Checkpointer

RECIPE = Path(__file__).parent / "toy_recipe"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def recipe_command(output_folder: Path, *options: str) -> list[str]:
    return [
        sys.executable,
        str(RECIPE / "train.py"),
        str(RECIPE / "hparams.yaml"),
        f"--output_folder={output_folder}",
        "--ckpt_interval_steps=3",
        *options,
    ]


def loader_position(checkpoint_folder: Path) -> dict | None:
    """The saved train-loader position of a complete checkpoint folder, if readable."""
    try:
        return json.loads((checkpoint_folder / "dataloader-TRAIN.ckpt").read_text())
    except (OSError, ValueError):
        return None


def wait_for_mid_epoch_checkpoint(save_folder: Path, process: subprocess.Popen, epoch: int):
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        for folder in save_folder.glob("CKPT+*"):
            position = loader_position(folder) if (folder / "CKPT.json").exists() else None
            # batch 1 or 4 of 8: at least three 50 ms batches remain before the epoch ends
            if position and position["epoch"] == epoch and 0 < position["batches_consumed"] <= 4:
                return position
        time.sleep(0.01)
    raise AssertionError(f"no mid-epoch checkpoint of epoch {epoch} appeared (rc={process.poll()})")


def step_losses(output_folder: Path) -> dict[int, float]:
    """Each optimizer step's loss; for a resumed run, the value written last wins."""
    lines = (output_folder / "step_losses.jsonl").read_text().splitlines()
    return {record["step"]: record["loss"] for record in map(json.loads, lines)}


def test_sigkill_mid_epoch_then_restart_ends_with_bit_identical_weights(tmp_path):
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    subprocess.run(recipe_command(reference), check=True, env=ENV, capture_output=True)

    command = recipe_command(resumed, "--sleep_per_batch=0.05")
    process = subprocess.Popen(
        command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        position = wait_for_mid_epoch_checkpoint(resumed / "save", process, epoch=2)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (resumed / "final.safetensors").exists()

    subprocess.run(command, check=True, env=ENV, capture_output=True)

    log = (resumed / "log.txt").read_text()
    assert "resuming epoch 2 after batch" in log, f"restart did not resume mid-epoch ({position})"
    expected, got = (
        load_file(reference / "final.safetensors"),
        load_file(resumed / "final.safetensors"),
    )
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), f"{key} differs after resume"
    assert step_losses(resumed) == step_losses(reference)


SLOW_SAVE_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import torch
    from speechlobes.checkpoints import (
        Checkpointer, mark_as_loader, mark_as_saver, register_checkpoint_hooks)

    @register_checkpoint_hooks
    class SlowWriter:
        slow = False
        @mark_as_saver
        def save(self, path):
            Path(path).write_text("partial")
            if self.slow:
                Path(sys.argv[2]).write_text("saving")
                time.sleep(600)
        @mark_as_loader
        def load(self, path, end_of_epoch):
            pass

    model, writer = torch.nn.Linear(3, 3), SlowWriter()
    checkpointer = Checkpointer(sys.argv[1], {"model": model, "slow": writer})
    torch.nn.init.constant_(model.weight, 1.0)
    checkpointer.save_checkpoint(meta={"version": 1})
    torch.nn.init.constant_(model.weight, 2.0)
    writer.slow = True
    checkpointer.save_checkpoint(meta={"version": 2})
    """
)


def test_kill_during_save_leaves_previous_checkpoint_for_recovery(tmp_path):
    save_folder, marker = tmp_path / "save", tmp_path / "saving"
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_SAVE_SCRIPT, str(save_folder), str(marker)], env=ENV
    )
    try:
        deadline = time.time() + 60
        while not marker.exists():
            assert process.poll() is None and time.time() < deadline, (
                "script never reached the save"
            )
            time.sleep(0.01)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()

    leftovers = [p.name for p in save_folder.iterdir() if p.name.startswith(".tmp-")]
    owner = re.escape(f"{process.pid}@{socket.gethostname()}")
    assert len(leftovers) == 1 and re.fullmatch(rf"\.tmp-{owner}-CKPT\+.+", leftovers[0]), (
        f"the interrupted save should have left one staging folder named by its owner: {leftovers}"
    )

    model = torch.nn.Linear(3, 3)
    checkpointer = Checkpointer(save_folder, {"model": model}, allow_partial_load=True)
    recovered = checkpointer.recover_if_possible()
    assert recovered is not None and recovered.meta["version"] == 1
    assert torch.equal(model.weight, torch.ones(3, 3))
    assert leftovers[0] in {p.name for p in save_folder.iterdir()}, "recovery deletes nothing"
    latest = checkpointer.save_checkpoint(meta={"version": 3})  # its owner is gone: cleaned
    checkpoints = sorted(p.name for p in save_folder.iterdir() if p.name.startswith("CKPT+"))
    assert checkpoints == sorted([recovered.path.name, latest.path.name])
    assert not [p for p in save_folder.iterdir() if p.name.startswith(".tmp-")]
