"""SentencePiece wrapper: trains once from a manifest field, round-trips text, batch decoding."""

import csv
import json
import os

import pytest
import torch

from speechlobes.dataio.batch import PaddedBatch
from speechlobes.dataio.dataset import DynamicItemDataset
from speechlobes.tokenizers.sentencepiece import SentencePiece

SENTENCES = [
    "the quick brown fox jumps over the lazy dog",
    "a cat sat on the mat near the door",
    "speech recognition turns sound into words",
    "the dog and the cat are friends",
    "words become tokens and tokens become ids",
    "<laugh> that was a funny joke",
]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "train.csv"
    with open(path, "w", newline="") as csv_file:
        writer = csv.writer(csv_file)
        writer.writerow(["ID", "duration", "wrd"])
        writer.writerows([f"utt{i}", "1.0", text] for i, text in enumerate(SENTENCES * 5))
    return path


def train(model_dir, manifest, vocab_size=40, model_type="unigram", **kwargs):
    return SentencePiece(model_dir, vocab_size, manifest, "wrd", model_type, **kwargs)


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_trains_to_the_vocabulary_size_and_round_trips_text(tmp_path, manifest, model_type):
    tokenizer = train(tmp_path, manifest, model_type=model_type)
    assert os.path.isfile(tmp_path / f"40_{model_type}.model") and len(tokenizer) == 40
    ids = tokenizer.encode_as_ids("the cat and the dog")
    assert all(isinstance(token, int) and 0 <= token < 40 for token in ids)
    assert tokenizer.decode(ids) == "the cat and the dog"
    assert "".join(tokenizer.encode_as_pieces("the dog")).replace("\u2581", " ") == " the dog"


def test_char_model_takes_every_character(tmp_path, manifest):
    tokenizer = train(tmp_path, manifest, vocab_size=1, model_type="char")
    characters = set("".join(SENTENCES).replace(" ", ""))
    pieces = {tokenizer.id_to_piece(i) for i in range(len(tokenizer))}
    assert characters <= pieces
    assert tokenizer.encode_as_pieces("cat") == ["\u2581", "c", "a", "t"]


def test_special_ids_and_user_defined_symbols(tmp_path, manifest):
    tokenizer = train(
        tmp_path, manifest, user_defined_symbols="<laugh>", bos_id=1, eos_id=2, pad_id=3, unk_id=0
    )
    assert [tokenizer.id_to_piece(i) for i in range(4)] == ["<unk>", "<s>", "</s>", "<pad>"]
    assert "<laugh>" in tokenizer.encode_as_pieces("<laugh> the dog")
    assert tokenizer.piece_to_id("<laugh>") == 4


def test_existing_model_is_loaded_not_retrained(tmp_path, manifest):
    train(tmp_path, manifest)
    model_file = tmp_path / "40_unigram.model"
    stamp = os.stat(model_file).st_mtime_ns
    loaded = SentencePiece(tmp_path, 40)  # no manifest needed once the model exists
    assert os.stat(model_file).st_mtime_ns == stamp and len(loaded) == 40


def test_trains_from_a_json_manifest(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(json.dumps({f"u{i}": {"text": s} for i, s in enumerate(SENTENCES * 3)}))
    tokenizer = SentencePiece(tmp_path, 30, path, "text", "bpe")
    assert tokenizer.decode(tokenizer.encode_as_ids("the lazy dog")) == "the lazy dog"


def test_missing_model_or_field_is_explained(tmp_path, manifest):
    with pytest.raises(FileNotFoundError, match="40_bpe.model: no model there"):
        SentencePiece(tmp_path, 40, model_type="bpe")
    with pytest.raises(KeyError, match="train.csv: example 'utt0' has no field 'text'"):
        SentencePiece(tmp_path, 40, manifest, "text")


def test_batch_decoding_from_lists_and_padded_tensors(tmp_path, manifest):
    tokenizer = train(tmp_path, manifest)
    texts = ["the dog", "words become tokens"]
    ids = tokenizer.encode_as_ids(texts)
    assert tokenizer.decode(ids) == texts
    padded = PaddedBatch([{"tokens": torch.tensor(row)} for row in ids]).tokens
    assert tokenizer.decode(padded.data, padded.lengths) == texts
    assert tokenizer.decode(padded.data, padded.abs_lengths) == texts
    assert tokenizer.decode(torch.tensor(ids[0])) == "the dog"


def test_tokenizes_inside_a_dataset_pipeline(tmp_path, manifest):
    tokenizer = train(tmp_path, manifest)
    dataset = DynamicItemDataset.from_csv(manifest)

    def text_pipeline(words):
        yield tokenizer.encode_as_ids(words)
        yield torch.LongTensor(tokenizer.encode_as_ids(words))

    dataset.add_dynamic_item(text_pipeline, takes="wrd", provides=["tokens_list", "tokens"])
    dataset.set_output_keys(["wrd", "tokens"])
    example = dataset[1]
    assert tokenizer.decode(example["tokens"]) == example["wrd"] == SENTENCES[1]


def test_save_and_from_file_give_the_same_tokenization(tmp_path, manifest):
    tokenizer = train(tmp_path / "train", manifest, model_type="bpe")
    tokenizer.save(tmp_path / "tokenizer.ckpt")
    loaded = SentencePiece.from_file(tmp_path / "tokenizer.ckpt")
    text = "the quick dog sat on the friends"
    assert loaded.encode_as_ids(text) == tokenizer.encode_as_ids(text)
    assert loaded.encode_as_pieces(text) == tokenizer.encode_as_pieces(text)
    with pytest.raises(FileNotFoundError, match="missing.model: no SentencePiece model there"):
        SentencePiece.from_file(tmp_path / "missing.model")


def test_speechbrain_positional_order_and_batch_interface(tmp_path, manifest):
    # model_dir, vocab_size, annotation_train, annotation_read, model_type, char_format_input
    tokenizer = SentencePiece(tmp_path, 40, manifest, "wrd", "unigram", False, 1.0)
    words = {0: "the", 1: "cat", 2: "sat"}
    labels = torch.tensor([[0, 1, 2], [1, 0, 0]])
    tokens, lengths = tokenizer(labels, torch.tensor([1.0, 1 / 3]), words, task="encode")
    assert tokens.dtype == torch.long and tokens.shape[0] == 2 and lengths.max() == 1.0
    assert tokenizer(tokens, lengths, task="decode") == [["the", "cat", "sat"], ["cat"]]
    ids = [tokenizer.encode_as_ids("the dog"), tokenizer.encode_as_ids("a cat")]
    assert tokenizer(ids, task="decode_from_list") == [["the", "dog"], ["a", "cat"]]
    with pytest.raises(ValueError, match="needs ind2lab"):
        tokenizer(labels, torch.ones(2))


def test_char_format_input_and_num_sequences(tmp_path):
    path = tmp_path / "chars.csv"
    with open(path, "w", newline="") as csv_file:
        writer = csv.writer(csv_file)
        writer.writerow(["ID", "char"])
        writer.writerows([[f"u{i}", "t h e _ c a t"] for i in range(5)] + [["x", "z z z"]])
    tokenizer = SentencePiece(tmp_path / "m", 6, path, "char", "char", char_format_input=True,
                              num_sequences=5)  # fmt: skip
    text = (tmp_path / "m" / "6_char.txt").read_text().splitlines()
    assert text == ["the cat"] * 5  # joined words; the sixth row was left out
    assert "z" not in {tokenizer.id_to_piece(i) for i in range(len(tokenizer))}
