"""Span masking (wav2vec2 semantics), SpecAugment and speed perturbation: statistics and
invariants.
"""

import numpy as np
import pytest
import torch

from speechlobes.processing.augment import AddNoise, SpecAugment, SpeedPerturb, compute_span_mask


def _runs(row: torch.Tensor) -> list[int]:
    """Lengths of the runs of True in a 1-D bool tensor."""
    padded = torch.cat(
        [torch.zeros(1, dtype=torch.long), row.long(), torch.zeros(1, dtype=torch.long)]
    )
    edges = padded.diff().nonzero().flatten()
    return (edges[1::2] - edges[::2]).tolist()


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_span_mask_counts_use_one_rounding_epsilon_per_call():
    # mask_length 1: masked count = number of spans = int(0.25 * length + eps).
    lengths = torch.tensor([100, 50, 30])
    seen = set()
    for seed in range(60):
        mask = compute_span_mask((3, 100), 0.25, 1, lengths=lengths, generator=_seeded(seed))
        seen.add(tuple(mask.sum(1).tolist()))
    # 25 + eps, 12.5 + eps, 7.5 + eps: eps < 0.5 gives (25, 12, 7), else (25, 13, 8); never mixed.
    assert seen == {(25, 12, 7), (25, 13, 8)}


def test_span_mask_stays_inside_valid_lengths_with_runs_of_at_least_span_length():
    lengths = torch.tensor([200, 120, 37, 10, 9])
    for seed in range(20):
        mask = compute_span_mask(
            (5, 200), 0.3, 10, min_masks=2, lengths=lengths, generator=_seeded(seed)
        )
        for row, length in zip(mask, lengths.tolist(), strict=True):
            assert not row[length:].any()
            assert all(run >= 10 for run in _runs(row))
        assert not mask[4].any()  # 9 valid frames cannot hold a 10-frame span
        assert mask[3, :10].all()  # exactly one start fits


def test_span_mask_min_masks_and_caps():
    single = compute_span_mask((4, 50), 0.0, 7, min_masks=1, generator=_seeded(0))
    assert [_runs(row) for row in single] == [[7]] * 4
    capped = compute_span_mask((2, 20), 0.0, 1, min_masks=30, generator=_seeded(0))
    assert capped.all()  # min_masks is capped at time // mask_length
    short = compute_span_mask((1, 20), 0.0, 1, min_masks=5, lengths=torch.tensor([3]))
    assert short.sum() == 3  # ... and at the number of valid starts


def test_span_mask_is_reproducible_with_a_generator():
    first = compute_span_mask((8, 300), 0.065, 10, min_masks=2, generator=_seeded(7))
    again = compute_span_mask((8, 300), 0.065, 10, min_masks=2, generator=_seeded(7))
    other = compute_span_mask((8, 300), 0.065, 10, min_masks=2, generator=_seeded(8))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_span_mask_accepts_relative_lengths_like_absolute_ones():
    absolute = compute_span_mask(
        (2, 40), 0.2, 4, lengths=torch.tensor([40, 20]), generator=_seeded(3)
    )
    relative = compute_span_mask(
        (2, 40), 0.2, 4, lengths=torch.tensor([1.0, 0.5]), generator=_seeded(3)
    )
    assert torch.equal(absolute, relative)


def test_span_mask_starts_are_uniform_over_valid_positions():
    mask = compute_span_mask((4000, 20), 0.0, 1, min_masks=1, lengths=torch.full((4000,), 10))
    counts = mask.sum(0)
    assert counts[10:].sum() == 0
    assert ((counts[:10] - 400).abs() < 100).all()


@pytest.mark.oracle("transformers")
def test_span_mask_masked_fraction_matches_transformers_statistics():
    from transformers.models.wav2vec2 import modeling_wav2vec2 as modeling

    np.random.seed(0)
    lengths = torch.tensor([400, 300, 250, 120])
    attention = (torch.arange(400)[None, :] < lengths[:, None]).long()
    theirs = np.mean(
        [
            modeling._compute_mask_indices((4, 400), 0.065, 10, attention, 2).mean()
            for _ in range(300)
        ]
    )
    generator = _seeded(0)
    ours = np.mean(
        [
            compute_span_mask((4, 400), 0.065, 10, 2, lengths, generator).float().mean().item()
            for _ in range(300)
        ]
    )
    assert abs(ours - theirs) < 0.01, (ours, theirs)


