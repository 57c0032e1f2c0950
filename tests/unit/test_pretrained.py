"""The shared lobe infrastructure: the config base (one unknown-key policy), the one
state-dict checker, and the pretrained mixin's folder round trip."""

import json
import logging
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from speechlobes.lobes.config import LobeConfig
from speechlobes.lobes.pretrained import PretrainedMixin, load_state_dict_checked
from speechlobes.nnet.positional_conv import weight_norm_conv1d


@dataclass
class ToyConfig(LobeConfig):
    model_type = "toy"
    width: int = 4
    layers: int = 1


class Toy(PretrainedMixin, nn.Module):
    config_class = ToyConfig

    def __init__(self, config: ToyConfig):
        super().__init__()
        self.config = config
        self.proj = nn.Linear(config.width, 2)


def test_unknown_keys_are_kept_and_written_back_or_refused_when_strict(tmp_path):
    config = ToyConfig.from_dict({"width": 3, "transformers_version": "5.0", "model_type": "toy"})
    assert config.width == 3 and config.extra == {"transformers_version": "5.0"}
    config.to_json(tmp_path / "config.json")
    written = json.loads((tmp_path / "config.json").read_text())
    assert written == {"width": 3, "layers": 1, "transformers_version": "5.0", "model_type": "toy"}
    assert ToyConfig.from_json(tmp_path / "config.json") == config
    with pytest.raises(ValueError, match=r"unknown fields \['widht'\]; known fields are"):
        ToyConfig.from_dict({"widht": 3}, strict=True)
    with pytest.raises(ValueError, match="describes model_type 'toy', got 'bert'"):
        ToyConfig.from_dict({"model_type": "bert"})


def test_checker_reports_missing_unexpected_and_shape_errors(caplog):
    model = nn.Linear(3, 2)
    state = {"weight": torch.zeros(2, 3), "extra": torch.zeros(1)}
    with pytest.raises(
        ValueError,
        match=r"my.pt does not match.*missing keys \['bias'\].*"
        r"unexpected keys \['extra'\]",
    ):
        load_state_dict_checked(model, state, "my.pt")
    with caplog.at_level(logging.WARNING):
        assert load_state_dict_checked(model, state, strict=False) == (["bias"], ["extra"])
    assert "bias" in caplog.text and torch.equal(model.weight, torch.zeros(2, 3))
    assert load_state_dict_checked(model, state, ignore=["^bias$", "^extra$"]) == ([], [])
    with pytest.raises(ValueError, match="shape mismatch"):
        load_state_dict_checked(model, {"weight": torch.zeros(3, 3), "bias": torch.zeros(2)})


def test_fresh_keys_may_be_missing_even_when_strict_and_are_logged(caplog):
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    before = model[1].weight.detach().clone()
    with caplog.at_level(logging.INFO):
        load_state_dict_checked(
            model, {"0.weight": torch.ones(2, 2), "0.bias": torch.ones(2)}, "lm", fresh=[r"^1\."]
        )
    assert torch.equal(model[0].weight, torch.ones(2, 2)) and torch.equal(model[1].weight, before)
    assert "1.weight" in caplog.text and "lm" in caplog.text


def test_legacy_weight_norm_names_load_into_parametrized_conv():
    conv = weight_norm_conv1d(4, 3, groups=2)
    g = torch.rand(1, 1, 3) + 0.5
    v = torch.randn(4, 2, 3)
    load_state_dict_checked(conv, {"weight_g": g, "weight_v": v, "bias": torch.zeros(4)})
    expected = g * v / v.norm(dim=(0, 1), keepdim=True)
    torch.testing.assert_close(conv.weight, expected)


def test_mixin_round_trips_a_folder_and_splits_overrides(tmp_path):
    model = Toy(ToyConfig(width=3))
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == ["Toy"]
    again = Toy.from_pretrained(tmp_path, layers=2)
    assert again.config.layers == 2 and not again.training
    assert torch.equal(again.proj.weight, model.proj.weight)
    with pytest.raises(ValueError, match="unknown options \\['layrs'\\]"):
        Toy.from_pretrained(tmp_path, layrs=2)
