"""Label encoders: index maps, unknown labels, special labels, multi-hot, save/load round trips."""

import pytest
import torch

from speechlobes.dataio.dataset import DynamicItemDataset
from speechlobes.dataio.encoders import (
    CategoricalEncoder,
    CTCTextEncoder,
    MultiLabelEncoder,
    TextEncoder,
    load_text_encoder_tokens,
)

# A label file as SpeechBrain writes it (CTCTextEncoder with blank, bos/eos and unk).
SPEECHBRAIN_LABEL_FILE = """'<blank>' => 0
'a' => 1
"'" => 2
' ' => 3
'<bos>' => 4
================
'starting_index' => 0
'unk_label' => '<unk>'
'bos_label' => '<bos>'
'eos_label' => '<bos>'
'blank_label' => '<blank>'
"""


def test_labels_get_indices_in_order_of_first_appearance():
    encoder = CategoricalEncoder(starting_index=2)
    encoder.update_from_iterable([["b", "a"], ["b", "c"]], sequence_input=True)
    encoder.expect_len(3)
    assert encoder.lab2ind == {"b": 2, "a": 3, "c": 4}
    assert encoder.encode_sequence_torch(["c", "a"]).tolist() == [4, 3]
    assert encoder.encode_label_torch("b").tolist() == [2]
    assert encoder.decode_ndim(torch.tensor([[2, 3], [4, 4]])) == [["b", "a"], ["c", "c"]]
    assert encoder.decode_torch(torch.tensor([4, 2])) == ["c", "b"]
    assert encoder.decode_torch(torch.tensor([[4], [2]])) == [["c"], ["b"]]
    assert encoder.decode_ndim(3) == "a" and encoder.is_continuous()


def test_unknown_label_is_an_error_naming_it_unless_unk_is_set():
    encoder = CategoricalEncoder()
    encoder.update_from_iterable(["yes", "no"])
    encoder.ignore_len()
    with pytest.raises(KeyError, match="label 'maybe' is not in the encoder.*call add_unk"):
        encoder.encode_label("maybe")
    assert encoder.add_unk() == 2 and encoder.unk_label == "<unk>"
    assert encoder.encode_label("maybe") == 2
    with pytest.raises(KeyError, match="'maybe'.*allow_unk=False"):
        encoder.encode_label("maybe", allow_unk=False)
    with pytest.raises(KeyError, match="index 7 is not in the encoder"):
        encoder.decode_ndim([7])


def test_insert_label_moves_the_displaced_label_to_a_free_index():
    encoder = CategoricalEncoder()
    encoder.update_from_iterable("xyz")
    encoder.insert_label("<blank>", 0)
    assert encoder.lab2ind == {"<blank>": 0, "y": 1, "z": 2, "x": 3}
    with pytest.raises(KeyError, match="already encoded"):
        encoder.add_label("y")
    with pytest.raises(KeyError, match="already encoded"):
        encoder.insert_label("y", 5)
    encoder.enforce_label("y", 0)  # moves y, and the blank to the next free index
    assert encoder.lab2ind == {"<blank>": 1, "y": 0, "z": 2, "x": 3}
    encoder.enforce_label("q", 7)
    assert not encoder.is_continuous() and encoder.decode_ndim([7]) == ["q"]


def test_save_load_round_trip_keeps_labels_and_extras(tmp_path):
    encoder = CategoricalEncoder(starting_index=1, unk_label="<unk>")
    encoder.update_from_iterable(["it's", 'say "hi"', "a => b"])
    encoder.save(tmp_path / "labels.txt")
    loaded = CategoricalEncoder()
    loaded.load(tmp_path / "labels.txt")
    assert loaded.lab2ind == encoder.lab2ind and loaded.ind2lab == encoder.ind2lab
    assert loaded.unk_label == "<unk>" and loaded.starting_index == 1


