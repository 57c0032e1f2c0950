"""Generation speed: speechlobes' SpeechEncoderDecoder vs transformers, identical weights.

A Wav2Vec2 encoder (``--encoder light``: one small layer, so that the decoder's speed shows;
``base``: wav2vec2-base, for the end to end figure) + an MBart decoder is built by speechlobes,
saved, and loaded by transformers. Both run ``generate`` (encoder included) for a batch of 8
utterances of ``--seconds`` (default 1) down to 65 % of it, 64 new tokens per row
(``min_length`` keeps every row going), greedy and 4-beam search; the ids are compared and the
generated tokens per second printed with the ratio. Two decoder sizes:
"small" (d_model 128, 2 layers, vocabulary 500), where per-step overhead dominates, and
"medium" (d_model 256, 4 layers, vocabulary 1000), where the matrix products dominate.

``--precision`` (ours) and ``--peer-precision`` (transformers) add settings beyond float32
(``autocast-bf16``, ``bf16`` weights; ``fp16`` on CUDA): every setting is timed, its ids
compared with the float32 ids of the same implementation, and ours set against
transformers' fastest setting. The ids of ours and transformers must be equal in float32.

    python benchmarks/bench_generate.py            # best of >= 3 timed runs and >= 2 s each
    python benchmarks/bench_generate.py --quick    # 1 timed run each
    python benchmarks/bench_generate.py --encoder base --seconds 5 --sizes medium --threads 2
    python benchmarks/bench_generate.py --device cuda --precision fp32 bf16
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from compare import SETTINGS, autocast, cast_model, weights_dtype
from peak import synchronize, use_threads

from speechlobes.lobes.speech_encoder_decoder import (
    SpeechEncoderDecoderConfig,
    SpeechEncoderDecoderModel,
)
from speechlobes.lobes.text_decoders.bart import MBartDecoderConfig
from speechlobes.lobes.wav2vec2 import Wav2Vec2Config

BATCH, NEW_TOKENS = 8, 64


DECODERS = {
    "small": dict(d_model=128, decoder_layers=2, decoder_ffn_dim=512, vocab_size=500),
    "medium": dict(d_model=256, decoder_layers=4, decoder_ffn_dim=1024, vocab_size=1000),
}


ENCODERS = {
    "light": dict(
        hidden_size=256,
        num_attention_heads=4,
        num_hidden_layers=1,
        intermediate_size=512,
        conv_dim=[32, 32, 32, 32],
        conv_stride=[5, 4, 4, 4],
        conv_kernel=[10, 4, 4, 4],
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
    ),
    "base": {},  # Wav2Vec2Config's defaults: wav2vec2-base, 12 x 768, seven 512-channel convs
}


def build_model(size: str, encoder_size: str = "light") -> SpeechEncoderDecoderModel:
    encoder = Wav2Vec2Config(model_type="wav2vec2", **ENCODERS[encoder_size])
    decoder = MBartDecoderConfig(
        **DECODERS[size],
        decoder_attention_heads=4,
        dropout=0.0,
        max_position_embeddings=128,
        tie_word_embeddings=False,
    )
    config = SpeechEncoderDecoderConfig.from_encoder_decoder_configs(
        encoder, decoder, decoder_start_token_id=2, pad_token_id=1, eos_token_id=2, bos_token_id=0
    )
    torch.manual_seed(0)
    model = SpeechEncoderDecoderModel(config).eval()
    with torch.no_grad():  # break the symmetry of a fresh init so searches are not trivial
        for param in model.decoder.parameters():
            param.add_(0.05 * torch.randn_like(param))
    return model


def best_time(run, repeats: int, min_seconds: float, device: str) -> tuple[float, torch.Tensor]:
    """Best of at least ``repeats`` timed runs, more until they add up to ``min_seconds`` (short
    cases get more tries, so one noisy stretch of a shared machine does not decide)."""
    ids = run()  # warm-up
    times = []
    while len(times) < repeats or sum(times) < min_seconds:
        synchronize(device)
        start = time.perf_counter()
        ids = run()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times), ids


def make_batch(device: str, seconds: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """BATCH utterances of ``seconds`` down to 65 % of it, zero-padded, and their sample mask."""
    samples = round(16000 * seconds)
    wav = torch.randn(BATCH, samples, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(BATCH, samples, dtype=torch.long)
    for row in range(BATCH):
        mask[row, samples - samples // 20 * row :] = 0
    return (wav * mask).to(device), mask.to(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one timed run per case")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--sizes", nargs="+", choices=list(DECODERS), default=list(DECODERS))
    parser.add_argument(
        "--encoder",
        choices=list(ENCODERS),
        default="light",
        help="light: a 1-layer encoder, the decoder's speed; base: wav2vec2-base, end to end",
    )
    parser.add_argument("--seconds", type=float, default=1.0, help="longest utterance")
    parser.add_argument("--precision", nargs="+", choices=SETTINGS, default=["fp32"])
    parser.add_argument("--peer-precision", nargs="+", choices=SETTINGS, default=["fp32"])
    args = parser.parse_args()
    use_threads(args.threads)
    import transformers

    wav, mask = make_batch(args.device, args.seconds)
    repeats, min_seconds = (1, 0.0) if args.quick else (3, 2.0)
    common = dict(max_new_tokens=NEW_TOKENS, min_length=NEW_TOKENS + 1)
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU threads {args.threads}"
    batch = f"batch {BATCH} x {args.seconds:g} s"
    print(f"{args.encoder} encoder, {batch}, {NEW_TOKENS} new tokens, {where}")
    print("| decoder | search | impl | setting | tok/s | ids = its fp32 ids |")
    print("|---|---|---|---|---|---|")
    for size in args.sizes:
        ours = build_model(size, args.encoder).to(args.device)
        with tempfile.TemporaryDirectory() as folder:
            ours.save_pretrained(folder)
            theirs = transformers.SpeechEncoderDecoderModel.from_pretrained(folder)
        theirs = theirs.to(args.device).eval()
        generators = {
            "ours": lambda m, x, o: m.generate(x, mask, **common, **o),
            "transformers": lambda m, x, o: m.generate(
                input_values=x, attention_mask=mask, **common, **o
            ),
        }
        for name, options in (("greedy", {}), ("beam-4", {"num_beams": 4})):
            best, fp32_ids = {}, {}
            for impl, model, settings in (
                ("ours", ours, args.precision),
                ("transformers", theirs, args.peer_precision),
            ):
                generate = generators[impl]
                with torch.inference_mode():
                    fp32_ids[impl] = generate(model, wav, options)
                for setting in settings:
                    cast = cast_model(model, setting)
                    inputs = wav.to(weights_dtype(setting))

                    def run(
                        cast=cast,
                        inputs=inputs,
                        setting=setting,
                        generate=generate,
                        options=options,
                    ):
                        with torch.inference_mode(), autocast(setting, args.device):
                            return generate(cast, inputs, options)

                    seconds, ids = best_time(run, repeats, min_seconds, args.device)
                    same = ids.shape == fp32_ids[impl].shape and torch.equal(ids, fp32_ids[impl])
                    tokens = BATCH * NEW_TOKENS / seconds
                    print(f"| {size} | {name} | {impl} | {setting} | {tokens:.1f} | {same} |")
                    best[impl] = min(best.get(impl, (float("inf"), "")), (seconds, setting))
            equal = torch.equal(fp32_ids["ours"], fp32_ids["transformers"])
            (ours_s, ours_setting), (peer_s, peer_setting) = best["ours"], best["transformers"]
            print(
                f"{size} {name}: ours {ours_setting} vs transformers' fastest ({peer_setting}): "
                f"ratio {peer_s / ours_s:.2f}x; ids equal in float32: {equal}",
                flush=True,
            )


if __name__ == "__main__":
    main()
