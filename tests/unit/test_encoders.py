"""Label encoders: index maps, unknown labels, special labels, multi-hot, save/load round trips."""

import pytest
import torch

from speechlobes.dataio.dataset import DynamicItemDataset
from speechlobes.dataio.encoders import CategoricalEncoder, MultiLabelEncoder, TextEncoder

# A label file as SpeechBrain writes it (CTCTextEncoder with blank, bos/eos and unk).
SPEECHBRAIN_LABEL_FILE = """'<blank>' => 0
'a' => 1
"'" => 2
' ' => 3
'<bos>' => 4
================
'starting_index' => 0
'unk_label' => '<unk>'
'blank_label' => '<blank>'
'bos_label' => '<bos>'
'eos_label' => '<bos>'
"""


def test_labels_get_indices_in_order_of_first_appearance():
    encoder = CategoricalEncoder(starting_index=2)
    encoder.update_from_iterable([["b", "a"], ["b", "c"]], sequence_input=True)
    assert encoder.lab2ind == {"b": 2, "a": 3, "c": 4}
    assert encoder.encode_sequence_torch(["c", "a"]).tolist() == [4, 3]
    assert encoder.encode_label_torch("b").tolist() == [2]
    assert encoder.decode_ndim(torch.tensor([[2, 3], [4, 4]])) == [["b", "a"], ["c", "c"]]
    assert encoder.decode_torch(torch.tensor([4, 2])) == ["c", "b"]


def test_unknown_label_is_an_error_naming_it_unless_unk_is_set():
    encoder = CategoricalEncoder()
    encoder.update_from_iterable(["yes", "no"])
    with pytest.raises(KeyError, match="label 'maybe' is not in the encoder"):
        encoder.encode_label("maybe")
    encoder.add_unk("<unk>")
    assert encoder.encode_label("maybe") == 2
    with pytest.raises(KeyError, match="'maybe'"):
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
    encoder = TextEncoder()
    encoder.load(path)
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


def test_text_encoder_specials_and_text_decoding(tmp_path):
    encoder = TextEncoder()
    encoder.load_or_create(
        tmp_path / "chars.txt",
        from_iterables=[["hello world"]],
        sequence_input=True,
        special_labels={"blank_label": "<b>", "bos_label": "<s>", "eos_label": "</s>"},
    )
    assert encoder.get_blank_index() == 0 and encoder.get_bos_index() == 1
    assert encoder.get_eos_index() == 2 and encoder.encode_label("h") == 3
    tokens = encoder.encode_sequence_torch("hold")
    with_bos = encoder.prepend_bos_index(tokens)
    assert with_bos.tolist() == [1, *tokens.tolist()]
    assert encoder.append_eos_index([3]) == [3, 2]
    assert encoder.prepend_bos_label(["h"]) == ["<s>", "h"]
    assert encoder.append_eos_label(["h"]) == ["h", "</s>"]
    assert encoder.decode_text(torch.cat([with_bos, torch.tensor([0, 2])])) == "hold"


def test_text_encoder_without_bos_explains_what_to_call():
    encoder = TextEncoder()
    with pytest.raises(KeyError, match="no bos_label; call add_bos_eos"):
        encoder.get_bos_index()


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
