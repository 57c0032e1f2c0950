#!/usr/bin/env python3
"""Train a CTC speech recogniser on LibriSpeech (or the generated mini LibriSpeech).

    python train.py hparams/conformer_small.yaml                 # mini corpus, generated if missing
    python train.py hparams/conformer_small.yaml --data_folder /data/LibriSpeech
    python train.py hparams/w2v2_conformer.yaml --pretrained_path /models/w2v2-conformer

The YAML names every piece (features, encoder, head, tokenizer, optimiser, decoder, n-gram
LM); this file holds the task: CTC loss, decoding, error rates, the stage bookkeeping, and
the LM's estimation from the training text. Every test set named in the YAML is decoded in
turn (``wer_<name>.txt``), and a summary of all of them ends the run.
"""

from __future__ import annotations

import csv
import logging
import sys
from pathlib import Path

import torch
from librispeech_prepare import prepare_librispeech

from speechlobes.core import Brain, Stage, create_experiment_directory, parse_arguments
from speechlobes.dataio.audio import read_audio
from speechlobes.dataio.dataset import DynamicItemDataset
from speechlobes.dataio.pipeline import provides, takes
from speechlobes.dataio.sampler import DynamicBatchSampler
from speechlobes.dataio.streaming import check_data_format, shard_loaders
from speechlobes.decoders.ngram import kneser_ney
from speechlobes.distributed import if_main_process, run_on_main
from speechlobes.utils.hparams import load_hparams

logger = logging.getLogger(__name__)


class CTCRecogniser(Brain):
    """Waveform -> ``asr_model`` -> CTC log-probabilities; greedy decoding while validating,
    prefix beam search at test time."""

    def compute_forward(self, batch, stage):
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        wav_augment = getattr(self.hparams, "wav_augment", None)
        if stage == Stage.TRAIN and wav_augment is not None:
            wavs = wav_augment(wavs, wav_lens)  # relative lengths stay valid
        # in float32 whatever the precision: the loss and the searches need normalised frames
        log_probs = self.modules.asr_model(wavs, wav_lens).float().log_softmax(dim=-1)
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
        self.last_stats = stats
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
                {"epoch loaded": self.hparams.epoch_counter.current, "test set": self.test_name},
                test_stats=stats,
            )
            run_on_main(self._write_error_rates)

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        if should_step:
            self.hparams.lr_scheduler(self.optimizer)

    def _write_error_rates(self):
        for name, metric in (("wer", self.wer_metric), ("cer", self.cer_metric)):
            path = Path(self.hparams.output_folder) / f"{name}_{self.test_name}.txt"
            with open(path, "w", encoding="utf-8") as stream:
                metric.write_stats(stream)
            logger.info("%s and alignments written to %s", name.upper(), path)


def dataio_prepare(hparams: dict, tokenizer, test_csvs: dict[str, Path]) -> dict:
    """Manifests -> datasets with audio and token pipelines (train sorted by duration); with
    ``data_format: shards``, train and valid are loaders streaming tar shards of the same
    manifests. ``datasets["test"]`` maps each test set's name to its dataset."""
    replacements = {"data_root": str(hparams["data_folder"])}

    @takes("wav")
    @provides("sig")
    def audio_pipeline(wav):
        return read_audio(wav, resample_to=hparams["sample_rate"])[0]

    @takes("wrd")
    @provides("tokens")
    def text_pipeline(wrd):
        return torch.LongTensor(tokenizer.encode_as_ids(wrd))

    def from_csv(path) -> DynamicItemDataset:
        dataset = DynamicItemDataset.from_csv(path, replacements=replacements)
        dataset.add_dynamic_item(audio_pipeline)
        dataset.add_dynamic_item(text_pipeline)
        dataset.set_output_keys(["id", "sig", "tokens", "wrd"])
        return dataset

    keys = ["id", "sig", "tokens", "wrd"]
    if hparams["data_format"] == "shards":  # the shards' audio is decoded into "sig"
        datasets = shard_loaders(hparams, [text_pipeline], keys, splits=("train", "valid"))
    else:
        datasets = {name: from_csv(hparams[f"{name}_csv"]) for name in ("train", "valid")}
        datasets["train"] = datasets["train"].filtered_sorted(
            sort_key="duration", key_max_value={"duration": hparams["max_duration"]}
        )
    datasets["test"] = {name: from_csv(path) for name, path in test_csvs.items()}
    return datasets


def train_loader_kwargs(hparams: dict, train_set) -> dict:
    """The training loader's kwargs: with ``dynamic_batching``, batches of utterances of
    similar durations (``dynamic_batch_sampler``: seconds of padded audio per batch, buckets),
    drawn anew each epoch, which wastes little compute on padding; else the YAML's
    ``train_loader_kwargs``. Warns when the LR schedule's ``total_steps`` does not match."""
    if not hparams.get("dynamic_batching") or hparams["data_format"] == "shards":
        return hparams["train_loader_kwargs"]
    sampler = DynamicBatchSampler(
        train_set, seed=hparams["seed"], **hparams["dynamic_batch_sampler"]
    )
    steps = len(sampler) * hparams["number_of_epochs"]
    logger.info(
        "dynamic batching: %d batches per epoch, %.1f %% padding",
        len(sampler),
        100 * sampler.padding_ratio(),
    )
    planned = hparams.get("total_steps")
    if planned is not None and planned != steps:
        logger.warning(
            "total_steps is %s but %d epochs of %d batches make %d steps: set "
            "--total_steps=%d for the LR schedule to end with the training",
            planned,
            hparams["number_of_epochs"],
            len(sampler),
            steps,
            steps,
        )
    extra = {
        k: v
        for k, v in hparams["train_loader_kwargs"].items()
        if k not in ("batch_size", "shuffle")
    }
    return {"batch_sampler": sampler, **extra}


