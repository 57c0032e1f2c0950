"""A SpeechEncoderDecoder built from YAML learns synthetic speech-to-token pairs in a Brain."""

import math

import torch

from speechlobes.core import Brain, Stage
from speechlobes.dataio.batch import PaddedBatch
from speechlobes.utils.hparams import load_hparams

HPARAMS = """
seed: 3
vocab_size: 8
encoder_config: !new:speechlobes.lobes.wav2vec2.Wav2Vec2Config
    model_type: wav2vec2-conformer
    hidden_size: 32
    num_attention_heads: 2
    num_hidden_layers: 1
    intermediate_size: 64
    conv_dim: [16, 16]
    conv_stride: [5, 4]
    conv_kernel: [10, 4]
    conv_bias: True
    feat_extract_norm: layer
    conv_depthwise_kernel_size: 7
    position_embeddings_type: rotary
    hidden_dropout: 0.0
    mask_time_prob: 0.0
decoder_config: !new:speechlobes.lobes.text_decoders.TransformerTextDecoderConfig
    vocab_size: !ref <vocab_size>
    d_model: 32
    num_layers: 1
    num_heads: 2
    ffn_dim: 64
    dropout: 0.0
    pad_token_id: 0
    bos_token_id: 1
    eos_token_id: 2
sed_config: !new:speechlobes.lobes.speech_encoder_decoder.SpeechEncoderDecoderConfig
    encoder: !ref <encoder_config>
    decoder: !ref <decoder_config>
    decoder_start_token_id: 1
    pad_token_id: 0
    eos_token_id: 2
model: !new:speechlobes.lobes.speech_encoder_decoder.SpeechEncoderDecoderModel
    config: !ref <sed_config>
modules:
    model: !ref <model>
opt_class: !name:torch.optim.Adam
    lr: 0.003
"""

# token -> tone frequency (Hz at 16 kHz); each token is a 0.05 s tone
TONES = {3: 400.0, 4: 900.0, 5: 1500.0, 6: 2300.0, 7: 3100.0}
TARGETS = [[3, 4, 2], [5, 6, 7, 2], [7, 3, 2], [4, 4, 6, 2]]


def synthetic_pair(tokens):
    t = torch.arange(800) / 16000
    wav = torch.cat([torch.sin(2 * math.pi * TONES[k] * t) for k in tokens[:-1]])
    return {"wav": wav, "tokens": torch.tensor(tokens)}


def labels_of(batch):
    tokens, lengths = batch.tokens.data, batch.tokens.abs_lengths
    padded = torch.arange(tokens.shape[1])[None, :] >= lengths[:, None]
    return tokens.masked_fill(padded, -100)


class Seq2SeqBrain(Brain):
    def compute_forward(self, batch, stage):
        wavs, wav_lens = batch.wav
        return self.modules.model(wavs, wav_lens=wav_lens, labels=labels_of(batch))

    def compute_objectives(self, predictions, batch, stage):
        return predictions.loss

    def on_stage_end(self, stage, stage_loss, epoch=None):
        if stage == Stage.TRAIN:
            self.losses.append(stage_loss)


def test_yaml_model_trains_in_a_brain_and_beam_decodes_its_targets(tmp_path):
    path = tmp_path / "hparams.yaml"
    path.write_text(HPARAMS)
    torch.manual_seed(0)  # the model is initialised while the YAML loads
    hparams = load_hparams(path)
    data = [synthetic_pair(tokens) for tokens in TARGETS]
    brain = Seq2SeqBrain(
        hparams["modules"],
        hparams["opt_class"],
        hparams,
        run_opts={"device": "cpu", "noprogressbar": True},
    )
    brain.losses = []
    brain.fit(range(80), data, train_loader_kwargs={"batch_size": 4, "collate_fn": PaddedBatch})
    assert brain.losses[-1] < 0.1 * brain.losses[0]

    batch = PaddedBatch(data)
    model = hparams["model"].eval()
    wavs, wav_lens = batch.wav
    ids = model.generate(wavs, wav_lens=wav_lens, max_new_tokens=6, num_beams=3)
    for row, tokens in zip(ids.tolist(), TARGETS, strict=True):
        assert row[0] == 1
        assert row[1 : 1 + len(tokens)] == tokens
