#!/usr/bin/env python3
"""Minimal speechlobes recipe: the whole road from a manifest to a tested model, in seconds.

Run it (from the repository root):

    python templates/minimal/train.py templates/minimal/train.yaml
    python templates/minimal/train.py templates/minimal/train.yaml --debug   # smoke test
    torchrun --nproc_per_node=2 templates/minimal/train.py templates/minimal/train.yaml

What happens:
1. ``prepare_toy_data`` writes JSON manifests (id -> fields), as a real ``*_prepare.py`` does.
2. A ``DynamicItemDataset`` reads each manifest; a small pipeline turns a manifest entry into
   tensors (here: generates the features from the example's seed; a real recipe reads audio).
3. The Brain batches examples with ``PaddedBatch`` (padded tensors + relative lengths), runs
   ``compute_forward`` and ``compute_objectives``, steps the optimizer, checkpoints, logs.
4. ``evaluate`` reloads the checkpoint with the lowest validation error and tests it.
"""

import json
import sys
from pathlib import Path

import torch

from speechlobes import distributed
from speechlobes.core import Brain, Stage, create_experiment_directory, parse_arguments
from speechlobes.dataio.dataset import DynamicItemDataset
from speechlobes.dataio.pipeline import provides, takes
from speechlobes.nnet.losses import nll_loss
from speechlobes.nnet.schedulers import update_learning_rate
from speechlobes.utils.hparams import load_hparams


class ToyClassifier(Brain):
    """The task logic: only what differs from any other task lives here."""

    def compute_forward(self, batch, stage):
        """Move the batch to the device and run the model."""
        batch = batch.to(self.device)
        features = batch.features  # PaddedData: .data (batch, time, dim), .lengths relative
        return self.modules.model(features.data, features.abs_lengths)

    def compute_objectives(self, log_probs, batch, stage):
        """The loss; also count errors for the validation and test statistics."""
        labels = batch.label  # numbers are stacked into a tensor (moved by batch.to)
        if stage != Stage.TRAIN:
            self.errors += int((log_probs.argmax(dim=-1) != labels).sum())
            self.examples += len(labels)
        return nll_loss(log_probs, labels)

    def on_stage_start(self, stage, epoch=None):
        self.errors, self.examples = 0, 0

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Log, anneal the learning rate, and keep the best checkpoint."""
        if stage == Stage.TRAIN:
            self.train_loss = stage_loss
            return
        # Counts are per process: sum them over ranks under torchrun.
        counts = distributed.all_reduce_sum(torch.tensor([self.errors, self.examples]))
        stats = {"loss": stage_loss, "error_rate": (counts[0] / counts[1]).item()}
        if stage == Stage.VALID:
            old_lr, new_lr = self.hparams.lr_annealing(stage_loss)
            update_learning_rate(self.optimizer, new_lr)
            self.hparams.train_logger.log_stats(
                {"epoch": epoch, "lr": old_lr}, {"loss": self.train_loss}, stats
            )
            self.checkpointer.save_and_keep_only(meta=stats, min_keys=["error_rate"])
        else:
            self.hparams.train_logger.log_stats({"epoch": "test"}, test_stats=stats)


def prepare_toy_data(folder: str, sizes: dict[str, int], num_classes: int) -> None:
    """Write ``<split>.json`` manifests: {id: {"length": frames, "label": class, "seed": n}}."""
    generator = torch.Generator().manual_seed(0)
    Path(folder).mkdir(parents=True, exist_ok=True)
    offset = 0
    for split, size in sizes.items():
        lengths = torch.randint(5, 40, (size,), generator=generator).tolist()
        labels = torch.randint(0, num_classes, (size,), generator=generator).tolist()
        manifest = {
            f"{split}_{i}": {"length": lengths[i], "label": labels[i], "seed": offset + i}
            for i in range(size)
        }
        Path(folder, f"{split}.json").write_text(json.dumps(manifest, indent=1))
        offset += size


def dataio_prepare(hparams: dict) -> dict[str, DynamicItemDataset]:
    """Datasets whose examples are {"id", "features", "label"}."""
    feature_dim, num_classes = hparams["feature_dim"], hparams["num_classes"]

    @takes("length", "label", "seed")
    @provides("features")
    def make_features(length, label, seed):
        # A real recipe reads audio here (speechlobes.dataio.audio.read_audio).
        generator = torch.Generator().manual_seed(seed)
        noise = torch.randn(int(length), feature_dim, generator=generator)
        return noise + torch.nn.functional.one_hot(torch.tensor(label), feature_dim).float()

    datasets = {}
    for split in ("train", "valid", "test"):
        dataset = DynamicItemDataset.from_json(Path(hparams["data_folder"], f"{split}.json"))
        dataset.add_dynamic_item(make_features)
        dataset.set_output_keys(["id", "features", "label"])
        datasets[split] = dataset
    assert num_classes <= feature_dim, "the toy features encode the class in one dimension"
    return datasets


if __name__ == "__main__":
    # 1. Command line -> hparams file, run options (--device, --debug, ...), YAML overrides.
    hparams_file, run_opts, overrides = parse_arguments(sys.argv[1:])
    hparams = load_hparams(hparams_file, overrides)

    # 2. The experiment folder: resolved hparams, this script, the command, versions, log.
    create_experiment_directory(hparams["output_folder"], hparams_file, overrides)

    # 3. Data preparation runs once (rank 0 under torchrun); the other ranks wait.
    sizes = {split: hparams[f"num_{split}"] for split in ("train", "valid", "test")}
    distributed.run_on_main(
        prepare_toy_data, args=[hparams["data_folder"], sizes, hparams["num_classes"]]
    )
    datasets = dataio_prepare(hparams)

    # 4. Train (resuming if a checkpoint exists), then test the best checkpoint.
    brain = ToyClassifier(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    brain.fit(
        hparams["epoch_counter"],
        datasets["train"],
        datasets["valid"],
        train_loader_kwargs=hparams["train_loader_kwargs"],
        valid_loader_kwargs=hparams["valid_loader_kwargs"],
    )
    brain.evaluate(
        datasets["test"], min_key="error_rate", test_loader_kwargs=hparams["test_loader_kwargs"]
    )