def ensure_data(hparams: dict) -> None:
    """Generate the mini LibriSpeech when no real data folder is configured, and speak the
    held-out sentences (rank 0 only)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
    from tools.mini_data.librispeech import make_heldout, make_librispeech

    seed = hparams["mini_data_seed"]
    if hparams["data_folder"] == hparams["mini_data_folder"]:
        make_librispeech(Path(hparams["mini_data_root"]), seed=seed, num_workers=2)
    if hparams.get("heldout_sentences"):
        lines = Path(hparams["heldout_sentences"]).read_text(encoding="utf-8").splitlines()
        sentences = [line.strip() for line in lines if line.strip()]
        make_heldout(Path(hparams["heldout_folder"]), sentences, seed=seed, num_workers=2)


def prepare_test_sets(hparams: dict) -> dict[str, Path]:
    """Manifests of every test set: the corpus's test splits, then the held-out sentences."""
    csvs = {}
    if hparams["test_splits"]:
        csvs = prepare_librispeech(
            data_folder=hparams["data_folder"],
            save_folder=hparams["output_folder"],
            tr_splits=[],
            dev_splits=[],
            te_splits=hparams["test_splits"],
        )
    if hparams.get("heldout_sentences"):
        heldout = prepare_librispeech(
            data_folder=hparams["heldout_folder"],
            save_folder=Path(hparams["output_folder"]) / "heldout",
            tr_splits=[],
            dev_splits=[],
            te_splits=["test-clean"],
        )
        csvs["heldout"] = heldout["test-clean"]
    return csvs


def train_language_model(hparams: dict, tokenizer) -> None:
    """Estimate the Kneser-Ney n-gram of the YAML's ``lm_*`` keys on the training text (the
    LM corpus if present, and the training transcripts) and write it as ARPA (rank 0 only;
    kept when it exists)."""
    arpa = Path(hparams["lm_file"])
    if arpa.is_file():
        return
    with open(hparams["train_csv"], encoding="utf-8") as stream:
        sentences = [row["wrd"] for row in csv.DictReader(stream)]
    corpus = Path(hparams["lm_corpus"])
    if corpus.is_file():
        sentences += corpus.read_text(encoding="utf-8").splitlines()
    else:
        logger.warning("%s: no LM corpus; the LM learns from the transcripts alone", corpus)
    if hparams["lm_units"] == "words":
        sequences = (sentence.split() for sentence in sentences)
    else:
        sequences = (tokenizer.encode_as_pieces(sentence) for sentence in sentences)
    kneser_ney(sequences, order=hparams["lm_order"]).write_arpa(arpa)
    logger.info("%d-gram LM over %s written to %s", hparams["lm_order"], hparams["lm_units"], arpa)


def main(argv: list[str]) -> None:
    hparams_file, run_opts, overrides = parse_arguments(argv)
    hparams = load_hparams(hparams_file, overrides)
    streaming = check_data_format(hparams, hparams_file, "csv")
    create_experiment_directory(hparams["output_folder"], hparams_file, overrides, argv=argv)
    run_on_main(ensure_data, kwargs={"hparams": hparams})
    run_on_main(
        prepare_librispeech,
        kwargs={
            "data_folder": hparams["data_folder"],
            "save_folder": hparams["output_folder"],
            "tr_splits": hparams["train_splits"],
            "dev_splits": [hparams["dev_split"]],
            "te_splits": [],
        },
    )
    run_on_main(prepare_test_sets, kwargs={"hparams": hparams})
    test_csvs = prepare_test_sets(hparams)  # every rank: the paths (the work is done)
    tokenizer = hparams["tokenizer"](annotation_train=hparams["train_csv"], annotation_read="wrd")
    if len(tokenizer) > hparams["output_neurons"]:
        raise ValueError(
            f"{hparams_file}: output_neurons ({hparams['output_neurons']}) is smaller than the "
            f"tokenizer's {len(tokenizer)} units; raise output_neurons"
        )
    if hparams.get("lm_file"):
        run_on_main(train_language_model, kwargs={"hparams": hparams, "tokenizer": tokenizer})
    datasets = dataio_prepare(hparams, tokenizer, test_csvs)
    brain = CTCRecogniser(
        hparams["modules"], hparams["opt_class"], hparams, run_opts, hparams["checkpointer"]
    )
    brain.tokenizer = tokenizer
    brain.fit(  # shard loaders were built with their kwargs
        hparams["epoch_counter"],
        datasets["train"],
        datasets["valid"],
        train_loader_kwargs=None if streaming else train_loader_kwargs(hparams, datasets["train"]),
        valid_loader_kwargs=None if streaming else hparams["valid_loader_kwargs"],
    )
    results = {}
    for name, dataset in datasets["test"].items():
        brain.test_name = name
        brain.evaluate(dataset, min_key="CER", test_loader_kwargs=hparams["valid_loader_kwargs"])
        results[name] = brain.last_stats
    if not if_main_process():  # every process holds the gathered figures: one table
        return
    print(f"Results, error-rate alignments and the model are in {hparams['output_folder']}")
    print(f"{'test set':<12} {'CER %':>7} {'WER %':>7}")
    for name, stats in results.items():
        print(f"{name:<12} {stats['CER']:>7.2f} {stats['WER']:>7.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
