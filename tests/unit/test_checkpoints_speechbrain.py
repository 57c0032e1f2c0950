"""The Checkpointer behaves as SpeechBrain 1.1's: which checkpoint is chosen, which are kept,
what a missing recoverable does, what the metadata holds, hooks and signatures."""

import json
import logging
import os
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from speechlobes.checkpoints import (
    Checkpointer,
    average_checkpoints,
    average_state_dicts,
    ckpt_recency,
    mark_as_loader,
    mark_as_saver,
    mark_as_transfer,
    register_checkpoint_hooks,
)
from speechlobes.pretrainer import Pretrainer


def linear(value: float) -> torch.nn.Linear:
    layer = torch.nn.Linear(1, 1, bias=False)
    layer.weight.data.fill_(value)
    return layer


def save_all(checkpointer, metas, **kwargs):
    saved = []
    for meta in metas:
        time.sleep(0.002)  # distinct unixtimes
        saved.append(checkpointer.save_checkpoint(meta=meta, **kwargs))
    return saved


# ------------------------------------------------------------------ choosing a checkpoint
def test_equal_min_key_or_max_key_values_pick_the_newest(tmp_path):
    checkpointer = Checkpointer(tmp_path, {"model": linear(0.0)})
    losses = [1.0, 0.5, 0.5, 2.0, 0.5]
    saved = save_all(checkpointer, [{"loss": loss, "i": i} for i, loss in enumerate(losses)])
    assert checkpointer.find_checkpoint(min_key="loss").path == saved[4].path
    ranked = checkpointer.find_checkpoints(min_key="loss")
    assert [c.meta["i"] for c in ranked] == [4, 2, 1, 0, 3], "best first, newest first among equals"
    assert checkpointer.find_checkpoint(max_key="loss").meta["i"] == 3
    assert [c.meta["i"] for c in checkpointer.find_checkpoints(max_key="loss")] == [3, 0, 4, 2, 1]


def test_recovering_a_tie_loads_the_newest(tmp_path):
    model = linear(0.0)
    checkpointer = Checkpointer(tmp_path, {"model": model})
    for value in (1.0, 2.0, 3.0):
        model.weight.data.fill_(value)
        save_all(checkpointer, [{"wer": 10.0 if value < 3 else 20.0}])
    model.weight.data.fill_(0.0)
    checkpointer.recover_if_possible(min_key="wer")
    assert model.weight.item() == 2.0


def test_only_checkpoints_with_the_key_are_considered_and_one_key_at_a_time(tmp_path):
    checkpointer = Checkpointer(tmp_path, {"model": linear(0.0)})
    save_all(checkpointer, [{"loss": 3.0}, {"acc": 0.9}])
    assert [c.meta["loss"] for c in checkpointer.find_checkpoints(min_key="loss")] == [3.0]
    assert checkpointer.find_checkpoint(min_key="wer") is None
    assert "acc" in checkpointer.find_checkpoint().meta, "no key: the most recent"
    with pytest.raises(ValueError, match="at most one"):
        checkpointer.find_checkpoint(min_key="loss", max_key="acc")
    newest = checkpointer.find_checkpoint(importance_key=ckpt_recency)
    assert newest.meta["unixtime"] == max(
        c.meta["unixtime"] for c in checkpointer.list_checkpoints()
    )


# ------------------------------------------------------------------ keeping and deleting
def test_keep_recent_keeps_the_n_most_recent_besides_the_n_best(tmp_path):
    checkpointer = Checkpointer(tmp_path, {"model": linear(0.0)})
    for i, loss in enumerate([0.1, 0.2, 5.0, 6.0, 7.0]):
        time.sleep(0.002)
        checkpointer.save_and_keep_only(
            meta={"loss": loss, "i": i}, min_keys=["loss"], num_to_keep=2
        )
    assert sorted(c.meta["i"] for c in checkpointer.list_checkpoints()) == [0, 1, 3, 4]


def test_without_keep_recent_a_worse_new_checkpoint_is_deleted_and_none_returned(tmp_path):
    checkpointer = Checkpointer(tmp_path, {"model": linear(0.0)})
    kwargs = {"min_keys": ["loss"], "num_to_keep": 1, "keep_recent": False}
    assert checkpointer.save_and_keep_only(meta={"loss": 1.0}, **kwargs) is not None
    time.sleep(0.002)
    assert checkpointer.save_and_keep_only(meta={"loss": 2.0}, **kwargs) is None
    assert [c.meta["loss"] for c in checkpointer.list_checkpoints()] == [1.0]


