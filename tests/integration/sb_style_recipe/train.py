#!/usr/bin/env python3
# ruff: noqa: I001  (the imports keep the order of the SpeechBrain original)
"""Toy classifier of feature sequences, written in SpeechBrain 1.1's idiom.

speechlobes_original/ holds it with SpeechBrain's imports (it runs with SpeechBrain 1.1);
the copy beside it is the same file with the imports renamed as
docs/migrating_from_speechbrain.md maps them, nothing else changed.

    python train.py hparams/train.yaml [--output_folder=...] [--device=cpu]
"""

import os
import sys

import numpy as np
import torch
from hyperpyyaml import load_hyperpyyaml
from toy_prepare import prepare_toy_data

import speechlobes as sb
from speechlobes.dataio.dataset import DynamicItemDataset
from speechlobes.dataio.sampler import DynamicBatchSampler
from speechlobes.nnet.losses import nll_loss
from speechlobes.nnet.schedulers import update_learning_rate
from speechlobes.dataio.pipeline import provides, takes
from speechlobes.distributed import run_on_main
from speechlobes.metrics import ClassificationStats


class ToyBrain(sb.Brain):
    """Normalise, embed each frame, pool over the valid frames, classify."""

    def compute_forward(self, batch, stage):
        batch = batch.to(self.device)
        feats, lens = batch.feats
        feats = self.modules.mean_var_norm(feats, lens)
        frames = self.modules.embedding_model(feats)
        valid = (
            torch.arange(frames.shape[1], device=self.device)[None, :]
            < (lens * frames.shape[1]).round()[:, None]
        )
        pooled = (frames * valid[..., None]).sum(1) / valid.sum(1, keepdim=True)
        return self.modules.classifier(pooled).log_softmax(dim=-1)

    def compute_objectives(self, predictions, batch, stage):
        labels = batch.label_encoded.data[:, 0]
        loss = nll_loss(predictions, labels)
        if stage != sb.Stage.TRAIN:
            self.error_metrics.append(batch.id, predictions, labels)
        if stage == sb.Stage.TEST:
            decode = self.hparams.label_encoder.decode_ndim
            self.classification.append(batch.id, decode(predictions.argmax(-1)), decode(labels))
        return loss

    def on_stage_start(self, stage, epoch=None):
        if stage != sb.Stage.TRAIN:
            self.error_metrics = self.hparams.error_stats()
            self.classification = ClassificationStats()

    def on_stage_end(self, stage, stage_loss, epoch=None):
        if stage == sb.Stage.TRAIN:
            self.train_loss = stage_loss
            return
        stats = {"loss": stage_loss, "error": self.error_metrics.summarize("average")}
        if stage == sb.Stage.VALID:
            old_lr, new_lr = self.hparams.lr_annealing(stats["error"])
            update_learning_rate(self.optimizer, new_lr)
            self.hparams.train_logger.log_stats(
                {"epoch": epoch, "lr": old_lr},
                train_stats={"loss": self.train_loss},
                valid_stats=stats,
            )
            self.checkpointer.save_and_keep_only(meta=stats, min_keys=["error"])
        else:
            stats["accuracy"] = self.classification.summarize("accuracy")
            self.hparams.train_logger.log_stats(
                {"Epoch loaded": self.hparams.epoch_counter.current}, test_stats=stats
            )


def dataio_prepare(hparams):
    """JSON manifests -> datasets with feature and label pipelines."""

    @takes("feats")
    @provides("features")
    def load_features(path):
        return torch.from_numpy(np.load(path))

    label_encoder = hparams["label_encoder"]

    @takes("label")
    @provides("label_encoded")
    def encode_label(label):
        return label_encoder.encode_label_torch(label)

    datasets = {}
    for split in ("train", "valid", "test"):
        datasets[split] = DynamicItemDataset.from_json(
            json_path=hparams[f"{split}_annotation"],
            replacements={"data_root": hparams["data_folder"]},
            dynamic_items=[load_features, encode_label],
            output_keys={"id": "id", "feats": "features", "label_encoded": "label_encoded"},
        )
    label_encoder.load_or_create(
        path=os.path.join(hparams["save_folder"], "label_encoder.txt"),
        from_didatasets=[datasets["train"]],
        output_key="label",
    )
    label_encoder.expect_len(hparams["n_classes"])
    return datasets


if __name__ == "__main__":
    hparams_file, run_opts, overrides = sb.parse_arguments(sys.argv[1:])
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)

    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    run_on_main(
        prepare_toy_data,
        kwargs={"data_folder": hparams["data_folder"], "save_folder": hparams["save_folder"]},
    )
    datasets = dataio_prepare(hparams)

    train_sampler = DynamicBatchSampler(
        datasets["train"],
        length_func=lambda example: example["length"],
        **hparams["dynamic_hparams"],
    )
    brain = ToyBrain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    brain.fit(
        brain.hparams.epoch_counter,
        datasets["train"],
        datasets["valid"],
        train_loader_kwargs={"batch_sampler": train_sampler},
        valid_loader_kwargs=hparams["valid_dataloader_options"],
    )
    brain.evaluate(
        test_set=datasets["test"],
        min_key="error",
        test_loader_kwargs=hparams["test_dataloader_options"],
    )
