"""Loader throughput: tar shards (StreamingLoader) against manifests of files (DynamicItemDataset).

For each mini corpus (``tools/make_mini_datasets.py``, small sizes) the training manifest that
the recipe's ``*_prepare.py`` writes is read two ways, with the same work per utterance (decode
the audio, resample to 16 kHz, 80-bin Kaldi fbank on the fly) and the same batching (buckets of
similar durations, ``max_batch_length`` seconds of padded audio per batch), by a DataLoader with
2 workers:

- reference: ``DynamicItemDataset.from_csv``/``from_json`` + ``DynamicBatchSampler``, one file
  opened per utterance;
- ours: the manifest written into tar shards once (timed apart), then ``StreamingLoader``.

Each loader runs one warm-up epoch (the page cache then holds both copies), then the two
alternate for ``--epochs`` timed epochs each; the median utterances/s of each and the median and
range of the per-epoch ratio shards / files are printed. Every epoch is checked to yield every
utterance of the manifest once.

Run: ``python benchmarks/bench_loader.py [--quick] [--datasets librispeech covost audioset]``
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from speechlobes.dataio.audio import read_audio  # noqa: E402
from speechlobes.dataio.dataset import DynamicItemDataset  # noqa: E402
from speechlobes.dataio.loader import make_dataloader  # noqa: E402
from speechlobes.dataio.pipeline import provides, takes  # noqa: E402
from speechlobes.dataio.sampler import DynamicBatchSampler  # noqa: E402
from speechlobes.dataio.shards import write_shards  # noqa: E402
from speechlobes.dataio.streaming import StreamingDataset, StreamingLoader  # noqa: E402
from speechlobes.processing.features import Fbank  # noqa: E402
from tools.mini_data.audioset import AudioSetSizes, make_audioset  # noqa: E402
from tools.mini_data.covost import CovostSizes, make_covost  # noqa: E402
from tools.mini_data.librispeech import LibriSpeechSizes, make_librispeech  # noqa: E402

RATE = 16000
FBANK = Fbank(num_mel_bins=80)


@takes("sig")
@provides("feats")
def fbank_pipeline(sig: torch.Tensor) -> torch.Tensor:
    return FBANK(sig.unsqueeze(0))[0]


@takes("wav")
@provides("sig")
def audio_pipeline(wav) -> torch.Tensor:
    return read_audio(wav, resample_to=RATE)[0]


def load_prepare(relative: str):
    """A recipe's ``*_prepare.py`` as a module (recipes are folders of scripts)."""
    path = ROOT / "recipes" / relative
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train_manifest(name: str, data: Path, work: Path, quick: bool) -> tuple[Path, dict]:
    """Generate the corpus (skipped when made already) and write its training manifest."""
    if name == "librispeech":
        sizes = LibriSpeechSizes(
            train_utterances=60 if quick else 300, dev_utterances=4, test_utterances=4
        )
        root = make_librispeech(data, sizes=sizes, num_workers=2)
        prepare = load_prepare("LibriSpeech/ASR/CTC/librispeech_prepare.py").prepare_librispeech
        outputs = prepare(str(root), str(work / name))
        return outputs["train-clean-100"], {"data_root": str(root)}
    if name == "covost":
        sizes = CovostSizes(train=60 if quick else 300, dev=4, test=4)
        root = make_covost(data, sizes=sizes, num_workers=2)
        prepare = load_prepare("CoVoST/ST/seq2seq/covost_prepare.py").prepare_covost
        return prepare(str(root / "cv" / "en"), str(root), str(work / name))["train"], {}
    if name == "audioset":
        sizes = AudioSetSizes(train_clips=20 if quick else 80, eval_clips=4)
        root = make_audioset(data, sizes=sizes, num_workers=2)
        prepare = load_prepare("AudioSet/tagging/BEATs/audioset_prepare.py").prepare_audioset
        return prepare(str(root), str(work / name), valid_ratio=0.05)["train"], {}
    raise ValueError(f"unknown dataset {name!r}")


