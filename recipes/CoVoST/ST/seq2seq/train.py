#!/usr/bin/env python3
"""Speech translation on CoVoST 2 (or the generated mini CoVoST en->de) with SpeechEncoderDecoder.

    python train.py hparams/conformer_transformer_small.yaml   # mini corpus, generated if missing
    python train.py hparams/w2v2_mbart.yaml --encoder_path /models/w2v2 --decoder_path /models/mbart

The YAML names the model (a speech encoder + a text decoder joined by SpeechEncoderDecoder),
the target tokenizer (a SentencePiece trained here, or the pretrained decoder's own) and the
optimiser; this file holds the task: label-smoothed cross-entropy, beam search, BLEU and the
per-utterance hypotheses.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import torch
from covost_prepare import prepare_covost

from speechlobes.core import Brain, Stage, create_experiment_directory, parse_arguments
from speechlobes.dataio.audio import read_audio
from speechlobes.dataio.dataset import DynamicItemDataset
from speechlobes.dataio.pipeline import provides, takes
from speechlobes.dataio.streaming import check_data_format, shard_loaders
from speechlobes.distributed import if_main_process, run_on_main
from speechlobes.nnet.lengths import lengths_to_padding_mask
from speechlobes.processing.waveform import normalize_waveforms
from speechlobes.utils.hparams import load_hparams

logger = logging.getLogger(__name__)


class Translator(Brain):
    """Waveform -> SpeechEncoderDecoder; teacher-forced loss, beam search for BLEU."""

    def compute_forward(self, batch, stage):
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        tokens = batch.tokens_eos
        padded = lengths_to_padding_mask(tokens.abs_lengths, tokens.data.shape[1])
        labels = tokens.data.masked_fill(padded, -100)
        out = self.modules.model(
            wavs, wav_lens=wav_lens, labels=labels, label_smoothing=self.hparams.label_smoothing
        )
        loss = out.loss
        if self.hparams.ctc_weight > 0:
            loss = (1 - self.hparams.ctc_weight) * loss + self.hparams.ctc_weight * self.ctc_loss(
                out, batch.source_tokens
            )
        hyps = None
        if stage == Stage.TEST or (stage == Stage.VALID and self._search_this_epoch):
            hyps = self.modules.model.generate(
                wavs, wav_lens=wav_lens, **self.hparams.search_options
            )
        return loss, hyps

    def ctc_loss(self, out, source_tokens):
        """CTC of the encoder frames against the source transcript: teaches the encoder the
        acoustics early, so the decoder's cross-attention has something to align to."""
        # in float32 whatever the precision (bf16 log-probabilities are not normalised enough)
        log_probs = self.modules.ctc_head(out.encoder_last_hidden_state).float().log_softmax(-1)
        tokens, token_lens = source_tokens
        return self.hparams.ctc_cost(log_probs, tokens, out.encoder_lens, token_lens)

    def compute_objectives(self, predictions, batch, stage):
        loss, hyps = predictions
        if hyps is not None:
            texts = [self.tokenizer.decode(self.strip_special(row)) for row in hyps.tolist()]
            self.bleu.append(batch.id, texts, [[reference] for reference in batch.translation])
        return loss

    def strip_special(self, ids: list[int]) -> list[int]:
        """Drop the start token and everything from the first EOS on."""
        ids = ids[1:]
        eos = self.hparams.eos_index
        return ids[: ids.index(eos)] if eos in ids else ids

    def on_stage_start(self, stage, epoch=None):
        interval = self.hparams.valid_search_interval
        self._search_this_epoch = stage == Stage.TEST or (
            epoch is not None and (epoch % interval == 0 or epoch == self.hparams.number_of_epochs)
        )
        if stage != Stage.TRAIN:
            self.bleu = self.hparams.bleu_stats()

    def on_stage_end(self, stage, stage_loss, epoch=None):
        stats = {"loss": stage_loss}
        if stage == Stage.TRAIN:
            self.train_stats = stats
            return
        if self._search_this_epoch:
            stats["BLEU"] = self.bleu.summarize("BLEU")
        if stage == Stage.VALID:
            lr = self.optimizer.param_groups[0]["lr"]
            self.hparams.train_logger.log_stats(
                {"epoch": epoch, "lr": lr}, train_stats=self.train_stats, valid_stats=stats
            )
            self.checkpointer.save_and_keep_only(
                meta={"loss": stage_loss, "epoch": epoch}, min_keys=["loss"], num_to_keep=2
            )
        else:
            logger.info("BLEU signature: %s", self.bleu.summarize("signature"))
            self.hparams.train_logger.log_stats(
                {"epoch loaded": self.hparams.epoch_counter.current}, test_stats=stats
            )
            run_on_main(self._write_hypotheses)

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        if should_step:
            self.hparams.lr_scheduler(self.optimizer)

    def _write_hypotheses(self):
        path = Path(self.hparams.output_folder) / "bleu_test.txt"
        with open(path, "w", encoding="utf-8") as stream:
            self.bleu.write_stats(stream)
        logger.info("BLEU, hypotheses and references written to %s", path)


