"""Audio with bounded memory for any input: resampling whose memory does not depend on the
rates' gcd, rates outside the stated range refused, every truncated format refused."""

import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import write_tone

from speechlobes.dataio.audio import AudioReadError, read_audio, read_resampled
from speechlobes.processing.resample import MAX_RATE, MIN_RATE, resample

MEASURE = textwrap.dedent(
    """
    import json, resource, sys, time
    import torch
    from speechlobes.dataio.audio import read_audio
    torch.set_num_threads(1)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    wav, rate = read_audio(sys.argv[1], resample_to=16000)
    seconds = time.perf_counter() - start
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    print(json.dumps({"samples": len(wav), "seconds": seconds, "grown_mb": grown}))
    """
)


@pytest.mark.parametrize("rate", [22254, 16001, 44099])
def test_resampling_a_small_file_at_an_awkward_rate_is_quick_and_small(tmp_path, rate):
    path = write_tone(tmp_path / f"odd_{rate}.wav", 2000 / rate, rate, subtype="PCM_16")
    assert path.stat().st_size < 5000  # a 4 KB WAV
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    measured = json.loads(result.stdout)
    assert measured["samples"] == math.ceil(2000 * 16000 / rate)
    assert measured["grown_mb"] < 100, f"{rate} Hz took {measured['grown_mb']:.0f} MB"
    assert measured["seconds"] < 5.0, f"{rate} Hz took {measured['seconds']:.1f} s"


@pytest.mark.parametrize("rate", [1, 999, MAX_RATE + 1])
def test_rates_outside_the_stated_range_are_refused_by_name(tmp_path, rate):
    path = tmp_path / f"rate_{rate}.wav"
    sf.write(path, np.zeros(max(rate // 10, 4), dtype=np.float32), rate)
    with pytest.raises(AudioReadError, match=rf"rate_{rate}.wav: sample rate {rate} Hz.*range"):
        read_audio(path, resample_to=16000)
    with pytest.raises(ValueError, match=rf"\[{MIN_RATE}, {MAX_RATE}\]"):
        resample(torch.zeros(10), rate, 16000)


def test_the_same_rate_is_read_without_resampling_whatever_it_is(tmp_path):
    path = tmp_path / "low.wav"
    sf.write(path, np.zeros(50, dtype=np.float32), 500)
    wav, rate = read_audio(path, resample_to=500)
    assert rate == 500 and wav.shape == (50,)


CODECS = [
    ("wav", "WAV", "PCM_16"),
    ("flac", "FLAC", "PCM_16"),
    ("ogg", "OGG", "VORBIS"),
    ("opus", "OGG", "OPUS"),
    ("mp3", "MP3", "MPEG_LAYER_III"),
]


@pytest.mark.parametrize(("ext", "fmt", "subtype"), CODECS, ids=[c[0] for c in CODECS])
@pytest.mark.parametrize("kept", [0.3, 0.72, 0.97])
def test_every_truncated_format_is_an_error_naming_the_file(tmp_path, ext, fmt, subtype, kept):
    whole = write_tone(tmp_path / f"whole.{ext}", 6.0, fmt=fmt, subtype=subtype)
    data = whole.read_bytes()
    cut = tmp_path / f"cut.{ext}"
    cut.write_bytes(data[: int(len(data) * kept)])
    read_audio(whole)  # the whole file reads
    with pytest.raises(AudioReadError, match=r"cut\."):
        read_audio(cut)


def test_an_ogg_file_cut_exactly_between_pages_is_an_error(tmp_path):
    whole = write_tone(tmp_path / "whole.ogg", 6.0, fmt="OGG", subtype="VORBIS")
    data = whole.read_bytes()
    cut = tmp_path / "cut.ogg"
    cut.write_bytes(data[: data.rfind(b"OggS")])  # the last page is gone, entirely
    with pytest.raises(AudioReadError, match="without its end-of-stream page"):
        read_audio(cut)


@pytest.mark.parametrize("rate", [22254, 44100, 8000])
def test_a_stretch_read_at_another_rate_equals_the_slice_of_the_whole(tmp_path, rate):
    path = write_tone(tmp_path / "long.wav", 4.0, rate, subtype="FLOAT")
    whole, _ = read_audio(path, resample_to=16000)
    for start, stop in [(0, 100), (12345, 40000), (len(whole) - 7, len(whole))]:
        part = read_resampled(path, 16000, start, stop)
        torch.testing.assert_close(part, whole[start:stop], atol=1e-6, rtol=0)


def test_a_stretch_outside_the_file_is_an_error(tmp_path):
    path = write_tone(tmp_path / "short.wav", 0.1)
    with pytest.raises(AudioReadError, match=r"segment \[1000, 2000\) lies outside"):
        read_resampled(path, 16000, 1000, 2000)