def test_checkpoints_without_a_ranking_key_are_not_considered_for_deletion(tmp_path):
    checkpointer = Checkpointer(tmp_path, {"model": linear(0.0)})
    save_all(checkpointer, [{"note": "no loss"}])
    for loss in (3.0, 2.0, 1.0):
        time.sleep(0.002)
        checkpointer.save_and_keep_only(meta={"loss": loss}, min_keys=["loss"], keep_recent=False)
    kept = sorted(
        str(c.meta.get("loss", c.meta.get("note"))) for c in checkpointer.list_checkpoints()
    )
    assert kept == ["1.0", "no loss"]


def test_delete_checkpoints_is_keyword_only_keeps_the_latest_by_default_and_checks_the_count(
    tmp_path,
):
    checkpointer = Checkpointer(tmp_path, {"model": linear(0.0)})
    saved = save_all(checkpointer, [{"i": 0}, {"i": 1}, {"i": 2}])
    with pytest.raises(TypeError):
        checkpointer.delete_checkpoints(1)
    with pytest.raises(ValueError, match="num_to_keep"):
        checkpointer.delete_checkpoints(num_to_keep=-1)
    with pytest.raises(ValueError, match="num_to_keep"):
        checkpointer.save_and_keep_only(num_to_keep=-1)
    checkpointer.delete_checkpoints()
    assert [c.path for c in checkpointer.list_checkpoints()] == [saved[2].path]
    checkpointer.delete_checkpoints(num_to_keep=0)
    assert checkpointer.list_checkpoints() == []


def test_verbosity_sets_the_level_of_the_save_and_delete_messages(tmp_path, caplog):
    checkpointer = Checkpointer(tmp_path, {"model": linear(0.0)})
    with caplog.at_level(logging.DEBUG, logger="speechlobes.checkpoints"):
        checkpointer.save_checkpoint(end_of_epoch=False, verbosity=logging.DEBUG)
        time.sleep(0.002)
        checkpointer.save_and_keep_only(verbosity=logging.WARNING)
    messages = [(r.levelno, r.getMessage().split(" in ")[0]) for r in caplog.records]
    assert (logging.DEBUG, "saved an intra-epoch checkpoint") in messages
    assert (logging.WARNING, "saved an end-of-epoch checkpoint") in messages
    assert any(level == logging.WARNING and "deleted checkpoint" in m for level, m in messages)


def test_saving_under_an_existing_name_replaces_that_checkpoint(tmp_path):
    model = linear(1.0)
    checkpointer = Checkpointer(tmp_path, {"model": model})
    checkpointer.save_checkpoint(meta={"epoch": 1}, name="latest")
    model.weight.data.fill_(2.0)
    checkpointer.save_checkpoint(meta={"epoch": 2}, name="CKPT+latest")
    (only,) = checkpointer.list_checkpoints()
    assert only.path.name == "CKPT+latest" and only.meta["epoch"] == 2
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".check")) == [
        "CKPT+latest"
    ]
    model.weight.data.fill_(0.0)
    checkpointer.recover_if_possible()
    assert model.weight.item() == 2.0


# ------------------------------------------------------------------ the metadata
def test_meta_holds_unixtime_and_end_of_epoch_and_user_keys_win(tmp_path):
    before = time.time()
    checkpoint = Checkpointer(tmp_path, {"model": linear(0.0)}).save_checkpoint(
        meta={"epoch": 4}, end_of_epoch=False
    )
    on_disk = json.loads((checkpoint.path / "CKPT.json").read_text())
    assert on_disk == checkpoint.meta
    assert set(on_disk) == {"unixtime", "end-of-epoch", "epoch"}
    assert before <= on_disk["unixtime"] <= time.time() and on_disk["end-of-epoch"] is False
    assert checkpoint.end_of_epoch is False