def build_tokenizer(hparams: dict):
    """The YAML's ``tokenizer``: a factory is trained on the training translations; a ready
    tokenizer (e.g. the pretrained decoder's MBart tokenizer) is used as it is."""
    tokenizer = hparams["tokenizer"]
    if callable(tokenizer):
        return tokenizer(annotation_train=hparams["train_json"], annotation_read="translation")
    return tokenizer


def target_ids(tokenizer, text: str, eos_index: int) -> list[int]:
    """Decoder targets: the tokenizer's own layout when it has one (``encode_target``, e.g.
    MBart-50's language code, tokens, EOS), else its token ids followed by EOS."""
    if hasattr(tokenizer, "encode_target"):
        return tokenizer.encode_target(text)
    return [*tokenizer.encode_as_ids(text), eos_index]


def dataio_prepare(hparams: dict, tokenizer, source_tokenizer=None) -> dict:
    """Manifests -> datasets with audio and target-token pipelines (train sorted by duration);
    with ``data_format: shards``, train and dev are loaders streaming tar shards of the same
    manifests."""

    def prepared(signal):
        if hparams["normalize_waveform"]:  # zero mean, unit variance, as Wav2Vec2 models expect
            signal = normalize_waveforms(signal.unsqueeze(0))[0]
        return signal

    @takes("wav")
    @provides("sig")
    def audio_pipeline(wav):
        return prepared(read_audio(wav, resample_to=hparams["sample_rate"])[0])

    @takes("audio")
    @provides("sig")
    def shard_audio_pipeline(audio):  # the shards' audio, decoded and resampled
        return prepared(audio)

    @takes("translation")
    @provides("tokens_eos")
    def text_pipeline(translation):
        return torch.LongTensor(target_ids(tokenizer, translation, hparams["eos_index"]))

    @takes("sentence")
    @provides("source_tokens")
    def source_pipeline(sentence):
        return torch.LongTensor(source_tokenizer.encode_as_ids(sentence))

    text_pipelines = [text_pipeline] + [source_pipeline] * (source_tokenizer is not None)
    output_keys = ["id", "sig", "tokens_eos", "translation"]
    output_keys += ["source_tokens"] * (source_tokenizer is not None)
    streaming = hparams["data_format"] == "shards"
    names = ("test",) if streaming else ("train", "dev", "test")
    datasets = {name: DynamicItemDataset.from_json(hparams[f"{name}_json"]) for name in names}
    for dataset in datasets.values():
        for pipeline in [audio_pipeline, *text_pipelines]:
            dataset.add_dynamic_item(pipeline)
        dataset.set_output_keys(output_keys)
    if streaming:
        pipelines = [shard_audio_pipeline, *text_pipelines]
        datasets.update(
            shard_loaders(hparams, pipelines, output_keys, ("train", "dev"), signal_key="audio")
        )
    else:
        datasets["train"] = datasets["train"].filtered_sorted(
            sort_key="duration", key_max_value={"duration": hparams["max_duration"]}
        )
    return datasets


def ensure_data(hparams: dict) -> None:
    """Generate the mini CoVoST when no real data folder is configured (rank 0 only)."""
    if hparams["covost_folder"] != hparams["mini_data_folder"]:
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
    from tools.mini_data.covost import make_covost

    make_covost(Path(hparams["mini_data_root"]), seed=hparams["mini_data_seed"], num_workers=2)


def main(argv: list[str]) -> None:
    hparams_file, run_opts, overrides = parse_arguments(argv)
    hparams = load_hparams(hparams_file, overrides)
    streaming = check_data_format(hparams, hparams_file, "json")
    create_experiment_directory(hparams["output_folder"], hparams_file, overrides, argv=argv)
    run_on_main(ensure_data, kwargs={"hparams": hparams})
    run_on_main(
        prepare_covost,
        kwargs={
            "cv_folder": hparams["cv_folder"],
            "covost_folder": hparams["covost_folder"],
            "save_folder": hparams["output_folder"],
            "src": hparams["source_language"],
            "tgt": hparams["target_language"],
        },
    )
    tokenizer = build_tokenizer(hparams)
    source_tokenizer = None
    if hparams["ctc_weight"] > 0:  # joint CTC on the source transcripts (characters)
        source_tokenizer = hparams["source_tokenizer"](
            annotation_train=hparams["train_json"], annotation_read="sentence"
        )
    datasets = dataio_prepare(hparams, tokenizer, source_tokenizer)
    brain = Translator(
        hparams["modules"], hparams["opt_class"], hparams, run_opts, hparams["checkpointer"]
    )
    brain.tokenizer = tokenizer
    brain.fit(
        hparams["epoch_counter"],
        datasets["train"],
        datasets["dev"],
        train_loader_kwargs=None if streaming else hparams["train_loader_kwargs"],
        valid_loader_kwargs=None if streaming else hparams["valid_loader_kwargs"],
    )
    brain.evaluate(
        datasets["test"], min_key="loss", test_loader_kwargs=hparams["valid_loader_kwargs"]
    )
    if if_main_process():  # one line, not one per process
        print(f"Results, hypotheses and the model are in {hparams['output_folder']}")


if __name__ == "__main__":
    main(sys.argv[1:])
