"""Tagger (fine-tuned BEATs checkpoints), Translator (HF SpeechEncoderDecoder folders), the
window split of long files and the command line, on tiny models written in the test."""

import csv
import json
import shutil
from pathlib import Path

import pytest
import sentencepiece
import soundfile
import torch

from speechlobes.inference.cli import main
from speechlobes.inference.tagger import Tagger, clip_windows, read_class_labels
from speechlobes.inference.translator import Translator
from speechlobes.lobes.beats import BEATs
from speechlobes.lobes.speech_encoder_decoder import SpeechEncoderDecoderModel
from speechlobes.processing.waveform import normalize_waveforms
from speechlobes.processors import FastTokenizer
from speechlobes.tokenizers.mbart import MBartTokenizer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MIDS = ["/m/09x0r", "/m/04rlf", "/m/0bt9lr", "/m/01b_21", "/m/0k4j", "/m/07yv9"]
NAMES = ["Speech", "Music", "Dog", "Cough", "Car", "Vehicle"]
TINY_BEATS = {
    "embed_dim": 16,
    "encoder_layers": 1,
    "encoder_embed_dim": 32,
    "encoder_ffn_embed_dim": 64,
    "encoder_attention_heads": 2,
    "conv_pos": 8,
    "conv_pos_groups": 2,
    "finetuned_model": True,
    "predictor_class": len(MIDS),
}
SENTENCES = [
    "der hund bellt im garten",
    "die katze schläft auf dem sofa",
    "wir fahren morgen mit dem zug",
    "das wetter ist heute schön",
    "ich trinke gern kaffee am morgen",
    "die kinder spielen im park",
]


def write_audio(path: Path, seconds: float, seed: int = 0, rate: int = 16000) -> Path:
    generator = torch.Generator().manual_seed(seed)
    wav = 0.3 * torch.randn(round(seconds * rate), generator=generator)
    soundfile.write(path, wav.numpy(), rate, subtype="FLOAT")
    return path


