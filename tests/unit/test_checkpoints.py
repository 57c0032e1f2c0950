import json
import random
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from speechlobes.checkpoints import (
    Checkpointer,
    RNGState,
    average_checkpoints,
    load_state,
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
    save_state,
)
from speechlobes.nnet.schedulers import EpochCounter


def trained_adam(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.8, 0.9))
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    for _ in range(3):
        model(torch.randn(5, 3)).sum().backward()
        optimizer.step()
        scheduler.step()
    return model, optimizer, scheduler


def assert_same_tree(a, b):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b) and a.dtype == b.dtype
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_same_tree(a[key], b[key])
    elif isinstance(a, list | tuple):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same_tree(x, y)
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b) and a.dtype == b.dtype
    else:
        assert a == b


def test_state_tree_round_trip_keeps_types_int_keys_tuples_and_arrays(tmp_path):
    state = {
        "state": {0: {"step": torch.tensor(3.0), "avg": torch.arange(4.0)}},
        "groups": [{"betas": (0.9, 0.99), "lr": 0.1, "name": None, "flag": True}],
        "arr": np.arange(5, dtype=np.uint32),
        "bytes": torch.arange(10, dtype=torch.uint8),
    }
    save_state(state, tmp_path / "x")
    assert_same_tree(state, load_state(tmp_path / "x"))


def test_module_file_is_a_plain_state_dict_readable_by_safetensors(tmp_path):
    model = torch.nn.Linear(2, 3)
    checkpoint = Checkpointer(tmp_path, {"model": model}).save_checkpoint()
    stored = load_file(checkpoint.path / "model.safetensors")
    assert stored.keys() == {"weight", "bias"} and torch.equal(stored["weight"], model.weight)


def test_optimizer_scheduler_module_restore_exactly_and_training_continues_identically(tmp_path):
    model, optimizer, scheduler = trained_adam()
    recoverables = {"model": model, "optimizer": optimizer, "scheduler": scheduler}
    Checkpointer(tmp_path, recoverables).save_checkpoint()
    fresh_model, fresh_optimizer, fresh_scheduler = trained_adam(seed=1)
    fresh = {"model": fresh_model, "optimizer": fresh_optimizer, "scheduler": fresh_scheduler}
    Checkpointer(tmp_path, fresh).recover_if_possible()
    assert_same_tree(optimizer.state_dict(), fresh_optimizer.state_dict())
    assert scheduler.state_dict() == fresh_scheduler.state_dict()
    batch = torch.randn(5, 3)
    for net, opt in ((model, optimizer), (fresh_model, fresh_optimizer)):
        opt.zero_grad()
        net(batch).sum().backward()
        opt.step()
    for a, b in zip(model.state_dict().values(), fresh_model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_rng_state_restores_python_numpy_and_torch(tmp_path):
    checkpointer = Checkpointer(tmp_path, {"rng": RNGState()})
    checkpointer.save_checkpoint()
    expected = (random.random(), np.random.rand(), torch.rand(2))
    checkpointer.recover_if_possible()
    got = (random.random(), np.random.rand(), torch.rand(2))
    assert expected[:2] == got[:2] and torch.equal(expected[2], got[2])


def test_grad_scaler_state_round_trips(tmp_path):
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=7)
    Checkpointer(tmp_path, {"scaler": scaler}).save_checkpoint()
    other = torch.amp.GradScaler("cpu")
    Checkpointer(tmp_path, {"scaler": other}).recover_if_possible()
    assert other.state_dict() == scaler.state_dict()


@register_checkpoint_hooks
class Note:
    def __init__(self, text=""):
        self.text = text
        self.loaded_end_of_epoch = None

    @mark_as_saver
    def save(self, path):
        Path(path).write_text(self.text)

    @mark_as_loader
    def load(self, path, end_of_epoch):
        self.text = Path(path).read_text()
        self.loaded_end_of_epoch = end_of_epoch


def test_hooked_object_and_end_of_epoch_flag_reach_the_loader(tmp_path):
    Checkpointer(tmp_path, {"note": Note("hello")}).save_checkpoint(end_of_epoch=False)
    note = Note()
    Checkpointer(tmp_path, {"note": note}).recover_if_possible()
    assert note.text == "hello" and note.loaded_end_of_epoch is False


def test_epoch_counter_repeats_an_interrupted_epoch_but_not_a_finished_one(tmp_path):
    counter = EpochCounter(5)
    next(counter), next(counter)
    checkpointer = Checkpointer(tmp_path, {"counter": counter})
    finished = checkpointer.save_checkpoint(end_of_epoch=True)
    interrupted = checkpointer.save_checkpoint(end_of_epoch=False)
    for checkpoint, expected_next in ((finished, 3), (interrupted, 2)):
        resumed = EpochCounter(5)
        Checkpointer(tmp_path, {"counter": resumed}).load_checkpoint(checkpoint)
        assert next(resumed) == expected_next


def test_saved_files_are_safetensors_json_or_hook_files_never_pickles(tmp_path):
    model, optimizer, _ = trained_adam()
    checkpoint = Checkpointer(
        tmp_path, {"m": model, "o": optimizer, "n": Note("x")}
    ).save_checkpoint()
    names = sorted(p.name for p in checkpoint.path.iterdir())
    assert names == ["CKPT.json", "m.json", "m.safetensors", "n.ckpt", "o.json", "o.safetensors"]
    json.loads((checkpoint.path / "o.json").read_text())


