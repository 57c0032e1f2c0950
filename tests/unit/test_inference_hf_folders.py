"""The command line on Hugging Face folders: `transcribe` an HF CTC folder, `translate` HF
SpeechEncoderDecoder folders with WordPiece and byte-level BPE tokenizers, each checked end to
end against the model and the processor called directly, as the seed examples do."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from inference_checks import PROCESSOR_FILES, hf_ctc_folder, record_decoded, write_flac

from speechlobes.decoders.ctc import ctc_prefix_beam_search
from speechlobes.inference.__main__ import main
from speechlobes.inference.hf_folders import is_hf_ctc_folder
from speechlobes.inference.transcriber import Transcriber
from speechlobes.lobes.speech_encoder_decoder import SpeechEncoderDecoderModel
from speechlobes.lobes.wav2vec2 import Wav2Vec2ConformerForCTC, Wav2Vec2ForCTC
from speechlobes.processors import AutoProcessor

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
BERT_WORDS = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]", "the", "cat", "##s", "sat", "on"]
BERT_WORDS += ["mat", "a", "dog", "ran", "home", "to", "we", "go", ",", ".", "!", "##ing", "it"]
BERT_WORDS += ["is", "red", "big", "and", "##ed", "old", "new", "day", "now"]
EXTRACTOR = {
    "feature_extractor_type": "Wav2Vec2FeatureExtractor",
    "do_normalize": True,
    "return_attention_mask": True,
    "sampling_rate": 16000,
}


def read(path: Path) -> np.ndarray:
    return soundfile.read(path, dtype="float32")[0]


def cli_lines(argv: list[str], capsys) -> list[list[str]]:
    main(argv)
    return [line.split("\t") for line in capsys.readouterr().out.splitlines()]


@pytest.fixture(scope="module")
def ctc_folder(tmp_path_factory):
    """A transformers-made Wav2Vec2-Conformer CTC checkpoint (random weights, 32 outputs) with
    the transformers-saved CTC processor of 32 characters."""
    return hf_ctc_folder(tmp_path_factory.mktemp("hf_ctc") / "model", "w2v2_conformer_relpos")


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    folder = tmp_path_factory.mktemp("audio")
    return [
        write_flac(folder / f"{name}.flac", s, i)
        for i, (name, s) in enumerate([("a", 0.35), ("b", 0.2)])
    ]


def test_transcribe_prints_what_the_seed_example_gives(ctc_folder, audio, capsys):
    assert is_hf_ctc_folder(ctc_folder) and not is_hf_ctc_folder(FIXTURES / "hf" / "sed_bert")
    processor = AutoProcessor.from_pretrained(ctc_folder)
    model = Wav2Vec2ConformerForCTC.from_pretrained(ctc_folder).eval()
    expected = []
    for path in audio:
        inputs = processor(read(path), sampling_rate=16000, return_tensors="pt")
        with torch.no_grad():
            logits = model(**inputs).logits
        expected.append(processor.batch_decode(torch.argmax(logits, dim=-1))[0])
    assert all(expected), "random weights gave an empty transcript: the check would be void"
    lines = cli_lines(["transcribe", str(ctc_folder), *map(str, audio)], capsys)
    assert lines == [[str(path), text] for path, text in zip(audio, expected, strict=True)]


def test_beam_search_transcripts_are_the_prefix_search_of_the_logits(ctc_folder, audio, capsys):
    processor = AutoProcessor.from_pretrained(ctc_folder)
    model = Wav2Vec2ConformerForCTC.from_pretrained(ctc_folder).eval()
    inputs = processor(read(audio[0]), sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        log_probs = model(**inputs).logits.log_softmax(-1)
    best = ctc_prefix_beam_search(log_probs, blank_id=0, beam_size=6)[0][0]
    expected = processor.decode(best.tokens, group_tokens=False)
    lines = cli_lines(["transcribe", str(ctc_folder), str(audio[0]), "--beam-size", "6"], capsys)
    assert lines == [[str(audio[0]), expected]] and expected


def test_a_padded_batch_transcribes_like_single_files(tmp_path, audio):
    """With an attention mask (and an encoder that honours it: Wav2Vec2, layer-norm layout) a
    padded batch gives each file the text of its own run."""
    folder = hf_ctc_folder(tmp_path / "model", "wav2vec2_layer")
    for beam_size in (1, 4):
        asr = Transcriber.from_pretrained(folder, beam_size=beam_size)
        waves = [torch.from_numpy(read(path)) for path in audio]
        batch = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
        lengths = torch.tensor([len(w) / batch.shape[1] for w in waves])
        alone = [asr.transcribe_file(path) for path in audio]
        assert asr.transcribe_batch(batch, lengths) == alone and all(alone)


def test_group_norm_checkpoint_without_attention_mask_transcribes(tmp_path, audio, capsys):
    folder = hf_ctc_folder(tmp_path / "model", "wav2vec2_group")
    config = json.loads((folder / "processor_config.json").read_text())
    config["feature_extractor"]["return_attention_mask"] = False
    (folder / "processor_config.json").write_text(json.dumps(config))
    processor = AutoProcessor.from_pretrained(folder)
    inputs = processor(read(audio[1]), sampling_rate=16000, return_tensors="pt")
    assert "attention_mask" not in inputs
    with torch.no_grad():
        ids = Wav2Vec2ForCTC.from_pretrained(folder).eval()(**inputs).logits.argmax(-1)
    lines = cli_lines(["transcribe", str(folder), str(audio[1])], capsys)
    assert lines == [[str(audio[1]), processor.batch_decode(ids)[0]]]


def test_transcribe_refuses_folders_of_neither_kind(tmp_path, ctc_folder, capsys):
    assert main(["transcribe", str(FIXTURES / "hf" / "sed_bert"), "a.flac"]) == 2
    assert "names no *ForCTC architecture" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["transcribe", str(ctc_folder), "a.flac", "--beam-size", "0"])
    assert "--beam-size: must be at least 1, got 0" in capsys.readouterr().err


def sed_with_tokenizer(tmp_path: Path, fixture: str, files: dict[str, str]) -> Path:
    folder = tmp_path / fixture
    shutil.copytree(FIXTURES / "hf" / fixture, folder, ignore=lambda *_: ["cases.pt"])
    for name, text in {**files, "preprocessor_config.json": json.dumps(EXTRACTOR)}.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def byte_level_files() -> dict[str, str]:
    """A 32-entry byte-level vocabulary (no merges): <pad>, <s>, </s>, then 29 characters."""
    tokens = ["<pad>", "<s>", "</s>", *"Ġabcdefghijklmnopqrstuvwxy", ".", ",", "!"]
    config = {
        "tokenizer_class": "GPT2Tokenizer",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "pad_token": "<pad>",
        "unk_token": "<pad>",
    }
    return {
        "vocab.json": json.dumps({t: i for i, t in enumerate(tokens)}),
        "merges.txt": "#version: 0.2\n",
        "tokenizer_config.json": json.dumps(config),
    }


@pytest.mark.parametrize(
    ("fixture", "files"),
    [
        ("sed_bert", {"vocab.txt": "\n".join(BERT_WORDS) + "\n", "tokenizer_config.json": "{}"}),
        ("sed_gpt2", byte_level_files()),
    ],
)
def test_translate_prints_the_decoded_generation_of_the_seed_example(
    tmp_path, audio, capsys, fixture, files
):
    folder = sed_with_tokenizer(tmp_path, fixture, files)
    processor = AutoProcessor.from_pretrained(folder)
    model = SpeechEncoderDecoderModel.from_pretrained(folder)
    expected = []
    for path in audio:
        inputs = processor(read(path), sampling_rate=16000, return_tensors="pt")
        generated_ids = model.generate(
            inputs.input_values, inputs.attention_mask, max_new_tokens=19
        )
        expected.append(processor.batch_decode(generated_ids, skip_special_tokens=True)[0])
    assert any(expected), "random weights gave only empty translations: the check would be void"
    lines = cli_lines(["translate", str(folder), *map(str, audio)], capsys)
    assert lines == [[str(path), text] for path, text in zip(audio, expected, strict=True)]


@pytest.mark.parametrize(
    ("fixture", "beam_size"), [("wav2vec2_group", 4), ("w2v2_conformer_relpos", 1)]
)
def test_batches_of_three_give_every_file_its_one_by_one_text_and_log_probs(
    tmp_path, fixture, beam_size
):
    """Seven files of different lengths (one at 8 kHz), one by one and in length-sorted
    batches of three: the same texts, and log-probabilities within 1e-4. The group-norm
    checkpoint's extractor has no attention mask: transformers would normalise and encode
    each padded row with its zeros."""
    folder = tmp_path / "model"
    shutil.copytree(FIXTURES / "hf" / fixture, folder, ignore=lambda *_: ["cases.pt", "legacy_bin"])
    for name in PROCESSOR_FILES:
        shutil.copy(FIXTURES / "hf_processors" / "ctc_v5" / name, folder)
    config = json.loads((folder / "processor_config.json").read_text())
    config["feature_extractor"]["return_attention_mask"] = fixture != "wav2vec2_group"
    (folder / "processor_config.json").write_text(json.dumps(config))
    files = [
        write_flac(tmp_path / f"{i}.flac", s, i)
        for i, s in enumerate([0.3, 0.9, 0.45, 0.2, 0.71, 0.33])
    ]
    slow = tmp_path / "8k.wav"
    soundfile.write(slow, read(files[1])[::2], 8000)
    files.append(slow)
    asr = Transcriber.from_pretrained(folder, beam_size=beam_size)
    runs = record_decoded(asr)
    runs.append({})
    alone = [asr.transcribe_file(path) for path in files]
    runs.append({})
    results = asr.transcribe_files(files, batch_size=3)
    assert [r.value for r in results] == alone and all(alone)
    assert [r.error for r in results] == [None] * len(files)
    assert sorted(runs[0]) == sorted(runs[1]) == sorted(map(str, files))
    for path, single in runs[0].items():
        assert single.shape == runs[1][path].shape
        torch.testing.assert_close(runs[1][path], single, atol=1e-4, rtol=0)
