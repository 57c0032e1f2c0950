"""DynamicBatchSampler against fixed-size random batches: padding and batches per epoch.

The durations are synthetic but shaped like LibriSpeech's 960 h training set (281k
utterances, 1-35 s, most around 12-17 s, a tail of short ones). The reference is what a
plain ``DataLoader(batch_size=B, shuffle=True)`` does, with B chosen two ways:

- "safe": the largest B whose worst case (B examples of the longest length) fits the same
  padded budget as the dynamic batches, i.e. what avoids out-of-memory errors;
- "mean-matched": B giving the same number of batches per epoch as the dynamic sampler
  (its worst batches then exceed the budget).

Run: ``python benchmarks/bench_sampler.py [--quick]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from speechlobes.dataio.sampler import DynamicBatchSampler


def librispeech_like_durations(count: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    long_part = rng.normal(14.5, 2.5, count)
    short_part = rng.lognormal(np.log(7.0), 0.6, count)
    durations = np.where(rng.random(count) < 0.75, long_part, short_part)
    return np.clip(durations, 1.0, 35.0)


def fixed_batches(count: int, batch_size: int, seed: int) -> list[np.ndarray]:
    order = np.random.default_rng(seed).permutation(count)
    return [order[start : start + batch_size] for start in range(0, count, batch_size)]


def describe(name: str, lengths: np.ndarray, batches: list, seconds: float) -> dict:
    padded = np.array([len(batch) * lengths[batch].max() for batch in batches])
    useful = np.array([lengths[batch].sum() for batch in batches])
    return {
        "name": name,
        "batches": len(batches),
        "padding": 1.0 - useful.sum() / padded.sum(),
        "mean_padded": padded.mean(),
        "max_padded": padded.max(),
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="28k utterances instead of 281k")
    parser.add_argument("--max-batch-length", type=float, default=400.0, help="seconds")
    parser.add_argument("--num-buckets", type=int, default=30)
    args = parser.parse_args()
    count = 28_000 if args.quick else 281_000
    lengths = librispeech_like_durations(count)
    budget = args.max_batch_length

    start = time.perf_counter()
    sampler = DynamicBatchSampler(
        range(count), budget, num_buckets=args.num_buckets, lengths_list=lengths, seed=0
    )
    ours = describe("DynamicBatchSampler", lengths, sampler.all_batches(), 0.0)
    ours["seconds"] = time.perf_counter() - start

    rows = [ours]
    safe_size = max(1, int(budget // lengths.max()))
    matched_size = int(np.ceil(count / ours["batches"]))
    for label, size in (("safe", safe_size), ("mean-matched", matched_size)):
        start = time.perf_counter()
        batches = fixed_batches(count, size, seed=0)
        elapsed = time.perf_counter() - start
        rows.append(describe(f"fixed random B={size} ({label})", lengths, batches, elapsed))

    print(
        f"{count} utterances, {lengths.sum() / 3600:.0f} h, durations {lengths.min():.1f}-"
        f"{lengths.max():.1f} s (mean {lengths.mean():.1f}); budget {budget:.0f} s padded/batch"
    )
    header = f"{'sampler':<34}{'batches':>9}{'padding':>9}{'mean pad s':>12}{'max pad s':>11}"
    print(header + f"{'build s':>9}")
    for row in rows:
        print(
            f"{row['name']:<34}{row['batches']:>9}{row['padding']:>9.3f}"
            f"{row['mean_padded']:>12.1f}{row['max_padded']:>11.1f}{row['seconds']:>9.3f}"
        )
    for row in rows[1:]:
        print(
            f"vs {row['name']}: padding ratio x{ours['padding'] / row['padding']:.3f}, "
            f"batches per epoch x{ours['batches'] / row['batches']:.3f}"
        )


if __name__ == "__main__":
    main()