def write_labels_csv(path: Path, order: list[int]) -> Path:
    """A label table listing the classes in the row order ``order`` (indices kept)."""
    rows = [f'{i},{MIDS[i]},"{NAMES[i]}"\n' for i in order]
    path.write_text("index,mid,display_name\n" + "".join(rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def beats_checkpoint(tmp_path_factory):
    """A fine-tuned-format BEATs checkpoint (unilm layout) with and without ``label_dict``."""
    torch.manual_seed(0)
    model = BEATs(cfg=TINY_BEATS, freeze=False)
    with torch.no_grad():
        model.predictor.bias.copy_(torch.linspace(-2, 2, len(MIDS)))
    folder = tmp_path_factory.mktemp("beats")
    plain = {"cfg": model.cfg.to_dict(), "model": model.state_dict()}
    torch.save(plain, folder / "plain.pt")
    reversed_dict = {i: mid for i, mid in enumerate(reversed(MIDS))}
    torch.save({**plain, "label_dict": reversed_dict}, folder / "with_labels.pt")
    return folder, model.eval()


def test_read_class_labels_orders_by_index_column(tmp_path):
    table = read_class_labels(write_labels_csv(tmp_path / "labels.csv", [3, 0, 5, 1, 4, 2]))
    assert list(table) == MIDS
    assert table["/m/0bt9lr"] == "Dog"


def test_read_class_labels_names_missing_columns(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("index,mid\n0,/m/09x0r\n")
    with pytest.raises(ValueError, match="display_name"):
        read_class_labels(path)


def test_clip_windows_cover_the_signal_and_last_window_ends_at_the_end():
    wav = torch.arange(25.0)
    windows = clip_windows(wav, 10)
    assert windows.tolist() == [
        list(range(0, 10)),
        list(range(10, 20)),
        list(range(15, 25)),
    ]
    assert clip_windows(wav[:20], 10).shape == (2, 10)
    assert torch.equal(clip_windows(wav[:7], 10), wav[:7].unsqueeze(0))


def test_beats_checkpoint_tagger_top_k_is_argsort_of_lobe_probabilities(beats_checkpoint, tmp_path):
    folder, model = beats_checkpoint
    labels = write_labels_csv(tmp_path / "labels.csv", range(len(MIDS)))
    tagger = Tagger.from_beats_checkpoint(folder / "plain.pt", labels)
    audio = write_audio(tmp_path / "clip.wav", 0.6)
    tags = tagger.tag_file(audio, top_k=4)
    wav = torch.from_numpy(soundfile.read(audio, dtype="float32")[0]).unsqueeze(0)
    with torch.no_grad():
        probabilities = model(wav)[0][0]
    order = torch.argsort(probabilities, descending=True)[:4].tolist()
    assert [mid for mid, _, _ in tags] == [MIDS[i] for i in order]
    assert [name for _, name, _ in tags] == [NAMES[i] for i in order]
    torch.testing.assert_close(torch.tensor([s for _, _, s in tags]), probabilities[order])


def test_beats_checkpoint_label_dict_sets_the_class_order(beats_checkpoint, tmp_path):
    folder, model = beats_checkpoint
    labels = write_labels_csv(tmp_path / "labels.csv", range(len(MIDS)))
    tagger = Tagger.from_beats_checkpoint(folder / "with_labels.pt", labels)
    assert tagger.labels == list(zip(reversed(MIDS), reversed(NAMES), strict=True))
    without_names = Tagger.from_beats_checkpoint(folder / "with_labels.pt")
    assert without_names.labels == [(mid, mid) for mid in reversed(MIDS)]


def test_beats_checkpoint_without_labels_or_head_is_refused(beats_checkpoint, tmp_path):
    folder, model = beats_checkpoint
    with pytest.raises(ValueError, match="label_dict"):
        Tagger.from_beats_checkpoint(folder / "plain.pt")
    too_few = write_labels_csv(tmp_path / "few.csv", [0, 1, 2])
    with pytest.raises(ValueError, match="predictor_class"):
        Tagger.from_beats_checkpoint(folder / "plain.pt", too_few)
    encoder_only = {**TINY_BEATS, "finetuned_model": False}
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("predictor")}
    torch.save({"cfg": encoder_only, "model": state}, tmp_path / "encoder.pt")
    with pytest.raises(ValueError, match="not a fine-tuned"):
        Tagger.from_beats_checkpoint(tmp_path / "encoder.pt", too_few)


def test_long_file_scores_are_the_mean_over_windows(beats_checkpoint, tmp_path):
    folder, model = beats_checkpoint
    labels = write_labels_csv(tmp_path / "labels.csv", range(len(MIDS)))
    tagger = Tagger.from_beats_checkpoint(folder / "plain.pt", labels, clip_seconds=0.5)
    audio = write_audio(tmp_path / "long.wav", 1.25, seed=3)
    wav = torch.from_numpy(soundfile.read(audio, dtype="float32")[0])
    starts = [0, 8000, 12000]  # 0.5 s windows; the last one ends at 1.25 s
    with torch.no_grad():
        expected = torch.stack([model(wav[s : s + 8000].unsqueeze(0))[0][0] for s in starts])
    torch.testing.assert_close(tagger.file_scores(audio), expected.mean(0))


def test_tag_batch_gives_one_ranked_list_per_waveform(beats_checkpoint, tmp_path):
    folder, model = beats_checkpoint
    tagger = Tagger.from_beats_checkpoint(folder / "with_labels.pt")
    wavs = 0.3 * torch.randn(2, 9000, generator=torch.Generator().manual_seed(1))
    results = tagger.tag_batch(wavs, torch.tensor([1.0, 0.7]), top_k=3)
    assert [len(tags) for tags in results] == [3, 3]
    for tags in results:
        scores = [score for _, _, score in tags]
        assert scores == sorted(scores, reverse=True) and all(0 < s < 1 for s in scores)
    with torch.no_grad():
        second = model(wavs[1:, :6300])[0][0]
    torch.testing.assert_close(
        torch.tensor([s for _, _, s in results[1]]), second.sort(descending=True).values[:3]
    )


def train_sentencepiece(prefix: Path, vocab_size: int) -> Path:
    text = prefix.with_suffix(".txt")
    text.write_text("\n".join(SENTENCES * 3) + "\n", encoding="utf-8")
    sentencepiece.SentencePieceTrainer.train(
        input=str(text),
        model_prefix=str(prefix),
        vocab_size=vocab_size,
        model_type="bpe",
        character_coverage=1.0,
        minloglevel=2,
    )
    return prefix.with_suffix(".model")


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    """The transformers-made SED fixture (Wav2Vec2 + BART-family decoder, vocab 32) with a
    SentencePiece model of 28 pieces in MBart's file name, and a feature-extractor config."""
    folder = tmp_path_factory.mktemp("sed") / "model"
    shutil.copytree(FIXTURES / "hf" / "sed_bart", folder, ignore=shutil.ignore_patterns("*.pt"))
    model_file = train_sentencepiece(folder.parent / "spm", vocab_size=28)
    shutil.copy(model_file, folder / "sentencepiece.bpe.model")
    preprocessor = {"do_normalize": True, "return_attention_mask": True, "sampling_rate": 16000}
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor))
    return folder


