"""BEATs speed against the original (unilm) code, or against a plain attention, same run.

The base configuration of the released checkpoints (12 layers x 768, relative position bias
with GRU gate, deep norm) with random weights. No library ships the original, so by default
the reference ("peer") is the same model with the attention kernel swapped for the textbook
one: scores = q k^T * scale + gated bias, padded keys to -inf, softmax, times v. With
``--unilm BEATS_FOLDER --torchaudio KALDI`` (unilm's ``beats/`` folder and torchaudio 2.11.0's
``compliance/kaldi.py``, the two files the fixtures are made from: see
``tests/fixtures/beats/README.md``) the peer is the original model itself, and ours loads its
weights from the original checkpoint format. Either way both must give the same outputs within
1e-4 in float32.

Inference (default): ours and the plain path in every precision setting (float32, autocast
bf16, bf16 weights; ``--precision``/``--peer-precision``), each output checked against its
own float32 output (cosine), with the model's FLOPs and the MFU against the measured product
peaks, then ours against the reference's fastest setting. ``--train``: inference and
forward + backward (eval mode, so dropout and layer drop do not change the work) per path,
each in a fresh process so peak memory is its own (CUDA: ``max_memory_allocated``; CPU: the
process's peak RSS, which includes the weights); ``--dtype bfloat16`` runs those under
autocast.

    python benchmarks/bench_beats.py                  # batch 2 x 10 s, CPU, 2 threads
    python benchmarks/bench_beats.py --unilm /tmp/unilm/beats --torchaudio /tmp/ta
    python benchmarks/bench_beats.py --device cuda --batch 8
    python benchmarks/bench_beats.py --train --batch 8 --quick
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing
import resource
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch
from compare import add_arguments, compare, measure_peaks
from peak import synchronize, use_threads

from speechlobes.lobes.beats import model as beats
from speechlobes.nnet.lengths import relative_padding_mask

RELEASED_BASE = {
    "input_patch_size": 16,
    "embed_dim": 512,
    "encoder_layers": 12,
    "encoder_embed_dim": 768,
    "encoder_ffn_embed_dim": 3072,
    "encoder_attention_heads": 12,
    "deep_norm": True,
    "relative_position_embedding": True,
    "num_buckets": 320,
    "max_distance": 800,
    "gru_rel_pos": True,
    "conv_pos": 128,
    "conv_pos_groups": 16,
}
SAMPLE_RATE = 16000
FIXTURE_MAKER = Path(__file__).resolve().parents[1] / "tests/fixtures/beats/make_fixtures.py"


def plain_attend(
    query, key, value, bias=None, key_padding_mask=None, causal=False, dropout=0.0, scale=None
):
    """The textbook attention the SDPA path replaces (same signature as ``attend``)."""
    if causal:
        raise NotImplementedError("BEATs attention is not causal")
    scale = query.shape[-1] ** -0.5 if scale is None else scale
    scores = torch.matmul(query, key.transpose(-1, -2)) * scale
    if bias is not None:
        scores = scores + bias
    if key_padding_mask is not None:
        scores = scores.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
    probs = torch.nn.functional.dropout(scores.softmax(dim=-1), dropout)
    return torch.matmul(probs, value)


def attention_path(path: str):
    """Context manager selecting the attention kernel of the BEATs lobe."""
    if path == "sdpa":
        return mock.patch.object(beats, "attend", beats.attend)
    return mock.patch.object(beats, "attend", plain_attend)


def build_model(device: str, layers: int = 12) -> beats.BEATs:
    """The released base configuration (``layers`` deep), random weights, eval mode."""
    torch.manual_seed(0)
    cfg = {**RELEASED_BASE, "encoder_layers": layers}
    return beats.BEATs(cfg=cfg, freeze=False).to(device).eval()


def make_batch(batch: int, seconds: float, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    wav = 0.1 * torch.randn(batch, int(seconds * SAMPLE_RATE), generator=generator)
    wav_lens = torch.linspace(1.0, 0.7, batch)  # a padded batch, as in training
    return wav.to(device), wav_lens.to(device)


class WithAttention(torch.nn.Module):
    """``model`` (shared, not copied) run with the attention kernel ``path``."""

    def __init__(self, model: beats.BEATs, path: str) -> None:
        super().__init__()
        self.model, self.path = model, path

    def forward(self, wav: torch.Tensor, wav_lens: torch.Tensor) -> torch.Tensor:
        with attention_path(self.path):
            return self.model(wav, wav_lens)[0]


class Original(torch.nn.Module):
    """The unilm model called as the original is: a (batch, samples) padding mask, True = pad."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, wav: torch.Tensor, wav_lens: torch.Tensor) -> torch.Tensor:
        padding_mask = relative_padding_mask(wav_lens, wav.shape[1])
        return self.model.extract_features(wav, padding_mask=padding_mask)[0]


