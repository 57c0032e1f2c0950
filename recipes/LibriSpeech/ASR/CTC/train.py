#!/usr/bin/env python3
"""Train a CTC speech recogniser on LibriSpeech (or the generated mini LibriSpeech).

    python train.py hparams/conformer_small.yaml                 # mini corpus, generated if missing
    python train.py hparams/conformer_small.yaml --data_folder /data/LibriSpeech
    python train.py hparams/w2v2_conformer.yaml --pretrained_path /models/w2v2-conformer
    python train.py hparams/conformer_small.yaml --data_format shards  # stream tar shards

The YAML names every piece (features, encoder, head, tokenizer, optimiser, decoder); this file
holds the task: CTC loss, decoding, error rates, and the stage bookkeeping.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import torch
from librispeech_prepare import prepare_librispeech

from speechlobes.core import Brain, Stage, create_experiment_directory, parse_arguments
from speechlobes.dataio.audio import read_audio
from speechlobes.dataio.dataset import DynamicItemDataset
from speechlobes.dataio.pipeline import provides, takes
from speechlobes.dataio.streaming import shard_loaders
from speechlobes.distributed import run_on_main
from speechlobes.utils.hparams import load_hparams

logger = logging.getLogger(__name__)


class CTCRecogniser(Brain):
    """Waveform -> ``asr_model`` -> CTC log-probabilities; greedy decoding while validating,
    prefix beam search at test time."""

    def compute_forward(self, batch, stage):
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        log_probs = self.modules.asr_model(wavs, wav_lens).log_softmax(dim=-1)
        return log_probs, wav_lens

    def compute_objectives(self, predictions, batch, stage):
        log_probs, lengths = predictions
        tokens, token_lens = batch.tokens
        loss = self.hparams.ctc_cost(log_probs, tokens, lengths, token_lens)
        if stage != Stage.TRAIN:
            if stage == Stage.TEST:
                hyps = [nbest[0].tokens for nbest in self.hparams.test_search(log_probs, lengths)]
            else:
                hyps = self.hparams.greedy_search(log_probs, lengths)
            # units past the tokenizer's (output_neurons may exceed it) are never targets, but
            # a barely trained head can still emit them: they decode to nothing
            vocab = len(self.tokenizer)
            words = [self.tokenizer.decode([t for t in hyp if t < vocab]).split() for hyp in hyps]
            targets = [text.split() for text in batch.wrd]
            self.wer_metric.append(batch.id, words, targets)
            self.cer_metric.append(batch.id, words, targets)
        return loss

    def on_stage_start(self, stage, epoch=None):
        if stage != Stage.TRAIN:
            self.wer_metric = self.hparams.error_rate_stats()
            self.cer_metric = self.hparams.error_rate_stats(split_tokens=True)

    def on_stage_end(self, stage, stage_loss, epoch=None):
        stats = {"loss": stage_loss}
        if stage == Stage.TRAIN:
            self.train_stats = stats
            return
        stats["CER"] = self.cer_metric.summarize("error_rate")
        stats["WER"] = self.wer_metric.summarize("error_rate")
        if stage == Stage.VALID:
            lr = self.optimizer.param_groups[0]["lr"]
            self.hparams.train_logger.log_stats(
                {"epoch": epoch, "lr": lr}, train_stats=self.train_stats, valid_stats=stats
            )
            self.checkpointer.save_and_keep_only(
                meta={"CER": stats["CER"], "epoch": epoch}, min_keys=["CER"], num_to_keep=2
            )
        else:
            self.hparams.train_logger.log_stats(
                {"epoch loaded": self.hparams.epoch_counter.current}, test_stats=stats
            )
            run_on_main(self._write_error_rates)

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        if should_step:
            self.hparams.lr_scheduler(self.optimizer)

    def _write_error_rates(self):
        for name, metric in (("wer", self.wer_metric), ("cer", self.cer_metric)):
            path = Path(self.hparams.output_folder) / f"{name}_test.txt"
            with open(path, "w", encoding="utf-8") as stream:
                metric.write_stats(stream)
            logger.info("%s and alignments written to %s", name.upper(), path)


def dataio_prepare(hparams: dict, tokenizer) -> dict:
    """Manifests -> datasets with audio and token pipelines (train sorted by duration); with
    ``data_format: shards``, loaders streaming tar shards of the same manifests."""

    @takes("wrd")
    @provides("tokens")
    def text_pipeline(wrd):
        return torch.LongTensor(tokenizer.encode_as_ids(wrd))

    if hparams["data_format"] == "shards":  # the shards' audio is decoded into "sig"
        return shard_loaders(hparams, [text_pipeline], ["id", "sig", "tokens", "wrd"])
    replacements = {"data_root": str(hparams["data_folder"])}
    datasets = {
        name: DynamicItemDataset.from_csv(hparams[f"{name}_csv"], replacements=replacements)
        for name in ("train", "valid", "test")
    }
    datasets["train"] = datasets["train"].filtered_sorted(
        sort_key="duration", key_max_value={"duration": hparams["max_duration"]}
    )

    @takes("wav")
    @provides("sig")
    def audio_pipeline(wav):
        return read_audio(wav, resample_to=hparams["sample_rate"])[0]

    for dataset in datasets.values():
        dataset.add_dynamic_item(audio_pipeline)
        dataset.add_dynamic_item(text_pipeline)
        dataset.set_output_keys(["id", "sig", "tokens", "wrd"])
    return datasets


def ensure_data(hparams: dict) -> None:
    """Generate the mini LibriSpeech when no real data folder is configured (rank 0 only)."""
    if hparams["data_folder"] != hparams["mini_data_folder"]:
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
    from tools.mini_data.librispeech import make_librispeech

    make_librispeech(Path(hparams["mini_data_root"]), seed=hparams["mini_data_seed"], num_workers=2)


def main(argv: list[str]) -> None:
    hparams_file, run_opts, overrides = parse_arguments(argv)
    hparams = load_hparams(hparams_file, overrides)
    create_experiment_directory(hparams["output_folder"], hparams_file, overrides, argv=argv)
    run_on_main(ensure_data, kwargs={"hparams": hparams})
    run_on_main(
        prepare_librispeech,
        kwargs={
            "data_folder": hparams["data_folder"],
            "save_folder": hparams["output_folder"],
            "tr_splits": hparams["train_splits"],
            "dev_splits": [hparams["dev_split"]],
            "te_splits": [hparams["test_split"]],
        },
    )
    tokenizer = hparams["tokenizer"](annotation_train=hparams["train_csv"], annotation_read="wrd")
    if len(tokenizer) > hparams["output_neurons"]:
        raise ValueError(
            f"{hparams_file}: output_neurons ({hparams['output_neurons']}) is smaller than the "
            f"tokenizer's {len(tokenizer)} units; raise output_neurons"
        )
    datasets = dataio_prepare(hparams, tokenizer)
    brain = CTCRecogniser(
        hparams["modules"], hparams["opt_class"], hparams, run_opts, hparams["checkpointer"]
    )
    brain.tokenizer = tokenizer
    ready = hparams["data_format"] == "shards"  # shard loaders were built with their kwargs
    brain.fit(
        hparams["epoch_counter"],
        datasets["train"],
        datasets["valid"],
        train_loader_kwargs=None if ready else hparams["train_loader_kwargs"],
        valid_loader_kwargs=None if ready else hparams["valid_loader_kwargs"],
    )
    brain.evaluate(
        datasets["test"],
        min_key="CER",
        test_loader_kwargs=None if ready else hparams["valid_loader_kwargs"],
    )
    print(f"Results, error-rate alignments and the model are in {hparams['output_folder']}")


if __name__ == "__main__":
    main(sys.argv[1:])
