"""MBart / MBart-50 tokenizer: fairseq ids, target layout, decoding; transformers as oracle."""

import pytest
import sentencepiece

from speechlobes.tokenizers.mbart import (
    MBART50_LANGUAGE_CODES,
    MBART_LANGUAGE_CODES,
    MBartTokenizer,
)

SENTENCES = [
    "ein kleines haus am see",
    "der hund spielt im garten",
    "wir gehen heute nach hause",
    "das wetter ist schön und warm",
    "Hallo Welt, wie geht es dir?",
]
TEXTS = ["der hund spielt", "ein haus am see", "Hallo, wie geht es?", "xyz quark", "schön warm"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mbart_spm")
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(SENTENCES * 20),
        model_prefix=str(folder / "sentencepiece.bpe"),
        vocab_size=40,
        model_type="unigram",
        character_coverage=1.0,
        minloglevel=2,
    )
    return folder


@pytest.fixture(scope="module")
def sp(folder):
    return sentencepiece.SentencePieceProcessor(model_file=str(folder / "sentencepiece.bpe.model"))


def test_language_codes_follow_the_vocabulary_and_mask_is_last(folder):
    tokenizer = MBartTokenizer(folder, target_language="de_DE")
    assert tokenizer.lang_code_to_id["ar_AR"] == 41  # 40 pieces + fairseq offset 1
    assert tokenizer.lang_code_to_id["de_DE"] == 43
    assert tokenizer.lang_code_to_id["sl_SI"] == 41 + 51
    assert tokenizer.mask_id == 93 and len(tokenizer) == 94
    cc25 = MBartTokenizer(folder, target_language="zh_CN", variant="mbart")
    assert cc25.target_language_id == 41 + 24 and len(cc25) == 41 + 25 + 1
    assert len(MBART_LANGUAGE_CODES) == 25 and len(MBART50_LANGUAGE_CODES) == 52


def test_targets_are_language_code_tokens_eos_with_pieces_shifted_by_one(folder, sp):
    tokenizer = MBartTokenizer(folder, target_language="de_DE")
    pieces = sp.encode("der hund")
    assert 0 not in pieces  # all known: every id shifts by one
    assert tokenizer.encode_target("der hund") == [43, *[p + 1 for p in pieces], 2]
    cc25 = MBartTokenizer(folder, target_language="de_DE", variant="mbart")
    assert cc25.encode_target("der hund") == [*[p + 1 for p in pieces], 2, 43]


def test_unknown_characters_become_unk_id_3(folder, sp):
    tokenizer = MBartTokenizer(folder, target_language="de_DE")
    pieces = sp.encode("q")
    assert 0 in pieces
    assert tokenizer.encode_as_ids("q") == [3 if p == 0 else p + 1 for p in pieces]


def test_decode_skips_special_tokens(folder):
    tokenizer = MBartTokenizer(folder, target_language="de_DE")
    ids = tokenizer.encode_target("ein haus am see")
    assert tokenizer.decode([2, 0, 1, *ids, tokenizer.mask_id, 1, 1]) == "ein haus am see"
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tokenizer.decode([len(tokenizer)])


def test_bad_target_language_and_missing_model_are_reported(folder, tmp_path):
    with pytest.raises(ValueError, match="xx_XX"):
        MBartTokenizer(folder, target_language="xx_XX")
    with pytest.raises(ValueError, match="gl_ES.*mbart language code"):
        MBartTokenizer(folder, target_language="gl_ES", variant="mbart")
    with pytest.raises(FileNotFoundError, match="sentencepiece.bpe.model"):
        MBartTokenizer(tmp_path, target_language="de_DE")


@pytest.mark.oracle("transformers")
@pytest.mark.parametrize("variant", ["mbart-50", "mbart"])
def test_matches_transformers_encode_and_decode(folder, variant):
    import transformers

    reference_class = {"mbart-50": "MBart50Tokenizer", "mbart": "MBartTokenizer"}[variant]
    reference = getattr(transformers, reference_class).from_pretrained(
        folder, src_lang="en_XX", tgt_lang="de_DE"
    )
    tokenizer = MBartTokenizer(folder, target_language="de_DE", variant=variant)
    assert len(tokenizer) == len(reference)
    assert tokenizer.lang_code_to_id == {
        code: reference.convert_tokens_to_ids(code) for code in tokenizer.lang_code_to_id
    }
    assert tokenizer.mask_id == reference.convert_tokens_to_ids("<mask>")
    for text in TEXTS:
        ids = reference(text_target=text).input_ids
        assert tokenizer.encode_target(text) == ids, text
        plain = reference(text, add_special_tokens=False).input_ids
        assert tokenizer.encode_as_ids(text) == plain, text
        assert tokenizer.decode(ids) == reference.decode(ids, skip_special_tokens=True), text
