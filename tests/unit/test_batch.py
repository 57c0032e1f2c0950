"""PaddedBatch pads tensors to the batch maximum, keeps relative lengths, and moves as a unit."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from speechlobes.dataio.batch import PaddedBatch, PaddedData, pad_right
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


def test_non_tensor_fields_stay_lists_and_access_by_key_and_attribute():
    batch = PaddedBatch(examples())
    assert batch.id == ["a", "b"] and batch["n"] == [2, 3]
    assert batch["sig"] is batch.sig
    assert len(batch) == batch.batchsize == 2
    assert batch.keys() == ["id", "sig", "tokens", "n"]
    with pytest.raises(KeyError, match="no field 'wav'"):
        batch["wav"]


def test_iteration_unpacks_fields_in_key_order():
    ids, (sigs, sig_lens), tokens, counts = PaddedBatch(examples())
    assert ids == ["a", "b"] and sigs.shape == (2, 4) and counts == [2, 3]
    assert isinstance(tokens, PaddedData)


def test_every_differing_dimension_is_padded_and_lengths_follow_dim_zero():
    features = [torch.ones(3, 2), torch.ones(5, 4) * 2, torch.ones(1, 3) * 3]
    padded, lengths = pad_right(features, value=-1.0)
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
