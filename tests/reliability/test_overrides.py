"""Typed command-line overrides: a value must parse to the YAML value's type (a bare --key only
for booleans), obviously invalid values are refused, all before the experiment folder exists;
a missing key is an error naming the key and the file."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from speechlobes.core import parse_arguments
from speechlobes.utils.hparams import (
    HparamsError,
    MissingHparamError,
    load_hparams,
    typed_override,
)

TOY = Path(__file__).resolve().parents[1] / "integration" / "toy_recipe"
HPARAMS = str(TOY / "hparams.yaml")


@pytest.fixture(autouse=True)
def in_a_temporary_folder(tmp_path, monkeypatch):
    """Loading the toy's hparams builds its Checkpointer, which creates its (relative) folder."""
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--lr", r"--lr: give a value \(lr is 0.01 in .*hparams.yaml, line 11\)"),
        ("--lr=abc", "--lr=abc: expected a number"),
        ("--lr=-0.1", "--lr=-0.1: lr must be 0 or more"),
        ("--number_of_epochs=-1", "number_of_epochs must be at least 1"),
        ("--number_of_epochs=0", "number_of_epochs must be at least 1"),
        ("--number_of_epochs=2.5", "expected an integer"),
        ("--batch_size=0", "batch_size must be at least 1"),
        ("--dropout=1.5", "dropout must be in \\[0, 1\\)"),
        ("--shuffle=maybe", "--shuffle=maybe: expected a boolean"),
        ("--model=3", "override its arguments \\(--model.<argument>=...\\)"),
        ("--seed=abc", "--seed=abc: expected an integer"),  # an override, as in SpeechBrain
        ("--device", "--device: give a value"),
        ("--precision=fp8", "precision must be one of"),
        ("--grad_accumulation_factor=0", "grad_accumulation_factor must be >= 1"),
        ("--ckpt_interval_steps=-2", "ckpt_interval_steps must be >= 0"),
    ],
)
def test_values_of_the_wrong_type_or_out_of_range_are_refused(option, message):
    with pytest.raises(HparamsError, match=message):
        parse_arguments([HPARAMS, option])


@pytest.mark.parametrize(
    ("option", "key", "value"),
    [
        ("--lr=0.5", "lr", 0.5),
        ("--lr=1e-3", "lr", 0.001),
        ("--lr=3", "lr", 3),
        ("--shuffle", "shuffle", True),
        ("--shuffle=False", "shuffle", False),
        ("--output_folder=123", "output_folder", "123"),
        ("--output_folder=true", "output_folder", "true"),
        ("--number_of_epochs=!ref <batch_size>", "number_of_epochs", 8),
    ],
)
def test_values_of_the_right_type_pass_and_strings_stay_strings(option, key, value):
    file, _, overrides = parse_arguments([HPARAMS, option])
    loaded = load_hparams(file, overrides)[key]
    assert loaded == value and type(loaded) is type(value)


def test_a_placeholder_takes_any_value(tmp_path):
    path = tmp_path / "h.yaml"
    path.write_text("pretrained_path: !PLACEHOLDER\nmodel_dim: !PLACEHOLDER\n")
    _, _, overrides = parse_arguments([str(path), "--pretrained_path=/m", "--model_dim=8"])
    assert load_hparams(path, overrides) == {"pretrained_path": "/m", "model_dim": 8}


def test_an_invalid_override_fails_before_the_experiment_folder_is_created(tmp_path):
    output = tmp_path / "never"
    result = subprocess.run(
        [sys.executable, str(TOY / "train.py"), HPARAMS, f"--output_folder={output}", "--lr=abc"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode != 0
    assert "--lr=abc: expected a number" in result.stderr
    assert not output.exists()


def test_a_missing_key_names_the_key_the_file_and_the_closest_keys(tmp_path):
    path = tmp_path / "h.yaml"
    path.write_text("number_of_epochs: 3\nepoch_count: 1\n")
    hparams = load_hparams(path)
    with pytest.raises(MissingHparamError) as raised:
        hparams["epoch_counter"]
    message = str(raised.value)
    assert message.startswith(f"{path}: no key 'epoch_counter'")
    assert "closest keys: epoch_count" in message
    assert isinstance(raised.value, KeyError), "code catching KeyError keeps working"
    assert hparams.get("epoch_counter") is None and "epoch_counter" not in hparams


def test_run_options_in_the_yaml_are_checked_too():
    from speechlobes.core import Brain

    with pytest.raises(ValueError, match="debug_batches must be >= 1"):
        Brain({}, hparams={"debug_batches": 0})
    with pytest.raises(ValueError, match="noprogressbar must be bool"):
        Brain({}, hparams={"noprogressbar": "yes"})


def test_a_string_key_given_null_is_unset_and_other_text_stays_a_string(tmp_path):
    path = tmp_path / "h.yaml"
    path.write_text("name: x\n")
    assert typed_override(path, "name", "null") == "null"
    assert typed_override(path, "name", "~") == "null"
    assert typed_override(path, "name", "true") == '"true"'
    assert typed_override(path, "name", "nullable") == '"nullable"'
