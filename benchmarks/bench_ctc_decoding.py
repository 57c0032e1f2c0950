"""CTC decoding speed: our greedy and prefix beam search beside reference decoders.

References, measured in the same run on the same synthetic CTC outputs:
- greedy: a plain per-utterance loop (argmax, then ``itertools.groupby``);
- beam search: pyctcdecode's ``decode_beams`` (no LM), when importable. pyctcdecode pins
  numpy<2, so install it beside the project without its dependencies:
  ``pip install --no-deps --target /tmp/pyctc pyctcdecode pygtrie`` and run with
  ``PYTHONPATH=/tmp/pyctc``.

Usage: python benchmarks/bench_ctc_decoding.py [--quick]
"""

from __future__ import annotations

import argparse
import itertools
import string
import time

import torch

from speechlobes.decoders.ctc import CTCPrefixBeamSearcher, ctc_greedy_decode

LABELS = ["<blank>", " "] + list(string.ascii_lowercase) + ["'"]  # a LibriSpeech-like charset


def synthetic_ctc_output(batch: int, frames: int, seed: int = 0) -> torch.Tensor:
    """Peaky log-probabilities like a trained CTC model's: mostly blank, short token spikes."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, frames, len(LABELS), generator=generator)
    logits[..., 0] += 6.0
    spikes = torch.rand(batch, frames, generator=generator) < 0.25
    spike_tokens = torch.randint(1, len(LABELS), (batch, frames), generator=generator)
    logits.scatter_add_(-1, spike_tokens[..., None], 9.0 * spikes[..., None].float())
    return logits.log_softmax(dim=-1)


def reference_greedy(log_probs: torch.Tensor) -> list[list[int]]:
    return [
        [token for token, _ in itertools.groupby(row.argmax(-1).tolist()) if token != 0]
        for row in log_probs
    ]


def timed(function, repeats: int = 3):
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def text_of(tokens: list[int]) -> str:
    return " ".join("".join(LABELS[t] for t in tokens).split())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few short utterances")
    args = parser.parse_args()
    batch, frames = (4, 200) if args.quick else (16, 500)
    log_probs = synthetic_ctc_output(batch, frames)
    beam_size, min_token_log_prob = 10, -5.0
    print(f"{batch} utterances x {frames} frames, vocab {len(LABELS)}, beam {beam_size}")
    print(f"{'decoder':<34}{'ours (s)':>10}{'reference (s)':>15}{'ratio':>8}")

    ours, greedy = timed(lambda: ctc_greedy_decode(log_probs))
    reference, expected = timed(lambda: reference_greedy(log_probs))
    assert greedy == expected, "greedy decoding disagrees with the reference"
    print(
        f"{'greedy vs per-utterance loop':<34}{ours:>10.4f}{reference:>15.4f}"
        f"{ours / reference:>8.2f}"
    )

    searcher = CTCPrefixBeamSearcher(
        blank_id=0, beam_size=beam_size, min_token_log_prob=min_token_log_prob
    )
    ours, hypotheses = timed(lambda: searcher(log_probs), repeats=1)
    try:
        import numpy as np
        from pyctcdecode import build_ctcdecoder
    except ImportError:
        print(f"{'prefix beam search':<34}{ours:>10.4f}{'n/a':>15}{'':>8}  (pyctcdecode absent)")
        return
    decoder = build_ctcdecoder(["", *LABELS[1:]])
    arrays = [np.asarray(row, dtype=np.float32) for row in log_probs]
    reference, beams = timed(
        lambda: [
            decoder.decode_beams(a, beam_width=beam_size, token_min_logp=min_token_log_prob)
            for a in arrays
        ],
        repeats=1,
    )
    print(
        f"{'prefix beam search vs pyctcdecode':<34}{ours:>10.4f}{reference:>15.4f}"
        f"{ours / reference:>8.2f}"
    )
    same = sum(text_of(h[0].tokens) == b[0][0] for h, b in zip(hypotheses, beams, strict=True))
    print(f"best hypothesis identical for {same}/{batch} utterances")


if __name__ == "__main__":
    main()
