"""Toy regression recipe for the resume, DDP and FSDP integration tests.

Writes ``<output_folder>/final.safetensors`` (the final weights), on rank 0
``<output_folder>/step_losses.jsonl`` (each training step's loss averaged over ranks), and
``<output_folder>/pids/rank<r>`` (each process's id, for tests that kill one rank).
"""

import json
import os
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from speechlobes import distributed
from speechlobes.core import Brain, Stage, create_experiment_directory, parse_arguments
from speechlobes.dataio.dataset import DynamicItemDataset
from speechlobes.fsdp import full_state_dict
from speechlobes.utils.hparams import load_hparams


def toy_dataset(num_examples: int) -> DynamicItemDataset:
    generator = torch.Generator().manual_seed(1234)
    x = torch.randn(num_examples, 4, generator=generator)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1
    data = {f"ex{i}": {"x": x[i], "y": y[i]} for i in range(num_examples)}
    return DynamicItemDataset(data, output_keys=["id", "x", "y"])


class ToyBrain(Brain):
    def compute_forward(self, batch, stage):
        return self.modules.model(batch.x.data.to(self.device))

    def compute_objectives(self, predictions, batch, stage):
        return torch.nn.functional.mse_loss(predictions, batch.y.data.to(self.device))

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        if should_step:
            self.hparams.lr_annealing(self.optimizer)
        mean = distributed.all_reduce_sum(loss.detach().double().reshape(1))
        if distributed.if_main_process():
            record = {
                "step": self.optimizer_step,
                "loss": mean.item() / distributed.get_world_size(),
            }
            with open(Path(self.hparams.output_folder) / "step_losses.jsonl", "a") as handle:
                handle.write(json.dumps(record) + "\n")
        time.sleep(self.hparams.sleep_per_batch)

    def on_stage_end(self, stage, stage_loss, epoch=None):
        if stage == Stage.VALID:
            self.checkpointer.save_and_keep_only(
                meta={"loss": stage_loss, "epoch": epoch}, min_keys=["loss"]
            )


if __name__ == "__main__":
    hparams_file, run_opts, overrides = parse_arguments(sys.argv[1:])
    hparams = load_hparams(hparams_file, overrides)
    create_experiment_directory(hparams["output_folder"], hparams_file, overrides)
    pids = Path(hparams["output_folder"]) / "pids"
    pids.mkdir(exist_ok=True)
    (pids / f"rank{distributed.get_rank()}").write_text(str(os.getpid()))
    brain = ToyBrain(
        hparams["modules"], hparams["opt_class"], hparams, run_opts, hparams["checkpointer"]
    )
    data = toy_dataset(hparams["num_examples"])
    brain.fit(
        hparams["epoch_counter"],
        data,
        data.filtered_sorted(select_n=16),
        train_loader_kwargs={"batch_size": hparams["batch_size"], "shuffle": hparams["shuffle"]},
        valid_loader_kwargs={"batch_size": hparams["batch_size"]},
    )
    state = full_state_dict(hparams["model"])  # on every rank: gathers the shards under FSDP
    if distributed.if_main_process():
        state = {k: v.contiguous() for k, v in state.items()}
        save_file(state, str(Path(hparams["output_folder"]) / "final.safetensors"))
