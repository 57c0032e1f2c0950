import json
from pathlib import Path

import pytest
import torch

from speechlobes.lobes.hf_io import load_hf_state_dict, read_config, save_hf_folder

FIXTURES = Path(__file__).parents[1] / "fixtures" / "hf"


def _state() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {f"layer{i}.weight": torch.randn(50, 40, generator=gen) for i in range(4)}


@pytest.mark.parametrize("safe", [True, False])
def test_save_then_load_round_trips_every_tensor_and_config(tmp_path, safe):
    state = _state()
    save_hf_folder(tmp_path, {"model_type": "x", "n": [1, 2]}, state, safe_serialization=safe)
    loaded = load_hf_state_dict(tmp_path)
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    assert read_config(tmp_path) == {"model_type": "x", "n": [1, 2]}


@pytest.mark.parametrize("safe", [True, False])
def test_sharded_save_writes_index_and_loads_back(tmp_path, safe):
    state = _state()  # 4 tensors of 8000 bytes
    save_hf_folder(tmp_path, {}, state, safe_serialization=safe, max_shard_size="17KB")
    index_name = "model.safetensors.index.json" if safe else "pytorch_model.bin.index.json"
    index = json.loads((tmp_path / index_name).read_text())
    assert len(set(index["weight_map"].values())) == 2
    assert index["metadata"]["total_size"] == 4 * 50 * 40 * 4
    loaded = load_hf_state_dict(tmp_path)
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_shared_storage_is_saved_as_independent_tensors(tmp_path):
    base = torch.arange(6.0)
    save_hf_folder(tmp_path, {}, {"a": base, "b": base[:3]})
    loaded = load_hf_state_dict(tmp_path)
    assert torch.equal(loaded["b"], torch.tensor([0.0, 1.0, 2.0]))


def test_missing_weights_error_names_the_folder_and_its_files(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_hf_state_dict(tmp_path)


def test_fixture_bin_and_safetensors_hold_the_same_tensors():
    safe = load_hf_state_dict(FIXTURES / "wav2vec2_group")
    legacy = load_hf_state_dict(FIXTURES / "wav2vec2_group" / "legacy_bin")
    prefix = "wav2vec2.encoder.pos_conv_embed.conv."
    assert torch.equal(
        safe[prefix + "parametrizations.weight.original0"], legacy[prefix + "weight_g"]
    )
    assert len(safe) == len(legacy)
