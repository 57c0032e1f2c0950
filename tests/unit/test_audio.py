"""read_audio/audio_info read every supported format exactly and refuse bad files by name."""

import numpy as np
import pytest
import soundfile as sf
import torch

from speechlobes.dataio.audio import AudioReadError, audio_info, read_audio

RATE = 16000


def ramp(num_samples=1600, channels=1):
    """Distinct, exactly representable 16-bit values: sample k of channel c is (k + 7c) / 2**15."""
    values = (np.arange(num_samples)[:, None] + 7 * np.arange(channels)[None, :]) % 30000
    return (values / 2**15).astype(np.float32)


@pytest.fixture
def wav_file(tmp_path):
    path = tmp_path / "ramp.wav"
    sf.write(path, ramp(), RATE, subtype="PCM_16")
    return path


def test_wav_reads_exact_float32_samples_and_rate(wav_file):
    wav, rate = read_audio(wav_file)
    assert rate == RATE and wav.dtype == torch.float32 and wav.shape == (1600,)
    torch.testing.assert_close(wav, torch.from_numpy(ramp()[:, 0]), rtol=0, atol=0)


def test_integer_pcm_is_scaled_into_minus_one_one(tmp_path):
    path = tmp_path / "extremes.wav"
    sf.write(path, np.array([-32768, 32767, 0], dtype=np.int16), RATE)
    wav, _ = read_audio(path)
    assert wav.tolist() == [-1.0, 32767 / 32768, 0.0]


@pytest.mark.parametrize("format_name, lossless", [("FLAC", True), ("OGG", False), ("MP3", False)])
def test_compressed_formats_decode(tmp_path, format_name, lossless):
    path = tmp_path / f"tone.{format_name.lower()}"
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(RATE) / RATE)).astype(np.float32)
    sf.write(path, tone, RATE, format=format_name)
    wav, rate = read_audio(path)
    assert rate == RATE
    if lossless:
        torch.testing.assert_close(wav, torch.from_numpy(tone), atol=2**-15, rtol=0)
    else:
        # Lossy codecs delay and smear the signal: compare energies instead of samples.
        assert abs(wav.pow(2).mean().item() - 0.125) < 0.02


def test_segment_spec_reads_only_the_requested_samples(wav_file):
    wav, _ = read_audio({"file": str(wav_file), "start": 100, "stop": 350})
    torch.testing.assert_close(wav, torch.from_numpy(ramp()[100:350, 0]), rtol=0, atol=0)
    tail, _ = read_audio({"file": str(wav_file), "start": 1500})
    assert tail.shape == (100,)


def test_segment_beyond_the_file_is_an_error(wav_file):
    with pytest.raises(AudioReadError, match="outside the file's 1600 samples"):
        read_audio({"file": str(wav_file), "start": 1000, "stop": 2000})


def test_multichannel_mono_average_and_channel_selection(tmp_path):
    path = tmp_path / "stereo.wav"
    sf.write(path, ramp(channels=2), RATE, subtype="PCM_16")
    both, _ = read_audio(path, mono=False)
    assert both.shape == (1600, 2)
    torch.testing.assert_close(both, torch.from_numpy(ramp(channels=2)), rtol=0, atol=0)
    mono, _ = read_audio(path)
    torch.testing.assert_close(mono, both.mean(dim=1))
    second, _ = read_audio(path, channels=[1])
    torch.testing.assert_close(second, both[:, 1])


def test_audio_info_reads_the_header(tmp_path):
    path = tmp_path / "stereo.flac"
    sf.write(path, ramp(8000, channels=2), 8000, format="FLAC")
    info = audio_info(path)
    assert (info.sample_rate, info.num_frames, info.num_channels) == (8000, 8000, 2)
    assert info.duration == 1.0 and info.format == "FLAC"


def test_missing_file_is_named(tmp_path):
    with pytest.raises(AudioReadError, match="nowhere.wav: file not found"):
        read_audio(tmp_path / "nowhere.wav")


def test_empty_file_is_named(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioReadError, match="empty.wav: the file is empty"):
        read_audio(path)


def test_wav_without_samples_is_refused(tmp_path):
    path = tmp_path / "silent.wav"
    sf.write(path, np.zeros(0, dtype=np.float32), RATE)
    with pytest.raises(AudioReadError, match="silent.wav: the file holds no samples"):
        read_audio(path)


def test_truncated_wav_is_refused(wav_file):
    data = wav_file.read_bytes()
    wav_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioReadError, match="ramp.wav: truncated WAV"):
        read_audio(wav_file)


def test_truncated_flac_is_refused(tmp_path):
    path = tmp_path / "cut.flac"
    sf.write(path, ramp(16000), RATE, format="FLAC")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioReadError, match="cut.flac"):
        read_audio(path)


def test_garbage_file_is_refused(tmp_path):
    path = tmp_path / "noise.wav"
    path.write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(AudioReadError, match="noise.wav: cannot read audio header"):
        read_audio(path)


@pytest.mark.parametrize("bad_value", [np.nan, np.inf])
def test_non_finite_samples_are_refused(tmp_path, bad_value):
    path = tmp_path / "float.wav"
    samples = ramp()[:, 0].copy()
    samples[10] = bad_value
    sf.write(path, samples, RATE, subtype="FLOAT")
    with pytest.raises(AudioReadError, match="float.wav: holds NaN or infinite samples"):
        read_audio(path)


def test_unexpected_rate_without_resampling_is_refused(tmp_path):
    path = tmp_path / "eight.wav"
    sf.write(path, ramp(800), 8000)
    with pytest.raises(AudioReadError, match="eight.wav: sample rate is 8000 Hz, expected 16000"):
        read_audio(path, expected_sample_rate=16000)


def test_resample_to_changes_rate_and_length(tmp_path):
    path = tmp_path / "eight.wav"
    tone = (0.5 * np.sin(2 * np.pi * 200 * np.arange(8000) / 8000)).astype(np.float32)
    sf.write(path, tone, 8000, subtype="FLOAT")
    wav, rate = read_audio(path, expected_sample_rate=16000, resample_to=16000)
    assert rate == 16000 and wav.shape == (16000,) and wav.dtype == torch.float32
    expected = 0.5 * torch.sin(2 * torch.pi * 200 * torch.arange(16000) / 16000)
    torch.testing.assert_close(wav[500:-500], expected[500:-500], atol=0.02, rtol=0)