def original_pair(
    unilm: Path, torchaudio: Path, device: str, layers: int
) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(ours, the original), same weights: the original built at random, ours loaded from its
    checkpoint; ours under the original's padding-mask rule, so that padded items agree too.
    The two source folders are checked against the versions the fixtures were made with."""
    spec = importlib.util.spec_from_file_location("make_beats_fixtures", FIXTURE_MAKER)
    fixture_maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixture_maker)
    reference = fixture_maker.import_reference(unilm.resolve(), torchaudio)
    cfg = {**RELEASED_BASE, "encoder_layers": layers}
    torch.manual_seed(0)
    original = reference.BEATs(reference.BEATsConfig(cfg)).eval()
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = Path(folder) / "BEATs.pt"
        torch.save({"cfg": cfg, "model": original.state_dict()}, checkpoint)
        ours = beats.BEATs(checkpoint, padding_mask_rule="original")
    return WithAttention(ours.to(device), "sdpa"), Original(original.to(device))


def measure(
    path: str,
    mode: str,
    device: str,
    dtype: str,
    batch: int,
    seconds: float,
    warmup: int,
    iters: int,
):
    """Run in a child process: (audio seconds per second, peak memory in MiB)."""
    model = build_model(device)
    wav, wav_lens = make_batch(batch, seconds, device)
    autocast = torch.autocast(
        device.split(":")[0], dtype=torch.bfloat16, enabled=dtype == "bfloat16"
    )

    def step() -> None:
        if mode == "inference":
            with torch.no_grad(), autocast:
                model(wav, wav_lens)
        else:
            model.zero_grad(set_to_none=True)
            with autocast:
                features, _ = model(wav, wav_lens)
            features.float().square().mean().backward()

    with attention_path(path):
        for _ in range(warmup):
            step()
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        synchronize(device)
        start = time.perf_counter()
        for _ in range(iters):
            step()
        synchronize(device)
        elapsed = time.perf_counter() - start
    if device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return batch * seconds * iters / elapsed, peak


def check_equal(models: dict[str, torch.nn.Module], device: str) -> float:
    """Largest difference between ours and the peer over the unpadded patches of a short
    padded batch (same weights)."""
    wav, wav_lens = make_batch(2, 3.0, device)
    with torch.no_grad():
        ours, peer = (models[impl](wav, wav_lens) for impl in ("ours", "peer"))
    patches = (wav_lens * ours.shape[1]).floor().long()
    return max((ours[i, :n] - peer[i, :n]).abs().max().item() for i, n in enumerate(patches))


def memory_table(args, batch: int) -> None:
    """Throughput and peak memory per (mode, path), each in a fresh process."""
    warmup, iters = (1, 2) if args.quick else (3, 10)
    print(
        f"device {args.device}, {args.dtype}, threads {args.threads}, "
        f"batch {batch} x {args.seconds:g} s, {iters} timed runs after {warmup} warm-up"
    )
    print(f"{'mode':<18}{'path':<8}{'audio s / s':>14}{'peak MiB':>12}{'ratio':>8}")
    context = multiprocessing.get_context("spawn")
    for mode in ("inference", "forward+backward"):
        results = {}
        for path in ("plain", "sdpa"):
            with context.Pool(1) as pool:
                results[path] = pool.apply(
                    measure,
                    (path, mode, args.device, args.dtype, batch, args.seconds, warmup, iters),
                )
        for path in ("plain", "sdpa"):
            throughput, peak = results[path]
            ratio = throughput / results["plain"][0]
            print(f"{mode:<18}{path:<8}{throughput:>14.2f}{peak:>12.0f}{ratio:>8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser, "the peer")
    parser.add_argument("--train", action="store_true", help="the per-process memory table")
    parser.add_argument(
        "--dtype", choices=("float32", "bfloat16"), default="float32", help="--train: autocast"
    )
    parser.add_argument("--unilm", type=Path, help="unilm's beats/ folder: the original as peer")
    parser.add_argument("--torchaudio", type=Path, help="with --unilm: torchaudio's kaldi.py")
    args = parser.parse_args()
    if (args.unilm is None) != (args.torchaudio is None):
        parser.error("--unilm and --torchaudio go together")
    if args.unilm is not None and args.train:
        parser.error("--train compares the attention paths; drop --unilm")
    use_threads(args.threads)

    if args.unilm is not None:
        ours, peer = original_pair(args.unilm, args.torchaudio, args.device, args.layers)
        models = {"ours": ours, "peer": peer}
        peer_name = "the original unilm code (same weights)"
    else:
        model = build_model(args.device, args.layers)
        models = {"ours": WithAttention(model, "sdpa"), "peer": WithAttention(model, "plain")}
        peer_name = "our model with plain attention (pass --unilm for the original)"
    difference = check_equal(models, args.device)
    print(f"max |ours - peer| on a padded batch: {difference:.2e} (must be <= 1e-4)")
    if difference > 1e-4:
        raise SystemExit("ours and the peer disagree")
    if args.train:
        memory_table(args, args.batch)
        return
    rounds = 1 if args.quick else 3
    peaks = measure_peaks(args)
    print(f"peer = {peer_name}")
    wav, wav_lens = make_batch(args.batch, args.seconds, args.device)

    def infer(module, dtype):
        # no_grad: torch's FLOP counter fails on weight-norm parametrizations in inference_mode
        with torch.no_grad():
            return module(wav.to(dtype), wav_lens)

    compare(
        f"BEATs base ({args.layers} layers)",
        models,
        infer,
        args.precision,
        args.peer_precision,
        args.batch * args.seconds,
        peaks,
        args.device,
        rounds,
    )


if __name__ == "__main__":
    main()
