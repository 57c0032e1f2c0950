"""Speed of our Wav2Vec2 family against transformers, same weights, same inputs, same run.

Base size (12 layers x 768), batch 4 x 10 s of 16 kHz audio on CPU; inference (no grad) and
training (forward + backward of a CTC loss). Every row first checks that both
implementations give the same output, then prints seconds per batch, audio-seconds per second
and the ratio (ours / transformers throughput).

    python benchmarks/bench_wav2vec2.py            # best of 3 alternating rounds per cell
    python benchmarks/bench_wav2vec2.py --quick    # 1 round per cell
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from speechlobes.lobes.wav2vec2 import (
    Wav2Vec2Config,
    Wav2Vec2ConformerForCTC,
    Wav2Vec2ForCTC,
)

BASE = dict(
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    vocab_size=32,
    hidden_dropout=0.0,
    attention_dropout=0.0,
    activation_dropout=0.0,
    feat_proj_dropout=0.0,
    final_dropout=0.0,
    layerdrop=0.0,
    conformer_conv_dropout=0.0,
    apply_spec_augment=False,
    ctc_loss_reduction="mean",
)
ROWS = {
    "conformer rel-pos": (
        Wav2Vec2ConformerForCTC,
        dict(
            model_type="wav2vec2-conformer",
            position_embeddings_type="relative",
            feat_extract_norm="layer",
            conv_bias=True,
            hidden_act="swish",
        ),
    ),
    "conformer rotary": (
        Wav2Vec2ConformerForCTC,
        dict(
            model_type="wav2vec2-conformer",
            position_embeddings_type="rotary",
            feat_extract_norm="layer",
            conv_bias=True,
            hidden_act="swish",
        ),
    ),
    "wav2vec2 base": (Wav2Vec2ForCTC, dict(model_type="wav2vec2", feat_extract_norm="group")),
}


def _time_pair(run, ours, theirs, rounds: int, warm_up: bool) -> tuple[float, float]:
    """Best-of-``rounds`` seconds for each model, alternating them (the machine may be shared)."""
    if warm_up:
        run(ours)
        run(theirs)
    best = [float("inf"), float("inf")]
    for _ in range(rounds):
        for i, model in enumerate((ours, theirs)):
            start = time.perf_counter()
            run(model)
            best[i] = min(best[i], time.perf_counter() - start)
    return best[0], best[1]


def _infer(model, wav, mask):
    # no_grad rather than inference_mode: transformers caches rotary tables across calls, and
    # inference tensors in that cache would break its later training step
    with torch.no_grad():
        return model(wav, attention_mask=mask).logits


def _train(model, wav, mask, labels):
    model.zero_grad(set_to_none=True)
    loss = model(wav, attention_mask=mask, labels=labels).loss
    loss.backward()
    return loss


def bench_row(name: str, batch: int, seconds: float, repeats: int) -> list[tuple]:
    import transformers

    cls, fields = ROWS[name]
    torch.manual_seed(0)
    ours = cls(Wav2Vec2Config(**BASE, **fields))
    with tempfile.TemporaryDirectory() as folder:
        ours.save_pretrained(folder)
        ours = cls.from_pretrained(folder)
        theirs = getattr(transformers, cls.__name__).from_pretrained(folder).eval()
    samples = int(seconds * 16000)
    wav = torch.randn(batch, samples)
    mask = torch.ones(batch, samples, dtype=torch.long)
    mask[1:, samples * 3 // 4 :] = 0
    wav = wav * mask
    labels = torch.randint(1, 32, (batch, 20))

    error = (_infer(ours, wav, mask) - _infer(theirs, wav, mask)).abs().max().item()
    if error > 1e-3:
        raise AssertionError(f"{name}: outputs differ by {error:.2e}")
    rows = []
    audio = batch * seconds
    for mode, run, warm_up in (
        ("inference", lambda m: _infer(m, wav, mask), False),  # the check above warmed both up
        ("forward+backward", lambda m: _train(m.train(), wav, mask, labels), True),
    ):
        t_ours, t_hf = _time_pair(run, ours, theirs, repeats, warm_up)
        ours.eval()
        theirs.eval()
        rows.append((name, mode, t_ours, t_hf, audio, error))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one timed round instead of three")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rows", nargs="*", default=list(ROWS), choices=list(ROWS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeats = 1 if args.quick else 3
    print(
        f"batch {args.batch} x {args.seconds:g} s, {args.threads} threads, best of {repeats} round(s), CPU"
    )
    header = f"{'model':<18} {'mode':<17} {'ours s':>8} {'hf s':>8} {'ours audio-s/s':>15} {'hf audio-s/s':>13} {'ratio':>6} {'max|diff|':>9}"
    print(header)
    for name in args.rows:
        for row, mode, t_ours, t_hf, audio, error in bench_row(
            name, args.batch, args.seconds, repeats
        ):
            print(
                f"{row:<18} {mode:<17} {t_ours:8.2f} {t_hf:8.2f} {audio / t_ours:15.2f} "
                f"{audio / t_hf:13.2f} {t_hf / t_ours:6.2f} {error:9.1e}",
                flush=True,
            )


if __name__ == "__main__":
    main()
