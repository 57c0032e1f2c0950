#!/usr/bin/env python3
"""Multi-label audio tagging on AudioSet (or the generated mini AudioSet) with BEATs.

    python train.py hparams/beats_small_scratch.yaml          # mini corpus, generated if missing
    python train.py hparams/beats_finetune.yaml --ckpt_path /models/BEATs_iter3.pt \
        --data_folder /data/audioset --clips_folder /data/audioset/audio

The YAML names the tagger (BEATs -> pooling -> linear), the loss and the optimiser; this file
holds the task: mixup, binary cross-entropy, mAP / AUC / d' and the per-class report.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import torch
from audioset_prepare import prepare_audioset

from speechlobes.core import Brain, Stage, create_experiment_directory, parse_arguments
from speechlobes.dataio.audio import read_audio
from speechlobes.dataio.audioset import read_class_labels
from speechlobes.dataio.balanced import EpochWeightedSampler, label_balanced_weights
from speechlobes.dataio.dataset import DynamicItemDataset
from speechlobes.dataio.encoders import MultiLabelEncoder
from speechlobes.dataio.pipeline import provides, takes
from speechlobes.dataio.streaming import check_data_format, shard_loaders
from speechlobes.distributed import if_main_process, run_on_main
from speechlobes.utils.hparams import load_hparams

logger = logging.getLogger(__name__)


class Tagger(Brain):
    """Waveform -> ``tagger`` logits; BCE against multi-hot targets, mixup while training."""

    def compute_forward(self, batch, stage):
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        targets = batch.targets.data
        if stage == Stage.TRAIN and self.hparams.mixup_alpha > 0:
            wavs, wav_lens, targets = self.mixup(wavs, wav_lens, targets)
        return self.modules.tagger(wavs, wav_lens), targets

    def mixup(self, wavs, wav_lens, targets):
        """Mix each clip with another of the batch (waveforms and targets, one weight per batch)."""
        weight = torch.distributions.Beta(self.hparams.mixup_alpha, self.hparams.mixup_alpha)
        lam = float(weight.sample())
        order = torch.randperm(wavs.shape[0], device=wavs.device)
        mixed = lam * wavs + (1 - lam) * wavs[order]
        return (
            mixed,
            torch.maximum(wav_lens, wav_lens[order]),
            lam * targets + (1 - lam) * targets[order],
        )

    def compute_objectives(self, predictions, batch, stage):
        logits, targets = predictions
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
        if stage != Stage.TRAIN:
            self.metrics.append(batch.id, torch.sigmoid(logits).float(), batch.targets.data)
        return loss

    def parameter_groups(self):
        """With ``layer_decay`` < 1, BEATs layers get geometrically smaller learning rates."""
        return layerwise_parameter_groups(self.modules.tagger, self.hparams.layer_decay)

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        if should_step:
            self.hparams.lr_scheduler(self.optimizer)

    def on_stage_start(self, stage, epoch=None):
        if stage != Stage.TRAIN:
            self.metrics = self.hparams.multilabel_stats()

    def on_stage_end(self, stage, stage_loss, epoch=None):
        stats = {"loss": stage_loss}
        if stage == Stage.TRAIN:
            self.train_stats = stats
            return
        stats.update({k: self.metrics.summarize(k) for k in ("mAP", "mAUC", "d_prime")})
        if stage == Stage.VALID:
            lr = self.optimizer.param_groups[-1]["lr"]
            self.hparams.train_logger.log_stats(
                {"epoch": epoch, "lr": lr}, train_stats=self.train_stats, valid_stats=stats
            )
            self.checkpointer.save_and_keep_only(
                meta={"mAP": stats["mAP"], "epoch": epoch}, max_keys=["mAP"], num_to_keep=2
            )
        else:
            self.hparams.train_logger.log_stats(
                {"epoch loaded": self.hparams.epoch_counter.current}, test_stats=stats
            )
            path = Path(self.hparams.output_folder) / "per_class_test.csv"
            run_on_main(self.metrics.write_per_class_csv, args=[path, self.class_names])


def layerwise_parameter_groups(tagger, layer_decay: float) -> list[dict]:
    """Parameter groups with ``lr_scale``: 1 for the head, ``decay**(L - i)`` for BEATs layer
    i, ``decay**(L + 1)`` for the patch embedding and positional conv."""
    num_layers = len(tagger.encoder.encoder.layers)
    tagger = getattr(tagger, "module", tagger)  # unwrap DistributedDataParallel
    groups: dict[float, list] = {}
    for name, parameter in tagger.named_parameters():
        if not name.startswith("encoder."):
            depth = 0
        elif ".layers." in name:
            depth = num_layers - int(name.split(".layers.")[1].split(".")[0])
        else:
            depth = num_layers + 1
        groups.setdefault(layer_decay**depth, []).append(parameter)
    return [{"params": params, "lr_scale": scale} for scale, params in groups.items()]


def dataio_prepare(hparams: dict, label_encoder: MultiLabelEncoder) -> dict:
    """Manifests -> datasets yielding the (cropped/padded) clip and its multi-hot targets;
    with ``data_format: shards``, train and valid are loaders streaming tar shards of the
    same manifests."""
    clip_samples = int(hparams["clip_seconds"] * hparams["sample_rate"])

    @takes("wav")
    @provides("sig")
    def audio_pipeline(wav):
        return read_audio(wav, resample_to=hparams["sample_rate"])[0][:clip_samples]

    @takes("audio")
    @provides("sig")
    def shard_audio_pipeline(audio):  # the shards' audio, decoded and resampled
        return audio[:clip_samples]

    @takes("labels")
    @provides("targets")
    def label_pipeline(labels):
        return label_encoder.encode_labels(labels)

    keys = ["id", "sig", "targets"]
    names = ("test",) if hparams["data_format"] == "shards" else ("train", "valid", "test")
    datasets = {name: DynamicItemDataset.from_json(hparams[f"{name}_json"]) for name in names}
    for dataset in datasets.values():
        dataset.add_dynamic_item(audio_pipeline)
        dataset.add_dynamic_item(label_pipeline)
        dataset.set_output_keys(keys)
    if hparams["data_format"] == "shards":
        pipelines = [shard_audio_pipeline, label_pipeline]
        shards = shard_loaders(hparams, pipelines, keys, ("train", "valid"), signal_key="audio")
        datasets.update(shards)
    return datasets


def train_loader_kwargs(hparams: dict, train_set: DynamicItemDataset) -> dict | None:
    """The YAML's loader kwargs, with a label-balanced sampler when ``balanced_sampling``."""
    if hparams["data_format"] == "shards":
        return None  # the streaming loader was built with its kwargs
    kwargs = dict(hparams["train_loader_kwargs"])
    if hparams["balanced_sampling"]:
        labels = [train_set.data[example_id]["labels"] for example_id in train_set.data_ids]
        kwargs.pop("shuffle", None)
        kwargs["sampler"] = EpochWeightedSampler(
            label_balanced_weights(labels), seed=hparams["seed"]
        )
    return kwargs


