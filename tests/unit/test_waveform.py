"""Waveform normalisation (``normalize_waveforms``) through its one user-facing class, the
feature extractor, against transformers' outputs saved in the fixture."""

from pathlib import Path

import pytest
import torch

from speechlobes.processing.waveform import normalize_waveforms
from speechlobes.processors.feature_extraction import Wav2Vec2FeatureExtractor

FOLDER = Path(__file__).parents[1] / "fixtures" / "hf" / "feature_extractor"


@pytest.fixture(scope="module")
def cases():
    return torch.load(FOLDER / "cases.pt", weights_only=True)


@pytest.fixture(scope="module")
def raws(cases):
    return [cases[f"raw_{i}"] for i in range(3)]


def extract(raws, pad_to_multiple_of=None, **config):
    extractor = Wav2Vec2FeatureExtractor(**{"return_attention_mask": True, **config})
    return extractor(raws, padding=True, pad_to_multiple_of=pad_to_multiple_of, return_tensors="pt")


def test_masked_batch_matches_reference(cases, raws):
    batch = Wav2Vec2FeatureExtractor.from_pretrained(FOLDER)(
        raws, padding=True, return_tensors="pt"
    )
    torch.testing.assert_close(batch.input_values, cases["input_values"], atol=1e-5, rtol=0)
    assert torch.equal(batch.attention_mask, cases["attention_mask"])
    assert batch.attention_mask.dtype == torch.int32


def test_without_mask_statistics_cover_the_padded_row(cases, raws):
    batch = extract(raws, return_attention_mask=False)
    assert "attention_mask" not in batch
    torch.testing.assert_close(batch.input_values, cases["input_values_nomask"], atol=1e-5, rtol=0)


def test_without_normalisation_only_pads(cases, raws):
    batch = extract(raws, do_normalize=False)
    assert torch.equal(batch.input_values, cases["input_values_nonorm"])


def test_pad_to_multiple_of(cases, raws):
    batch = extract(raws, pad_to_multiple_of=256)
    torch.testing.assert_close(batch.input_values, cases["input_values_pad256"], atol=1e-5, rtol=0)
    assert torch.equal(batch.attention_mask, cases["attention_mask_pad256"])


@pytest.mark.parametrize("index", [0, 1, 2])
def test_single_unpadded_call_equals_reference(cases, raws, index):
    single = Wav2Vec2FeatureExtractor()(raws[index], return_tensors="pt").input_values[0]
    torch.testing.assert_close(single, cases[f"input_values_single_{index}"], atol=1e-5, rtol=0)


def test_normalize_waveforms_is_invariant_to_padding_amount():
    wav = torch.randn(1, 500) * 4 + 2
    short = normalize_waveforms(wav, torch.tensor([500]))
    padded = normalize_waveforms(torch.cat([wav, torch.zeros(1, 300)], 1), torch.tensor([500]))
    torch.testing.assert_close(padded[:, :500], short)
    assert padded[:, 500:].abs().max() == 0


def test_wrong_sampling_rate_is_rejected(raws):
    with pytest.raises(ValueError, match="8000 Hz"):
        Wav2Vec2FeatureExtractor()(raws, sampling_rate=8000)
