"""Resampling quality against soxr, lengths, batching, dtypes and kernel caching."""

import math

import numpy as np
import pytest
import soxr
import torch

from speechlobes.processing.resample import _polyphase_kernel, resample

RATE_PAIRS = [(44100, 16000), (48000, 16000), (8000, 16000), (22050, 16000)]
PASS_BAND = 0.8  # fraction of the lower Nyquist rate


def _snr_db(ours: np.ndarray, reference: np.ndarray, margin: int) -> float:
    ours, reference = ours[margin:-margin], reference[margin:-margin]
    return 10 * math.log10((reference**2).sum() / ((ours - reference) ** 2).sum())


def _pass_band_signals(orig_sr: int, new_sr: int) -> dict[str, np.ndarray]:
    """Tones across the pass band and a linear sine sweep 20 Hz -> 0.8 x Nyquist, 1 s each."""
    time = np.arange(orig_sr) / orig_sr
    top = PASS_BAND * min(orig_sr, new_sr) / 2
    signals = {
        f"tone {frac:.2f}": np.sin(2 * np.pi * frac * top * time) for frac in (0.05, 0.5, 1.0)
    }
    signals["sweep"] = np.sin(2 * np.pi * (20 * time + (top - 20) * time**2 / 2))
    return signals


@pytest.mark.oracle("soxr")
@pytest.mark.parametrize(("orig_sr", "new_sr"), RATE_PAIRS)
def test_resample_agrees_with_soxr_to_60_db_in_the_pass_band(orig_sr, new_sr):
    report = []
    for name, signal in _pass_band_signals(orig_sr, new_sr).items():
        ours = resample(torch.from_numpy(signal), orig_sr, new_sr).numpy()
        reference = soxr.resample(signal, orig_sr, new_sr, quality="VHQ")
        snr = _snr_db(ours[: len(reference)], reference, margin=new_sr // 20)
        report.append(f"{name}: {snr:.1f} dB")
        assert snr >= 60.0, f"{orig_sr} -> {new_sr} Hz, {name}: SNR {snr:.1f} dB"
    print(f"{orig_sr} -> {new_sr} Hz SNR against soxr VHQ: " + ", ".join(report))


@pytest.mark.parametrize(("orig_sr", "new_sr"), [(44100, 16000), (48000, 16000)])
def test_resample_rejects_aliases_above_the_new_nyquist_rate(orig_sr, new_sr):
    time = torch.arange(orig_sr, dtype=torch.float64) / orig_sr
    alias = torch.sin(2 * math.pi * 1.1 * new_sr / 2 * time)
    out = resample(alias, orig_sr, new_sr)[new_sr // 20 : -new_sr // 20]
    assert 10 * math.log10(out.square().mean() / 0.5) < -80.0


@pytest.mark.parametrize(("orig_sr", "new_sr"), RATE_PAIRS + [(16000, 44100), (16000, 8000)])
def test_resample_length_is_ceil_of_scaled_length(orig_sr, new_sr):
    for num_samples in [1, 2, 3, 147, 441, 1000, 12345]:
        out = resample(torch.randn(num_samples), orig_sr, new_sr)
        assert out.shape == (math.ceil(num_samples * new_sr / orig_sr),)


def test_resample_treats_every_leading_row_independently():
    wav = torch.randn(2, 3, 4410, dtype=torch.float64)
    out = resample(wav, 44100, 16000)
    assert out.shape == (2, 3, 1600)
    torch.testing.assert_close(out[1, 2], resample(wav[1, 2], 44100, 16000))


def test_resample_float32_follows_float64_and_keeps_dtype():
    wav = torch.randn(8000, dtype=torch.float64)
    double = resample(wav, 8000, 16000)
    single = resample(wav.float(), 8000, 16000)
    assert single.dtype == torch.float32
    torch.testing.assert_close(single.double(), double, atol=1e-5, rtol=0)


def test_resample_round_trip_recovers_band_limited_signal():
    time = torch.arange(16000, dtype=torch.float64) / 16000
    wav = torch.sin(2 * math.pi * 440 * time) + 0.5 * torch.sin(2 * math.pi * 3000 * time)
    back = resample(resample(wav, 16000, 48000), 48000, 16000)
    torch.testing.assert_close(back[800:-800], wav[800:-800], atol=1e-3, rtol=0)


@pytest.mark.oracle("soxr")
def test_resample_hann_window_option_matches_soxr_coarsely_and_same_rate_is_identity():
    wav = torch.randn(16000)
    assert resample(wav, 16000, 16000) is wav
    time = np.arange(48000) / 48000
    tone = np.sin(2 * np.pi * 1000 * time)
    ours = resample(torch.from_numpy(tone), 48000, 16000, 6, 0.99, window="hann").numpy()
    assert _snr_db(ours, soxr.resample(tone, 48000, 16000, quality="VHQ"), 800) > 50.0


def test_resample_builds_each_kernel_once():
    _polyphase_kernel.cache_clear()
    for _ in range(3):
        resample(torch.randn(441), 44100, 16000)
    info = _polyphase_kernel.cache_info()
    assert (info.misses, info.hits) == (1, 2)


def test_resample_rejects_bad_arguments():
    with pytest.raises(ValueError, match="positive integers"):
        resample(torch.randn(100), 44100.5, 16000)
    with pytest.raises(TypeError, match="floating"):
        resample(torch.ones(100, dtype=torch.int16), 44100, 16000)
    with pytest.raises(ValueError, match="rolloff"):
        resample(torch.randn(100), 44100, 16000, rolloff=1.5)
    with pytest.raises(ValueError, match="window"):
        resample(torch.randn(100), 44100, 16000, window="triangle")


def test_kernels_cached_under_inference_mode_serve_a_differentiable_resample():
    _polyphase_kernel.cache_clear()
    wav = torch.randn(800, dtype=torch.float64)
    with torch.inference_mode():
        first = resample(wav, 16000, 8000)
    wav.requires_grad_(True)
    again = resample(wav, 16000, 8000)
    again.sum().backward()
    torch.testing.assert_close(again.detach(), first)
    assert wav.grad is not None and wav.grad.abs().sum() > 0