def files_loader(manifest: Path, replacements: dict, options: dict):
    read = (
        DynamicItemDataset.from_csv if manifest.suffix == ".csv" else DynamicItemDataset.from_json
    )
    dataset = read(manifest, replacements=replacements)
    dataset.add_dynamic_item(audio_pipeline)
    dataset.add_dynamic_item(fbank_pipeline)
    dataset.set_output_keys(["id", "feats"])
    sampler = DynamicBatchSampler(
        dataset,
        options["max_batch_length"],
        num_buckets=options["num_buckets"],
        seed=options["seed"],
        length_key="duration",
    )
    return make_dataloader(dataset, batch_sampler=sampler, num_workers=options["workers"])


def shards_loader(shards: Path, options: dict) -> StreamingLoader:
    dataset = StreamingDataset(
        shards,
        [fbank_pipeline],
        ["id", "feats"],
        sample_rate=RATE,
        max_batch_length=options["max_batch_length"],
        num_buckets=options["num_buckets"],
        seed=options["seed"],
    )
    return StreamingLoader(dataset, num_workers=options["workers"])


def epoch_seconds(loader, epoch: int, expected: int) -> float:
    """Seconds to read one epoch; checks that it held every utterance once."""
    start = time.perf_counter()
    loader.set_epoch(epoch)
    ids = [example_id for batch in loader for example_id in batch.id]
    elapsed = time.perf_counter() - start
    if len(set(ids)) != len(ids) or len(ids) != expected:
        raise AssertionError(f"epoch {epoch}: {len(ids)} utterances, {expected} expected")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["librispeech", "covost", "audioset"])
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "bench_loader")
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs of each loader")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-batch-length", type=float, default=40.0, help="seconds")
    parser.add_argument("--num-buckets", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="smaller corpora, one epoch")
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    torch.set_num_threads(1)  # each worker: one thread, as the recipes' loaders run
    epochs = 1 if args.quick else args.epochs
    options = {
        "max_batch_length": args.max_batch_length,
        "num_buckets": args.num_buckets,
        "seed": 0,
        "workers": args.workers,
    }
    data = args.data / ("quick" if args.quick else "full")  # the prep scripts skip by options
    work = data / "work"
    print(
        f"fbank (80 bins) on the fly, {args.workers} workers, batches of <= "
        f"{args.max_batch_length:.0f} s padded audio in {args.num_buckets} buckets, "
        f"{epochs} timed epoch(s) each after a warm-up, alternating; medians"
    )
    header = f"{'corpus':<12}{'utts':>6}{'hours':>7}{'files utt/s':>13}{'shards utt/s':>14}"
    print(header + f"{'ratio (median, range)':>24}{'write s':>9}")
    for name in args.datasets:
        manifest, replacements = train_manifest(name, data, work, args.quick)
        start = time.perf_counter()
        index = write_shards(
            manifest, work / name / "shards", replacements=replacements, shard_bytes=2**20
        )
        written = time.perf_counter() - start
        loaders = {
            "files": files_loader(manifest, replacements, options),
            "shards": shards_loader(work / name / "shards", options),
        }
        rates = {"files": [], "shards": []}
        for epoch in range(epochs + 1):  # epoch 0 warms up; the two loaders alternate
            for kind, loader in loaders.items():
                seconds = epoch_seconds(loader, epoch, index.num_utterances)
                if epoch:
                    rates[kind].append(index.num_utterances / seconds)
        files, shards = np.median(rates["files"]), np.median(rates["shards"])
        ratios = np.asarray(rates["shards"]) / np.asarray(rates["files"])
        print(
            f"{name:<12}{index.num_utterances:>6}{index.duration / 3600:>7.2f}{files:>13.1f}"
            f"{shards:>14.1f}{np.median(ratios):>7.2f}x  {ratios.min():.2f}-{ratios.max():.2f}x"
            f"{written:>9.1f}"
        )


if __name__ == "__main__":
    main()