@pytest.mark.oracle("transformers")
def test_folder_mbart_tokenizer_decodes_like_transformers_mbart_tokenizer(hf_folder):
    import transformers

    reference = transformers.MBartTokenizer.from_pretrained(hf_folder)
    ours = MBartTokenizer(hf_folder, variant="mbart")
    ids = reference("die kinder spielen im garten")["input_ids"]
    language = reference.convert_tokens_to_ids("de_DE")
    for row in ([2, language, *ids], ids, [0, 5, 3, 7, 1, 1], list(range(40))):
        assert ours.decode(row) == reference.decode(row, skip_special_tokens=True)
    assert ours.decode(ids) == "die kinder spielen im garten"


@pytest.mark.oracle("transformers")
def test_tokenizer_json_decodes_like_the_transformers_tokenizer_it_was_saved_from(
    hf_folder, tmp_path
):
    import transformers

    reference = transformers.MBartTokenizer.from_pretrained(hf_folder)
    folder = tmp_path / "model"
    shutil.copytree(hf_folder, folder, ignore=shutil.ignore_patterns("*.model"))
    reference.save_pretrained(folder)
    for stale in folder.glob("*.model"):
        stale.unlink()
    translator = Translator.from_pretrained(folder)
    assert isinstance(translator.tokenizer.tokenizer, FastTokenizer)
    ids = reference("wir spielen im garten")["input_ids"]
    for row in ([2, reference.convert_tokens_to_ids("de_DE"), *ids], list(range(40))):
        assert translator.tokenizer.decode(row) == reference.decode(row, skip_special_tokens=True)


def test_translate_file_equals_decoded_generate_of_normalised_audio(hf_folder, tmp_path):
    translator = Translator.from_pretrained(hf_folder, max_new_tokens=8)
    audio = write_audio(tmp_path / "speech.wav", 0.4, seed=5)
    wav = torch.from_numpy(soundfile.read(audio, dtype="float32")[0]).unsqueeze(0)
    model = SpeechEncoderDecoderModel.from_pretrained(hf_folder)
    hyps = model.generate(normalize_waveforms(wav), torch.ones_like(wav, dtype=torch.long), 8)
    tokens = hyps[0].tolist()[1:]
    tokens = tokens[: tokens.index(2)] if 2 in tokens else tokens
    expected = MBartTokenizer(hf_folder, variant="mbart").decode(tokens)
    assert expected, "an empty translation would make the comparison trivial"
    assert translator.search_options["max_new_tokens"] == 8
    assert translator.translate_file(audio) == expected
    assert (
        translator.translate_file(audio, num_beams=2)
        == translator.translate_batch(wav, num_beams=2)[0]
    )


