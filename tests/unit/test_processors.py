"""speechlobes.processors: hand-computed CTC cases, folder kinds, round trips and the errors a
user meets (fixture parity lives in test_processors_fixtures.py)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from speechlobes.processors import (
    AutoProcessor,
    AutoTokenizer,
    BatchEncoding,
    CTCTokenizer,
    FastTokenizer,
    MBartTokenizer,
    Processor,
    SentencePieceTokenizer,
    Speech2TextTokenizer,
    Wav2Vec2FeatureExtractor,
    clean_up_tokenization,
)
from speechlobes.processors.added_tokens import AddedToken, split_on_added_tokens

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hf_processors"
VOCAB = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "A": 5, "B": 6, "C": 7, "'": 8}


def cases(name: str) -> dict:
    return json.loads((FIXTURES / name / "cases.json").read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------- CTC rules


def test_ctc_decode_collapses_repeats_then_drops_blanks_and_maps_the_delimiter():
    tokenizer = CTCTokenizer(VOCAB)
    frames = [0, 5, 5, 0, 5, 6, 6, 4, 4, 7, 0, 0, 8, 6, 4]
    assert tokenizer.decode(frames) == "AAB C'B"
    assert tokenizer.decode(frames, group_tokens=False) == "AAABB  C'B"
    assert tokenizer.decode([0, 0, 4, 4]) == ""
    assert tokenizer.batch_decode(torch.tensor([frames, frames[::-1]])) == ["AAB C'B", "B'C BAA"]


def test_ctc_skip_special_tokens_removes_blanks_before_grouping_as_transformers_does():
    tokenizer = CTCTokenizer(VOCAB)
    assert tokenizer.decode([1, 5, 0, 5, 2]) == "<s>AA</s>"
    assert tokenizer.decode([1, 5, 0, 5, 2], skip_special_tokens=True) == "A"


def test_ctc_lower_case_vocabulary_and_unknown_characters():
    tokenizer = CTCTokenizer(VOCAB, do_lower_case=True)
    assert tokenizer("ab c'x").input_ids == [5, 6, 4, 7, 8, 3]
    assert tokenizer.tokenize("ab c'x") == ["A", "B", "|", "C", "'", "X"]
    assert tokenizer.decode([5, 6, 4, 7]) == "ab c"
    assert CTCTokenizer(VOCAB)("ab").input_ids == [3, 3]  # no upper-casing without the flag


def test_ctc_multi_character_tokens_match_whole_and_eat_spaces():
    tokenizer = CTCTokenizer(VOCAB)
    assert tokenizer("A <unk> B").input_ids == [5, 3, 6]
    assert tokenizer("A<s>B").input_ids == [5, 1, 6]


def test_ctc_special_tokens_missing_from_the_vocabulary_get_the_next_ids():
    tokenizer = CTCTokenizer({"<pad>": 0, "<unk>": 1, "|": 2, "A": 3})
    assert tokenizer.bos_token_id == 4 and tokenizer.eos_token_id == 5
    assert len(tokenizer) == 6
    assert tokenizer.decode([4, 3, 5], skip_special_tokens=True) == "A"


def test_ctc_multilingual_vocabulary_needs_a_target_language():
    vocab = {"en": {"<pad>": 0, "<unk>": 1, "|": 2, "A": 3}, "fr": {"<pad>": 0, "<unk>": 1, "É": 2}}
    assert CTCTokenizer(vocab, target_lang="fr").decode([2, 2, 0, 2]) == "ÉÉ"
    with pytest.raises(ValueError, match="target_lang= one of \\['en', 'fr'\\]"):
        CTCTokenizer(vocab)
    with pytest.raises(ValueError, match="'de'"):
        CTCTokenizer(vocab, target_lang="de")


def test_added_tokens_split_leftmost_longest_with_strip_and_single_word_flags():
    tokens = {
        "<a>": AddedToken("<a>"),
        "<a><b>": AddedToken("<a><b>", rstrip=True),
        "w": AddedToken("w", single_word=True),
    }
    assert split_on_added_tokens("x<a><b>  y<a>", tokens) == [
        ("x", False),
        ("<a><b>", True),
        ("y", False),
        ("<a>", True),
    ]
    assert split_on_added_tokens("a w b wx", tokens) == [
        ("a ", False),
        ("w", True),
        (" b wx", False),
    ]


# ----------------------------------------------------------------------------- batches


def test_padding_truncation_and_tensors():
    tokenizer = CTCTokenizer(VOCAB)
    batch = tokenizer(["AB", "ABCA"], padding=True, return_tensors="pt")
    assert batch.input_ids.tolist() == [[5, 6, 0, 0], [5, 6, 7, 5]]
    assert batch.attention_mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    left = tokenizer(["AB", "ABC"], padding=True, padding_side="left")
    assert left["input_ids"] == [[0, 5, 6], [5, 6, 7]]
    multiple = tokenizer(["AB"], padding=True, pad_to_multiple_of=4)
    assert multiple["input_ids"] == [[5, 6, 0, 0]]
    cut = tokenizer(["ABCABC"], truncation=True, max_length=4, return_tensors="np")
    assert cut["input_ids"].tolist() == [[5, 6, 7, 5]]
    with pytest.raises(ValueError, match="pass padding=True"):
        tokenizer(["AB", "ABC"], return_tensors="pt")
    with pytest.raises(ValueError, match="needs max_length"):
        tokenizer(["AB"], padding="max_length")
    with pytest.raises(ValueError, match="return_tensors='tf'"):
        tokenizer("AB", return_tensors="tf")


def test_text_target_comes_back_as_labels_and_batch_encoding_reads_as_attributes():
    tokenizer = MBartTokenizer(FIXTURES / "mbart50", target_language="de_DE")
    both = tokenizer("der hund", text_target="der hund", return_tensors="pt")
    assert both.input_ids[0, 0] == tokenizer.lang_code_to_id["en_XX"]
    assert both.labels[0, 0] == tokenizer.lang_code_to_id["de_DE"]
    assert isinstance(both, BatchEncoding) and both.to("cpu").labels.equal(both.labels)
    with pytest.raises(
        AttributeError, match="fields: \\['attention_mask', 'input_ids', 'labels'\\]"
    ):
        _ = both.token_type_ids


def test_clean_up_rule():
    assert clean_up_tokenization("a , b . c ! d ? e ' f") == "a, b. c! d? e'f"
    assert clean_up_tokenization("i 'm we 're they 've do n't") == "i'm we're they've don't"


# ----------------------------------------------------------------------------- folder kinds


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"vocab.json": "{}"}, CTCTokenizer),
        ({"vocab.txt": "[UNK]\n[CLS]\n[SEP]\na\n"}, FastTokenizer),
    ],
)
def test_folder_kind_from_files_alone(tmp_path, files, expected):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert type(AutoTokenizer.from_pretrained(tmp_path)) is expected


def test_sentencepiece_kinds_from_files_alone(tmp_path):
    for name in ("mbart_only", "plain", "s2t"):
        (tmp_path / name).mkdir()
    shutil.copy(FIXTURES / "mbart50" / "sentencepiece.bpe.model", tmp_path / "mbart_only")
    shutil.copy(FIXTURES / "spm_plain" / "spm_char.model", tmp_path / "plain")
    for name in ("vocab.json", "sentencepiece.bpe.model"):
        shutil.copy(FIXTURES / "speech2text" / name, tmp_path / "s2t")
    assert type(AutoTokenizer.from_pretrained(tmp_path / "mbart_only")) is MBartTokenizer
    plain = AutoTokenizer.from_pretrained(tmp_path / "plain")
    assert type(plain) is SentencePieceTokenizer
    assert plain("der hund").input_ids == plain.sp.encode("der hund")  # its own ids, nothing added
    assert type(AutoTokenizer.from_pretrained(tmp_path / "s2t")) is Speech2TextTokenizer


def test_unreadable_folders_say_what_was_looked_for(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        AutoTokenizer.from_pretrained(tmp_path / "missing")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "T5Tokenizer"}))
    (tmp_path / "spiece.model").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="'T5Tokenizer'.*tokenizer.json"):
        AutoTokenizer.from_pretrained(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text("{not json")
    with pytest.raises(ValueError, match="tokenizer_config.json: not valid JSON"):
        AutoTokenizer.from_pretrained(tmp_path)


def test_feature_extractor_errors_name_the_problem(tmp_path):
    extractor = Wav2Vec2FeatureExtractor()
    with pytest.raises(ValueError, match="8000 Hz but the model expects 16000 Hz"):
        extractor(np.zeros(100), sampling_rate=8000)
    with pytest.raises(ValueError, match="expected mono"):
        extractor(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="lengths \\[3, 5\\].*padding=True"):
        extractor([np.zeros(3), np.zeros(5)], return_tensors="pt")
    with pytest.raises(FileNotFoundError, match="no preprocessor_config.json"):
        Wav2Vec2FeatureExtractor.from_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps({"feature_extractor_type": "WhisperFeatureExtractor"})
    )
    with pytest.raises(ValueError, match="WhisperFeatureExtractor"):
        Wav2Vec2FeatureExtractor.from_pretrained(tmp_path)


def test_feature_extractor_normalises_each_row_over_its_own_samples():
    extractor = Wav2Vec2FeatureExtractor(return_attention_mask=True)
    short, long = np.arange(4, dtype=np.float32), np.arange(8, dtype=np.float32) * 2
    batch = extractor([long, short], padding=True, return_tensors="pt")
    expected = (short - short.mean()) / np.sqrt(short.var() + 1e-7)
    np.testing.assert_allclose(batch.input_values[1, :4], expected, atol=1e-6)
    assert batch.input_values[1, 4:].abs().sum() == 0
    unmasked = Wav2Vec2FeatureExtractor()([long, short], padding=True, return_tensors="np")
    padded = np.concatenate([short, np.zeros(4, np.float32)])
    whole_row = (padded - padded.mean()) / np.sqrt(padded.var() + 1e-7)
    np.testing.assert_allclose(unmasked["input_values"][1], whole_row, atol=1e-6)
    assert "attention_mask" not in unmasked


def test_processor_rejects_unknown_options_and_needs_an_input():
    processor = AutoProcessor.from_pretrained(FIXTURES / "ctc_v5")
    with pytest.raises(TypeError, match="unknown processor options \\['sample_rate'\\]"):
        processor(np.zeros(10), sample_rate=16000)
    with pytest.raises(ValueError, match="pass audio"):
        processor()


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.iterdir() if p.is_dir()))
def test_saved_tokenizer_reloads_with_the_reference_behaviour(name, tmp_path):
    AutoTokenizer.from_pretrained(FIXTURES / name).save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    expected = cases(name)
    assert len(again) == expected["len"]
    for case in expected["encode"]:
        assert again(case["text"]).input_ids == case["input_ids"], case["text"]
        if "target" in case:
            assert again(text_target=case["text"]).input_ids == case["target"]
    for case in expected["decode"]:
        text = again.decode(case["ids"], case["skip_special_tokens"], case["clean_up"])
        assert text == case["text"], case


def test_saved_processor_reloads_with_the_same_inputs_and_files(tmp_path):
    processor = AutoProcessor.from_pretrained(FIXTURES / "ctc_v4")
    names = processor.save_pretrained(tmp_path)
    assert sorted(names) == sorted(p.name for p in tmp_path.iterdir())
    assert {"preprocessor_config.json", "vocab.json", "tokenizer_config.json"} <= set(names)
    again = Processor.from_pretrained(tmp_path)
    waves = [np.sin(np.arange(n) / 7.0).astype(np.float32) for n in (300, 200)]
    first = processor(waves, sampling_rate=16000, padding=True, return_tensors="pt")
    second = again(waves, sampling_rate=16000, padding=True, return_tensors="pt")
    assert sorted(first) == sorted(second) == ["input_values"]
    assert torch.equal(first.input_values, second.input_values)
    assert again.tokenizer.do_lower_case
    assert (again.tokenizer.bos_token_id, again.tokenizer.eos_token_id) == (14, 15)  # appended


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("vocab.json", b'["A", "B"]', "vocab.json: expected a JSON object"),
        ("vocab.json", b'{"A": "one"}', "vocab.json: ids must be integers"),
        ("vocab.txt", b"[UNK]\n\xff\xfe\n", "vocab.txt: not UTF-8"),
        ("tokenizer.json", b'{"model": 3}', "tokenizer.json: not a tokenizers pipeline"),
        ("spm.model", b"not a model", "spm.model: not a SentencePiece model"),
        ("sentencepiece.bpe.model", b"\x00" * 8, "sentencepiece.bpe.model: not a SentencePiece"),
    ],
)
def test_hostile_files_give_errors_naming_the_file(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ValueError, match=message):
        AutoTokenizer.from_pretrained(tmp_path)
