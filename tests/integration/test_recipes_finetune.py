"""The fine-tuning recipes (pretrained Hugging Face folders) run end to end in debug mode on tiny
generated corpora, with tiny pretrained folders built here from the shared fixtures."""

import json
import random
import shutil
from pathlib import Path

import pytest
import sentencepiece
import torch
from recipe_modules import load_recipe_module
from test_recipes_debug import RECIPES, last_test_stats, run_recipe

from speechlobes.lobes.text_decoders.bart import BartDecoder, MBartDecoderConfig
from speechlobes.tokenizers.mbart import MBartTokenizer
from tools.mini_data.covost import CovostSizes, make_covost
from tools.mini_data.grammar import sentence_pairs
from tools.mini_data.librispeech import LibriSpeechSizes, make_librispeech

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hf"
ENCODER_WIDTH = 32  # hidden_size of the w2v2_conformer_relpos fixture


@pytest.fixture(scope="module")
def encoder_folder(tmp_path_factory):
    """The Wav2Vec2-Conformer fixture's weights at wav2vec2's real 320x frame rate (the
    fixture's 20x strides make 3200 frames of a 4 s clip: minutes of relative attention)."""
    folder = tmp_path_factory.mktemp("w2v2_conformer")
    shutil.copytree(FIXTURES / "w2v2_conformer_relpos", folder, dirs_exist_ok=True)
    config = json.loads((folder / "config.json").read_text())
    config["conv_stride"] = [5, 8, 8]
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def decoder_folder(tmp_path_factory):
    """A tiny MBart-50 decoder (causal LM, no cross-attention yet) sized to its tokenizer: a
    SentencePiece model trained on German sentences of the mini corpus grammar."""
    folder = tmp_path_factory.mktemp("mbart50")
    german = [pair[1] for pair in sentence_pairs(300, random.Random(0))]
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(german),
        model_prefix=str(folder / "sentencepiece.bpe"),
        vocab_size=60,
        model_type="unigram",
        character_coverage=1.0,
        minloglevel=2,
    )
    tokenizer = MBartTokenizer(folder, target_language="de_DE")
    torch.manual_seed(0)
    config = MBartDecoderConfig(
        vocab_size=len(tokenizer),
        d_model=ENCODER_WIDTH // 2,  # narrower than the encoder: exercises enc_to_dec_proj
        decoder_layers=1,
        decoder_attention_heads=2,
        decoder_ffn_dim=32,
        max_position_embeddings=64,
        scale_embedding=True,
        add_cross_attention=False,
    )
    BartDecoder(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    root = tmp_path_factory.mktemp("mini")
    make_librispeech(
        root,
        sizes=LibriSpeechSizes(
            train_utterances=6,
            dev_utterances=2,
            test_utterances=2,
            test_other_utterances=2,
            train_speakers=2,
            dev_speakers=1,
            test_speakers=1,
            test_other_speakers=1,
            lm_sentences=10,
        ),
        num_workers=2,
    )
    make_covost(
        root,
        sizes=CovostSizes(
            train=8, dev=2, test=3, train_speakers=2, dev_speakers=1, test_speakers=1
        ),
        num_workers=2,
    )
    return root


def test_librispeech_w2v2_ctc_fine_tuning_debug_run(corpora, encoder_folder, tmp_path):
    output = tmp_path / "w2v2_ctc"
    run_recipe(
        RECIPES / "LibriSpeech/ASR/CTC",
        "hparams/w2v2_conformer.yaml",
        f"--data_folder={corpora / 'LibriSpeech'}",
        f"--output_folder={output}",
        f"--pretrained_path={encoder_folder}",
        f"--encoder_dim={ENCODER_WIDTH}",
        "--batch_size=2",
    )
    stats = last_test_stats(output)
    assert stats["CER"] >= 0 and stats["WER"] >= 0
    assert (output / "wer_test-clean.txt").is_file() and (output / "wer_test-other.txt").is_file()
    first_epoch = json.loads((output / "train_log.jsonl").read_text().splitlines()[0])
    # the logged LR is the first parameter group's, the encoder's: lr_scales' 0.05 of the
    # warm-up LR after the 2 debug steps (peak lr 0.001 reached after 1000 steps)
    assert first_epoch["lr"] == pytest.approx(0.05 * 0.001 * 2 / 1000)


def test_covost_targets_follow_the_tokenizer_layout(decoder_folder):
    translation = load_recipe_module("CoVoST/ST/seq2seq/train.py")
    mbart = MBartTokenizer(decoder_folder, target_language="de_DE")
    text = "Das Kind hat die Bücher."
    pieces = mbart.encode_as_ids(text)
    assert translation.build_tokenizer({"tokenizer": mbart}) is mbart  # ready: used as it is
    assert translation.target_ids(mbart, text, 2) == [mbart.target_language_id, *pieces, 2]

    class PlainTokenizer:  # SentencePiece's interface: ids only, the recipe appends EOS
        def encode_as_ids(self, text):
            return [5, 6, 7]

    assert translation.target_ids(PlainTokenizer(), text, eos_index=9) == [5, 6, 7, 9]


def test_covost_w2v2_mbart_fine_tuning_debug_run(corpora, encoder_folder, decoder_folder, tmp_path):
    output = tmp_path / "w2v2_mbart"
    run_recipe(
        RECIPES / "CoVoST/ST/seq2seq",
        "hparams/w2v2_mbart.yaml",
        f"--covost_folder={corpora / 'CoVoST'}",
        f"--output_folder={output}",
        f"--encoder_path={encoder_folder}",
        f"--decoder_path={decoder_folder}",
        "--batch_size=2",
        "--search_options.num_beams=2",
        "--search_options.max_new_tokens=12",
    )
    stats = last_test_stats(output)
    assert 0 <= stats["BLEU"] <= 100
    hypotheses = (output / "bleu_test.txt").read_text()
    assert hypotheses.count("\n") >= 3
    assert "de_DE" not in hypotheses  # the forced language code is a special token, not text
