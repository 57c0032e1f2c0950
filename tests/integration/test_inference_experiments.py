"""Tagger and Translator load experiment folders of the AudioSet and CoVoST recipes.

Each folder is made as the recipe makes it (the recipe's YAML resolved into
``hyperparams.yaml``, the label files, the tokenizer, checkpoints written by its
``checkpointer``), with weights set in the test instead of trained; it is then moved, so the
interfaces must re-root its paths. Results are compared with a direct forward of the modules.
"""

import copy
import json
import shutil
from pathlib import Path

import pytest
import soundfile
import torch
from hyperpyyaml import load_hyperpyyaml, resolve_references

from speechlobes.dataio.encoders import MultiLabelEncoder
from speechlobes.inference.cli import main
from speechlobes.inference.tagger import Tagger
from speechlobes.inference.translator import Translator
from speechlobes.processing.waveform import normalize_waveforms

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
CLASSES = [("/m/09x0r", "Speech"), ("/m/04rlf", "Music"), ("/m/0bt9lr", "Dog")]
TRANSLATIONS = [
    "der hund bellt im garten",
    "die katze schläft auf dem sofa",
    "wir fahren morgen mit dem zug",
    "das wetter ist heute schön",
    "ich trinke gern kaffee am morgen",
    "die kinder spielen im park",
    "meine schwester liest ein buch",
    "um acht uhr beginnt die schule",
]


def write_audio(path: Path, seconds: float, seed: int) -> Path:
    wav = 0.3 * torch.randn(round(seconds * 16000), generator=torch.Generator().manual_seed(seed))
    soundfile.write(path, wav.numpy(), 16000, subtype="FLOAT")
    return path


def read_wav(path: Path) -> torch.Tensor:
    return torch.from_numpy(soundfile.read(path, dtype="float32")[0]).unsqueeze(0)


def start_experiment(recipe_yaml: Path, folder: Path, overrides: dict) -> dict:
    """Write ``folder/hyperparams.yaml`` as ``create_experiment_directory`` does; load it."""
    folder.mkdir(parents=True)
    with open(recipe_yaml, encoding="utf-8") as stream:
        resolved = resolve_references(stream, {"output_folder": str(folder), **overrides})
    (folder / "hyperparams.yaml").write_text(resolved.getvalue(), encoding="utf-8")
    return load_hyperpyyaml(resolved.getvalue())


def perturb(module: torch.nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))


def save_best_then_worse(hparams: dict, module: torch.nn.Module, key: str, best, worse) -> None:
    """Checkpoint ``module`` as is (metric ``best``), then perturbed (``worse``); restore it."""
    keys = {"max_keys" if best > worse else "min_keys": [key]}
    weights = copy.deepcopy(module.state_dict())
    hparams["checkpointer"].save_and_keep_only(meta={key: best}, num_to_keep=2, **keys)
    perturb(module, seed=99)
    hparams["checkpointer"].save_and_keep_only(meta={key: worse}, num_to_keep=2, **keys)
    module.load_state_dict(weights)


@pytest.fixture(scope="module")
def tagging_experiment(tmp_path_factory):
    """An AudioSet experiment with two checkpoints; the better mAP holds ``best`` weights."""
    root = tmp_path_factory.mktemp("tagging")
    hparams = start_experiment(
        RECIPES / "AudioSet/tagging/BEATs/hparams/beats_small_scratch.yaml",
        root / "trained",
        {"num_classes": len(CLASSES), "clip_seconds": 0.5},
    )
    rows = [f'{i},{mid},"{name}"\n' for i, (mid, name) in enumerate(CLASSES)]
    (root / "trained/class_labels_indices.csv").write_text(
        "index,mid,display_name\n" + "".join(rows)
    )
    encoder = MultiLabelEncoder()
    encoder.update_from_iterable([mid for mid, _ in CLASSES])
    encoder.save(hparams["label_encoder_file"])
    tagger = hparams["tagger"]
    perturb(tagger, seed=1)
    save_best_then_worse(hparams, tagger, "mAP", best=0.8, worse=0.3)
    shutil.move(root / "trained", root / "moved")
    return root / "moved", tagger.eval()


def test_tagger_experiment_scores_are_sigmoid_of_the_best_checkpoint(tagging_experiment, tmp_path):
    folder, module = tagging_experiment
    tagger = Tagger.from_experiment(folder)
    audio = write_audio(tmp_path / "short.wav", 0.4, seed=4)
    with torch.no_grad():
        expected = torch.sigmoid(module(read_wav(audio), torch.ones(1)))[0]
    torch.testing.assert_close(tagger.file_scores(audio), expected)
    tags = tagger.tag_file(audio, top_k=3)
    order = torch.argsort(expected, descending=True).tolist()
    assert [(mid, name) for mid, name, _ in tags] == [CLASSES[i] for i in order]


