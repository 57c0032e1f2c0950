"""Finding pauses and cutting a long recording at them (hand-built signals, exact spans)."""

import math

import soundfile as sf
import torch

from speechlobes.inference.pauses import (
    file_energies_db,
    frame_energies_db,
    pauses,
    speech_segments,
)

RATE = 16000


def tone(seconds: float, amplitude: float = 0.5) -> torch.Tensor:
    """500 Hz: a whole number of periods in every 20 ms frame."""
    t = torch.arange(round(seconds * RATE), dtype=torch.float64) / RATE
    return (amplitude * torch.sin(2 * math.pi * 500 * t)).float()


def silence(seconds: float) -> torch.Tensor:
    return torch.zeros(round(seconds * RATE))


def test_frame_energies_are_mean_square_in_db_every_10_ms():
    energies = frame_energies_db(torch.cat([tone(1.0), silence(0.5)]), RATE)
    assert energies.shape == (149,)  # (24000 - 320) // 160 + 1
    expected = 10 * math.log10(0.5**2 / 2)
    torch.testing.assert_close(energies[:98], torch.full((98,), expected), atol=1e-3, rtol=0)
    assert torch.all(energies[100:] == -100.0)  # digital silence
    assert frame_energies_db(silence(0.01), RATE).numel() == 0  # shorter than one frame


def test_pauses_are_runs_quiet_against_the_loud_level_and_long_enough():
    minus_20_db, minus_40_db = tone(0.5, 0.05), tone(0.5, 0.005)
    parts = [tone(2.0), minus_20_db, tone(2.0), minus_40_db, tone(2.0), silence(0.1), tone(2.0)]
    wav = torch.cat(parts)
    found = pauses(frame_energies_db(wav, RATE), min_frames=25, quiet_db=35.0)
    # -20 dB is speech, -40 dB a pause (4.5-5.0 s: 49 whole frames), 0.1 s is too short
    assert found == [(450, 499)]
    assert pauses(torch.empty(0), 25, 35.0) == []


def test_segments_cut_the_longest_pause_first_and_only_while_too_long():
    wav = torch.cat([tone(3.0), silence(0.5), tone(3.0), silence(1.0), tone(3.0)])
    energies = frame_energies_db(wav, RATE)
    assert speech_segments(energies, RATE, len(wav), max_seconds=11.0) == [(0, len(wav))]
    # 10.5 s > 7 s: cut in the 1 s pause (6.5-7.5 s), 0.2 s of it kept on each side; the
    # left 6.5 s fit, so the 0.5 s pause stays
    assert speech_segments(energies, RATE, len(wav), max_seconds=7.0) == [
        (0, 107200),
        (116800, len(wav)),
    ]
    # 4 s: the left part is cut again, in its 0.5 s pause (3.0-3.5 s)
    assert speech_segments(energies, RATE, len(wav), max_seconds=4.0) == [
        (0, 51200),
        (52800, 107200),
        (116800, len(wav)),
    ]


def test_segments_keep_min_seconds_each_side_and_split_a_short_pause_at_its_middle():
    wav = torch.cat([tone(0.5), silence(1.0), tone(6.0), silence(0.3), tone(6.0)])
    energies = frame_energies_db(wav, RATE)
    # the long pause leaves only 0.5 s before it: not a cut; the 0.3 s pause (< 2 margins)
    # is cut at its middle, both sides touching
    segments = speech_segments(energies, RATE, len(wav), max_seconds=8.0, min_seconds=1.0)
    middle = round(7.65 * RATE)
    assert segments == [(0, middle), (middle, len(wav))]
    # no pause at all: the recording stays whole, however long
    noise = torch.randn(RATE * 30, generator=torch.Generator().manual_seed(0))
    assert speech_segments(frame_energies_db(noise, RATE), RATE, len(noise), 8.0) == [
        (0, len(noise))
    ]


def test_file_energies_read_in_blocks_equal_the_whole_waveforms(tmp_path):
    wav = torch.cat([tone(1.3), silence(0.45), tone(0.9, 0.1)])  # blocks of 1 s: 3 of them
    sf.write(tmp_path / "a.wav", wav.numpy(), RATE, subtype="FLOAT")
    blocks = file_energies_db(str(tmp_path / "a.wav"), RATE, len(wav), block_seconds=1)
    torch.testing.assert_close(blocks, frame_energies_db(wav, RATE), atol=1e-4, rtol=0)
