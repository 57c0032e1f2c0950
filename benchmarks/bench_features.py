"""Throughput of our Fbank against kaldi-native-fbank and of our resampler against soxr.

Both sides get the same float32 inputs, measured in the same run; figures are seconds of
audio processed per second of wall time (higher is better), best and median of the repeats.
kaldi-native-fbank works one utterance at a time (its Python API takes a sequence of floats
and returns one frame at a time); we run ours on the whole batch in one call. Set
OMP_NUM_THREADS to control torch's threads (soxr and kaldi-native-fbank use one); on a machine
with more runnable processes than cores, torch's OpenMP threads wait on each other and
OMP_NUM_THREADS=1 gives the meaningful figure.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/bench_features.py [--quick] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from speechlobes.processing.features import Fbank
from speechlobes.processing.resample import resample


def _timings(run: Callable[[], object], repeats: int) -> list[float]:
    run()  # warm-up: caches, allocator, lazy initialisation
    durations = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        durations.append(time.perf_counter() - start)
    return durations


def _row(name: str, audio_seconds: float, durations: list[float]) -> float:
    best, median = audio_seconds / min(durations), audio_seconds / statistics.median(durations)
    print(f"  {name:<44} best {best:>10.0f} s/s   median {median:>10.0f} s/s")
    return best


def _knf_fbank(knf, wav: np.ndarray, num_mel_bins: int, read_frames: bool) -> np.ndarray | None:
    options = knf.FbankOptions()
    options.frame_opts.dither = 0.0
    options.frame_opts.samp_freq = 16000
    options.mel_opts.num_bins = num_mel_bins
    extractor = knf.OnlineFbank(options)
    extractor.accept_waveform(16000, wav)
    extractor.input_finished()
    if not read_frames:
        return None
    return np.stack([extractor.get_frame(i) for i in range(extractor.num_frames_ready)])


def bench_fbank(batch: int, seconds: float, repeats: int) -> None:
    print(f"\nFbank, 80 mel bins, batch {batch} x {seconds:g} s at 16 kHz (waveform x 2**15)")
    generator = torch.Generator().manual_seed(0)
    wav = (torch.randn(batch, int(16000 * seconds), generator=generator) * 0.1 * 2**15).float()
    audio = batch * seconds
    fbank = Fbank(num_mel_bins=80)
    with torch.inference_mode():
        ours = _row(
            "speechlobes Fbank (one batched call)", audio, _timings(lambda: fbank(wav), repeats)
        )
        singles = _timings(lambda: [fbank(row) for row in wav], repeats)
        _row("speechlobes Fbank (one utterance at a time)", audio, singles)
    try:
        import kaldi_native_fbank as knf
    except ImportError:
        print("  kaldi-native-fbank not installed: no reference figure")
        return
    rows = [row.tolist() for row in wav.numpy()]
    compute = _timings(lambda: [_knf_fbank(knf, row, 80, False) for row in rows], repeats)
    reference = _row("kaldi-native-fbank (compute only)", audio, compute)
    full = _timings(lambda: [_knf_fbank(knf, row, 80, True) for row in rows], repeats)
    _row("kaldi-native-fbank (compute + read frames)", audio, full)
    print(f"  ratio ours / kaldi-native-fbank (best, compute only): {ours / reference:.2f}")
    difference = np.abs(fbank(wav[0]).numpy() - _knf_fbank(knf, rows[0], 80, True)).max()
    print(f"  max |ours - kaldi-native-fbank| on utterance 0: {difference:.2e}")
    try:
        _knf_fbank(knf, rows[0], 128, True)
        print("  kaldi-native-fbank accepted 128 mel bins")
    except Exception as error:  # noqa: BLE001 - we report whatever it raises
        message = str(error).strip().splitlines()[-1]
        print(
            "  note: kaldi-native-fbank refuses 128 mel bins at 16 kHz (512-point FFT: mel bin 3 "
            f"holds no FFT bin): {message!r}; torchaudio, BEATs and our Fbank keep that bin as "
            "a constant ln(float32 eps) column"
        )


def bench_resample(batch: int, seconds: float, repeats: int) -> None:
    try:
        import soxr
    except ImportError:
        print("\nsoxr not installed: no resampling reference")
        return
    for orig_sr in (44100, 48000, 8000):
        print(f"\nresample {orig_sr} -> 16000 Hz, batch {batch} x {seconds:g} s")
        generator = torch.Generator().manual_seed(1)
        wav = torch.randn(batch, int(orig_sr * seconds), generator=generator) * 0.1
        channels_last = np.ascontiguousarray(wav.numpy().T)
        audio = batch * seconds
        with torch.inference_mode():
            ours = _row(
                "speechlobes resample (default, Kaiser 24)",
                audio,
                _timings(lambda: resample(wav, orig_sr, 16000), repeats),  # noqa: B023
            )
            fast = dict(lowpass_filter_width=6, rolloff=0.99, window="hann")
            _row(
                "speechlobes resample (torchaudio's Hann 6)",
                audio,
                _timings(lambda: resample(wav, orig_sr, 16000, **fast), repeats),  # noqa: B023
            )
        for quality in ("HQ", "VHQ"):
            durations = _timings(
                lambda: soxr.resample(channels_last, orig_sr, 16000, quality=quality),  # noqa: B023
                repeats,
            )
            reference = _row(f"soxr {quality} (all channels in one call)", audio, durations)
            print(f"  ratio ours (default) / soxr {quality}: {ours / reference:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small inputs, two repeats")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    batch, seconds, repeats = (4, 2.0, 2) if args.quick else (16, 10.0, args.repeats)
    print(f"torch {torch.__version__}, torch threads {torch.get_num_threads()}")
    bench_fbank(batch, seconds, repeats)
    bench_resample(batch, seconds, repeats)


if __name__ == "__main__":
    main()