def test_tensors_and_numpy_values_in_meta_are_stored_as_numbers_and_lists(tmp_path):
    meta = {
        "loss": torch.tensor(0.25),
        "count": torch.tensor(7),
        "per_class": torch.tensor([0.5, 1.5]),
        "wer": np.float32(12.5),
        "confusion": np.array([[1, 2], [3, 4]]),
        "nested": {"acc": torch.tensor(0.75, dtype=torch.float64)},
    }
    checkpointer = Checkpointer(tmp_path, {"model": linear(0.0)})
    checkpointer.save_and_keep_only(meta=meta, min_keys=["loss"])
    found = checkpointer.find_checkpoint(min_key="loss").meta
    assert found["loss"] == 0.25 and isinstance(found["loss"], float)
    assert found["count"] == 7 and isinstance(found["count"], int)
    assert found["per_class"] == [0.5, 1.5] and found["wer"] == 12.5
    assert found["confusion"] == [[1, 2], [3, 4]] and found["nested"] == {"acc": 0.75}


def test_meta_a_checkpoint_cannot_store_is_an_error_naming_the_keys(tmp_path):
    checkpointer = Checkpointer(tmp_path, {"model": linear(0.0)})
    with pytest.raises(TypeError, match=r"meta 'where': cannot store a .*Path"):
        checkpointer.save_checkpoint(meta={"epoch": 1, "where": Path("/tmp")})
    assert checkpointer.list_checkpoints() == [] and [p.name for p in tmp_path.iterdir()] == [
        ".checkpointer.lock"
    ]


def test_checkpoints_written_with_our_earlier_end_of_epoch_key_still_load_that_flag(tmp_path):
    note = Note("text")
    checkpoint = Checkpointer(tmp_path, {"note": note}).save_checkpoint()
    meta = json.loads((checkpoint.path / "CKPT.json").read_text())
    del meta["end-of-epoch"]
    (checkpoint.path / "CKPT.json").write_text(json.dumps({**meta, "end_of_epoch": False}))
    Checkpointer(tmp_path, {"note": note}).recover_if_possible()
    assert note.loaded_end_of_epoch is False


# ------------------------------------------------------------------ missing recoverables
@pytest.fixture
def saved_model_only(tmp_path):
    Checkpointer(tmp_path, {"model": linear(3.0)}).save_checkpoint()
    return tmp_path


def test_a_missing_recoverable_is_a_runtime_error_and_nothing_is_loaded(saved_model_only):
    model = linear(0.0)
    checkpointer = Checkpointer(saved_model_only, {"model": model, "extra": linear(0.0)})
    with pytest.raises(RuntimeError, match="missing a load path for extra"):
        checkpointer.recover_if_possible()
    assert model.weight.item() == 0.0


@pytest.mark.parametrize("how", ["allow_partial_load", "optional_load", "dataloader name"])
def test_partial_load_optional_recoverables_and_data_loaders_may_be_missing(saved_model_only, how):
    model, extra = linear(0.0), linear(5.0)
    checkpointer = Checkpointer(
        saved_model_only, {"model": model}, allow_partial_load=how == "allow_partial_load"
    )
    name = "dataloader-TRAIN" if how == "dataloader name" else "extra"
    checkpointer.add_recoverable(name, extra, optional_load=how == "optional_load")
    with pytest.warns(UserWarning, match=f"missing a load path for {name}"):
        assert checkpointer.recover_if_possible() is not None
    assert model.weight.item() == 3.0 and extra.weight.item() == 5.0


def test_optional_recoverables_are_recorded_and_reset_by_registering_again(tmp_path):
    checkpointer = Checkpointer(tmp_path, {"model": linear(0.0)})
    checkpointer.add_recoverable("scaler", torch.amp.GradScaler("cpu"), optional_load=True)
    assert checkpointer.optional_recoverables == {"model": False, "scaler": True}
    checkpointer.add_recoverable("scaler", torch.amp.GradScaler("cpu"))
    assert checkpointer.optional_recoverables["scaler"] is False
    with pytest.raises(TypeError, match="mapping"):
        checkpointer.add_recoverables([("model", linear(0.0))])


# ------------------------------------------------------------------ hooks
@register_checkpoint_hooks
class Note:
    def __init__(self, text=""):
        self.text, self.loaded_end_of_epoch, self.transferred = text, None, None

    @mark_as_saver
    def save(self, path):
        Path(path).write_text(self.text)

    @mark_as_loader
    def load(self, path, end_of_epoch):
        self.text, self.loaded_end_of_epoch = Path(path).read_text(), end_of_epoch

    @mark_as_transfer
    def transfer(self, path):
        self.transferred = Path(path).read_text()