def save_with_loss(checkpointer, loss, accuracy):
    time.sleep(0.002)  # distinct unixtime ordering
    return checkpointer.save_and_keep_only(
        meta={"loss": loss, "acc": accuracy}, min_keys=["loss"], max_keys=["acc"], num_to_keep=1
    )


def test_keep_only_keeps_best_per_key_and_most_recent(tmp_path):
    checkpointer = Checkpointer(tmp_path, {"model": torch.nn.Linear(1, 1)})
    save_with_loss(checkpointer, loss=3.0, accuracy=0.9)  # best accuracy
    save_with_loss(checkpointer, loss=1.0, accuracy=0.5)  # best loss
    save_with_loss(checkpointer, loss=2.0, accuracy=0.6)
    save_with_loss(checkpointer, loss=4.0, accuracy=0.1)  # most recent
    kept = sorted((c.meta["loss"], c.meta["acc"]) for c in checkpointer.list_checkpoints())
    assert kept == [(1.0, 0.5), (3.0, 0.9), (4.0, 0.1)]
    assert checkpointer.find_checkpoint(min_key="loss").meta["loss"] == 1.0
    assert checkpointer.find_checkpoint(max_key="acc").meta["acc"] == 0.9
    assert checkpointer.find_checkpoint().meta["loss"] == 4.0


def test_keep_only_without_keys_keeps_the_n_most_recent(tmp_path):
    checkpointer = Checkpointer(tmp_path, {"model": torch.nn.Linear(1, 1)})
    for index in range(4):
        time.sleep(0.002)
        checkpointer.save_and_keep_only(meta={"i": index}, num_to_keep=2)
    assert [c.meta["i"] for c in checkpointer.list_checkpoints()] == [2, 3]
    for index in range(4, 6):  # no ranking at all (as in SpeechBrain): nothing is deleted
        time.sleep(0.002)
        checkpointer.save_and_keep_only(meta={"i": index}, num_to_keep=1, keep_recent=False)
    assert [c.meta["i"] for c in checkpointer.list_checkpoints()] == [2, 3, 4, 5]


def test_predicate_limits_what_is_found_and_deleted(tmp_path):
    checkpointer = Checkpointer(tmp_path, {"model": torch.nn.Linear(1, 1)})
    checkpointer.save_checkpoint(meta={"kind": "epoch", "loss": 5.0})
    time.sleep(0.002)
    checkpointer.save_and_keep_only(
        meta={"kind": "mid"}, num_to_keep=1, ckpt_predicate=lambda c: c.meta["kind"] == "mid"
    )
    assert sorted(c.meta["kind"] for c in checkpointer.list_checkpoints()) == ["epoch", "mid"]
    found = checkpointer.find_checkpoint(ckpt_predicate=lambda c: c.meta["kind"] == "epoch")
    assert found.meta["loss"] == 5.0


def test_foreign_and_incomplete_folders_are_ignored_and_never_deleted(tmp_path):
    model = torch.nn.Linear(1, 1)
    checkpointer = Checkpointer(tmp_path, {"model": model})
    good = checkpointer.save_checkpoint(meta={"good": True})
    (tmp_path / ".tmp-CKPT+later").mkdir()  # no owner in its name: not ours to judge
    broken = tmp_path / "CKPT+9999-broken"  # no CKPT.json: not a checkpoint we wrote
    broken.mkdir()
    (broken / "model.safetensors").write_bytes(b"garbage")
    assert [c.path for c in checkpointer.list_checkpoints()] == [good.path]
    assert checkpointer.recover_if_possible().path == good.path
    checkpointer.save_and_keep_only(num_to_keep=1)
    names = {p.name for p in tmp_path.iterdir()}
    assert {".tmp-CKPT+later", "CKPT+9999-broken"} <= names and good.path.name not in names


def test_missing_recoverable_is_an_error_naming_it_unless_partial_load(tmp_path):
    Checkpointer(tmp_path, {"model": torch.nn.Linear(1, 1)}).save_checkpoint()
    extra = {"model": torch.nn.Linear(1, 1), "other": torch.nn.Linear(1, 1)}
    with pytest.raises(RuntimeError, match="missing a load path for other"):
        Checkpointer(tmp_path, extra).recover_if_possible()
    assert Checkpointer(tmp_path, extra, allow_partial_load=True).recover_if_possible() is not None


def test_average_checkpoints_averages_floats_and_keeps_integer_buffers(tmp_path):
    model = torch.nn.BatchNorm1d(2)
    checkpointer = Checkpointer(tmp_path, {"model": model})
    for value in (1.0, 2.0, 6.0):
        model.weight.data.fill_(value)
        model.num_batches_tracked.fill_(int(value))
        time.sleep(0.002)
        checkpointer.save_checkpoint(meta={"loss": -value})
    best_two = checkpointer.find_checkpoints(min_key="loss", max_num_checkpoints=2)
    averaged = average_checkpoints(best_two, "model")
    assert torch.equal(averaged["weight"], torch.full((2,), 4.0))
    assert averaged["num_batches_tracked"].dtype == torch.int64
    model.load_state_dict(averaged)


def test_save_returns_checkpoint_with_meta_and_paramfiles(tmp_path):
    checkpoint = Checkpointer(tmp_path, {"model": torch.nn.Linear(1, 1)}).save_checkpoint(
        meta={"epoch": 3}, name="best"
    )
    assert checkpoint.path.name == "CKPT+best"
    assert checkpoint.meta["epoch"] == 3 and checkpoint.meta["end-of-epoch"] is True
    assert checkpoint.paramfiles == {"model": checkpoint.path / "model.safetensors"}