def test_tagger_experiment_averages_windows_of_clip_seconds(tagging_experiment, tmp_path):
    folder, module = tagging_experiment
    audio = write_audio(tmp_path / "long.wav", 1.2, seed=6)
    wav = read_wav(audio)
    with torch.no_grad():
        windows = [wav[:, start : start + 8000] for start in (0, 8000, 11200)]
        expected = torch.cat([torch.sigmoid(module(w, torch.ones(1))) for w in windows]).mean(0)
    torch.testing.assert_close(Tagger.from_experiment(folder).file_scores(audio), expected)


def test_experiment_overrides_replace_resolved_yaml_keys(tagging_experiment, tmp_path):
    folder, module = tagging_experiment
    audio = write_audio(tmp_path / "long.wav", 0.9, seed=7)
    wav = read_wav(audio)
    tagger = Tagger.from_experiment(folder, overrides={"clip_seconds": 0.3})
    with torch.no_grad():
        windows = [wav[:, start : start + 4800] for start in (0, 4800, 9600)]
        expected = torch.cat([torch.sigmoid(module(w, torch.ones(1))) for w in windows]).mean(0)
    torch.testing.assert_close(tagger.file_scores(audio), expected)


def test_cli_tags_with_an_experiment_folder(tagging_experiment, tmp_path, capsys):
    folder, _ = tagging_experiment
    audio = write_audio(tmp_path / "clip.wav", 0.4, seed=8)
    main(["tag", str(folder), str(audio), "--top-k", "2"])
    lines = capsys.readouterr().out.splitlines()
    expected = Tagger.from_experiment(folder).tag_file(audio, top_k=2)
    assert lines == [f"{audio}\t{score:.4f}\t{mid}\t{name}" for mid, name, score in expected]


@pytest.fixture(scope="module")
def translation_experiment(tmp_path_factory):
    """A CoVoST experiment (recipe YAML, its SentencePiece tokenizer, two checkpoints)."""
    root = tmp_path_factory.mktemp("st")
    hparams = start_experiment(
        RECIPES / "CoVoST/ST/seq2seq/hparams/conformer_transformer_small.yaml",
        root / "trained",
        {"vocab_size": 40, "search_options": {"num_beams": 2, "max_new_tokens": 12}},
    )
    manifest = {str(i): {"translation": text} for i, text in enumerate(TRANSLATIONS * 2)}
    (root / "trained/train.json").write_text(json.dumps(manifest))
    tokenizer = hparams["tokenizer"](
        annotation_train=hparams["train_json"], annotation_read="translation"
    )
    model = hparams["model"]
    perturb(model, seed=3)
    with torch.no_grad():  # special tokens and the bare word mark score 0, below the best
        model.decoder.lm_head.weight[: hparams["eos_index"] + 2] = 0.0  # text token: text out
        model.decoder.lm_head.weight[tokenizer.piece_to_id("\u2581")] = 0.0
    save_best_then_worse(hparams, model, "loss", best=1.5, worse=2.5)
    shutil.move(root / "trained", root / "moved")
    return root / "moved", model.eval(), tokenizer


def expected_translation(model, tokenizer, wav: torch.Tensor, **options) -> str:
    wav = normalize_waveforms(wav)  # the recipe normalises each utterance (normalize_waveform)
    ids = model.generate(wav, torch.ones_like(wav, dtype=torch.long), **options)[0].tolist()[1:]
    eos = model.config.eos_token_id
    return tokenizer.decode(ids[: ids.index(eos)] if eos in ids else ids)


def test_translator_experiment_equals_decoded_generate(translation_experiment, tmp_path):
    folder, model, tokenizer = translation_experiment
    translator = Translator.from_experiment(folder)
    assert translator.search_options["num_beams"] == 2
    assert translator.search_options["max_new_tokens"] == 12
    texts = []
    for seed in range(3):
        audio = write_audio(tmp_path / f"{seed}.wav", 0.5, seed=seed)
        text = translator.translate_file(audio)
        assert text == expected_translation(
            model, tokenizer, read_wav(audio), **translator.search_options
        )
        texts.append(text)
    assert any(texts), "every translation is empty: the comparison proves nothing"
    audio = tmp_path / "0.wav"
    greedy = expected_translation(model, tokenizer, read_wav(audio), max_new_tokens=5)
    assert translator.translate_file(audio, num_beams=1, max_new_tokens=5) == greedy


def test_cli_translates_with_an_experiment_folder(translation_experiment, tmp_path, capsys):
    folder, _, _ = translation_experiment
    audio = write_audio(tmp_path / "clip.wav", 0.5, seed=9)
    main(["translate", str(folder), str(audio)])
    text = Translator.from_experiment(folder).translate_file(audio)
    assert capsys.readouterr().out == f"{audio}\t{text}\n"
