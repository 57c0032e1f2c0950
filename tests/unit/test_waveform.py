from pathlib import Path

import pytest
import torch

from speechlobes.processing.waveform import WaveformNormalizer, normalize_waveforms

FOLDER = Path(__file__).parents[1] / "fixtures" / "hf" / "feature_extractor"


@pytest.fixture(scope="module")
def cases():
    return torch.load(FOLDER / "cases.pt", weights_only=True)


@pytest.fixture(scope="module")
def raws(cases):
    return [cases[f"raw_{i}"] for i in range(3)]


def test_masked_batch_matches_reference(cases, raws):
    batch = WaveformNormalizer.from_pretrained(FOLDER)(raws)
    torch.testing.assert_close(batch.input_values, cases["input_values"], atol=1e-5, rtol=0)
    assert torch.equal(batch.attention_mask, cases["attention_mask"])
    assert batch.attention_mask.dtype == torch.int32


def test_without_mask_statistics_cover_the_padded_row(cases, raws):
    batch = WaveformNormalizer(return_attention_mask=False)(raws)
    assert batch.attention_mask is None
    torch.testing.assert_close(batch.input_values, cases["input_values_nomask"], atol=1e-5, rtol=0)


def test_without_normalisation_only_pads(cases, raws):
    batch = WaveformNormalizer(do_normalize=False)(raws)
    assert torch.equal(batch.input_values, cases["input_values_nonorm"])


def test_pad_to_multiple_of(cases, raws):
    batch = WaveformNormalizer()(raws, pad_to_multiple_of=256)
    torch.testing.assert_close(batch.input_values, cases["input_values_pad256"], atol=1e-5, rtol=0)
    assert torch.equal(batch.attention_mask, cases["attention_mask_pad256"])


@pytest.mark.parametrize("index", [0, 1, 2])
def test_single_unpadded_call_equals_reference(cases, raws, index):
    single = WaveformNormalizer()(raws[index]).input_values[0]
    torch.testing.assert_close(single, cases[f"input_values_single_{index}"], atol=1e-5, rtol=0)


def test_normalize_waveforms_is_invariant_to_padding_amount():
    wav = torch.randn(1, 500) * 4 + 2
    short = normalize_waveforms(wav, torch.tensor([500]))
    padded = normalize_waveforms(torch.cat([wav, torch.zeros(1, 300)], 1), torch.tensor([500]))
    torch.testing.assert_close(padded[:, :500], short)
    assert padded[:, 500:].abs().max() == 0


def test_wrong_sampling_rate_is_rejected(raws):
    with pytest.raises(ValueError, match="8000 Hz"):
        WaveformNormalizer()(raws, sampling_rate=8000)
