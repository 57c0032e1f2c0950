#!/usr/bin/env python3
"""Speech translation template: a speech encoder-decoder on synthetic spoken number sentences.

    cd templates/speech_translation
    python train.py train.yaml                 # about 30 s on one CPU core
    python train.py train.yaml --debug         # smoke test: two batches, two epochs

The road: tones_prepare.py writes wavs + JSON manifests -> DynamicItemDataset pipelines read
audio and turn each translation into decoder input and target token ids -> PaddedBatch pads
each batch -> the Brain below trains with teacher forcing and, on validation/test, searches
for the best translation (greedy, then beam search) and scores BLEU.
The full-size version is recipes/CoVoST/ST/seq2seq/train.py.
"""

import sys

import torch
from tones_prepare import prepare_tones

from speechlobes.core import Brain, Stage, create_experiment_directory, parse_arguments
from speechlobes.dataio.audio import read_audio
from speechlobes.dataio.dataset import DynamicItemDataset
from speechlobes.dataio.encoders import TextEncoder
from speechlobes.dataio.pipeline import provides, takes
from speechlobes.distributed import run_on_main
from speechlobes.nnet.lengths import lengths_to_padding_mask
from speechlobes.utils.hparams import load_hparams


class Translator(Brain):
    def compute_forward(self, batch, stage):
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        # PaddedBatch padded the waveforms with zeros and kept RELATIVE lengths; the encoder
        # turns them into the relative lengths of its frames, so that the decoder's attention
        # never reads padded frames (and a padded utterance is encoded as if alone).
        # Teacher forcing: the decoder gets the TRUE previous tokens as input ([bos] w1 w2 ..)
        # and must predict each next one (w1 w2 .. [eos]): one parallel pass over the whole
        # target instead of one step per token, and no error snowballing while it learns.
        # The causal mask inside the decoder stops position t from peeking at t+1 onwards.
        out = self.modules.model(wavs, wav_lens=wav_lens, decoder_input_ids=batch.tokens_bos.data)
        hyps = None
        if stage != Stage.TRAIN:
            # At inference there is no true previous token: the model feeds on its own output,
            # one token at a time, until [eos]. Greedy keeps the single best token per step;
            # beam search keeps the `num_beams` best partial translations, so an early choice
            # that looked good but leads nowhere can still lose to a better whole sentence.
            search = self.hparams.test_search if stage == Stage.TEST else self.hparams.valid_search
            hyps = self.modules.model.generate(wavs, wav_lens=wav_lens, **search)
        return out.logits, hyps

    def compute_objectives(self, predictions, batch, stage):
        logits, hyps = predictions  # logits: (batch, target_len, vocab)
        targets = batch.tokens_eos.data
        # Padded target positions are set to -100, which cross_entropy ignores.
        padded = lengths_to_padding_mask(batch.tokens_eos.abs_lengths, targets.shape[1])
        labels = targets.masked_fill(padded, -100)
        loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100)
        if hyps is not None:
            texts = [self.detokenize(row) for row in hyps.tolist()]
            self.bleu.append(batch.id, texts, batch.translation)
            self.exact += sum(h == r for h, r in zip(texts, batch.translation, strict=True))
        return loss

    def detokenize(self, ids):
        """[bos] w1 .. wn [eos] [pad].. -> "w1 .. wn"."""
        ids = ids[1:]  # generate() returns the start token first
        eos = self.hparams.eos_index
        ids = ids[: ids.index(eos)] if eos in ids else ids
        return " ".join(self.label_encoder.decode_ndim(ids))

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        if should_step:
            self.hparams.lr_scheduler(self.optimizer)  # warmup then decay, once per step

    def on_stage_start(self, stage, epoch=None):
        if stage != Stage.TRAIN:
            self.bleu, self.exact = self.hparams.bleu_stats(), 0

    def on_stage_end(self, stage, stage_loss, epoch=None):
        stats = {"loss": stage_loss}
        if stage == Stage.TRAIN:
            self.train_stats = stats
            return
        stats["BLEU"] = self.bleu.summarize("BLEU")  # n-gram overlap with the reference, 0-100
        stats["exact_match"] = 100 * self.exact / len(self.bleu.hypotheses)
        if stage == Stage.VALID:
            lr = self.optimizer.param_groups[0]["lr"]
            self.hparams.train_logger.log_stats(
                {"epoch": epoch, "lr": lr}, train_stats=self.train_stats, valid_stats=stats
            )
            self.checkpointer.save_and_keep_only(meta={"BLEU": stats["BLEU"]}, max_keys=["BLEU"])
        else:
            self.hparams.train_logger.log_stats({"epoch": "test"}, test_stats=stats)
            print(f"Test BLEU: {stats['BLEU']:.1f}, exact match: {stats['exact_match']:.1f}%")


def dataio_prepare(hparams, label_encoder):
    """Manifests -> datasets whose examples are {id, sig, tokens_bos, tokens_eos, translation}."""

    @takes("wav")
    @provides("sig")
    def audio_pipeline(wav):
        # Wav2Vec2-style encoders expect each waveform scaled to zero mean and unit variance.
        sig = read_audio(wav)[0]
        return (sig - sig.mean()) / (sig.std() + 1e-7)

    @takes("translation")
    @provides("tokens_bos", "tokens_eos")
    def text_pipeline(translation):
        tokens = label_encoder.encode_sequence(translation.split())
        yield torch.LongTensor(label_encoder.prepend_bos_index(tokens))  # decoder input
        yield torch.LongTensor(label_encoder.append_eos_index(tokens))  # what it must predict

    datasets = {}
    for split in ("train", "valid", "test"):
        dataset = DynamicItemDataset.from_json(f"{hparams['data_folder']}/{split}.json")
        dataset.add_dynamic_item(audio_pipeline)
        dataset.add_dynamic_item(text_pipeline)
        dataset.set_output_keys(["id", "sig", "tokens_bos", "tokens_eos", "translation"])
        datasets[split] = dataset
    return datasets


if __name__ == "__main__":
    hparams_file, run_opts, overrides = parse_arguments(sys.argv[1:])
    hparams = load_hparams(hparams_file, overrides)
    create_experiment_directory(hparams["output_folder"], hparams_file, overrides)
    sizes = {split: hparams[f"num_{split}"] for split in ("train", "valid", "test")}
    words = [hparams["source_words"], hparams["target_words"]]
    run_on_main(prepare_tones, args=[hparams["data_folder"], sizes, *words])

    # Target vocabulary: <pad> = 0 (PaddedBatch pads with zeros), <bos> = 1, <eos> = 2, words.
    label_encoder = TextEncoder()
    label_encoder.add_label("<pad>")
    label_encoder.add_bos_eos()
    label_encoder.update_from_iterable(hparams["target_words"], sequence_input=False)
    special = [label_encoder.encode_label(label) for label in ("<pad>", "<bos>", "<eos>")]
    assert special == [hparams[key] for key in ("pad_index", "bos_index", "eos_index")]
    assert len(label_encoder) == hparams["vocab_size"], "vocab_size: 3 + len(target_words)"
    label_encoder.expect_len(hparams["vocab_size"])
    datasets = dataio_prepare(hparams, label_encoder)

    brain = Translator(
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
        datasets["test"], max_key="BLEU", test_loader_kwargs=hparams["valid_loader_kwargs"]
    )