def test_loads_a_speechbrain_label_file(tmp_path):
    path = tmp_path / "label_encoder.txt"
    path.write_text(SPEECHBRAIN_LABEL_FILE)
    encoder = CTCTextEncoder.from_saved(path)
    assert encoder.lab2ind == {"<blank>": 0, "a": 1, "'": 2, " ": 3, "<bos>": 4}
    assert encoder.get_blank_index() == 0 and encoder.get_eos_index() == 4
    assert encoder.unk_label == "<unk>"
    encoder.save(tmp_path / "again.txt")
    assert (tmp_path / "again.txt").read_text() == SPEECHBRAIN_LABEL_FILE


def test_malformed_label_file_names_the_line(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("'a' => 0\nb 1\n")
    with pytest.raises(ValueError, match="labels.txt, line 2"):
        CategoricalEncoder().load(path)


def test_load_or_create_builds_once_from_a_dataset_then_loads(tmp_path):
    dataset = DynamicItemDataset({"u1": {"spk": "s2"}, "u2": {"spk": "s1"}, "u3": {"spk": "s2"}})
    path = tmp_path / "spk.txt"
    first = CategoricalEncoder()
    first.load_or_create(path, from_didatasets=[dataset], output_key="spk")
    assert first.lab2ind == {"s2": 0, "s1": 1} and path.exists()
    second = CategoricalEncoder()
    second.load_or_create(path, from_iterables=[["other"]])
    assert second.lab2ind == first.lab2ind  # loaded, not rebuilt


def test_special_labels_are_indices_inserted_after_the_data_labels(tmp_path):
    encoder = CTCTextEncoder()
    encoder.load_or_create(
        tmp_path / "chars.txt",
        from_iterables=[["hel"]],
        sequence_input=True,
        special_labels={"blank_label": 0, "bos_label": 1, "eos_label": 2},
    )
    # the data's h, e, l came first at 0, 1, 2 and were moved for the specials
    assert encoder.lab2ind == {"<blank>": 0, "<bos>": 1, "<eos>": 2, "h": 3, "e": 4, "l": 5}
    assert encoder.get_blank_index() == 0 and encoder.get_bos_index() == 1
    assert encoder.get_eos_index() == 2
    tokens = encoder.encode_sequence_torch("hell")
    with_bos = encoder.prepend_bos_index(tokens)
    assert with_bos.tolist() == [1, *tokens.tolist()] and with_bos.dtype == torch.int64
    assert encoder.append_eos_index([3]) == [3, 2]
    assert encoder.prepend_bos_label(["h"]) == ["<bos>", "h"]
    assert encoder.append_eos_label(["h"]) == ["h", "<eos>"]
    assert encoder.decode_text(torch.cat([with_bos, torch.tensor([0, 2])])) == "hell"
    reloaded = CTCTextEncoder.from_saved(tmp_path / "chars.txt")
    assert reloaded.lab2ind == encoder.lab2ind and reloaded.blank_label == "<blank>"
    with pytest.raises(TypeError, match="both bos_label and eos_label"):
        TextEncoder(bos_label=0)


def test_text_encoders_take_sequences_by_default_and_add_or_insert_bos_eos():
    encoder = TextEncoder()
    encoder.update_from_iterable([["encode", "this", "textencoder"], ["foo", "bar"]])
    encoder.expect_len(5)
    assert encoder.encode_label("this") == 1
    encoder.add_bos_eos()
    encoder.expect_len(7)
    assert encoder.lab2ind["<eos>"] == 6 and encoder.get_bos_index() == 5
    same = TextEncoder()
    same.update_from_iterable([["a", "b"]])
    same.add_bos_eos("<s>", "<s>")  # one sentence-boundary label
    assert len(same) == 3 and same.get_bos_index() == same.get_eos_index() == 2
    counts = TextEncoder().limited_labelset_from_iterable([["a", "b", "a"], ["c", "a", "b"]])
    assert counts == {"a": 3, "b": 2, "c": 1}
    limited = TextEncoder()
    limited.limited_labelset_from_iterable([["a", "b", "a"], ["c", "a", "b"]], min_count=2)
    assert limited.lab2ind == {"a": 0, "b": 1}


def test_ctc_collapsing_and_blank_placement():
    encoder = CTCTextEncoder()
    encoder.update_from_iterable(["a", "b", "c", "d"])
    encoder.add_blank()
    encoder.expect_len(5)
    assert encoder.get_blank_index() == 4
    assert encoder.decode_ndim([0, 1, 2, 3, 4]) == ["a", "b", "c", "d", "<blank>"]
    assert encoder.collapse_labels(["a", "a", "<blank>", "a", "b"]) == ["a", "a", "b"]
    assert encoder.collapse_labels(["a", "a", "b"], merge_repeats=False) == ["a", "a", "b"]
    assert encoder.collapse_indices_ndim([[4, 4, 0, 1, 1, 4], [2, 2]]) == [[0, 1], [2]]


def test_missing_special_labels_explain_what_to_call():
    encoder = CTCTextEncoder()
    with pytest.raises(RuntimeError, match="no bos_label; call add_bos_eos"):
        encoder.get_bos_index()
    with pytest.raises(KeyError, match="no eos_label"):
        encoder.append_eos_index([1])
    with pytest.raises(RuntimeError, match="no blank_label; call add_blank"):
        encoder.get_blank_index()


def test_expect_len_checks_the_label_count_when_encoding(caplog):
    encoder = CategoricalEncoder()
    encoder.update_from_iterable("abcd")
    with caplog.at_level("WARNING"):
        assert encoder.encode_label("a") == 0  # never told: warns once, then trusts it
        encoder.encode_label("b")
    assert caplog.text.count("expect_len was never called") == 1
    encoder.expect_len(3)
    with pytest.raises(RuntimeError, match=r"\.expect_len\(3\) was called, but 4 categories"):
        encoder.encode_label("a")


def test_an_encoder_is_a_checkpoint_recoverable(tmp_path):
    from speechlobes.checkpoints import Checkpointer

    encoder = CategoricalEncoder()
    encoder.update_from_iterable(["x", "y"])
    Checkpointer(tmp_path, {"labels": encoder}).save_checkpoint()
    restored = CategoricalEncoder()
    Checkpointer(tmp_path, {"labels": restored}).recover_if_possible()
    assert restored.lab2ind == {"x": 0, "y": 1}
    assert load_text_encoder_tokens(next(tmp_path.glob("CKPT+*")) / "labels.ckpt") == ["x", "y"]


def test_multi_label_encoder_encodes_multi_hot_and_decodes_top_k(tmp_path):
    encoder = MultiLabelEncoder()
    encoder.update_from_iterable([["Speech", "Music"], ["Dog", "Speech"]], sequence_input=True)
    assert encoder.encode_labels(["Dog", "Speech"]).tolist() == [1.0, 0.0, 1.0]
    assert encoder.encode_labels("Music, Dog").tolist() == [0.0, 1.0, 1.0]
    scores = torch.tensor([[0.2, 0.9, 0.6], [0.7, 0.1, 0.3]])
    assert encoder.decode_multi_hot(scores) == [["Music", "Dog"], ["Speech"]]
    top = encoder.decode_topk(scores, k=2)
    assert [[label for label, _ in row] for row in top] == [["Music", "Dog"], ["Speech", "Dog"]]
    assert top[0][0][1] == pytest.approx(0.9)
    with pytest.raises(KeyError, match="label 'Cat'"):
        encoder.encode_labels(["Cat"])
    encoder.save(tmp_path / "tags.txt")
    loaded = MultiLabelEncoder()
    loaded.load(tmp_path / "tags.txt")
    assert loaded.encode_labels("Speech").tolist() == [1.0, 0.0, 0.0]