def test_translate_batch_treats_padding_like_separate_files(hf_folder):
    translator = Translator.from_pretrained(hf_folder, max_new_tokens=6)
    generator = torch.Generator().manual_seed(2)
    wavs = torch.randn(2, 7000, generator=generator)
    batch = translator.translate_batch(wavs, torch.tensor([1.0, 5000 / 7000]))
    alone = translator.translate_batch(wavs[1:, :5000])
    assert batch[1] == alone[0] and alone[0]


def test_a_folder_without_attention_mask_gives_a_padded_row_its_single_run(hf_folder, tmp_path):
    """transformers would normalise (and encode) the padded row with its zeros; each row is
    normalised over its own samples instead, as when its file is translated alone."""
    folder = tmp_path / "model"
    shutil.copytree(hf_folder, folder)
    preprocessor = {"do_normalize": True, "return_attention_mask": False}
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor))
    translator = Translator.from_pretrained(folder, max_new_tokens=6)
    wavs = torch.randn(2, 6000, generator=torch.Generator().manual_seed(4))
    wavs[1, 4000:] = 0.0
    model = SpeechEncoderDecoderModel.from_pretrained(folder)
    rows = (wavs[:1], wavs[1:, :4000])
    hyps = [model.generate(normalize_waveforms(row), None, 6)[0].tolist() for row in rows]
    tokenizer = translator.tokenizer
    expected = [tokenizer.decode(translator.strip_special(row)) for row in hyps]
    assert translator.translate_batch(wavs, torch.tensor([1.0, 4000 / 6000])) == expected


