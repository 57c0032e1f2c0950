"""Our processors give what transformers 5.23.0 gave on the fixture folders (no transformers
needed here: tests/fixtures/hf_processors holds the expected outputs; see its README)."""

import json
from pathlib import Path

import numpy as np
import pytest

from speechlobes.processors import AutoProcessor, AutoTokenizer, CTCTokenizer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hf_processors"
TOKENIZER_FOLDERS = sorted(p.name for p in FIXTURES.iterdir() if (p / "cases.json").is_file())
PROCESSOR_FOLDERS = sorted(p.name for p in FIXTURES.iterdir() if (p / "audio.npz").is_file())
EXPECTED_CLASSES = {
    "bert_tokenizer_json": "FastTokenizer",
    "bert_wordpiece": "FastTokenizer",
    "ctc_v4": "CTCTokenizer",
    "ctc_v5": "CTCTokenizer",
    "gpt2_bpe": "FastTokenizer",
    "gpt2_tokenizer_json": "FastTokenizer",
    "mbart50": "MBartTokenizer",
    "spm_plain": "SentencePieceTokenizer",
    "speech2text": "Speech2TextTokenizer",
}
SAMPLING_RATE = 16000


def cases(name: str) -> dict:
    return json.loads((FIXTURES / name / "cases.json").read_text(encoding="utf-8"))


def test_every_fixture_folder_is_covered():
    assert TOKENIZER_FOLDERS == sorted(EXPECTED_CLASSES)
    assert PROCESSOR_FOLDERS == ["ctc_v4", "ctc_v5", "mbart50"]


@pytest.mark.parametrize("name", TOKENIZER_FOLDERS)
def test_folder_picks_the_tokenizer_kind_and_vocabulary_size(name):
    tokenizer = AutoTokenizer.from_pretrained(FIXTURES / name)
    expected = cases(name)
    assert type(tokenizer).__name__ == EXPECTED_CLASSES[name]
    assert len(tokenizer) == expected["len"]
    for key, value in expected["special_ids"].items():
        assert getattr(tokenizer, key) == value, key
    assert sorted(tokenizer.all_special_ids) == expected["all_special_ids"]


@pytest.mark.parametrize("name", TOKENIZER_FOLDERS)
def test_texts_encode_to_the_reference_ids(name):
    tokenizer = AutoTokenizer.from_pretrained(FIXTURES / name)
    for case in cases(name)["encode"]:
        text = case["text"]
        encoding = tokenizer(text)
        for key in ("input_ids", "attention_mask", "token_type_ids"):
            assert encoding.get(key) == case.get(key), (key, text)
        assert tokenizer(text, add_special_tokens=False).input_ids == case["no_special"], text
        if "target" in case:
            assert tokenizer(text_target=text).input_ids == case["target"], text


@pytest.mark.parametrize("name", TOKENIZER_FOLDERS)
def test_batches_pad_and_truncate_like_the_reference(name):
    tokenizer = AutoTokenizer.from_pretrained(FIXTURES / name)
    expected = cases(name)
    if "batch_padded" not in expected:
        assert tokenizer.pad_token_id is None
        with pytest.raises(ValueError, match="no pad token"):
            tokenizer(["a", "a b c"], padding=True)
        return
    texts = [case["text"] for case in expected["encode"]]
    assert dict(tokenizer(texts, padding=True)) == expected["batch_padded"]
    cut = tokenizer(texts, padding="max_length", truncation=True, max_length=6)
    assert dict(cut) == expected["batch_max_length_6"]
    tensors = tokenizer(texts, padding=True, return_tensors="pt")
    assert tensors.input_ids.tolist() == expected["batch_padded"]["input_ids"]


@pytest.mark.parametrize("name", TOKENIZER_FOLDERS)
def test_ids_decode_to_the_reference_texts(name):
    tokenizer = AutoTokenizer.from_pretrained(FIXTURES / name)
    expected = cases(name)
    for case in expected["decode"]:
        text = tokenizer.decode(
            case["ids"],
            skip_special_tokens=case["skip_special_tokens"],
            clean_up_tokenization_spaces=case["clean_up"],
        )
        assert text == case["text"], case
    batch = expected["batch_decode"]
    assert tokenizer.batch_decode(batch["ids"]) == batch["texts"]
    assert tokenizer.batch_decode(batch["ids"], skip_special_tokens=True) == batch["texts_skipped"]


@pytest.mark.parametrize("name", ["ctc_v4", "ctc_v5"])
def test_ctc_frames_decode_with_and_without_grouping_and_with_offsets(name):
    tokenizer = AutoTokenizer.from_pretrained(FIXTURES / name)
    expected = cases(name)
    assert isinstance(tokenizer, CTCTokenizer)
    assert tokenizer.word_delimiter_token_id == expected["word_delimiter_token_id"]
    for case in expected["decode_ungrouped"]:
        assert tokenizer.decode(case["ids"], group_tokens=False) == case["text"]
    for case in expected["decode_offsets"]:
        out = tokenizer.decode(
            case["ids"],
            skip_special_tokens=case["skip_special_tokens"],
            output_char_offsets=True,
            output_word_offsets=True,
        )
        assert (out.text, out.char_offsets, out.word_offsets) == (
            case["text"],
            case["char_offsets"],
            case["word_offsets"],
        ), case["ids"]
    rows = [case["ids"] for case in expected["decode_offsets"][::2]]
    batch = tokenizer.batch_decode(rows, output_word_offsets=True)
    assert batch.text == [case["text"] for case in expected["decode_offsets"][::2]]
    assert batch.word_offsets == [case["word_offsets"] for case in expected["decode_offsets"][::2]]
    assert batch.char_offsets is None


@pytest.mark.parametrize("name", PROCESSOR_FOLDERS)
def test_processor_inputs_equal_the_reference_to_1e6(name):
    processor = AutoProcessor.from_pretrained(FIXTURES / name)
    arrays = np.load(FIXTURES / name / "audio.npz")
    waves = [arrays[f"wave_{i}"] for i in range(3)]

    def check(prefix: str, batch) -> None:
        keys = sorted(k[len(prefix) :] for k in arrays.files if k.startswith(prefix))
        assert sorted(batch) == keys, prefix
        for key in keys:
            reference = arrays[prefix + key]
            assert batch[key].shape == reference.shape, (prefix, key)
            np.testing.assert_allclose(batch[key], reference, rtol=0, atol=1e-6, err_msg=key)

    check(
        "padded_", processor(waves, sampling_rate=SAMPLING_RATE, padding=True, return_tensors="np")
    )
    for i, wave in enumerate(waves):
        check(f"single_{i}_", processor(wave, sampling_rate=SAMPLING_RATE, return_tensors="np"))
    for mask in (True, False):
        batch = processor.feature_extractor(
            waves,
            sampling_rate=SAMPLING_RATE,
            padding="max_length",
            max_length=440,
            truncation=True,
            return_attention_mask=mask,
            return_tensors="np",
        )
        check(f"max_length_mask_{mask}_", batch)
    texts = [case["text"] for case in cases(name)["encode"][:2]]
    both = processor(
        waves[:2], text=texts, sampling_rate=SAMPLING_RATE, padding=True, return_tensors="np"
    )
    check("with_text_", both)
