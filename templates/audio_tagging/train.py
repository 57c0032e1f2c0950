#!/usr/bin/env python3
"""Audio tagging template: BEATs -> pooling -> linear, multi-label, on synthetic sound clips.

    cd templates/audio_tagging
    python train.py train.yaml                 # about 15 s on one CPU core
    python train.py train.yaml --debug         # smoke test: two batches, two epochs

The road: sounds_prepare.py writes wavs + JSON manifests -> DynamicItemDataset pipelines read
audio and turn the label list into a multi-hot vector -> PaddedBatch pads each batch -> the
Brain below computes a binary cross-entropy per class and, on validation/test, the mean
average precision (mAP). The full-size version is recipes/AudioSet/tagging/BEATs/train.py.
"""

import sys

import torch
from sounds_prepare import prepare_sounds

from speechlobes.core import Brain, Stage, create_experiment_directory, parse_arguments
from speechlobes.dataio.audio import read_audio
from speechlobes.dataio.dataset import DynamicItemDataset
from speechlobes.dataio.encoders import MultiLabelEncoder
from speechlobes.dataio.pipeline import provides, takes
from speechlobes.distributed import run_on_main
from speechlobes.utils.hparams import load_hparams


class Tagger(Brain):
    def compute_forward(self, batch, stage):
        batch = batch.to(self.device)
        # Clips differ in length: PaddedBatch pads them with zeros and keeps RELATIVE lengths
        # (samples / longest). BEATs turns them into a padding mask over its patches, so that
        # attention and pooling never look at the zeros (a padded clip gets the same scores
        # as the clip alone).
        wavs, wav_lens = batch.sig
        return self.modules.tagger(wavs, wav_lens)  # logits: (batch, classes)

    def compute_objectives(self, logits, batch, stage):
        targets = batch.targets.data  # multi-hot: (batch, classes), 1 for each sound present
        # Multi-label: each class is its own yes/no question, answered by a sigmoid and scored
        # with a binary cross-entropy. A softmax + cross-entropy would make the classes compete
        # for one unit of probability: right when exactly one class is true (a digit, a
        # speaker), wrong here, where a clip may hold several sounds, or none.
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
        if stage != Stage.TRAIN:
            self.metrics.append(batch.id, torch.sigmoid(logits), targets)
        return loss

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        if should_step:
            self.hparams.lr_scheduler(self.optimizer)  # warmup then decay, once per step

    def on_stage_start(self, stage, epoch=None):
        if stage != Stage.TRAIN:
            self.metrics = self.hparams.multilabel_stats()

    def on_stage_end(self, stage, stage_loss, epoch=None):
        stats = {"loss": stage_loss}
        if stage == Stage.TRAIN:
            self.train_stats = stats
            return
        # Average precision ranks all clips by one class's score and asks how high the clips
        # that truly hold it rank (1.0 = all of them first); mAP averages it over classes.
        # It needs no decision threshold, and a random scorer gets about the class frequency.
        stats["mAP"] = self.metrics.summarize("mAP")
        if stage == Stage.VALID:
            lr = self.optimizer.param_groups[0]["lr"]
            self.hparams.train_logger.log_stats(
                {"epoch": epoch, "lr": lr}, train_stats=self.train_stats, valid_stats=stats
            )
            # Keep the checkpoint with the highest validation mAP: evaluate() reloads it.
            self.checkpointer.save_and_keep_only(meta={"mAP": stats["mAP"]}, max_keys=["mAP"])
        else:
            self.hparams.train_logger.log_stats({"epoch": "test"}, test_stats=stats)
            print(f"Test mAP: {stats['mAP']:.3f}")


def dataio_prepare(hparams, label_encoder):
    """Manifests -> datasets whose examples are {id, sig, targets}."""

    @takes("wav")
    @provides("sig")
    def audio_pipeline(wav):
        return read_audio(wav)[0]

    @takes("labels")
    @provides("targets")
    def label_pipeline(labels):
        return label_encoder.encode_labels(labels)  # "chirp,clicks" -> [0, 0, 1, 0, 1]

    datasets = {}
    for split in ("train", "valid", "test"):
        dataset = DynamicItemDataset.from_json(f"{hparams['data_folder']}/{split}.json")
        dataset.add_dynamic_item(audio_pipeline)
        dataset.add_dynamic_item(label_pipeline)
        dataset.set_output_keys(["id", "sig", "targets"])
        datasets[split] = dataset
    return datasets


if __name__ == "__main__":
    hparams_file, run_opts, overrides = parse_arguments(sys.argv[1:])
    hparams = load_hparams(hparams_file, overrides)
    create_experiment_directory(hparams["output_folder"], hparams_file, overrides)
    sizes = {split: hparams[f"num_{split}"] for split in ("train", "valid", "test")}
    run_on_main(
        prepare_sounds,
        args=[hparams["data_folder"], sizes, hparams["classes"], hparams["presence"]],
    )

    # One index per class, in the YAML's order: column i of the targets is classes[i].
    label_encoder = MultiLabelEncoder()
    label_encoder.update_from_iterable(hparams["classes"])
    assert hparams["tagger"].classifier.out_features == len(label_encoder), "tagger.num_classes"
    datasets = dataio_prepare(hparams, label_encoder)

    brain = Tagger(
        hparams["modules"], hparams["opt_class"], hparams, run_opts, hparams["checkpointer"]
    )
    brain.fit(
        hparams["epoch_counter"],
        datasets["train"],
        datasets["valid"],
        train_loader_kwargs=hparams["train_loader_kwargs"],
        valid_loader_kwargs=hparams["valid_loader_kwargs"],
    )
    brain.evaluate(
        datasets["test"], max_key="mAP", test_loader_kwargs=hparams["valid_loader_kwargs"]
    )
