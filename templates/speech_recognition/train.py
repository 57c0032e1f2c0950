#!/usr/bin/env python3
"""Speech recognition template: filterbanks -> Conformer -> CTC, on synthetic tone "speech".

    cd templates/speech_recognition
    python train.py train.yaml                 # about 15 s on one CPU core
    python train.py train.yaml --debug         # smoke test: two batches, two epochs

The road: tones_prepare.py writes wavs + JSON manifests -> DynamicItemDataset pipelines read
audio and encode the text -> PaddedBatch pads each batch -> the Brain below computes the CTC
loss and, on validation/test, greedy-decodes and scores the character error rate (CER).
The full-size version of this file is recipes/LibriSpeech/ASR/CTC/train.py.
"""

import sys

import torch
from tones_prepare import prepare_tones

from speechlobes.core import Brain, Stage, create_experiment_directory, parse_arguments
from speechlobes.dataio.audio import read_audio
from speechlobes.dataio.dataset import DynamicItemDataset
from speechlobes.dataio.encoders import CTCTextEncoder
from speechlobes.dataio.pipeline import provides, takes
from speechlobes.distributed import run_on_main
from speechlobes.utils.hparams import load_hparams


class CTCRecognizer(Brain):
    def compute_forward(self, batch, stage):
        batch = batch.to(self.device)
        # Utterances differ in length, so PaddedBatch pads them with zeros to the longest one
        # and keeps each one's RELATIVE length (samples / longest): 1.0 for the longest, 0.5
        # for one half as long. Every speech encoder of speechlobes takes (waveforms, relative
        # lengths) and returns (frames, relative frame lengths): here filterbanks (10 ms
        # frames), their normalisation over real frames only, and a Conformer (40 ms frames)
        # whose attention ignores padded frames. A padded utterance gets the same frames as
        # when it is run alone.
        wavs, wav_lens = batch.sig
        encoded, frame_lens = self.modules.encoder(wavs, wav_lens)  # (batch, T, d_model)
        log_probs = self.modules.ctc_head(encoded).log_softmax(dim=-1)  # (batch, T, labels)
        return log_probs, frame_lens

    def compute_objectives(self, predictions, batch, stage):
        log_probs, frame_lens = predictions
        tokens, token_lens = batch.tokens
        # CTC sums the probabilities of every frame-level path that reads as the target once
        # repeats are merged and blanks removed ("aa_b" and "a__b" both read "ab"). The blank
        # lets the model say "nothing new here" between letters, and separates a real double
        # letter ("a_a" reads "aa") from one letter held over two frames ("aa" reads "a").
        loss = self.hparams.ctc_cost(log_probs, tokens, frame_lens, token_lens)
        if stage != Stage.TRAIN:
            # Greedy decoding: the best label per frame, repeats merged, blanks dropped.
            hyps = self.hparams.greedy_search(log_probs, frame_lens)
            texts = [self.label_encoder.decode_text(hyp) for hyp in hyps]
            self.cer_metric.append(batch.id, [t.split() for t in texts], batch.words)
        return loss

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        if should_step:
            self.hparams.lr_scheduler(self.optimizer)  # warmup then decay, once per step

    def on_stage_start(self, stage, epoch=None):
        if stage != Stage.TRAIN:
            self.cer_metric = self.hparams.cer_stats()

    def on_stage_end(self, stage, stage_loss, epoch=None):
        stats = {"loss": stage_loss}
        if stage == Stage.TRAIN:
            self.train_stats = stats
            return
        stats["CER"] = self.cer_metric.summarize("error_rate")  # percent of reference letters
        if stage == Stage.VALID:
            lr = self.optimizer.param_groups[0]["lr"]
            self.hparams.train_logger.log_stats(
                {"epoch": epoch, "lr": lr}, train_stats=self.train_stats, valid_stats=stats
            )
            # Keep the checkpoint with the lowest validation CER: evaluate() reloads it.
            self.checkpointer.save_and_keep_only(meta={"CER": stats["CER"]}, min_keys=["CER"])
        else:
            self.hparams.train_logger.log_stats({"epoch": "test"}, test_stats=stats)
            print(f"Test CER: {stats['CER']:.2f}%")


def dataio_prepare(hparams, label_encoder):
    """Manifests -> datasets whose examples are {id, sig, tokens, words}."""

    @takes("wav")
    @provides("sig")
    def audio_pipeline(wav):
        return read_audio(wav)[0]

    @takes("text")
    @provides("words", "tokens")
    def text_pipeline(text):
        yield text.split()  # the reference words, for the CER
        yield torch.LongTensor(label_encoder.encode_sequence(text))  # letters and spaces

    datasets = {}
    for split in ("train", "valid", "test"):
        dataset = DynamicItemDataset.from_json(f"{hparams['data_folder']}/{split}.json")
        dataset.add_dynamic_item(audio_pipeline)
        dataset.add_dynamic_item(text_pipeline)
        dataset.set_output_keys(["id", "sig", "tokens", "words"])
        datasets[split] = dataset
    return datasets


if __name__ == "__main__":
    hparams_file, run_opts, overrides = parse_arguments(sys.argv[1:])
    hparams = load_hparams(hparams_file, overrides)
    create_experiment_directory(hparams["output_folder"], hparams_file, overrides)
    sizes = {split: hparams[f"num_{split}"] for split in ("train", "valid", "test")}
    run_on_main(prepare_tones, args=[hparams["data_folder"], sizes, hparams["alphabet"]])

    # Labels: index 0 is the CTC blank, then the letters, then the space.
    label_encoder = CTCTextEncoder()
    label_encoder.insert_blank(index=hparams["blank_index"])
    label_encoder.update_from_iterable(hparams["alphabet"] + " ")
    assert len(label_encoder) == hparams["output_neurons"], "output_neurons: blank+letters+space"
    label_encoder.expect_len(hparams["output_neurons"])
    datasets = dataio_prepare(hparams, label_encoder)

    brain = CTCRecognizer(
        hparams["modules"], hparams["opt_class"], hparams, run_opts, hparams["checkpointer"]
    )
    brain.label_encoder = label_encoder
    brain.fit(
        hparams["epoch_counter"],
        datasets["train"],
        datasets["valid"],
        train_loader_kwargs=hparams["train_loader_kwargs"],
        valid_loader_kwargs=hparams["valid_loader_kwargs"],
    )
    brain.evaluate(
        datasets["test"], min_key="CER", test_loader_kwargs=hparams["valid_loader_kwargs"]
    )