def test_span_mask_rejects_span_longer_than_sequence_and_bad_lengths():
    with pytest.raises(ValueError, match="mask_length"):
        compute_span_mask((2, 5), 0.5, 6)
    with pytest.raises(ValueError, match="lengths"):
        compute_span_mask((2, 5), 0.5, 2, lengths=torch.tensor([6, 5]))


def _ramp(batch: int, time: int, bins: int) -> torch.Tensor:
    """Features whose value is the frame index: (batch, time, bins)."""
    return torch.arange(time, dtype=torch.float32)[None, :, None].expand(batch, time, bins).clone()


def test_spec_augment_is_identity_in_eval_mode():
    feats = torch.randn(2, 50, 20)
    assert SpecAugment().eval()(feats) is feats


def test_spec_augment_leaves_padded_tail_untouched_and_changes_valid_part():
    feats = torch.randn(3, 120, 40) + 5.0
    lengths = torch.tensor([1.0, 0.5, 0.25])
    out = SpecAugment(warp_window=8, time_mask_width=(5, 20), freq_mask_width=(2, 8)).train()(
        feats, lengths, _seeded(0)
    )
    for row, valid in enumerate([120, 60, 30]):
        assert torch.equal(out[row, valid:], feats[row, valid:])
        assert not torch.equal(out[row, :valid], feats[row, :valid])


def test_spec_augment_masks_have_requested_widths_inside_valid_frames():
    augment = SpecAugment(warp_window=0, time_masks=1, time_mask_width=(5, 5), freq_masks=0).train()
    feats = torch.randn(3, 50, 8) + 10.0
    out = augment(feats, torch.tensor([1.0, 0.4, 0.06]), _seeded(1))
    masked_frames = (out == 0).all(-1)
    assert [_runs(row) for row in masked_frames] == [[5], [5], [3]]
    assert not masked_frames[1, 20:].any()
    assert torch.equal(out[~masked_frames], feats[~masked_frames])


def test_spec_augment_frequency_masks_cover_all_valid_frames_of_a_band():
    augment = SpecAugment(warp_window=0, time_masks=0, freq_masks=2, freq_mask_width=(3, 6)).train()
    feats = torch.randn(2, 30, 40) + 10.0
    out = augment(feats, torch.tensor([1.0, 0.5]), _seeded(2))
    masked_bins = (out[:, :15] == 0).all(1)
    assert torch.equal((out[:, :15] == 0), masked_bins[:, None, :].expand(-1, 15, -1))
    assert all(3 <= sum(_runs(row)) <= 12 for row in masked_bins)
    assert not (out[1, 15:] == 0).any()


def test_spec_augment_replaces_with_row_mean_over_valid_frames():
    augment = SpecAugment(
        warp_window=0, time_masks=1, time_mask_width=(4, 4), freq_masks=0, replace_with_zero=False
    )
    feats = torch.randn(2, 20, 6, dtype=torch.float64)
    out = augment.train()(feats, torch.tensor([1.0, 0.5]), _seeded(3))
    changed = (out != feats).any(-1)
    assert changed.sum(1).tolist() == [4, 4]
    torch.testing.assert_close(out[1][changed[1]], feats[1, :10].mean().expand(4, 6))


def test_spec_augment_time_warp_is_one_piecewise_linear_stretch_within_valid_frames():
    augment = SpecAugment(warp_window=10, time_masks=0, freq_masks=0).train()
    feats = _ramp(4, 80, 3)
    out = augment(feats, torch.tensor([1.0, 0.75, 0.5, 0.2]), _seeded(4))
    for row, valid in enumerate([80, 60, 40, 16]):
        warped = out[row, :valid, 0].double()
        assert warped[0] == 0 and (warped.diff() > 0).all() and warped[-1] <= valid - 1
        assert (warped.diff().diff().abs() > 1e-3).sum() <= 2  # one bend (two if rounding)
        assert torch.equal(out[row, valid:], feats[row, valid:])
    assert torch.equal(out[3], feats[3])  # 16 frames <= 2 * window: not warped
    assert not torch.equal(out[:3], feats[:3])