def test_generation_config_sets_search_defaults(hf_folder, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(hf_folder, folder)
    config = json.loads((folder / "generation_config.json").read_text())
    (folder / "generation_config.json").write_text(json.dumps({**config, "num_beams": 3}))
    translator = Translator.from_pretrained(folder)
    assert translator.search_options["num_beams"] == 3
    assert translator.search_options["max_new_tokens"] == config["max_length"] - 1


def test_plain_sentencepiece_model_and_tokenizer_argument(hf_folder, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(hf_folder, folder)
    (folder / "sentencepiece.bpe.model").rename(folder / "target.model")
    translator = Translator.from_pretrained(folder)
    assert translator.tokenizer.decode([5, 6, 7]) == translator.tokenizer.tokenizer.sp.decode(
        [5, 6, 7]
    )
    (folder / "target.model").unlink()
    with pytest.raises(FileNotFoundError, match="tokenizer="):
        Translator.from_pretrained(folder)

    class Digits:
        def decode(self, ids):
            return " ".join(map(str, ids))

    audio = write_audio(tmp_path / "a.wav", 0.3)
    text = Translator.from_pretrained(folder, tokenizer=Digits(), max_new_tokens=4).translate_file(
        audio
    )
    assert all(token.isdigit() for token in text.split())


def test_cli_tag_and_translate_print_one_line_per_result(
    beats_checkpoint, hf_folder, tmp_path, capsys
):
    folder, _ = beats_checkpoint
    labels = write_labels_csv(tmp_path / "labels.csv", range(len(MIDS)))
    audio = write_audio(tmp_path / "clip.wav", 0.5)
    main(["tag", str(folder / "plain.pt"), str(audio), "--top-k", "2", "--labels", str(labels)])
    lines = capsys.readouterr().out.splitlines()
    expected = Tagger.from_beats_checkpoint(folder / "plain.pt", labels).tag_file(audio, 2)
    assert lines == [f"{audio}\t{score:.4f}\t{mid}\t{name}" for mid, name, score in expected]
    main(["translate", str(hf_folder), str(audio)])
    text = Translator.from_pretrained(hf_folder).translate_file(audio)
    assert capsys.readouterr().out == f"{audio}\t{text}\n"


def test_cli_tag_refuses_a_folder_that_is_no_experiment(tmp_path, capsys):
    assert main(["tag", str(tmp_path), "clip.wav"]) == 2
    assert "neither an experiment folder" in capsys.readouterr().err


def test_label_dict_with_string_keys_is_read_and_a_wrong_size_refused(beats_checkpoint, tmp_path):
    folder, model = beats_checkpoint
    plain = torch.load(folder / "plain.pt", weights_only=True)
    torch.save({**plain, "label_dict": {str(i): m for i, m in enumerate(MIDS)}}, tmp_path / "s.pt")
    assert [mid for mid, _ in Tagger.from_beats_checkpoint(tmp_path / "s.pt").labels] == MIDS
    torch.save({**plain, "label_dict": dict(enumerate(MIDS[:-1]))}, tmp_path / "short.pt")
    with pytest.raises(ValueError, match="label_dict has indices"):
        Tagger.from_beats_checkpoint(tmp_path / "short.pt")


def files_of_many_lengths(folder: Path, seconds: list[float]) -> list[Path]:
    return [write_audio(folder / f"{i}.wav", s, seed=i) for i, s in enumerate(seconds)]


def test_tagging_in_batches_of_three_gives_every_file_its_one_by_one_scores(
    beats_checkpoint, tmp_path
):
    """Files of different lengths, two of them longer than a window (scored by the mean of
    their windows), one by one and in length-sorted batches of three."""
    folder, _ = beats_checkpoint
    tagger = Tagger.from_beats_checkpoint(folder / "with_labels.pt", clip_seconds=0.5)
    files = files_of_many_lengths(tmp_path, [0.3, 1.2, 0.45, 0.2, 0.5, 0.77, 0.36])
    alone = [tagger.file_scores(path) for path in files]
    results = tagger.tag_files(files, batch_size=3)
    assert [r.error for r in results] == [None] * len(files)
    for single, result in zip(alone, results, strict=True):
        torch.testing.assert_close(result.value, single, atol=1e-4, rtol=0)
        assert [m for m, _, _ in tagger.top(result.value, 3)] == [
            m for m, _, _ in tagger.top(single, 3)
        ]
    assert (alone[0] - alone[1]).abs().max() > 1e-3, "equal scores would make the check weak"


@pytest.mark.parametrize("num_beams", [1, 3])
def test_translating_in_batches_of_three_gives_every_file_its_one_by_one_text(
    hf_folder, tmp_path, num_beams
):
    translator = Translator.from_pretrained(hf_folder, max_new_tokens=8, num_beams=num_beams)
    files = files_of_many_lengths(tmp_path, [0.3, 0.9, 0.45, 0.2, 0.62, 0.33, 0.5])
    alone = [translator.translate_file(path) for path in files]
    batched = translator.translate_files(files, batch_size=3)
    assert [r.value for r in batched] == alone
    assert len(set(alone)) > 1, "identical translations would make the comparison weak"


def test_cli_tag_and_translate_write_one_row_per_input(
    beats_checkpoint, hf_folder, tmp_path, capsys
):
    folder, _ = beats_checkpoint
    files = files_of_many_lengths(tmp_path, [0.5, 0.3])
    missing = tmp_path / "missing.wav"
    tags_csv = tmp_path / "tags.csv"
    argv = [*map(str, files), str(missing), "--top-k", "2", "--batch-size", "2"]
    assert main(["tag", str(folder / "with_labels.pt"), *argv, "--output", str(tags_csv)]) == 1
    with open(tags_csv, newline="") as stream:
        rows = list(csv.DictReader(stream))
    tagger = Tagger.from_beats_checkpoint(folder / "with_labels.pt")
    expected = [tagger.tag_file(path, 2) for path in files]
    labels = [[(t["mid"], t["score"]) for t in json.loads(row["labels"])] for row in rows[:2]]
    assert labels == [[(mid, round(score, 4)) for mid, _, score in tags] for tags in expected]
    assert rows[2]["labels"] == "" and "file not found" in rows[2]["error"]
    out = tmp_path / "de.jsonl"
    assert main(["translate", str(hf_folder), *map(str, files), "--output", str(out)]) == 0
    texts = [json.loads(line)["text"] for line in out.read_text().splitlines()]
    assert texts == [Translator.from_pretrained(hf_folder).translate_file(p) for p in files]
    assert "translated 2 of 2 files" in capsys.readouterr().err
