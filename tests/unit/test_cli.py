import json
import logging
from dataclasses import FrozenInstanceError

import pytest

from speechlobes.core import (
    RUN_OPTION_DEFAULTS,
    Brain,
    RunOptions,
    create_experiment_directory,
    parse_arguments,
)
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
    assert run_opts.overridden_args == {"debug", "device", "precision"}
    assert (run_opts["debug"], run_opts["device"], run_opts["precision"]) == (True, "cpu", "bf16")
    assert run_opts["seed"] is None, "--seed is an override, as in SpeechBrain"
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


# ------------------------------------------------------------------ SpeechBrain 1.1's parsing
def test_speechbrain_docstring_example_device_is_a_run_option_and_seed_an_override(hparams_file):
    argv = [str(hparams_file), "--device", "cuda:1", "--seed", "10"]
    filename, run_opts, overrides = parse_arguments(argv)
    assert filename == str(hparams_file) and run_opts.param_file == str(hparams_file)
    assert run_opts["device"] == "cuda:1" and overrides == "seed: 10"
    assert run_opts.overridden_args == {"device"}
    assert RunOptions.from_command_line_args(argv)[1] == run_opts


def test_seed_is_an_override_of_the_files_key_and_an_error_without_one(tmp_path, hparams_file):
    _, run_opts, overrides = parse_arguments([str(hparams_file), "--seed=7", "--lr", "0.3"])
    assert overrides == "seed: 7\nlr: 0.3" and "seed" not in run_opts.overridden_args
    assert load_hparams(hparams_file, overrides)["seed"] == 7
    no_seed = tmp_path / "no_seed.yaml"
    no_seed.write_text("lr: 0.1\nsed: 1\n")
    with pytest.raises(HparamsError, match="--seed: no such key .*closest: sed"):
        parse_arguments([str(no_seed), "--seed=7"])


def test_no_options_give_defaults_and_an_empty_override(hparams_file):
    filename, run_opts, overrides = parse_arguments([str(hparams_file)])
    assert overrides == "" and run_opts.overridden_args == set()
    for name, default in RUN_OPTION_DEFAULTS.items():
        assert run_opts[name] == default, name


def test_argv_defaults_to_sys_argv(hparams_file, monkeypatch):
    monkeypatch.setattr("sys.argv", ["train.py", str(hparams_file), "--noprogressbar"])
    _, run_opts, _ = parse_arguments()
    assert run_opts.noprogressbar is True and run_opts.overridden_args == {"noprogressbar"}


def test_run_options_read_as_a_dict_and_as_a_frozen_object(hparams_file):
    _, run_opts, _ = parse_arguments([str(hparams_file), "--debug_batches=3"])
    assert run_opts["debug_batches"] == run_opts.debug_batches == run_opts.get("debug_batches")
    assert run_opts.get("no_such_option", "fallback") == "fallback"
    assert "device" in run_opts and "param_file" in run_opts and "nope" not in run_opts
    assert set(run_opts.keys()) == {*RUN_OPTION_DEFAULTS, "param_file", "overridden_args"}
    assert dict(run_opts.items()) == run_opts.as_dict()
    copied = run_opts.as_dict()
    copied["tqdm_barcolor"]["train"] = "RED"
    assert run_opts["tqdm_barcolor"]["train"] == "GREEN", "as_dict is a copy"
    with pytest.raises(FrozenInstanceError):
        run_opts.debug_batches = 4
    with pytest.raises(AttributeError, match="no option 'debug_batchs'"):
        run_opts.debug_batchs  # noqa: B018
    assert "debug_batches=3" in repr(run_opts)


def test_from_dictionary_marks_every_key_given_and_checks_values():
    run_opts = RunOptions.from_dictionary({"device": "cpu", "precision": "bf16"})
    assert run_opts.overridden_args == {"device", "precision"}
    assert run_opts.param_file == "" and run_opts.debug is False
    with pytest.raises(ValueError, match="unknown run option 'devcie'; closest: device"):
        RunOptions.from_dictionary({"devcie": "cpu"})
    with pytest.raises(ValueError, match="precision must be one of"):
        RunOptions(precision="fp8")


@pytest.mark.parametrize("option", ["--precision=fp64", "--eval_precision", "--precision=FP16"])
def test_precisions_are_fp32_fp16_or_bf16(hparams_file, option):
    with pytest.raises(HparamsError, match="precision"):
        parse_arguments([str(hparams_file), option])


def test_flags_take_no_separate_value_and_the_file_may_follow_options(hparams_file):
    filename, run_opts, _ = parse_arguments(["--debug", str(hparams_file), "--device", "cpu"])
    assert filename == str(hparams_file) and run_opts.debug and run_opts.device == "cpu"
    _, run_opts, _ = parse_arguments([str(hparams_file), "--debug=false", "--noprogressbar"])
    assert run_opts.debug is False and run_opts.noprogressbar is True
    with pytest.raises(HparamsError, match="unexpected argument 'false'.*--debug=false"):
        parse_arguments([str(hparams_file), "--debug", "false"])


