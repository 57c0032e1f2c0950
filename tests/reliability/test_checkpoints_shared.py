"""Checkpointer shared by several processes, and damaged checkpoints: saving and recovering in
the same folder from separate processes never crashes either, a user's folders are never
deleted, a corrupt checkpoint is skipped by name and the best readable one recovered."""

import logging
import multiprocessing
import os
import queue
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import workers

from speechlobes.checkpoints import Checkpointer, CheckpointError

SPAWN = multiprocessing.get_context("spawn")


def drain(channel) -> list:
    items = []
    while True:
        try:
            items.append(channel.get(timeout=0.1))
        except queue.Empty:
            return items


def run_processes(processes) -> None:
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=240)
        assert process.exitcode == 0, f"{process.name} ended with {process.exitcode}"


def filled(value: float) -> torch.nn.Linear:
    model = torch.nn.Linear(64, 64)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(value)
    return model


def test_two_processes_saving_and_pruning_in_one_folder_both_finish(tmp_path):
    errors = SPAWN.Queue()
    savers = [
        SPAWN.Process(target=workers.saver, args=(str(tmp_path), base, 25, 2, errors))
        for base in (0.0, 1000.0)
    ]
    run_processes(savers)
    assert drain(errors) == []
    left = Checkpointer(tmp_path, {"model": torch.nn.Linear(64, 64)}).list_checkpoints()
    assert 1 <= len(left) <= 2, "each save keeps at most 2; the last saver's prune leaves <= 2"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".tmp-", ".trash-"))]


def test_recovering_while_another_process_saves_never_crashes_or_mixes_weights(tmp_path):
    Checkpointer(tmp_path, {"model": filled(-1.0)}).save_checkpoint(meta={"value": -1.0})
    errors, recovered = SPAWN.Queue(), SPAWN.Queue()
    processes = [
        SPAWN.Process(target=workers.saver, args=(str(tmp_path), 0.0, 40, 1, errors)),
        SPAWN.Process(target=workers.recoverer, args=(str(tmp_path), 6.0, errors, recovered)),
    ]
    run_processes(processes)
    assert drain(errors) == []
    assert drain(recovered)[0] > 0, "the reader should have recovered at least once"


def test_folders_of_the_user_in_the_save_folder_survive_saves_prunes_and_recovery(tmp_path):
    notes = tmp_path / "CKPT_notes"
    backup = tmp_path / "CKPTs_backup_of_best"
    hidden = tmp_path / ".tmp-my-scratch"
    for folder in (notes, backup, hidden):
        folder.mkdir()
        (folder / "keep.txt").write_text("mine")
    checkpointer = Checkpointer(tmp_path, {"model": torch.nn.Linear(2, 2)})
    for index in range(3):
        checkpointer.save_and_keep_only(meta={"index": index}, num_to_keep=1)
    checkpointer.recover_if_possible()
    checkpointer.delete_checkpoints(num_to_keep=0)
    for folder in (notes, backup, hidden):
        assert (folder / "keep.txt").read_text() == "mine"


def test_empty_metadata_file_is_skipped_with_a_warning_naming_it(tmp_path, caplog):
    model = filled(1.0)
    checkpointer = Checkpointer(tmp_path, {"model": model})
    good = checkpointer.save_checkpoint(meta={"value": 1.0})
    newer = checkpointer.save_checkpoint(meta={"value": 2.0})
    (newer.path / "CKPT.json").write_text("")
    with torch.no_grad():
        model.weight.zero_()
    with caplog.at_level(logging.WARNING):
        assert checkpointer.recover_if_possible().path == good.path
    assert str(newer.path / "CKPT.json") in caplog.text
    assert torch.all(model.weight == 1.0)


def test_corrupt_weights_of_the_newest_checkpoint_fall_back_to_the_previous(tmp_path, caplog):
    model = filled(1.0)
    checkpointer = Checkpointer(tmp_path, {"model": model})
    good = checkpointer.save_checkpoint(meta={"value": 1.0})
    with torch.no_grad():
        model.weight.fill_(2.0)
    newer = checkpointer.save_checkpoint(meta={"value": 2.0})
    weights = newer.path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    with caplog.at_level(logging.WARNING):
        assert checkpointer.recover_if_possible().path == good.path
    assert str(weights) in caplog.text
    assert torch.all(model.weight == 1.0)


