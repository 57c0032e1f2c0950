"""PaddedBatch pads tensors to the batch maximum, keeps relative lengths, and moves as a unit."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from speechlobes.dataio.batch import PaddedBatch, PaddedData, batch_pad_right, undo_padding
from speechlobes.dataio.dataset import DynamicItemDataset


def examples():
    return [
        {"id": "a", "sig": torch.arange(1.0, 5.0), "tokens": torch.tensor([3, 4]), "n": 2},
        {"id": "b", "sig": torch.arange(1.0, 3.0), "tokens": torch.tensor([5, 6, 7]), "n": 3},
    ]


def test_tensors_are_right_padded_with_relative_lengths():
    batch = PaddedBatch(examples())
    assert torch.equal(batch.sig.data, torch.tensor([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 0.0, 0.0]]))
    assert torch.equal(batch.sig.lengths, torch.tensor([1.0, 0.5]))
    assert torch.equal(batch.tokens.data, torch.tensor([[3, 4, 0], [5, 6, 7]]))
    assert batch.tokens.data.dtype == torch.int64
    torch.testing.assert_close(batch.tokens.lengths, torch.tensor([2 / 3, 1.0]))
    assert batch.tokens.abs_lengths.tolist() == [2, 3]
    assert batch.tokens.abs_lengths.dtype == torch.int64


def test_numbers_are_stacked_text_stays_lists_and_fields_read_by_key_and_attribute():
    batch = PaddedBatch(examples())
    assert batch.id == ["a", "b"] and torch.equal(batch["n"], torch.tensor([2, 3]))
    assert batch["sig"] is batch.sig
    assert len(batch) == batch.batchsize == 2
    assert batch.keys() == ["id", "sig", "tokens", "n"]
    with pytest.raises(KeyError, match="no field 'wav'"):
        batch["wav"]


def test_iteration_unpacks_fields_in_key_order():
    batch = PaddedBatch(examples())
    ids, (sigs, sig_lens), tokens, counts = batch
    assert ids == ["a", "b"] and sigs.shape == (2, 4) and counts.tolist() == [2, 3]
    assert isinstance(tokens, PaddedData) and batch.at_position(1) is batch.sig


def test_every_differing_dimension_is_padded_and_lengths_follow_dim_zero():
    features = [torch.ones(3, 2), torch.ones(5, 4) * 2, torch.ones(1, 3) * 3]
    padded, lengths = batch_pad_right(features, value=-1.0)
    assert padded.shape == (3, 5, 4)
    assert torch.equal(padded[0, :3, :2], torch.ones(3, 2)) and (padded[0, 3:] == -1).all()
    assert (padded[0, :, 2:] == -1).all() and (padded[2, :1, :3] == 3).all()
    torch.testing.assert_close(lengths, torch.tensor([0.6, 1.0, 0.2]))


def test_padding_value_and_explicit_padded_keys():
    batch = PaddedBatch(examples(), padded_keys=["tokens"], padding_kwargs={"value": -100})
    assert batch.tokens.data[0].tolist() == [3, 4, -100]
    assert isinstance(batch.sig, list)  # not in padded_keys


def test_numpy_arrays_are_padded_and_scalar_tensors_stacked():
    batch = PaddedBatch(
        [
            {"feat": np.ones(3, dtype=np.float32), "label": torch.tensor(1)},
            {"feat": np.ones(2, dtype=np.float32), "label": torch.tensor(0)},
        ]
    )
    assert batch.feat.data.tolist() == [[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]]
    assert torch.equal(batch.label, torch.tensor([1, 0]))


def test_examples_with_different_keys_are_refused():
    with pytest.raises(ValueError, match="example 'b' has keys \\['id'\\]"):
        PaddedBatch([{"id": "a", "x": 1}, {"id": "b"}])


def test_to_moves_tensor_fields_and_keeps_lists():
    batch = PaddedBatch(examples()).to(torch.float64)
    assert batch.sig.data.dtype == torch.float64 and batch.sig.lengths.dtype == torch.float64
    assert batch.tokens.data.dtype == torch.float64 and batch.id == ["a", "b"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinning memory needs an accelerator")
def test_pin_memory_pins_every_tensor_field():
    batch = PaddedBatch(examples()).pin_memory()
    assert batch.sig.data.is_pinned() and batch.sig.lengths.is_pinned()


def test_collates_a_dynamic_item_dataset_through_a_dataloader():
    data = {f"u{i}": {"size": i + 1} for i in range(4)}
    dataset = DynamicItemDataset(data, output_keys=["id", "sig"])
    dataset.add_dynamic_item(lambda size: torch.full((size,), float(size)), "size", "sig")
    batches = list(DataLoader(dataset, batch_size=3, collate_fn=PaddedBatch))
    assert [batch.id for batch in batches] == [["u0", "u1", "u2"], ["u3"]]
    assert batches[0].sig.abs_lengths.tolist() == [1, 2, 3]
    assert batches[1].sig.lengths.tolist() == [1.0]


def test_field_names_clashing_with_batch_methods_or_unpaddable_keys_are_refused():
    with pytest.raises(ValueError, match="field 'to' clashes with a PaddedBatch attribute"):
        PaddedBatch([{"to": torch.ones(2)}])
    with pytest.raises(ValueError, match="field 'id' is in padded_keys but not every value"):
        PaddedBatch([{"id": "a"}], padded_keys=["id"])


def test_nonpadded_values_stack_like_speechbrain_and_can_stay_lists():
    batch = PaddedBatch(
        [
            {"spk": torch.tensor([1]), "dur": 1.5, "ok": True, "words": ["a"], "v": torch.ones(2)},
            {
                "spk": torch.tensor([2]),
                "dur": 2.0,
                "ok": False,
                "words": ["b", "c"],
                "v": torch.ones(3),
            },
        ],
        padded_keys=[],
    )
    assert torch.equal(batch.spk, torch.tensor([[1], [2]]))  # equal shapes: stacked
    assert batch.dur.dtype == torch.float64 and batch.dur.tolist() == [1.5, 2.0]
    assert batch.ok.tolist() == [True, False] and batch.words == [["a"], ["b", "c"]]
    assert isinstance(batch.v, list) and len(batch.v) == 2  # unequal shapes: a list
    assert batch.to(torch.float16).v[1].dtype == torch.float16  # lists of tensors move too
    plain = PaddedBatch([{"n": 1}, {"n": 2}], nonpadded_stack=False)
    assert plain.n == [1, 2]


def test_per_key_padding_and_a_custom_padding_function():
    batch = PaddedBatch(
        examples(), padding_kwargs={"value": 9}, per_key_padding_kwargs={"tokens": {"value": -100}}
    )
    assert batch.tokens.data[0].tolist() == [3, 4, -100] and batch.sig.data[1, 3].item() == 9

    def pad_left(tensors, value=0):
        longest = max(len(t) for t in tensors)
        rows = [torch.cat([t.new_full((longest - len(t),), value), t]) for t in tensors]
        return torch.stack(rows), torch.tensor([len(t) / longest for t in tensors])

    left = PaddedBatch(examples(), padded_keys=["tokens"], padding_func=pad_left)
    assert left.tokens.data.tolist() == [[0, 3, 4], [5, 6, 7]]


def test_default_convert_can_be_turned_off():
    array = [{"x": np.ones(2)}, {"x": np.zeros(2)}]
    assert isinstance(PaddedBatch(array).x, PaddedData)
    kept = PaddedBatch(array, apply_default_convert=False, nonpadded_stack=False)
    assert isinstance(kept.x, list) and isinstance(kept.x[0], np.ndarray)


def test_non_constant_padding_modes_and_single_examples():
    padded, lengths = batch_pad_right(
        [torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 4.0, 5.0]])], mode="replicate"
    )
    assert padded.tolist() == [[[1.0, 2.0, 2.0]], [[3.0, 4.0, 5.0]]] and lengths.tolist() == [
        1.0,
        1.0,
    ]
    one, one_length = batch_pad_right([torch.ones(4)])
    assert one.shape == (1, 4) and one_length.tolist() == [1.0]
    with pytest.raises(IndexError):
        batch_pad_right([])


def test_undo_padding_cuts_rows_to_their_lengths():
    tokens = PaddedBatch(examples()).tokens
    assert undo_padding(tokens.data, tokens.lengths) == [[3, 4], [5, 6, 7]]