def ensure_data(hparams: dict) -> None:
    """Generate the mini AudioSet when no real data folder is configured (rank 0 only)."""
    if hparams["data_folder"] != hparams["mini_data_folder"]:
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
    from tools.mini_data.audioset import make_audioset

    make_audioset(Path(hparams["mini_data_root"]), seed=hparams["mini_data_seed"], num_workers=2)


def main(argv: list[str]) -> None:
    hparams_file, run_opts, overrides = parse_arguments(argv)
    hparams = load_hparams(hparams_file, overrides)
    streaming = check_data_format(hparams, hparams_file, "json")
    if streaming and hparams["balanced_sampling"]:
        raise ValueError(
            f"{hparams_file}: balanced_sampling draws clips at random, which tar shards read in "
            "sequence cannot do: set --balanced_sampling=False or --data_format=json"
        )
    create_experiment_directory(hparams["output_folder"], hparams_file, overrides, argv=argv)
    run_on_main(ensure_data, kwargs={"hparams": hparams})
    run_on_main(
        prepare_audioset,
        kwargs={
            "data_folder": hparams["data_folder"],
            "save_folder": hparams["output_folder"],
            "clips_folder": hparams["clips_folder"],
        },
    )
    classes = read_class_labels(Path(hparams["output_folder"]) / "class_labels_indices.csv")
    if len(classes) != hparams["num_classes"]:
        raise ValueError(
            f"{hparams_file}: num_classes is {hparams['num_classes']} but the label table has "
            f"{len(classes)} classes; set --num_classes={len(classes)}"
        )
    label_encoder = MultiLabelEncoder()
    label_encoder.update_from_iterable(list(classes))
    run_on_main(label_encoder.save, args=[hparams["label_encoder_file"]])
    datasets = dataio_prepare(hparams, label_encoder)
    brain = Tagger(
        hparams["modules"], hparams["opt_class"], hparams, run_opts, hparams["checkpointer"]
    )
    brain.class_names = list(classes.values())
    brain.fit(
        hparams["epoch_counter"],
        datasets["train"],
        datasets["valid"],
        train_loader_kwargs=train_loader_kwargs(hparams, datasets["train"]),
        valid_loader_kwargs=None if streaming else hparams["valid_loader_kwargs"],
    )
    brain.evaluate(
        datasets["test"], max_key="mAP", test_loader_kwargs=hparams["valid_loader_kwargs"]
    )
    if if_main_process():  # one line, not one per process
        print(f"Results, per-class AP and the model are in {hparams['output_folder']}")


if __name__ == "__main__":
    main(sys.argv[1:])
