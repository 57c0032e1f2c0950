"""Base encoders of the Wav2Vec2 family against the transformers 5.23 fixtures (no transformers
needed).
"""

import json
from pathlib import Path

import pytest
import torch

from speechlobes.lobes.hf_io import load_hf_state_dict, read_config
from speechlobes.lobes.wav2vec2 import (
    ENCODER_MODELS,
    HubertModel,
    Wav2Vec2Config,
    Wav2Vec2ConformerModel,
    Wav2Vec2Model,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "hf"
ENCODER_FOLDERS = [
    "wav2vec2_group",
    "wav2vec2_layer",
    "hubert",
    "w2v2_conformer_relpos",
    "w2v2_conformer_rotary",
]
ATOL = 1e-4


def _cases(folder: str) -> dict:
    return torch.load(FIXTURES / folder / "cases.pt", weights_only=True)


def _encoder(folder: str):
    config = read_config(FIXTURES / folder)
    return ENCODER_MODELS[config["model_type"]].from_pretrained(FIXTURES / folder)


def _max_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    assert ours.shape == ref.shape
    return (ours - ref).abs().max().item()


@pytest.mark.parametrize("folder", ENCODER_FOLDERS)
def test_encoder_outputs_match_reference_on_all_frames(folder):
    cases, model = _cases(folder), _encoder(folder)
    with torch.no_grad():
        out = model(cases["input_values"], cases["attention_mask"], output_hidden_states=True)
    assert _max_error(out.last_hidden_state, cases["last_hidden_state"]) < ATOL
    hidden = torch.stack(out.hidden_states)
    # entries before the last are identical in 4.x and 5.x; the last is the final output (4.x)
    assert _max_error(hidden[:-1], cases["hidden_states"][:-1]) < ATOL
    assert torch.equal(hidden[-1], out.last_hidden_state)
    if "extract_features" in cases:
        assert _max_error(out.extract_features, cases["extract_features"]) < ATOL
    if "conv_features" in cases:
        conv = model.feature_extractor(cases["input_values"]).transpose(1, 2)
        assert _max_error(conv, cases["conv_features"]) < ATOL


@pytest.mark.parametrize("folder", ["wav2vec2_layer", "w2v2_conformer_relpos"])
def test_hidden_states_last_entry_is_layer_norm_of_the_5x_entry(folder):
    cases, model = _cases(folder), _encoder(folder)
    with torch.no_grad():
        out = model(cases["input_values"], cases["attention_mask"], output_hidden_states=True)
        expected = model.encoder.layer_norm(cases["hidden_states"][-1])
    assert _max_error(out.hidden_states[-1], expected) < ATOL


@pytest.mark.parametrize("folder", ["wav2vec2_group", "hubert"])
def test_group_norm_encoders_match_reference_without_mask(folder):
    cases, model = _cases(folder), _encoder(folder)
    with torch.no_grad():
        out = model(cases["input_values"], output_hidden_states=True)
    assert _max_error(out.last_hidden_state, cases["last_hidden_state_nomask"]) < ATOL
    assert _max_error(torch.stack(out.hidden_states), cases["hidden_states_nomask"]) < ATOL


@pytest.mark.parametrize("folder", ENCODER_FOLDERS)
def test_single_unpadded_utterance_matches_reference(folder):
    cases, model = _cases(folder), _encoder(folder)
    index = int(cases["single_index"])
    wav = cases["input_values"][index, : cases["input_lengths"][index]]
    with torch.no_grad():
        out = model(wav[None])
    assert _max_error(out.last_hidden_state[0], cases["single_last_hidden_state"]) < ATOL


@pytest.mark.parametrize("folder", ENCODER_FOLDERS)
def test_frame_lengths_and_mask_follow_the_conv_rule(folder):
    cases, model = _cases(folder), _encoder(folder)
    assert torch.equal(model.output_lengths(cases["input_lengths"]), cases["feat_lengths"])
    mask = model.frame_attention_mask(127, cases["attention_mask"])
    assert torch.equal(mask, cases["feat_attention_mask"])


def test_adapter_lengths_add_the_stride_rule_per_layer():
    config = Wav2Vec2Config(add_adapter=True, num_adapter_layers=2, adapter_stride=2)
    model = Wav2Vec2Model.__new__(Wav2Vec2Model)
    model.config = config
    conv = model.output_lengths(torch.tensor([16000]), add_adapter=False)
    assert int(conv) == 49  # (16000 - 400) / 320 + 1 for the default conv stack
    assert int(model.output_lengths(torch.tensor([16000]))) == 13  # 49 -> 25 -> 13
    assert model.output_lengths(16000, add_adapter=False) == 49


def test_output_attentions_are_softmax_maps_that_ignore_padded_keys():
    cases, model = _cases("w2v2_conformer_relpos"), _encoder("w2v2_conformer_relpos")
    with torch.no_grad():
        out = model(cases["input_values"], cases["attention_mask"], output_attentions=True)
    attn = out.attentions[0]
    assert attn.shape == (3, 2, 127, 127)
    torch.testing.assert_close(attn.sum(-1), torch.ones(3, 2, 127))
    padded = ~cases["feat_attention_mask"]
    assert attn.masked_select(padded[:, None, None, :].expand_as(attn)).abs().max() < 1e-6


def test_base_model_loads_from_a_head_checkpoint_and_drops_head_tensors():
    model = Wav2Vec2Model.from_pretrained(FIXTURES / "wav2vec2_group")
    state = load_hf_state_dict(FIXTURES / "wav2vec2_group")
    expected = state["wav2vec2.encoder.layers.1.feed_forward.output_dense.weight"]
    assert torch.equal(model.encoder.layers[1].feed_forward.output_dense.weight, expected)


def test_legacy_bin_with_weight_g_and_weight_v_gives_identical_outputs():
    cases = _cases("wav2vec2_group")
    new = Wav2Vec2Model.from_pretrained(FIXTURES / "wav2vec2_group")
    old = Wav2Vec2Model.from_pretrained(FIXTURES / "wav2vec2_group" / "legacy_bin")
    with torch.no_grad():
        a = new(cases["input_values"], cases["attention_mask"]).last_hidden_state
        b = old(cases["input_values"], cases["attention_mask"]).last_hidden_state
    assert torch.equal(a, b)


def test_wrong_model_type_is_a_clear_error():
    with pytest.raises(ValueError, match="config has 'hubert'"):
        Wav2Vec2ConformerModel.from_pretrained(FIXTURES / "hubert")


def test_strict_loading_names_missing_tensors(tmp_path):
    model = HubertModel.from_pretrained(FIXTURES / "hubert")
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["num_hidden_layers"] = 3
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"missing keys \['encoder\.layers\.2\."):
        HubertModel.from_pretrained(tmp_path)


@pytest.mark.parametrize("folder", ENCODER_FOLDERS)
def test_save_and_reload_round_trips_config_and_weights(folder, tmp_path):
    model = _encoder(folder)
    model.save_pretrained(tmp_path)
    again = type(model).from_pretrained(tmp_path)
    assert again.config.extra.pop("architectures") == [type(model).__name__]
    model.config.extra.pop("architectures", None)
    assert again.config == model.config
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_config_keeps_unknown_fields_and_label_maps(tmp_path):
    raw = read_config(FIXTURES / "seq_cls")
    config = Wav2Vec2Config.from_dict(raw)
    assert config.num_labels == 5 and config.extra["architectures"]
    config.to_json(tmp_path / "config.json")
    written = json.loads((tmp_path / "config.json").read_text())
    assert written == raw | {"output_hidden_size": raw["output_hidden_size"]}


def test_config_rejects_inconsistent_conv_stack():
    with pytest.raises(ValueError, match="same length"):
        Wav2Vec2Config(conv_dim=[8, 8], conv_stride=[5], conv_kernel=[10, 3])
