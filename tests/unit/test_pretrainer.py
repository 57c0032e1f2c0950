import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from speechlobes.checkpoints import Checkpointer
from speechlobes.nnet.schedulers import EpochCounter
from speechlobes.pretrainer import Pretrainer, apply_key_map, read_state_dict

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def small_net():
    return torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))


def test_original_beats_checkpoint_is_unwrapped_from_its_model_entry():
    state = read_state_dict(FIXTURES / "beats" / "checkpoint.pt")
    assert len(state) == 50
    assert state["encoder.pos_conv.0.weight_g"].shape[:2] == (1, 1)


def test_hugging_face_folder_reads_model_safetensors():
    folder = FIXTURES / "hf" / "wav2vec2_layer"
    expected = load_file(folder / "model.safetensors")
    state = read_state_dict(folder)
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[k], expected[k]) for k in expected)


def test_hugging_face_pytorch_model_bin_is_read_with_weights_only(tmp_path):
    net = small_net()
    torch.save(net.state_dict(), tmp_path / "pytorch_model.bin")
    target = small_net()
    Pretrainer(loadables={"net": target}, paths={"net": tmp_path}).load_collected()
    assert torch.equal(target[0].weight, net[0].weight)


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.ones(1)}, "hook": Path("/")}, path)
    with pytest.raises(pickle.UnpicklingError, match="evil.pt"):
        read_state_dict(path)


def test_our_checkpoint_folder_and_checkpoints_dir_give_the_named_module(tmp_path):
    net, counter = small_net(), EpochCounter(10)
    next(counter)
    checkpointer = Checkpointer(tmp_path, {"encoder": net, "counter": counter})
    checkpoint = checkpointer.save_checkpoint()
    for path in (checkpoint.path, tmp_path):
        target, target_counter = small_net(), EpochCounter(10)
        Pretrainer(loadables={"encoder": target}, paths={"encoder": path}).load_collected()
        assert torch.equal(target[2].weight, net[2].weight)
    Pretrainer(
        loadables={"counter": target_counter}, paths={"counter": checkpoint.path}
    ).load_collected()
    assert target_counter.current == 1


def test_key_map_strips_a_prefix(tmp_path):
    net = small_net()
    save_file(
        {f"module.{k}": v for k, v in net.state_dict().items()}, str(tmp_path / "w.safetensors")
    )
    target = small_net()
    Pretrainer(
        loadables={"net": target},
        paths={"net": tmp_path / "w.safetensors"},
        key_maps={"net": {"module.": ""}},
    ).load_collected()
    assert torch.equal(target[0].bias, net[0].bias)
    assert apply_key_map({"a.x": 1, "b.x": 2}, {"a.": "c.", "": "z."}) == {"c.x": 1, "z.b.x": 2}


def test_strict_loading_lists_missing_and_unexpected_keys(tmp_path):
    state = small_net().state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["2.bias"]
    save_file(state, str(tmp_path / "w.safetensors"))
    with pytest.raises(
        KeyError, match=r"1 missing keys \['2.bias'\], 1 unexpected keys \['extra.weight'\]"
    ):
        Pretrainer(
            loadables={"net": small_net()}, paths={"net": tmp_path / "w.safetensors"}
        ).load_collected()
    target = small_net()
    Pretrainer(
        loadables={"net": target}, paths={"net": tmp_path / "w.safetensors"}, strict=False
    ).load_collected()
    assert torch.equal(target[0].weight, state["0.weight"])


def test_shape_mismatch_and_missing_paths_are_named(tmp_path):
    save_file(
        {"weight": torch.zeros(5, 5), "bias": torch.zeros(5)}, str(tmp_path / "w.safetensors")
    )
    with pytest.raises(RuntimeError, match="into 'lin'"):
        Pretrainer(
            loadables={"lin": torch.nn.Linear(2, 2)}, paths={"lin": tmp_path / "w.safetensors"}
        ).load_collected()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Pretrainer(
            loadables={"lin": torch.nn.Linear(2, 2)}, paths={"lin": tmp_path / "nope.pt"}
        ).load_collected()
    with pytest.raises(ValueError, match="no path for 'lin' and no default_source"):
        Pretrainer(loadables={"lin": torch.nn.Linear(2, 2)}, paths={}).load_collected()


def test_collect_in_links_the_files(tmp_path):
    save_file(torch.nn.Linear(2, 2).state_dict(), str(tmp_path / "w.safetensors"))
    pretrainer = Pretrainer(
        tmp_path / "c", {"lin": torch.nn.Linear(2, 2)}, {"lin": tmp_path / "w.safetensors"}
    )  # SpeechBrain's positional order: collect_in, loadables, paths
    pretrainer.collect_files()
    assert (tmp_path / "c" / "lin.safetensors").resolve() == (tmp_path / "w.safetensors").resolve()


def test_default_source_conditions_and_custom_hooks(tmp_path):
    net = small_net()
    torch.save(net.state_dict(), tmp_path / "model.ckpt")
    target, skipped, hooked = small_net(), small_net(), []
    before = skipped[0].weight.clone()
    pretrainer = Pretrainer(
        loadables={"model": target, "other": skipped, "custom": "anything"},
        paths={"custom": tmp_path / "model.ckpt"},
        custom_hooks={"custom": lambda obj, path: hooked.append((obj, path.name))},
        conditions={"other": lambda: False},
    )
    assert pretrainer.collect_files(default_source=tmp_path) == {
        "model": tmp_path / "model.ckpt",
        "custom": tmp_path / "model.ckpt",
    }
    pretrainer.load_collected()
    assert torch.equal(target[0].weight, net[0].weight) and torch.equal(skipped[0].weight, before)
    assert hooked == [("anything", "model.ckpt")] and not pretrainer.is_loadable("other")


def test_objects_with_checkpoint_hooks_load_from_their_file(tmp_path):
    from speechlobes.dataio.encoders import CategoricalEncoder

    saved = CategoricalEncoder()
    saved.update_from_iterable(["yes", "no"])
    saved.save(tmp_path / "label_encoder.txt")
    encoder = CategoricalEncoder()
    Pretrainer(
        loadables={"label_encoder": encoder},
        paths={"label_encoder": tmp_path / "label_encoder.txt"},
    ).load_collected()
    assert encoder.lab2ind == {"yes": 0, "no": 1}


def test_a_speechbrain_normalizer_file_loads_into_input_normalization(tmp_path):
    from speechlobes.processing.normalization import InputNormalization

    stats = {"count": 7, "glob_mean": torch.tensor([1.0]), "glob_std": torch.tensor([2.0])}
    torch.save(stats, tmp_path / "normalizer.ckpt")
    norm = InputNormalization()
    Pretrainer(
        loadables={"normalizer": norm}, paths={"normalizer": tmp_path / "normalizer.ckpt"}
    ).load_collected()
    assert int(norm.count) == 7 and norm.glob_std.tolist() == [2.0]
