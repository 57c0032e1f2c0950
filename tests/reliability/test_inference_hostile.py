"""Inference that keeps going: many files (each good one printed, each bad one a line on
stderr, exit 1), long audio in chunks with bounded memory and the same result as unchunked,
argument checks, moved experiment folders, declared needs, too-short and too-long files."""

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import ruamel.yaml
import soundfile as sf
import torch
from helpers import write_tone

from speechlobes.decoders.ctc import ctc_greedy_decode
from speechlobes.inference.cli import main
from speechlobes.inference.experiment import ExperimentError, ExperimentSpec, Need, load_experiment
from speechlobes.inference.inputs import (
    Chunk,
    FrameStride,
    InputTooLongError,
    InputTooShortError,
    frame_stride,
    plan_chunks,
)
from speechlobes.inference.transcriber import Transcriber, join_frames
from speechlobes.inference.translator import Translator

VENV_BIN = Path(sys.executable).parent


class ConvCTC(torch.nn.Module):
    """A stand-in CTC model with a local receptive field: (batch, time) -> (batch, frames, 5)."""

    outputs_per_frame = 1

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv1d(1, 5, kernel_size=400, stride=160)
        with torch.no_grad():
            self.conv.bias.zero_()

    def forward(self, wavs, wav_lens=None):
        return 50 * self.conv(wavs[:, None]).transpose(1, 2)

    def encode(self, wavs, wav_lens):
        """Logits and the exact relative frame lengths (what the transcriber uses)."""
        logits = self(wavs)
        samples = (wav_lens * wavs.shape[1]).round()
        return logits, ((samples - 400) // 160 + 1) * self.outputs_per_frame / logits.shape[1]


class Letters:
    def decode(self, ids):
        return "".join("abcde"[i] for i in ids)


def greedy(log_probs, lengths):
    return [[SimpleNamespace(tokens=t)] for t in ctc_greedy_decode(log_probs, lengths, 0)]


def write_noise(path: Path, seconds: float, rate: int = 16000) -> Path:
    """White noise: the stand-in model then emits every unit, not only the blank."""
    noise = 0.3 * np.random.default_rng(1).standard_normal(round(seconds * rate))
    sf.write(path, noise.astype(np.float32), rate, subtype="FLOAT")
    return path


def stand_in_transcriber(model_class: type | None = None, **chunking) -> Transcriber:
    model = (model_class or ConvCTC)().eval()
    return Transcriber(model, Letters(), greedy, 16000, "cpu", **chunking)


# ------------------------------------------------------------------ the command line
def test_one_bad_file_among_several_gets_one_line_and_the_others_are_transcribed(
    ctc_experiment, tmp_path, capsys
):
    good = write_tone(tmp_path / "good.wav", 1.0)
    resampled = write_tone(tmp_path / "good44.flac", 1.0, rate=44100)
    cut = tmp_path / "cut.ogg"
    whole = write_tone(tmp_path / "w.ogg", 6.0, fmt="OGG").read_bytes()
    cut.write_bytes(whole[: len(whole) * 6 // 10])
    tiny = tmp_path / "tiny.wav"
    sf.write(tiny, np.zeros(100, dtype=np.float32), 16000)
    files = [good, tmp_path / "missing.wav", cut, tiny, resampled]
    status = main(["transcribe", str(ctc_experiment), *map(str, files)])
    out, err = capsys.readouterr()
    assert status == 1
    assert [line.split("\t")[0] for line in out.splitlines()] == [str(good), str(resampled)]
    *errors, summary = err.strip().splitlines()
    assert len(errors) == 3 and "Traceback" not in err
    assert summary.startswith("transcribed 2 of 5 files (3 failed): 2.0 s of audio in ")
    assert errors[0].startswith(f"{tmp_path / 'missing.wav'}: file not found")
    assert errors[1].startswith(f"{cut}: truncated Ogg file")
    assert errors[2].startswith(f"{tiny}: 100 samples") and "needs at least" in errors[2]


def test_all_good_files_exit_zero_with_one_line_each(ctc_experiment, tmp_path, capsys):
    files = [write_tone(tmp_path / f"{i}.wav", 0.5 + i / 4) for i in range(3)]
    assert main(["transcribe", str(ctc_experiment), *map(str, files)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in out] == list(map(str, files))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["tag", "m.pt", "a.wav", "--top-k", "0"], "--top-k: must be at least 1"),
        (["tag", "m.pt", "a.wav", "--top-k", "-3"], "--top-k: must be at least 1"),
        (["transcribe", "exp", "a.wav", "--chunk-seconds", "0"], "must be more than 0"),
        (["translate", "m", "a.wav", "--max-seconds", "nan"], "must be more than 0"),
        (["transcribe", "exp"], "the following arguments are required: audio"),
    ],
)
def test_invalid_arguments_are_refused_before_anything_loads(arguments, message, capsys):
    with pytest.raises(SystemExit) as raised:
        main(arguments)
    assert raised.value.code == 2
    assert message in capsys.readouterr().err


def test_a_model_that_cannot_be_loaded_is_one_line_and_exit_two(ctc_experiment, tmp_path, capsys):
    audio = str(write_tone(tmp_path / "a.wav", 0.5))
    assert main(["transcribe", str(tmp_path / "nowhere"), audio]) == 2
    assert main(["translate", str(ctc_experiment), audio]) == 2
    assert main(["transcribe", str(audio), audio]) == 2
    if not torch.cuda.is_available():
        assert main(["transcribe", str(ctc_experiment), audio, "--device", "cuda"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert "nowhere: no such model file or folder" in lines[0]
    assert "hyperparams.yaml: a speech translation experiment needs 'model'" in lines[1]
    assert "transcribe takes an experiment folder" in lines[2]
    assert all("Traceback" not in line for line in lines)


def test_console_script_and_module_entry_points_print_the_version():
    import speechlobes

    for command in (
        [str(VENV_BIN / "speechlobes")],
        [sys.executable, "-m", "speechlobes.inference"],
    ):
        result = subprocess.run(
            [*command, "--version"], capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"speechlobes {speechlobes.__version__}"


def test_console_script_transcribes_end_to_end(ctc_experiment, tmp_path):
    audio = write_tone(tmp_path / "a.wav", 0.7)
    result = subprocess.run(
        [str(VENV_BIN / "speechlobes"), "transcribe", str(ctc_experiment), str(audio)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    expected = Transcriber.from_experiment(ctc_experiment).transcribe_file(audio)
    assert result.stdout == f"{audio}\t{expected}\n"


# ------------------------------------------------------------------ experiment folders
def test_a_moved_experiment_folder_with_spaces_is_re_rooted(ctc_experiment):
    assert " " in str(ctc_experiment)
    asr = Transcriber.from_experiment(ctc_experiment)
    hparams_text = (ctc_experiment / "hyperparams.yaml").read_text()
    assert str(ctc_experiment) not in hparams_text, "the fixture must really have moved"
    assert asr.tokenizer.model_file.startswith(f"{ctc_experiment}/save/tokenizer/")
    spec = ExperimentSpec("demo", (Need("save_folder", str, "where checkpoints are"),))
    hparams = load_experiment(ctc_experiment, spec)
    assert hparams["save_folder"] == f"{ctc_experiment}/save"
    assert hparams["checkpointer"].checkpoints_dir == ctc_experiment / "save"


def copy_with_yaml(folder: Path, destination: Path, change) -> Path:
    shutil.copytree(folder, destination)
    yaml = ruamel.yaml.YAML(typ="rt")
    path = destination / "hyperparams.yaml"
    tree = yaml.load(path.read_text())
    change(tree)
    with open(path, "w") as stream:
        yaml.dump(tree, stream)
    return destination


def test_a_missing_key_is_an_error_naming_it_its_purpose_and_the_file(ctc_experiment, tmp_path):
    broken = copy_with_yaml(ctc_experiment, tmp_path / "exp", lambda t: t.pop("test_search"))
    with pytest.raises(ExperimentError) as raised:
        Transcriber.from_experiment(broken)
    message = str(raised.value)
    assert str(broken / "hyperparams.yaml") in message
    assert "'test_search' (a CTC decoder" in message


def test_a_value_of_the_wrong_type_is_an_error_naming_the_key(ctc_experiment, tmp_path):
    broken = copy_with_yaml(
        ctc_experiment, tmp_path / "exp", lambda t: t.__setitem__("sample_rate", "16k")
    )
    with pytest.raises(ExperimentError, match="'sample_rate' should be int"):
        Transcriber.from_experiment(broken)


def test_only_the_keys_an_interface_needs_are_built(ctc_experiment, tmp_path):
    def break_training_keys(tree):
        tree["train_logger"] = {"save_folder": "x"}
        tree["opt_class"] = ruamel.yaml.comments.TaggedScalar("", tag="!name:no.such.module")

    folder = copy_with_yaml(ctc_experiment, tmp_path / "exp", break_training_keys)
    assert Transcriber.from_experiment(folder).sample_rate == 16000


def test_re_rooting_moves_only_whole_path_prefixes(ctc_experiment, tmp_path):
    yaml_path = ctc_experiment / "hyperparams.yaml"
    old = ruamel.yaml.YAML(typ="rt").load(yaml_path.read_text())["output_folder"]

    def add_paths(tree):
        tree["inside"] = f"{old}/data/x.csv"
        tree["sibling"] = f"{old}2/x.csv"

    folder = copy_with_yaml(ctc_experiment, tmp_path / "exp", add_paths)
    spec = ExperimentSpec(
        "demo", (Need("inside", str, "a path"), Need("sibling", str, "another path"))
    )
    hparams = load_experiment(folder, spec)
    assert hparams["inside"] == f"{folder.resolve()}/data/x.csv"
    assert hparams["sibling"] == f"{old}2/x.csv"


# ------------------------------------------------------------------ short, long, chunked
def test_too_short_files_are_an_error_naming_the_minimum(ctc_experiment, tmp_path):
    asr = Transcriber.from_experiment(ctc_experiment)
    for samples in (1, 100, 1359):
        path = tmp_path / f"short{samples}.wav"
        sf.write(path, np.zeros(samples, dtype=np.float32), 16000)
        with pytest.raises(InputTooShortError, match=f"{samples} samples .* needs at least 1360"):
            asr.transcribe_file(path)
    sf.write(tmp_path / "enough.wav", np.zeros(1360, dtype=np.float32), 16000)
    assert isinstance(asr.transcribe_file(tmp_path / "enough.wav"), str)


def test_the_recipe_conformer_gives_two_ctc_frames_per_640_samples(ctc_experiment):
    asr = Transcriber.from_experiment(ctc_experiment)
    assert asr.frame_stride == FrameStride(640, 2)  # 40 ms encoder frames, two CTC frames each


def test_a_long_file_is_cut_at_its_pauses_and_each_segment_decoded_alone(tmp_path):
    rng = np.random.default_rng(2)
    speech = [0.3 * rng.standard_normal(round(seconds * 16000)) for seconds in (3.0, 4.0, 2.5)]
    pause = np.zeros(16000)  # 1 s
    wav = np.concatenate([speech[0], pause, speech[1], pause, speech[2]]).astype(np.float32)
    sf.write(tmp_path / "talk.wav", wav, 16000, subtype="FLOAT")
    asr = stand_in_transcriber(segment_seconds=5.0)
    plan = asr.plan(str(tmp_path / "talk.wav"), len(wav))
    # 11.5 s: cut in the later pause (equal lengths), then the 8.2 s left part in the first;
    # 0.2 s of a pause stays on each side of a cut
    spans = [(0, 51200), (60800, 131200), (140800, 184000)]
    assert [(c.start, c.stop, c.segment) for c in plan] == [(*s, i) for i, s in enumerate(spans)]
    alone = []
    for i, (start, stop) in enumerate(spans):
        sf.write(tmp_path / f"{i}.wav", wav[start:stop], 16000, subtype="FLOAT")
        alone.append(asr.transcribe_file(tmp_path / f"{i}.wav"))
    assert all(alone) and asr.transcribe_file(tmp_path / "talk.wav") == " ".join(alone)
    whole = stand_in_transcriber(segment_seconds=None)
    assert whole.plan(str(tmp_path / "talk.wav"), len(wav)) == [Chunk(0, len(wav), 0, None)]
    with pytest.raises(ValueError, match="segment_seconds > 0"):
        stand_in_transcriber(segment_seconds=0.0)


@pytest.mark.parametrize("model_class", ["ConvCTC", "SplitConvCTC"])
def test_chunked_log_probs_equal_the_whole_for_a_local_model(tmp_path, model_class):
    model_class = globals()[model_class]
    path = write_noise(tmp_path / "long.wav", 9.3)
    asr = stand_in_transcriber(model_class, chunk_seconds=2.0, context_seconds=0.5)
    wav = torch.from_numpy(sf.read(path, dtype="float32")[0])[None]
    with torch.no_grad():
        whole = asr.model(wav).log_softmax(-1)[0]
    chunks = asr.plan(str(path), wav.shape[1])
    assert len(chunks) == 5
    pieces = [wav[:, c.start : c.stop] for c in chunks]
    outputs = [asr.run_batch(piece, torch.ones(1))[0] for piece in pieces]
    (chunked,) = join_frames(chunks, outputs)  # noise has no pause: one segment
    assert chunked.shape == whole.shape
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=0)
    unchunked = stand_in_transcriber(model_class, chunk_seconds=100.0).transcribe_file(path)
    assert asr.transcribe_file(path) == unchunked and len(unchunked) > 100
    batched = [r.value for r in asr.transcribe_files([path, path], batch_size=3)]
    assert batched == [unchunked, unchunked]


class SplitConvCTC(ConvCTC):
    """ConvCTC with two output frames per conv frame, as the recipe's CTC head gives."""

    outputs_per_frame = 2

    def forward(self, wavs, wav_lens=None):
        logits = super().forward(wavs)
        return (
            logits.repeat_interleave(2, dim=1)
            + torch.tensor([0.0, 0.5]).repeat(logits.shape[1])[None, :, None]
        )


@pytest.mark.parametrize("num_samples", [16000, 16001, 50_000, 123_457, 160_000, 333_333])
@pytest.mark.parametrize("model, per_step", [(ConvCTC(), 1), (SplitConvCTC(), 2)])
def test_chunks_tile_the_frames_of_the_whole_input(num_samples, model, per_step):
    stride = frame_stride(model, probe=16000)
    assert stride == FrameStride(160, per_step)
    frames = ((num_samples - 400) // 160 + 1) * per_step
    kept = []
    for chunk in plan_chunks(num_samples, stride, chunk_strides=97, context_strides=5):
        produced = ((chunk.stop - chunk.start - 400) // 160 + 1) * per_step
        first = chunk.start // stride.samples * stride.frames
        local = range(produced)[chunk.keep_from : chunk.keep_to]
        kept += [first + index for index in local]
    assert kept == list(range(frames))


LONG_AUDIO = textwrap.dedent(
    """
    import json, resource, sys, time
    import torch
    sys.path.insert(0, sys.argv[2])
    from test_inference_hostile import stand_in_transcriber
    torch.set_num_threads(1)
    asr = stand_in_transcriber()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    text = asr.transcribe_file(sys.argv[1])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": time.perf_counter() - start, "chars": len(text),
                      "peak_mb": peak / 1024, "grown_mb": (peak - before) / 1024}))
    """
)


def test_an_hour_of_audio_is_transcribed_in_bounded_memory(tmp_path):
    path = tmp_path / "hour.wav"
    rate, seconds = 8000, 3600  # at 8 kHz, so that every chunk is resampled too
    with sf.SoundFile(path, "w", rate, 1, "PCM_16") as stream:
        generator = np.random.default_rng(0)
        for _ in range(seconds // 60):
            stream.write((generator.standard_normal(60 * rate) * 3000).astype(np.int16))
    result = subprocess.run(
        [sys.executable, "-c", LONG_AUDIO, str(path), str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads(result.stdout)
    # The whole hour would take 115 MB at 8 kHz plus 230 MB at 16 kHz, before the model.
    assert measured["grown_mb"] < 250, measured
    assert measured["peak_mb"] < 2048, measured
    assert measured["chars"] > 1000, measured


def test_the_translator_refuses_a_file_longer_than_its_limit_by_name(tmp_path):
    path = write_tone(tmp_path / "long.wav", 2.5)
    translator = Translator(model=None, tokenizer=None, max_seconds=2.0)
    with pytest.raises(InputTooLongError, match=r"long.wav: 2.5 s; .* at most 2 s"):
        translator.translate_file(path)