def test_custom_hooks_given_to_the_checkpointer_or_to_add_recoverable(tmp_path):
    calls = []

    def save(obj, path):
        calls.append(("save", Path(path).name))
        Path(path).write_text(json.dumps(obj))

    def load(obj, path, end_of_epoch):
        calls.append(("load", Path(path).name, end_of_epoch))
        obj.update(json.loads(Path(path).read_text()))

    def load_without_flag(obj, path):  # SpeechBrain documents (instance, path)
        obj.update(json.loads(Path(path).read_text()))

    first, second = {"a": 1}, {"b": 2}
    checkpointer = Checkpointer(
        tmp_path,
        {"first": first},
        custom_load_hooks={"first": load},
        custom_save_hooks={"first": save},
    )
    checkpointer.add_recoverable(
        "second", second, custom_load_hook=load_without_flag, custom_save_hook=save
    )
    checkpoint = checkpointer.save_checkpoint(end_of_epoch=False)
    assert set(checkpoint.paramfiles) == {"first", "second"}
    first["a"], second["b"] = 0, 0
    checkpointer.recover_if_possible()
    assert first == {"a": 1} and second == {"b": 2}
    assert calls == [("save", "first.ckpt"), ("save", "second.ckpt"), ("load", "first.ckpt", False)]


def test_hook_decorators_check_the_method_signature():
    with pytest.raises(TypeError, match="save\\(self, path\\)"):
        mark_as_saver(lambda self: None)
    with pytest.raises(TypeError, match="load\\(self, path, end_of_epoch\\)"):
        mark_as_loader(lambda self, a, b, c: None)
    with pytest.raises(TypeError, match="transfer\\(self, path\\)"):
        mark_as_transfer(lambda self, path, end_of_epoch: None)


def test_the_pretrainer_prefers_the_transfer_hook(tmp_path):
    path = tmp_path / "note.txt"
    path.write_text("pretrained")
    note = Note()
    Pretrainer(loadables={"note": note}, paths={"note": path}).load_collected()
    assert note.transferred == "pretrained" and note.text == ""


# ------------------------------------------------------------------ averaging
def test_average_checkpoints_takes_a_parameter_loader_and_an_averager(tmp_path):
    model = linear(0.0)
    checkpointer = Checkpointer(tmp_path, {"model": model})
    for value in (1.0, 2.0, 6.0):
        model.weight.data.fill_(value)
        save_all(checkpointer, [{"value": value}])
    checkpoints = checkpointer.find_checkpoints()
    assert average_checkpoints(checkpoints, "model")["weight"].item() == 3.0
    loaded = []

    def loader(path, map_location):
        loaded.append((Path(path).name, map_location))
        return {"weight": torch.ones(1)}

    assert average_checkpoints(checkpoints, "model", loader, averager=lambda s: len(list(s))) == 3
    assert loaded == [("model.safetensors", "cpu")] * 3
    with pytest.raises(ValueError, match="no state dicts"):
        average_state_dicts([])
    with pytest.raises(ValueError, match="no 'other'"):
        average_checkpoints(checkpoints, "other")


# ------------------------------------------------------------------ replacing, cut short
def test_a_replaced_checkpoint_whose_successor_never_arrived_is_put_back(tmp_path):
    model = linear(1.0)
    checkpointer = Checkpointer(tmp_path, {"model": model})
    best = checkpointer.save_checkpoint(meta={"epoch": 1}, name="best")
    # A save of "best" cut between stepping the old one aside and publishing the new one (by a
    # process that is gone: this one, outside any save, counts as gone).
    aside = tmp_path / f".replaced-{os.getpid()}@{socket.gethostname()}-CKPT+best"
    best.path.rename(aside)
    assert checkpointer.list_checkpoints() == []
    checkpointer.save_checkpoint(meta={"epoch": 2})
    assert sorted(c.meta["epoch"] for c in checkpointer.list_checkpoints()) == [1, 2]
    assert not aside.exists()
    # Cut after publishing: the new one stays, the old one goes.
    shutil.copytree(best.path, aside)
    model.weight.data.fill_(0.0)
    checkpointer.save_checkpoint(meta={"epoch": 3})
    assert not aside.exists()
    assert sorted(c.meta["epoch"] for c in checkpointer.list_checkpoints()) == [1, 2, 3]
