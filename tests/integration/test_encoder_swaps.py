"""One YAML override swaps the speech encoder: BEATs, Wav2Vec2-Conformer and the fbank
Conformer each train in the LibriSpeech CTC recipe and in the CoVoST SpeechEncoderDecoder,
which use nothing but the speech-encoder contract."""

import pytest
import torch
from recipe_modules import RECIPES, load_recipe_module

from speechlobes.core import Stage
from speechlobes.dataio.batch import PaddedBatch
from speechlobes.lobes.beats import BEATs
from speechlobes.lobes.conformer import FbankConformer
from speechlobes.lobes.wav2vec2 import Wav2Vec2ConformerModel
from speechlobes.utils.hparams import load_hparams

# Each encoder as one YAML value (a tagged flow sequence replaces the recipe's entry whole).
ENCODERS = {
    "beats": (
        "!new:speechlobes.lobes.beats.BEATs [null, False, False, {embed_dim: 32, "
        "encoder_layers: 1, encoder_embed_dim: 32, encoder_ffn_embed_dim: 64, "
        "encoder_attention_heads: 4, conv_pos: 8, conv_pos_groups: 4}]",
        BEATs,
    ),
    "wav2vec2-conformer": (
        "!new:speechlobes.lobes.wav2vec2.Wav2Vec2ConformerModel "
        "[!new:speechlobes.lobes.wav2vec2.Wav2Vec2Config {model_type: wav2vec2-conformer, "
        "hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 64, "
        "conv_dim: [16, 16, 16], conv_kernel: [10, 4, 4], conv_stride: [5, 4, 4], "
        "conv_depthwise_kernel_size: 7, num_conv_pos_embeddings: 4, "
        "num_conv_pos_embedding_groups: 2, feat_extract_norm: layer, layerdrop: 0.0, "
        "mask_time_prob: 0.0, vocab_size: null}]",
        Wav2Vec2ConformerModel,
    ),
    "fbank conformer": (
        "!new:speechlobes.lobes.conformer.FbankConformer "
        "[!new:speechlobes.lobes.conformer.ConformerConfig {input_size: 40, hidden_size: 32, "
        "num_layers: 1, num_heads: 2, ffn_size: 64, kernel_size: 7, dropout: 0.0}]",
        FbankConformer,
    ),
}
RUN_OPTS = {"device": "cpu", "noprogressbar": True}


def utterances(count: int) -> list[dict]:
    """Noisy tones of 0.6-1 s with a short token sequence each."""
    gen = torch.Generator().manual_seed(0)
    items = []
    for index in range(count):
        length = 9600 + 1600 * index
        time = torch.arange(length) / 16000
        wav = 0.3 * torch.sin(2 * torch.pi * (300 + 400 * index) * time)
        tokens = torch.tensor([3 + index, 5, 7 + index])
        items.append(
            {
                "id": f"u{index}",
                "sig": wav + 0.01 * torch.randn(length, generator=gen),
                "tokens": tokens,
                "wrd": "A B",
            }
        )
    return items


def train_steps(brain, batch: PaddedBatch, steps: int) -> list[float]:
    brain.on_stage_start(Stage.TRAIN, 1)
    losses = []
    for _ in range(steps):
        loss = brain.compute_objectives(
            brain.compute_forward(batch, Stage.TRAIN), batch, Stage.TRAIN
        )
        brain.optimizer.zero_grad()
        loss.backward()
        brain.optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_ctc_recipe_trains_with_any_encoder_by_override(name, tmp_path):
    value, cls = ENCODERS[name]
    overrides = f"output_folder: {tmp_path}\nd_model: 32\nencoder: {value}\n"
    hparams = load_hparams(RECIPES / "LibriSpeech/ASR/CTC/hparams/conformer_small.yaml", overrides)
    assert type(hparams["asr_model"].encoder) is cls
    recipe = load_recipe_module("LibriSpeech/ASR/CTC/train.py")
    torch.manual_seed(0)
    brain = recipe.CTCRecogniser(hparams["modules"], hparams["opt_class"], hparams, RUN_OPTS)
    brain.init_optimizers()
    losses = train_steps(brain, PaddedBatch(utterances(3)), steps=6)
    assert all(map(torch.isfinite, torch.tensor(losses))) and losses[-1] < losses[0], losses


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_speech_encoder_decoder_trains_with_any_encoder_by_override(name, tmp_path):
    value, cls = ENCODERS[name]
    overrides = f"output_folder: {tmp_path}\nd_model: 32\nencoder: {value}\n"
    hparams = load_hparams(
        RECIPES / "CoVoST/ST/seq2seq/hparams/conformer_transformer_small.yaml", overrides
    )
    model = hparams["model"]
    assert type(model.encoder) is cls and model.config.encoder is model.encoder.config
    recipe = load_recipe_module("CoVoST/ST/seq2seq/train.py")
    torch.manual_seed(0)
    brain = recipe.Translator(hparams["modules"], hparams["opt_class"], hparams, RUN_OPTS)
    brain.init_optimizers()
    items = [
        {
            **item,
            "tokens_eos": torch.cat([item["tokens"], torch.tensor([2])]),
            "source_tokens": item["tokens"],
            "translation": "a b",
        }
        for item in utterances(3)
    ]
    batch = PaddedBatch(items)
    losses = train_steps(brain, batch, steps=6)
    assert all(map(torch.isfinite, torch.tensor(losses))) and losses[-1] < losses[0], losses
    model.eval()
    wavs, wav_lens = batch.sig
    hyps = model.generate(wavs, wav_lens=wav_lens, max_new_tokens=3, num_beams=2)
    assert hyps.shape[0] == 3 and bool((hyps[:, 0] == 1).all())
