"""Fbank against torchaudio's Kaldi golden values; spectrogram and mel against oracles."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from speechlobes.processing.features import (
    KALDI_LOG_FLOOR,
    Fbank,
    MelSpectrogram,
    Spectrogram,
    frame_signal,
    mel_filterbank,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SIGNALS = ["dc", "silence", "sine", "short"]
# name -> (Fbank options, input scale), as listed in tests/fixtures/fbank/README.md
OPTION_SETS = {
    "fbank128": (dict(num_mel_bins=128), 2.0**15),
    "fbank80": (dict(num_mel_bins=80), 1.0),
    "fbank40opt": (
        dict(
            num_mel_bins=40,
            window_type="hamming",
            snip_edges=False,
            use_energy=True,
            energy_floor=1e-4,
            remove_dc_offset=False,
            low_freq=60.0,
            high_freq=-400.0,
        ),
        1.0,
    ),
}


@pytest.fixture(scope="module")
def golden():
    return torch.load(FIXTURES / "fbank" / "cases.pt", weights_only=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("option_set", list(OPTION_SETS))
@pytest.mark.parametrize("signal", SIGNALS)
def test_fbank_matches_torchaudio_kaldi_golden_values(golden, option_set, signal, dtype):
    options, scale = OPTION_SETS[option_set]
    expected = golden[f"{option_set}_{signal}"]
    features = Fbank(**options)(golden[f"wav_{signal}"].to(dtype) * scale)
    assert features.dtype == dtype
    assert features.shape == expected.shape
    torch.testing.assert_close(features.float(), expected, atol=1e-3, rtol=0)


def test_fbank_keeps_empty_mel_bin_of_128_bank_at_log_floor(golden):
    features = Fbank(num_mel_bins=128)(golden["wav_sine"] * 2**15)
    assert torch.all(features[:, 3] == math.log(KALDI_LOG_FLOOR))
    assert torch.all(features[:, [2, 4]] > 0.0)


@pytest.mark.parametrize("option_set", ["fbank80", "fbank40opt"])
def test_fbank_batch_gives_each_row_its_own_features(golden, option_set):
    options, scale = OPTION_SETS[option_set]
    sine = golden["wav_sine"] * scale
    batch = torch.stack([sine, golden["wav_dc"][: sine.numel()] * scale])
    features = Fbank(**options)(batch)
    torch.testing.assert_close(features[0], golden[f"{option_set}_sine"], atol=1e-3, rtol=0)
    single = Fbank(**options)(batch[1])
    torch.testing.assert_close(features[1], single, atol=1e-5, rtol=0)


def test_fbank_reproduces_beats_reference_preprocessing():
    cases = torch.load(FIXTURES / "beats" / "cases.pt", weights_only=True)
    features = Fbank(num_mel_bins=128)(cases["wav"] * 2**15)
    normalised = (features - 15.41663) / (2 * 6.55582)
    torch.testing.assert_close(normalised, cases["fbank"], atol=1e-4, rtol=0)


@pytest.mark.parametrize("snip_edges", [True, False])
def test_fbank_num_frames_matches_forward_for_every_length(snip_edges):
    fbank = Fbank(num_mel_bins=23, snip_edges=snip_edges)
    lengths = [1, 80, 159, 399, 400, 401, 559, 560, 561, 1234, 4000]
    if snip_edges:
        lengths = lengths[3:]
    for length in lengths:
        assert fbank(torch.randn(length)).shape[0] == fbank.num_frames(length), length
    counts = fbank.num_frames(torch.tensor(lengths))
    assert counts.tolist() == [fbank.num_frames(n) for n in lengths]


def test_fbank_snip_edges_gives_no_frame_for_too_short_input():
    assert Fbank().num_frames(399) == 0
    assert Fbank()(torch.randn(2, 399)).shape == (2, 0, 80)


def test_fbank_snip_edges_false_mirrors_edges_repeating_edge_sample():
    wav = torch.arange(10.0)
    frames = frame_signal(wav, 6, 4, pad_left=3, pad_right=5, pad_mode="symmetric")
    assert frames[0].tolist() == [2.0, 1.0, 0.0, 0.0, 1.0, 2.0]
    assert frames[-1].tolist() == [9.0, 9.0, 8.0, 7.0, 6.0, 5.0]


def test_fbank_dither_is_reproducible_with_a_generator_and_random_without():
    fbank = Fbank(dither=1.0)
    wav = torch.randn(1600) * 100
    first = fbank(wav, generator=torch.Generator().manual_seed(0))
    second = fbank(wav, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(first, second, atol=0, rtol=0)
    assert not torch.equal(first, fbank(wav, generator=torch.Generator().manual_seed(1)))
    assert not torch.equal(first, Fbank()(wav))


def test_fbank_windows_match_torch_symmetric_windows():
    for name, reference in [
        ("hanning", torch.hann_window(400, periodic=False, dtype=torch.float64)),
        ("hamming", torch.hamming_window(400, periodic=False, dtype=torch.float64)),
        ("blackman", torch.blackman_window(400, periodic=False, dtype=torch.float64)),
        ("povey", torch.hann_window(400, periodic=False, dtype=torch.float64) ** 0.85),
        ("rectangular", torch.ones(400, dtype=torch.float64)),
    ]:
        torch.testing.assert_close(Fbank(window_type=name).window, reference, atol=1e-12, rtol=0)


def test_fbank_energy_column_is_log_frame_energy_first_or_last_with_htk_compat():
    wav = torch.randn(2000, dtype=torch.float64)
    options = dict(num_mel_bins=10, use_energy=True, remove_dc_offset=False, energy_floor=0.0)
    kaldi = Fbank(**options)(wav)
    htk = Fbank(htk_compat=True, **options)(wav)
    expected = wav[:400].square().sum().log()
    torch.testing.assert_close(kaldi[0, 0], expected)
    torch.testing.assert_close(htk[:, -1], kaldi[:, 0])
    torch.testing.assert_close(htk[:, :-1], kaldi[:, 1:])
    windowed = Fbank(raw_energy=False, **options)(wav)
    assert windowed[0, 0] < kaldi[0, 0]


def test_fbank_linear_outputs_of_a_bin_centred_cosine_are_hand_computable():
    # Rectangular 400-point frames, no DC removal or pre-emphasis, FFT size 400: a cosine of
    # amplitude 2 at FFT bin 40 (1600 Hz) has |X[40]| = 400 and nothing elsewhere.
    options = dict(
        num_mel_bins=12,
        window_type="rectangular",
        round_to_power_of_two=False,
        remove_dc_offset=False,
        preemphasis_coefficient=0.0,
        use_log_fbank=False,
    )
    wav = 2.0 * torch.cos(2 * math.pi * 1600.0 * torch.arange(800, dtype=torch.float64) / 16000)
    power = Fbank(**options)(wav)
    magnitude = Fbank(use_power=False, **options)(wav)
    weights = Fbank(**options).mel_matrix[40]
    torch.testing.assert_close(power, (400.0**2 * weights).expand_as(power), atol=1e-6, rtol=1e-9)
    torch.testing.assert_close(magnitude, (400.0 * weights).expand_as(magnitude))
    logged = Fbank(**{**options, "use_log_fbank": True})(wav)
    torch.testing.assert_close(logged, power.clamp_min(KALDI_LOG_FLOOR).log())


def test_fbank_rejects_bad_input_with_clear_errors():
    with pytest.raises(ValueError, match="high_freq"):
        Fbank(low_freq=9000.0)
    with pytest.raises(ValueError, match="window_type"):
        Fbank(window_type="kaiser")
    with pytest.raises(ValueError, match=r"\(batch, time\)"):
        Fbank()(torch.randn(1, 2, 800))
    with pytest.raises(TypeError, match="floating"):
        Fbank()(torch.ones(800, dtype=torch.int16))


def test_features_ignore_autocast_and_upcast_half_precision_input():
    wav = torch.randn(2, 4000) * 2**15
    for module in (Fbank(), MelSpectrogram(log=True)):
        expected = module(wav)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            under_amp = module(wav)
        assert under_amp.dtype == torch.float32
        torch.testing.assert_close(under_amp, expected, atol=0, rtol=0)
        assert module(wav.half()).dtype == torch.float32


def test_fbank_runs_on_meta_device_without_cpu_only_tensors():
    fbank = Fbank(snip_edges=False).to("meta")
    assert fbank(torch.empty(2, 1600, device="meta")).shape == (2, 10, 80)


@pytest.mark.parametrize("mel_scale", ["htk", "slaney"])
@pytest.mark.parametrize("norm", [None, "slaney"])
@pytest.mark.parametrize("triangles_in_mel", [False, True])
@pytest.mark.oracle("transformers")
def test_mel_filterbank_matches_transformers_audio_utils(mel_scale, norm, triangles_in_mel):
    from transformers import audio_utils

    expected = audio_utils.mel_filter_bank(
        257, 40, 20.0, 7600.0, 16000, norm, mel_scale, triangularize_in_mel_space=triangles_in_mel
    )
    freqs = torch.linspace(0, 8000, 257, dtype=torch.float64)
    banks = mel_filterbank(freqs, 40, 20.0, 7600.0, mel_scale, norm, triangles_in_mel)
    np.testing.assert_allclose(banks.numpy(), expected, atol=1e-9, rtol=1e-7)


def test_spectrogram_equals_torch_stft_power():
    wav = torch.randn(2, 3000, dtype=torch.float64)
    window = torch.hann_window(300, dtype=torch.float64)
    stft = torch.stft(wav, 512, 128, 300, window, center=True, return_complex=True)
    expected = stft.abs().square().transpose(1, 2)
    spectrogram = Spectrogram(n_fft=512, win_length=300, hop_length=128)
    torch.testing.assert_close(spectrogram(wav), expected)
    assert spectrogram.num_frames(3000) == expected.shape[1]
    magnitude = Spectrogram(n_fft=512, hop_length=128, power=1.0, center=False)(wav[0])
    assert magnitude.shape == (1 + (3000 - 512) // 128, 257)


def test_mel_spectrogram_is_mel_matrix_times_power_spectrum_and_logs_with_floor():
    wav = torch.randn(2, 4000, dtype=torch.float64)
    mel = MelSpectrogram(sample_rate=16000, n_fft=512, hop_length=160, n_mels=30)
    freqs = torch.linspace(0, 8000, 257, dtype=torch.float64)
    expected = Spectrogram(n_fft=512, hop_length=160)(wav) @ mel_filterbank(freqs, 30, 0.0, 8000.0)
    torch.testing.assert_close(mel(wav), expected)
    log_mel = MelSpectrogram(n_fft=512, hop_length=160, n_mels=30, log=True, log_floor=1e-6)
    torch.testing.assert_close(log_mel(wav), expected.clamp_min(1e-6).log())
    assert log_mel(torch.zeros(4000)).eq(math.log(1e-6)).all()
