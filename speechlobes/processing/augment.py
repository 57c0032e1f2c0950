"""Training-time augmentation, padding-aware and vectorised: speed perturbation and additive
noise on waveforms (:class:`SpeedPerturb`, :class:`AddNoise`), SpecAugment on features, and the
wav2vec2 span-masking helper.

All random draws go through an optional ``torch.Generator`` (on its own device; results are
moved to the data's device), so a seeded generator makes every mask reproducible.

Example:
    >>> feats = torch.randn(4, 200, 80)
    >>> augment = SpecAugment(time_masks=2, time_mask_width=(0, 40)).train()
    >>> augment(feats, lengths=torch.tensor([1.0, 0.8, 0.5, 0.9])).shape
    torch.Size([4, 200, 80])
    >>> compute_span_mask((4, 200), mask_prob=0.05, mask_length=10, min_masks=2).shape
    torch.Size([4, 200])
"""

from __future__ import annotations

import torch
from torch import nn

from speechlobes.nnet.lengths import lengths_to_padding_mask, relative_to_absolute_lengths
from speechlobes.processing.resample import resample


def _uniform(
    shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """U[0, 1) float64 draws of ``shape`` on ``device``, taken from ``generator`` if given."""
    source = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=source, dtype=torch.float64).to(device)