def test_when_no_checkpoint_is_readable_recovery_is_an_error_listing_them(tmp_path):
    checkpointer = Checkpointer(tmp_path, {"model": torch.nn.Linear(2, 2)})
    paths = [checkpointer.save_checkpoint().path for _ in range(2)]
    for path in paths:
        (path / "model.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(CheckpointError, match="none of the 2 checkpoints") as raised:
        checkpointer.recover_if_possible()
    assert all(str(path / "model.safetensors") in str(raised.value) for path in paths)


def test_a_staging_folder_of_a_live_process_is_left_alone(tmp_path):
    ready = tmp_path / "ready"
    holder = SPAWN.Process(target=workers.hold_pid, args=(str(ready), 60.0))
    holder.start()
    try:
        while not ready.exists():
            assert holder.is_alive()
        staging = tmp_path / "save" / f".tmp-{holder.pid}@{socket.gethostname()}-CKPT+busy"
        staging.mkdir(parents=True)
        Checkpointer(tmp_path / "save", {"m": torch.nn.Linear(1, 1)}).save_checkpoint()
        assert staging.is_dir(), "a save removed the staging folder of a running process"
    finally:
        holder.terminate()
        holder.join()
    Checkpointer(tmp_path / "save", {"m": torch.nn.Linear(1, 1)}).save_checkpoint()
    assert not staging.exists(), "its owner is gone: the next save cleans it"


def test_leftovers_of_a_dead_process_are_cleaned_by_saving_not_by_recovering(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    ).stdout.strip()
    checkpointer = Checkpointer(tmp_path, {"m": torch.nn.Linear(1, 1)})
    checkpointer.save_checkpoint()
    leftovers = [
        tmp_path / f".tmp-{dead}@{socket.gethostname()}-CKPT+2024-01-01+00-00-00+000000",
        tmp_path / f".trash-{dead}@{socket.gethostname()}-CKPT+2023-01-01+00-00-00+000000",
    ]
    for leftover in leftovers:
        leftover.mkdir()
        (leftover / "m.safetensors").write_bytes(b"partial")
    checkpointer.recover_if_possible()
    assert all(leftover.exists() for leftover in leftovers), "recovery must not delete"
    checkpointer.save_checkpoint()
    assert not any(leftover.exists() for leftover in leftovers)


def test_a_folder_named_like_a_checkpoint_without_metadata_is_never_deleted(tmp_path):
    mine = tmp_path / "CKPT+my_copy"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    checkpointer = Checkpointer(tmp_path, {"m": torch.nn.Linear(1, 1)})
    for _ in range(3):
        checkpointer.save_and_keep_only(num_to_keep=1)
    assert (mine / "notes.txt").read_text() == "precious"
    assert len(checkpointer.list_checkpoints()) == 1


def test_recovery_reads_every_file_before_changing_any_object(tmp_path):
    model, optimizer_model = filled(1.0), filled(1.0)
    optimizer = torch.optim.SGD(optimizer_model.parameters(), lr=0.5)
    checkpointer = Checkpointer(tmp_path, {"model": model, "optimizer": optimizer})
    only = checkpointer.save_checkpoint()
    (only.path / "optimizer.json").write_text("{not json")
    with torch.no_grad():
        model.weight.fill_(7.0)
    with pytest.raises(CheckpointError, match="optimizer.json"):
        checkpointer.recover_if_possible()
    assert torch.all(model.weight == 7.0), "the model changed although the load failed"


def test_unique_names_when_two_saves_share_a_timestamp(tmp_path, monkeypatch):
    class Frozen:
        @staticmethod
        def now():
            import datetime

            return datetime.datetime(2024, 5, 1, 12, 0, 0)

    monkeypatch.setattr("speechlobes.checkpoints.datetime", Frozen)
    checkpointer = Checkpointer(tmp_path, {"m": torch.nn.Linear(1, 1)})
    names = {checkpointer.save_checkpoint(meta={"i": i}).path.name for i in range(3)}
    assert len(names) == 3
    assert sorted(c.meta["i"] for c in checkpointer.list_checkpoints()) == [0, 1, 2]


def test_lock_file_does_not_count_as_a_checkpoint_and_recovery_needs_no_write(tmp_path):
    checkpointer = Checkpointer(tmp_path, {"m": torch.nn.Linear(1, 1)})
    checkpointer.save_checkpoint()
    before = sorted(os.listdir(tmp_path))
    assert checkpointer.recover_if_possible() is not None
    assert sorted(os.listdir(tmp_path)) == before
    assert [c.path.name for c in checkpointer.list_checkpoints()] == [
        name for name in before if name.startswith("CKPT+")
    ]
    assert Path(tmp_path / ".checkpointer.lock").is_file()
