"""Generation speed: speechlobes' SpeechEncoderDecoder vs transformers, identical weights, CPU.

A light Wav2Vec2 encoder + an MBart decoder is built by speechlobes, saved, and loaded by
transformers. Both run ``generate`` (encoder included) for a batch of 8 one-second utterances,
64 new tokens per row (``min_length`` keeps every row going), greedy and 4-beam search; the ids
are compared and the generated tokens per second printed with the ratio. Two decoder sizes:
"small" (d_model 128, 2 layers, vocabulary 500), where per-step overhead dominates, and
"medium" (d_model 256, 4 layers, vocabulary 1000), where the matrix products dominate.

    python benchmarks/bench_generate.py            # best of >= 3 timed runs and >= 2 s each
    python benchmarks/bench_generate.py --quick    # 1 timed run each
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from speechlobes.lobes.speech_encoder_decoder import (
    SpeechEncoderDecoderConfig,
    SpeechEncoderDecoderModel,
)
from speechlobes.lobes.text_decoders.bart import MBartDecoderConfig
from speechlobes.lobes.wav2vec2 import Wav2Vec2Config

BATCH, NEW_TOKENS, SAMPLES = 8, 64, 16000


DECODERS = {
    "small": dict(d_model=128, decoder_layers=2, decoder_ffn_dim=512, vocab_size=500),
    "medium": dict(d_model=256, decoder_layers=4, decoder_ffn_dim=1024, vocab_size=1000),
}


def build_model(size: str) -> SpeechEncoderDecoderModel:
    encoder = Wav2Vec2Config(
        model_type="wav2vec2",
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
    )
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


def best_time(run, repeats: int, min_seconds: float) -> tuple[float, torch.Tensor]:
    """Best of at least ``repeats`` timed runs, more until they add up to ``min_seconds`` (short
    cases get more tries, so one noisy stretch of a shared machine does not decide)."""
    ids = run()  # warm-up
    times = []
    while len(times) < repeats or sum(times) < min_seconds:
        start = time.perf_counter()
        ids = run()
        times.append(time.perf_counter() - start)
    return min(times), ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one timed run per case")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import transformers

    gen = torch.Generator().manual_seed(0)
    wav = torch.randn(BATCH, SAMPLES, generator=gen)
    mask = torch.ones(BATCH, SAMPLES, dtype=torch.long)
    for row in range(BATCH):  # lengths from 0.6 s to 1 s
        mask[row, SAMPLES - 800 * row :] = 0
    wav = wav * mask
    repeats, min_seconds = (1, 0.0) if args.quick else (3, 2.0)
    common = dict(max_new_tokens=NEW_TOKENS, min_length=NEW_TOKENS + 1)
    print(f"batch {BATCH}, {NEW_TOKENS} new tokens, CPU threads {args.threads}")
    header = f"{'decoder':<8}{'search':<8}{'speechlobes tok/s':>19}{'transformers tok/s':>20}"
    print(f"{header}{'ratio':>7}  ids equal")
    for size in DECODERS:
        ours = build_model(size)
        with tempfile.TemporaryDirectory() as folder:
            ours.save_pretrained(folder)
            theirs = transformers.SpeechEncoderDecoderModel.from_pretrained(folder).eval()
        for name, options in (("greedy", {}), ("beam-4", {"num_beams": 4})):
            ours_time, ours_ids = best_time(
                lambda o=options, m=ours: m.generate(wav, mask, **common, **o),
                repeats,
                min_seconds,
            )
            theirs_time, theirs_ids = best_time(
                lambda o=options, m=theirs: m.generate(
                    input_values=wav, attention_mask=mask, **common, **o
                ),
                repeats,
                min_seconds,
            )
            tokens = BATCH * NEW_TOKENS
            print(
                f"{size:<8}{name:<8}{tokens / ours_time:>19.1f}{tokens / theirs_time:>20.1f}"
                f"{theirs_time / ours_time:>7.2f}  {torch.equal(ours_ids, theirs_ids)}"
            )


if __name__ == "__main__":
    main()