def test_spec_augment_freq_warp_stretches_each_row_by_one_factor_in_range():
    augment = SpecAugment(warp_window=0, time_masks=0, freq_masks=0, freq_warp=0.2).train()
    bins = 40
    feats = torch.arange(bins, dtype=torch.float64).expand(64, 5, bins).clone()  # value = bin
    out = augment(feats, generator=_seeded(7))
    assert torch.equal(out, out[:, :1].expand_as(out))  # every frame of a row alike
    slopes = out[:, 0, 1] - out[:, 0, 0]  # = 1 / factor
    assert ((slopes >= 1 / 1.2 - 1e-9) & (slopes <= 1 / 0.8 + 1e-9)).all()
    assert slopes.min() < 0.9 and slopes.max() > 1.1  # factors spread over the range
    for row, slope in zip(out[:, 0], slopes, strict=True):
        expected = (torch.arange(bins, dtype=torch.float64) * slope).clamp(max=bins - 1)
        torch.testing.assert_close(row, expected)  # linear, the top bin repeated if squeezed


def test_spec_augment_without_freq_warp_draws_as_before_and_rejects_bad_factors():
    feats = torch.randn(2, 100, 20)
    plain, zero_warp = SpecAugment().train(), SpecAugment(freq_warp=0.0).train()
    assert torch.equal(plain(feats, generator=_seeded(8)), zero_warp(feats, generator=_seeded(8)))
    with pytest.raises(ValueError, match="freq_warp"):
        SpecAugment(freq_warp=1.0)


def test_spec_augment_is_reproducible_with_a_generator():
    augment = SpecAugment().train()
    feats = torch.randn(2, 300, 40)
    first = augment(feats, generator=_seeded(5))
    assert torch.equal(first, augment(feats, generator=_seeded(5)))
    assert not torch.equal(first, augment(feats, generator=_seeded(6)))


def test_speed_perturbation_stretches_the_batch_and_keeps_pitch_and_tempo_together():
    rate = 16000
    time = torch.arange(rate) / rate
    tone = torch.sin(2 * torch.pi * 440 * time)[None]
    slower = SpeedPerturb(speeds=(90,)).train()(tone)
    assert slower.shape == (1, round(rate * 100 / 90))
    spectrum = torch.fft.rfft(slower[0, 1000:-1000]).abs()
    peak_hz = spectrum.argmax().item() * rate / (slower.shape[1] - 2000)
    assert abs(peak_hz - 440 * 0.9) < 3  # 90 % speed: 10 % lower pitch


def test_speed_perturbation_is_identity_in_eval_mode_or_at_full_speed():
    wavs = torch.randn(2, 800)
    assert SpeedPerturb().eval()(wavs) is wavs
    assert SpeedPerturb(speeds=(100,)).train()(wavs) is wavs
    with pytest.raises(ValueError, match="positive percentages"):
        SpeedPerturb(speeds=(0,))


def test_add_noise_reaches_the_drawn_snr_over_valid_samples_and_spares_padding():
    wavs = torch.randn(3, 16000, generator=_seeded(9)) * torch.tensor([[0.1], [1.0], [3.0]])
    lengths = torch.tensor([1.0, 0.5, 0.25])
    out = AddNoise(snr_db=(12.0, 12.0)).train()(wavs, lengths, _seeded(10))
    for row, valid in enumerate([16000, 8000, 4000]):
        signal, noise = wavs[row, :valid], out[row, :valid] - wavs[row, :valid]
        snr = 10 * torch.log10(signal.pow(2).mean() / noise.pow(2).mean())
        assert snr.item() == pytest.approx(12.0, abs=1e-3)
        assert torch.equal(out[row, valid:], wavs[row, valid:])
    spread = AddNoise(snr_db=(0.0, 40.0)).train()(wavs, generator=_seeded(11)) - wavs
    snrs = 10 * torch.log10(wavs.pow(2).mean(1) / spread.pow(2).mean(1))
    assert ((snrs >= 0) & (snrs <= 40)).all() and snrs.max() - snrs.min() > 5


def test_pink_noise_has_more_power_at_low_frequencies_and_eval_mode_adds_none():
    wavs = torch.zeros(1, 32000)
    wavs[0, ::50] = 1.0  # a click train: power at every frequency
    noise = AddNoise(snr_db=(0.0, 0.0), colour="pink").train()(wavs, generator=_seeded(12)) - wavs
    power = torch.fft.rfft(noise[0]).abs().pow(2)
    assert power[20:200].mean() > 10 * power[4000:16000].mean()  # 1/f: ~80x between the bands
    assert AddNoise().eval()(wavs) is wavs
    with pytest.raises(ValueError, match="colour"):
        AddNoise(colour="brown")
    with pytest.raises(ValueError, match="snr_db"):
        AddNoise(snr_db=(20.0, 10.0))