def _random_ints(
    low: torch.Tensor, high: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """Integers uniform in [low, high] (inclusive, elementwise, high >= low)."""
    draws = _uniform(tuple(low.shape), generator, low.device)
    return low + (draws * (high - low + 1)).floor().long()


def _absolute_lengths(
    lengths: torch.Tensor | None, batch: int, max_len: int, device: torch.device
) -> torch.Tensor:
    """None -> all full; floating -> relative (SpeechBrain); integer -> absolute lengths."""
    if lengths is None:
        return torch.full((batch,), max_len, dtype=torch.long, device=device)
    if lengths.shape != (batch,):
        raise ValueError(f"lengths: expected shape ({batch},), got {tuple(lengths.shape)}")
    if lengths.is_floating_point():
        if lengths.min() < 0 or lengths.max() > 1:
            raise ValueError(f"relative lengths must lie in [0, 1], got {lengths.tolist()}")
        return relative_to_absolute_lengths(lengths, max_len).to(device)
    if lengths.min() < 0 or lengths.max() > max_len:
        raise ValueError(f"absolute lengths must lie in [0, {max_len}], got {lengths.tolist()}")
    return lengths.long().to(device)


def _spans_from_starts(starts: torch.Tensor, span: int) -> torch.Tensor:
    """(batch, time) bool span starts -> bool mask covering ``span`` steps from each start."""
    counts = starts.long().cumsum(-1)
    before = nn.functional.pad(counts, (span, 0))[..., : counts.shape[-1]]
    return counts > before


def compute_span_mask(
    shape: tuple[int, int],
    mask_prob: float,
    mask_length: int,
    min_masks: int = 0,
    lengths: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """wav2vec2 span masking (transformers' ``_compute_mask_indices`` semantics), in torch.

    Each row gets ``int(mask_prob * length / mask_length + eps)`` spans (one ``eps`` ~ U[0, 1)
    per call, for probabilistic rounding), at least ``min_masks``, at most
    ``shape[1] // mask_length`` and at most ``length - mask_length + 1``. Span starts are
    distinct and uniform over ``[0, length - mask_length]``, so every span lies inside the
    row's valid length; spans may overlap. Unlike transformers, a row that gets no span is
    left unmasked (transformers marks its last, padded, position).

    Args:
        shape: (batch, time).
        lengths: valid lengths per row: integer (absolute) or floating (relative) tensor;
            None means every row is full.
        device: where the mask lives (default: ``lengths``' device, else CPU).

    Returns:
        (batch, time) bool tensor, True = masked. For wav2vec2's ``mask_feature_prob``, call
        it with ``(batch, hidden_size)`` and broadcast the result over time.

    Example:
        >>> mask = compute_span_mask((2, 100), 0.2, 10, lengths=torch.tensor([100, 50]),
        ...                          generator=torch.Generator().manual_seed(0))
        >>> bool(mask[1, 50:].any())
        False
    """
    batch, max_len = shape
    if not 1 <= mask_length <= max_len:
        raise ValueError(
            f"compute_span_mask: need 1 <= mask_length ({mask_length}) <= time ({max_len})"
        )
    if device is None:
        device = lengths.device if lengths is not None else torch.device("cpu")
    lengths = _absolute_lengths(lengths, batch, max_len, torch.device(device))
    epsilon = float(_uniform((), generator, torch.device("cpu")))
    num_starts = (lengths - mask_length + 1).clamp_min(0)
    num_spans = (mask_prob * lengths.double() / mask_length + epsilon).floor().long()
    num_spans = num_spans.clamp_min(min_masks).clamp_max(max_len // mask_length)
    num_spans = torch.minimum(num_spans, num_starts)
    most_spans = int(num_spans.max()) if batch else 0
    mask = torch.zeros(shape, dtype=torch.bool, device=lengths.device)
    if most_spans == 0:
        return mask
    # A uniform random subset of the valid starts: the first num_spans of a random order.
    positions = torch.arange(max_len - mask_length + 1, device=lengths.device)
    scores = _uniform((batch, positions.numel()), generator, lengths.device)
    scores = scores.masked_fill(positions >= num_starts[:, None], 2.0)
    chosen = scores.argsort(-1)[:, :most_spans]
    keep = torch.arange(most_spans, device=lengths.device) < num_spans[:, None]
    starts = mask.scatter(1, chosen, keep)
    return _spans_from_starts(starts, mask_length)


class SpecAugment(nn.Module):
    """Time warping, time masks and frequency masks on (batch, time, freq) features, and
    optionally a stretch of the frequency axis (``freq_warp``: each row's bins are stretched
    or squeezed by a factor drawn in [1 - freq_warp, 1 + freq_warp], as a shorter or longer
    vocal tract moves the formants: VTLP, Jaitly & Hinton 2013, on the filterbank axis).

    Active only in training mode (``.train()``); an identity in eval mode. With ``lengths``
    (relative, SpeechBrain style) everything happens inside each row's valid frames: the
    warp moves a point between the valid edges, masks start and end inside them, and the
    padded tail is returned untouched. Mask widths are uniform integers in the inclusive
    ranges given; masked values become 0 or, with ``replace_with_zero=False``, the row's mean
    over its valid frames.

    Example:
        >>> augment = SpecAugment(warp_window=5, freq_masks=1, freq_mask_width=(0, 10)).train()
        >>> out = augment(torch.randn(2, 100, 40), generator=torch.Generator().manual_seed(0))
        >>> out.shape
        torch.Size([2, 100, 40])
    """

    def __init__(
        self,
        warp_window: int = 5,
        time_masks: int = 2,
        time_mask_width: tuple[int, int] = (0, 100),
        freq_masks: int = 2,
        freq_mask_width: tuple[int, int] = (0, 20),
        replace_with_zero: bool = True,
        freq_warp: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0 <= freq_warp < 1:
            raise ValueError(f"SpecAugment: freq_warp must lie in [0, 1), got {freq_warp}")
        for name, (low, high) in [
            ("time_mask_width", time_mask_width),
            ("freq_mask_width", freq_mask_width),
        ]:
            if not 0 <= low <= high:
                raise ValueError(
                    f"SpecAugment: {name} must be (min, max) with 0 <= min <= max, "
                    f"got {(low, high)}"
                )
        self.warp_window = warp_window
        self.time_masks = time_masks
        self.time_mask_width = tuple(time_mask_width)
        self.freq_masks = freq_masks
        self.freq_mask_width = tuple(freq_mask_width)
        self.replace_with_zero = replace_with_zero
        self.freq_warp = freq_warp

    def forward(
        self,
        feats: torch.Tensor,
        lengths: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """feats: (batch, time, freq); lengths: (batch,) relative lengths or None."""
        if not self.training:
            return feats
        if feats.dim() != 3:
            raise ValueError(
                f"SpecAugment: expected (batch, time, freq) features, got {tuple(feats.shape)}"
            )
        batch, max_len, num_bins = feats.shape
        lengths = _absolute_lengths(lengths, batch, max_len, feats.device)
        valid = ~lengths_to_padding_mask(lengths, max_len)
        if self.warp_window > 0:
            feats = self._warp(feats, lengths, generator)
        if self.freq_warp > 0:
            feats = self._stretch_bins(feats, generator)
        masked = self._bands(lengths, self.time_masks, self.time_mask_width, max_len, generator)
        full = torch.full_like(lengths, num_bins)
        bins = self._bands(full, self.freq_masks, self.freq_mask_width, num_bins, generator)
        mask = (masked[:, :, None] | bins[:, None, :]) & valid[:, :, None]
        if self.replace_with_zero:
            return feats.masked_fill(mask, 0.0)
        weights = valid[:, :, None].to(feats.dtype)
        mean = (feats * weights).sum((1, 2), keepdim=True) / (
            weights.sum(1, keepdim=True) * num_bins
        ).clamp_min(1)
        return torch.where(mask, mean, feats)

    def _bands(
        self,
        lengths: torch.Tensor,
        count: int,
        width: tuple[int, int],
        size: int,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """(batch, size) bool: ``count`` bands per row of width in ``width``, inside ``lengths``."""
        batch = lengths.shape[0]
        if count == 0:
            return torch.zeros(batch, size, dtype=torch.bool, device=lengths.device)
        low = torch.full((batch, count), width[0], device=lengths.device)
        widths = torch.minimum(
            _random_ints(low, low + width[1] - width[0], generator), lengths[:, None]
        )
        starts = _random_ints(torch.zeros_like(widths), lengths[:, None] - widths, generator)
        positions = torch.arange(size, device=lengths.device)[None, None, :]
        inside = (positions >= starts[..., None]) & (positions < (starts + widths)[..., None])
        return inside.any(1)

    def _warp(
        self, feats: torch.Tensor, lengths: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        """Move a random point c of each row's valid part to c' (|c' - c| < window), stretching
        [0, c) onto [0, c') and [c, n) onto [c', n) by linear interpolation in time."""
        window = self.warp_window
        batch, max_len, _ = feats.shape
        warpable = lengths > 2 * window
        safe = torch.where(warpable, lengths, 2 * window + 1)
        center = _random_ints(torch.full_like(safe, window), safe - window - 1, generator)
        target = center + _random_ints(
            torch.full_like(safe, 1 - window), torch.full_like(safe, window - 1), generator
        )
        time = torch.arange(max_len, device=feats.device, dtype=torch.float64)[None, :]
        center, target, size = (t[:, None].double() for t in (center, target, safe))
        source = torch.where(
            time < target,
            time * center / target,
            center + (time - target) * (size - center) / (size - target),
        )
        inside = warpable[:, None] & (time < size)
        source = torch.where(inside, source, time)
        below = source.floor().long()
        above = torch.minimum(below + 1, torch.where(inside, size.long() - 1, max_len - 1))
        fraction = (source - below)[..., None].to(feats.dtype)
        return _frames_at(feats, below) * (1 - fraction) + _frames_at(feats, above) * fraction

    def _stretch_bins(self, feats: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Output bin i of a row reads its input at i / factor, linearly interpolated (the top
        bin repeats where a squeezed row runs out): one (bins x bins) matrix per row."""
        batch, _, num_bins = feats.shape
        factor = 1 + self.freq_warp * (2 * _uniform((batch,), generator, feats.device) - 1)
        bins = torch.arange(num_bins, device=feats.device, dtype=torch.float64)
        source = (bins[None, :] / factor[:, None]).clamp(max=num_bins - 1)
        below = source.floor().long()
        above = (below + 1).clamp(max=num_bins - 1)
        fraction = source - below
        weights = torch.zeros(batch, num_bins, num_bins, device=feats.device, dtype=torch.float64)
        weights.scatter_add_(1, below[:, None, :], (1 - fraction)[:, None, :])
        weights.scatter_add_(1, above[:, None, :], fraction[:, None, :])
        return torch.bmm(feats, weights.to(feats.dtype))


def _frames_at(feats: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """feats (batch, time, freq), index (batch, time') -> (batch, time', freq)."""
    return feats.gather(1, index[..., None].expand(-1, -1, feats.shape[-1]))


class SpeedPerturb(nn.Module):
    """Speed perturbation of (batch, samples) waveforms: the batch is resampled by a speed
    drawn from ``speeds`` (percent), changing tempo and pitch together (Kaldi's and
    SpeechBrain's speed perturbation). The whole batch stretches alike, so relative lengths
    stay valid. Active only in training mode.

    Example:
        >>> perturb = SpeedPerturb(speeds=(90,)).train()
        >>> perturb(torch.randn(2, 16000)).shape  # 90 % speed: 10/9 as many samples
        torch.Size([2, 17778])
    """

    def __init__(self, speeds: tuple[int, ...] = (90, 100, 110), filter_width: int = 6) -> None:
        super().__init__()
        if not speeds or min(speeds) <= 0:
            raise ValueError(f"SpeedPerturb: speeds must be positive percentages, got {speeds}")
        self.speeds, self.filter_width = tuple(int(s) for s in speeds), filter_width

    def forward(
        self,
        wavs: torch.Tensor,
        lengths: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """wavs: (batch, samples); ``lengths`` are accepted and unchanged."""
        if not self.training:
            return wavs
        index = int(_uniform((1,), generator, wavs.device).item() * len(self.speeds))
        speed = self.speeds[min(index, len(self.speeds) - 1)]
        if speed == 100:
            return wavs
        # the ratio speed : 100, as rates inside resample's range (the same reduced ratio)
        return resample(wavs, 1000 * speed, 100_000, lowpass_filter_width=self.filter_width)


class AddNoise(nn.Module):
    """Gaussian noise, white or pink (power falling as 1/f), added to (batch, samples)
    waveforms at a signal-to-noise ratio drawn per utterance in ``snr_db``, measured over each
    row's valid samples; the padded tail is left as it is. Active only in training mode.

    Example:
        >>> noisy = AddNoise(snr_db=(10.0, 20.0), colour="pink").train()(torch.randn(2, 8000))
        >>> noisy.shape
        torch.Size([2, 8000])
    """

    COLOURS = ("white", "pink")

    def __init__(self, snr_db: tuple[float, float] = (5.0, 30.0), colour: str = "white") -> None:
        super().__init__()
        low, high = snr_db
        if low > high:
            raise ValueError(f"AddNoise: snr_db must be (min, max) with min <= max, got {snr_db}")
        if colour not in self.COLOURS:
            raise ValueError(f"AddNoise: colour must be one of {self.COLOURS}, got {colour!r}")
        self.snr_db, self.colour = (float(low), float(high)), colour

    def forward(
        self,
        wavs: torch.Tensor,
        lengths: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """wavs: (batch, samples); lengths: relative (or absolute) lengths or None."""
        if not self.training:
            return wavs
        batch, samples = wavs.shape
        valid = ~lengths_to_padding_mask(
            _absolute_lengths(lengths, batch, samples, wavs.device), samples
        )
        source = generator.device if generator is not None else wavs.device
        noise = torch.randn(wavs.shape, generator=generator, device=source).to(wavs.device)
        if self.colour == "pink":
            spectrum = torch.fft.rfft(noise)
            frequency = torch.arange(spectrum.shape[-1], device=wavs.device).clamp_min(1)
            noise = torch.fft.irfft(spectrum / frequency.sqrt(), n=samples)
        noise = noise * valid
        count = valid.sum(1).clamp_min(1)
        signal_power = (wavs.float() ** 2 * valid).sum(1) / count
        noise_power = (noise**2).sum(1).clamp_min(1e-20) / count
        low, high = self.snr_db
        snr = low + (high - low) * _uniform((batch,), generator, wavs.device).float()
        scale = (signal_power / (noise_power * 10 ** (snr / 10))).sqrt()
        return wavs + (noise * scale[:, None]).to(wavs.dtype)
