"""Speed of our Wav2Vec2 family against transformers, same weights, same inputs, same run.

Base size (12 layers x 768), a padded batch of 10 s utterances of 16 kHz audio. Inference:
ours and transformers (SDPA) each in every precision setting (float32, float32 under
autocast-bf16, bf16 weights; on CUDA also the fp16 pair), each output checked against its
own float32 output (cosine), then a markdown table with seconds per batch, audio seconds per
second, the model's FLOPs and the MFU against this machine's measured product peaks, and
ours against the peer's fastest setting. ``--train`` adds forward + backward of a CTC loss
(float32 and autocast-bf16). Before timing, ours and transformers must agree in float32.

    python benchmarks/bench_wav2vec2.py                                # CPU, 2 threads
    python benchmarks/bench_wav2vec2.py --device cuda --batch 8
    python benchmarks/bench_wav2vec2.py --quick --rows "conformer rel-pos" --seconds 2
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from compare import add_arguments, autocast, compare, measure_peaks
from peak import synchronize, use_threads

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


def _time_pair(run, ours, theirs, rounds: int, device: str) -> tuple[float, float]:
    """Best-of-``rounds`` seconds for each model, alternating them (the machine may be shared)."""
    run(ours)
    run(theirs)
    best = [float("inf"), float("inf")]
    for _ in range(rounds):
        for i, model in enumerate((ours, theirs)):
            synchronize(device)
            start = time.perf_counter()
            run(model)
            synchronize(device)
            best[i] = min(best[i], time.perf_counter() - start)
    return best[0], best[1]


def build_pair(name: str, device: str, layers: int = 12):
    """Ours and transformers' model of row ``name``, float32, the same random weights."""
    import transformers

    cls, fields = ROWS[name]
    torch.manual_seed(0)
    ours = cls(Wav2Vec2Config(**{**BASE, "num_hidden_layers": layers}, **fields))
    with tempfile.TemporaryDirectory() as folder:
        ours.save_pretrained(folder)
        ours = cls.from_pretrained(folder)
        theirs = getattr(transformers, cls.__name__).from_pretrained(
            folder, attn_implementation="sdpa"
        )
    return ours.to(device).eval(), theirs.to(device).eval()


def make_batch(batch: int, seconds: float, device: str):
    """A padded batch: the first utterance full, the others three quarters long."""
    samples = int(seconds * 16000)
    wav = torch.randn(batch, samples, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(batch, samples, dtype=torch.long)
    mask[1:, samples * 3 // 4 :] = 0
    labels = torch.randint(1, 32, (batch, 20), generator=torch.Generator().manual_seed(1))
    return (wav * mask).to(device), mask.to(device), labels.to(device)


def _train(model, wav, mask, labels, setting: str, device: str):
    model.zero_grad(set_to_none=True)
    with autocast(setting, device):
        loss = model(wav, attention_mask=mask, labels=labels).loss
    loss.backward()
    return loss


def bench_row(name: str, args, peaks: dict[str, float]) -> None:
    ours, theirs = build_pair(name, args.device, args.layers)
    wav, mask, labels = make_batch(args.batch, args.seconds, args.device)

    def infer(model, dtype):
        # no_grad rather than inference_mode: transformers caches rotary tables across calls,
        # and inference tensors in that cache would break a later training step
        with torch.no_grad():
            return model(wav.to(dtype), attention_mask=mask).logits

    error = (infer(ours, torch.float32) - infer(theirs, torch.float32)).abs().max().item()
    print(f"{name}: max |ours - transformers| in float32: {error:.1e}")
    if error > 1e-3:
        raise AssertionError(f"{name}: outputs differ by {error:.2e}")
    audio = args.batch * args.seconds
    compare(
        name,
        {"ours": ours, "peer": theirs},
        infer,
        args.precision,
        args.peer_precision,
        audio,
        peaks,
        args.device,
        args.rounds,
    )
    if args.train:
        for setting in ("fp32", "autocast-bf16"):
            t_ours, t_hf = _time_pair(
                lambda m, s=setting: _train(m.train(), wav, mask, labels, s, args.device),
                ours,
                theirs,
                args.rounds,
                args.device,
            )
            print(
                f"{name}: forward+backward {setting}: ours {t_ours:.3f} s, transformers "
                f"{t_hf:.3f} s, ratio {t_hf / t_ours:.2f}x",
                flush=True,
            )
        ours.eval()
        theirs.eval()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser, "transformers")
    parser.add_argument("--rows", nargs="*", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--train", action="store_true", help="also time forward + backward")
    args = parser.parse_args()
    use_threads(args.threads)
    args.rounds = 1 if args.quick else 3
    peaks = measure_peaks(args)
    for name in args.rows:
        bench_row(name, args, peaks)


if __name__ == "__main__":
    main()