def test_module_key_lists_take_several_values(hparams_file):
    argv = [str(hparams_file), "--compile_module_keys", "enc", "dec", "--jit_module_keys=lm"]
    _, run_opts, overrides = parse_arguments([*argv, "--lr", "0.2"])
    assert run_opts.compile_module_keys == ["enc", "dec"] and run_opts.jit_module_keys == ["lm"]
    assert overrides == "lr: 0.2"
    _, run_opts, _ = parse_arguments([str(hparams_file), "--compile_module_keys"])
    assert run_opts.compile_module_keys == []


def test_values_are_typed_by_the_option_text_options_keep_their_text(hparams_file):
    argv = [str(hparams_file), "--max_grad_norm", "-1", "--debug_epochs=0", "--device=0"]
    _, run_opts, _ = parse_arguments([*argv, "--optimizer_step_limit", "12"])
    assert run_opts.max_grad_norm == -1.0 and isinstance(run_opts.max_grad_norm, float)
    assert run_opts.debug_epochs == 0 and run_opts.optimizer_step_limit == 12
    assert run_opts.device == "0", "a text option is not read as YAML"
    with pytest.raises(HparamsError, match="--debug_batches=two: debug_batches must be int"):
        parse_arguments([str(hparams_file), "--debug_batches=two"])


def test_a_run_option_named_in_the_file_also_overrides_the_key(tmp_path):
    path = tmp_path / "h.yaml"
    path.write_text("device: cuda\nwhere: !ref <device>\nnoprogressbar: False\n")
    _, run_opts, overrides = parse_arguments([str(path), "--device=cpu", "--noprogressbar"])
    hparams = load_hparams(path, overrides)
    assert run_opts.device == hparams["where"] == "cpu" and hparams["noprogressbar"] is True


def test_the_brain_takes_given_options_from_the_command_line_and_the_rest_from_the_hparams(
    hparams_file,
):
    _, run_opts, _ = parse_arguments([str(hparams_file), "--debug_batches=4"])
    hparams = {"noprogressbar": True, "debug_batches": 9, "device": "cpu"}
    brain = Brain({}, hparams=hparams, run_opts=run_opts)
    assert brain.debug_batches == 4, "given on the command line: wins"
    assert brain.noprogressbar is True and brain.device == "cpu", "not given: from the hparams"
    _, nothing_given, _ = parse_arguments([str(hparams_file)])
    assert Brain({}, hparams=hparams, run_opts=nothing_given).debug_batches == 9


def test_the_top_level_exports_speechbrains_names():
    import speechlobes as sb

    assert sb.RunOptions is RunOptions and sb.parse_arguments is parse_arguments


# SpeechBrain 1.1's command-line run options (its HELP_TEXTS and the two module-key lists).
SPEECHBRAIN_COMMAND_LINE_OPTIONS = {
    "test_only": "--test_only",
    "debug": "--debug",
    "debug_batches": "--debug_batches=3",
    "debug_epochs": "--debug_epochs=1",
    "debug_persistently": "--debug_persistently",
    "log_config": "--log_config=logging.yaml",
    "device": "--device=cuda:0",
    "data_parallel_backend": "--data_parallel_backend",
    "distributed_backend": "--distributed_backend=gloo",
    "find_unused_parameters": "--find_unused_parameters",
    "jit": "--jit",
    "jit_module_keys": "--jit_module_keys=enc",
    "compile": "--compile",
    "compile_module_keys": "--compile_module_keys=enc",
    "compile_mode": "--compile_mode=max-autotune",
    "compile_using_fullgraph": "--compile_using_fullgraph",
    "compile_using_dynamic_shape_tracing": "--compile_using_dynamic_shape_tracing",
    "precision": "--precision=fp16",
    "eval_precision": "--eval_precision=bf16",
    "auto_mix_prec": "--auto_mix_prec",
    "bfloat16_mix_prec": "--bfloat16_mix_prec",
    "max_grad_norm": "--max_grad_norm=1.5",
    "skip_nonfinite_grads": "--skip_nonfinite_grads",
    "nonfinite_patience": "--nonfinite_patience=7",
    "noprogressbar": "--noprogressbar",
    "ckpt_interval_minutes": "--ckpt_interval_minutes=15",
    "ckpt_interval_steps": "--ckpt_interval_steps=100",
    "grad_accumulation_factor": "--grad_accumulation_factor=4",
    "optimizer_step_limit": "--optimizer_step_limit=12",
    "tqdm_colored_bar": "--tqdm_colored_bar",
    "remove_vector_weight_decay": "--remove_vector_weight_decay",
    "profile_training": "--profile_training",
    "profile_warmup": "--profile_warmup=2",
    "profile_steps": "--profile_steps=3",
}


@pytest.mark.parametrize("name", sorted(SPEECHBRAIN_COMMAND_LINE_OPTIONS))
def test_every_speechbrain_command_line_option_is_a_run_option_that_differs_from_its_default(
    hparams_file, name
):
    option = SPEECHBRAIN_COMMAND_LINE_OPTIONS[name]
    _, run_opts, overrides = parse_arguments([str(hparams_file), option])
    assert overrides == "" and run_opts.overridden_args == {name}
    assert run_opts[name] != RUN_OPTION_DEFAULTS[name]
    if "=" not in option:
        assert run_opts[name] is True, "a boolean is a store_true flag"
