"""The trust model: loading someone else's experiment folder or model builds only allowed
objects (never ``os.system``), ``--trust-code`` lifts that, HF index paths stay inside the
folder, and every loader error names the file."""

import json
import os
import shutil

import pytest
import ruamel.yaml
import torch

from speechlobes.inference.cli import main
from speechlobes.inference.tagger import Tagger
from speechlobes.inference.transcriber import Transcriber
from speechlobes.lobes.hf_io import load_hf_state_dict, read_config, save_hf_folder
from speechlobes.utils.yaml_trust import UntrustedYamlError


def with_entry(folder, destination, key, yaml_text):
    """A copy of the experiment ``folder`` whose ``key`` is replaced by ``yaml_text``."""
    shutil.copytree(folder, destination)
    path = destination / "hyperparams.yaml"
    yaml = ruamel.yaml.YAML(typ="rt")
    tree = yaml.load(path.read_text())
    tree.pop(key, None)
    with open(path, "w") as stream:
        yaml.dump(tree, stream)
    with open(path, "a") as stream:
        stream.write(f"{key}: {yaml_text}\n")
    return destination


HOSTILE = [
    "!apply:os.system [\"touch '{marker}'\"]",
    "!!python/object/apply:os.system [\"touch '{marker}'\"]",
    "!apply:speechlobes.checkpoints.os.system [\"touch '{marker}'\"]",
    "!apply:builtins.exec [\"open('{marker}', 'w')\"]",
    "!new:subprocess.Popen [[touch, '{marker}']]",
    "!apply:torch.nn.modules.module.torch.load ['{marker}']",
    "(1, !!python/object/apply:os.system [\"touch '{marker}'\"])",
]


@pytest.mark.parametrize("entry", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_yaml_in_an_experiment_never_runs_by_default(ctc_experiment, tmp_path, entry):
    marker = tmp_path / "pwned"
    folder = with_entry(
        ctc_experiment, tmp_path / "exp", "test_search", entry.format(marker=marker)
    )
    with pytest.raises(UntrustedYamlError, match="key 'test_search'.*trust_code=True"):
        Transcriber.from_experiment(folder)
    assert not marker.exists()


def test_trust_code_lets_the_yaml_run_what_it_asks(ctc_experiment, tmp_path):
    marker = tmp_path / "ran"
    folder = with_entry(
        ctc_experiment, tmp_path / "exp", "test_search", f"!apply:os.system [\"touch '{marker}'\"]"
    )
    with pytest.raises(ValueError, match="'test_search' should be Callable"):
        Transcriber.from_experiment(folder, trust_code=True)  # os.system returns an int
    assert marker.exists(), "with trust_code the check is what stopped it before"


@pytest.mark.parametrize(
    "entry",
    ["!module:os", "!applyref:os.getcwd []", "!include:other.yaml", "!!python/name:os.system"],
)
def test_other_code_running_tags_are_refused(ctc_experiment, tmp_path, entry):
    folder = with_entry(ctc_experiment, tmp_path / "exp", "test_search", entry)
    with pytest.raises(UntrustedYamlError, match="test_search"):
        Transcriber.from_experiment(folder)


def test_a_hostile_entry_the_interface_does_not_need_is_never_built(ctc_experiment, tmp_path):
    marker = tmp_path / "pwned"
    folder = with_entry(
        ctc_experiment, tmp_path / "exp", "train_logger", f"!apply:os.system [\"touch '{marker}'\"]"
    )
    assert Transcriber.from_experiment(folder).sample_rate == 16000
    assert not marker.exists()


def test_the_command_line_names_the_key_and_the_trust_code_option(ctc_experiment, tmp_path, capsys):
    marker = tmp_path / "pwned"
    folder = with_entry(
        ctc_experiment, tmp_path / "exp", "asr_model", f"!apply:os.system [\"touch '{marker}'\"]"
    )
    assert main(["transcribe", str(folder), "a.wav"]) == 2
    err = capsys.readouterr().err
    assert "key 'asr_model': !apply:os.system is not allowed" in err and "--trust-code" in err
    assert not marker.exists()


class Payload:
    """Unpickling this runs a command: what a hostile checkpoint would carry."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def test_a_checkpoint_carrying_a_pickled_command_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    checkpoint = tmp_path / "evil.pt"
    torch.save({"cfg": {}, "model": {}, "label_dict": Payload(marker)}, checkpoint)
    with pytest.raises(ValueError, match="evil.pt"):
        Tagger.from_beats_checkpoint(checkpoint)
    assert not marker.exists()


def test_a_truncated_beats_checkpoint_is_named(tmp_path, capsys):
    checkpoint = tmp_path / "cut.pt"
    torch.save({"cfg": {}, "model": {"w": torch.zeros(1000)}}, checkpoint)
    checkpoint.write_bytes(checkpoint.read_bytes()[:500])
    with pytest.raises(ValueError, match="cut.pt: cannot read it as a BEATs checkpoint"):
        Tagger.from_beats_checkpoint(checkpoint)
    assert main(["tag", str(checkpoint), "a.wav"]) == 2
    assert "cut.pt" in capsys.readouterr().err


def sharded_folder(tmp_path):
    folder = tmp_path / "hf"
    state = {f"layer{i}.weight": torch.full((64,), float(i)) for i in range(4)}
    save_hf_folder(folder, {"model_type": "toy"}, state, max_shard_size=600)
    return folder


@pytest.mark.parametrize("shard", ["/etc/passwd", "../outside.safetensors", "sub/../../x"])
def test_an_index_naming_a_file_outside_the_folder_is_refused(tmp_path, shard):
    folder = sharded_folder(tmp_path)
    outside = tmp_path / "outside.safetensors"
    shutil.copy(next(folder.glob("model-00001-*.safetensors")), outside)
    index_path = folder / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    index["weight_map"]["layer0.weight"] = shard
    index_path.write_text(json.dumps(index))
    with pytest.raises(ValueError, match=f"names '{shard}', which is not a file inside"):
        load_hf_state_dict(folder)


def test_corrupt_weights_and_config_errors_name_the_file(tmp_path):
    folder = sharded_folder(tmp_path)
    shard = next(folder.glob("model-00002-*.safetensors"))
    shard.write_bytes(shard.read_bytes()[:40])
    with pytest.raises(ValueError, match=f"{shard.name}: cannot read the weights"):
        load_hf_state_dict(folder)
    (folder / "config.json").write_text('{"model_type": ')
    with pytest.raises(ValueError, match="config.json: not valid JSON"):
        read_config(folder)
    single = tmp_path / "single"
    save_hf_folder(single, {"model_type": "toy"}, {"w": torch.ones(3)}, safe_serialization=False)
    (single / "pytorch_model.bin").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="pytorch_model.bin: cannot read the weights"):
        load_hf_state_dict(single)


def test_pretrained_weights_that_cannot_be_read_are_named(tmp_path):
    from speechlobes.pretrainer import read_state_dict

    corrupt = tmp_path / "encoder.safetensors"
    corrupt.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(ValueError, match="encoder.safetensors: corrupt or truncated"):
        read_state_dict(corrupt, "encoder")
    truncated = tmp_path / "encoder.pt"
    torch.save({"w": torch.zeros(1000)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:300])
    with pytest.raises(ValueError, match="encoder.pt: cannot read the weights"):
        read_state_dict(truncated, "encoder")
