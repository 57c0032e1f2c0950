import json
import logging

import pytest

from speechlobes.core import create_experiment_directory, parse_arguments
from speechlobes.logger import setup_logging
from speechlobes.utils.hparams import HparamsError, load_hparams, yaml_key_lines

HPARAMS = """\
seed: 3
output_folder: results/x
lr: 0.1
model: !new:torch.nn.Linear
    in_features: 3
    out_features: 2
optimizer:
    eps: 1.0e-8
    name: !ref <output_folder>/opt
"""


@pytest.fixture
def hparams_file(tmp_path):
    path = tmp_path / "hparams.yaml"
    path.write_text(HPARAMS)
    return path


def test_equals_and_space_forms_flags_and_run_options(hparams_file):
    argv = [
        str(hparams_file),
        "--lr=0.5",
        "--seed",
        "9",
        "--debug",
        "--device",
        "cpu",
        "--precision=bf16",
    ]
    file, run_opts, overrides = parse_arguments(argv)
    assert file == str(hparams_file)
    assert run_opts == {"seed": 9, "debug": True, "device": "cpu", "precision": "bf16"}
    hparams = load_hparams(file, overrides)
    assert hparams["lr"] == 0.5 and hparams["seed"] == 9


def test_nested_overrides_reach_object_arguments_and_references_follow(hparams_file):
    argv = [
        str(hparams_file),
        "--model.out_features=5",
        "--optimizer.eps=0.25",
        "--output_folder=/tmp/o",
    ]
    hparams = load_hparams(*parse_arguments(argv)[::2])
    assert hparams["model"].out_features == 5
    assert hparams["optimizer"] == {"eps": 0.25, "name": "/tmp/o/opt"}


def test_override_values_may_use_yaml_tags(hparams_file):
    hparams = load_hparams(*parse_arguments([str(hparams_file), "--lr=!ref <seed>"])[::2])
    assert hparams["lr"] == 3


def test_unknown_override_lists_the_closest_keys(hparams_file):
    with pytest.raises(
        HparamsError, match="--optimizer.epss: no such key .* closest: optimizer.eps"
    ):
        parse_arguments([str(hparams_file), "--optimizer.epss=1"])
    with pytest.raises(HparamsError, match="closest: output_folder"):
        parse_arguments([str(hparams_file), "--ouput_folder=a"])


def test_malformed_command_lines_are_refused(hparams_file):
    with pytest.raises(HparamsError, match="usage"):
        parse_arguments(["--lr=1"])
    with pytest.raises(HparamsError, match="unexpected argument"):
        parse_arguments([str(hparams_file), "stray"])


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("a: 1\nb: [1, 2\nc: 3\n")
    with pytest.raises(HparamsError, match=r"bad.yaml, line 3: ParserError"):
        load_hparams(path)


def test_object_construction_error_names_file_line_and_key(tmp_path):
    path = tmp_path / "h.yaml"
    path.write_text("a: 1\nmodel: !new:torch.nn.Linear\n    in_features: 3\n    out_featurs: 2\n")
    with pytest.raises(HparamsError, match=r"h.yaml, line 2, key 'model': TypeError.*out_featurs"):
        load_hparams(path)


def test_bad_reference_names_the_key_using_it(tmp_path):
    path = tmp_path / "h.yaml"
    path.write_text("a: 1\nb:\n    c: !ref <nokey>\n")
    with pytest.raises(HparamsError, match=r"line 3, key 'b.c'.*nokey"):
        load_hparams(path)


def test_key_lines_are_dotted_and_one_based(hparams_file):
    lines = yaml_key_lines(hparams_file)
    assert lines["seed"] == 1 and lines["model.out_features"] == 6 and lines["optimizer.name"] == 9


def test_experiment_directory_records_hparams_command_versions_and_log(hparams_file, tmp_path):
    folder = tmp_path / "exp"
    argv = [str(hparams_file), "--lr=0.7"]
    _, _, overrides = parse_arguments(argv)
    try:
        create_experiment_directory(folder, hparams_file, overrides, argv=argv)
        logging.getLogger("speechlobes.test").info("hello log")
    finally:
        setup_logging(None)
    saved = (folder / "hyperparams.yaml").read_text()
    assert "lr: 0.7" in saved and "name: results/x/opt" in saved
    assert (folder / "command.txt").read_text().strip() == f"python {hparams_file} --lr=0.7"
    env = json.loads((folder / "env.json").read_text())
    assert {"python", "torch", "speechlobes", "git_commit"} <= set(env)
    assert "hello log" in (folder / "log.txt").read_text()
