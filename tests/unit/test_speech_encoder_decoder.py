"""SpeechEncoderDecoder reproduces the transformers fixtures and round-trips its folders."""

import json
import logging
from pathlib import Path

import pytest
import torch

from speechlobes.lobes.beats import BEATsConfig
from speechlobes.lobes.conformer import ConformerConfig, FbankConformer
from speechlobes.lobes.speech_encoder_decoder import (
    SpeechEncoderDecoderConfig,
    SpeechEncoderDecoderModel,
    shift_tokens_right,
)
from speechlobes.lobes.text_decoders import (
    BertDecoder,
    BertDecoderConfig,
    TransformerTextDecoder,
    TransformerTextDecoderConfig,
    packing,
)
from speechlobes.lobes.wav2vec2 import Wav2Vec2Config

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hf"
FOLDERS = ["sed_bert", "sed_bart", "sed_gpt2"]
ATOL = 1e-4


def load(name):
    model = SpeechEncoderDecoderModel.from_pretrained(FIXTURES / name)
    cases = torch.load(FIXTURES / name / "cases.pt", weights_only=True)
    return model, cases


@pytest.fixture(scope="module", params=FOLDERS)
def fixture(request):
    return (request.param, *load(request.param))


def test_forward_reproduces_loss_logits_and_states(fixture):
    _, model, cases = fixture
    with torch.no_grad():
        out = model(
            cases["input_values"],
            cases["attention_mask"],
            labels=cases["labels"],
            output_hidden_states=True,
        )
    torch.testing.assert_close(out.loss, cases["loss"], atol=ATOL, rtol=1e-5)
    torch.testing.assert_close(out.logits, cases["logits"], atol=ATOL, rtol=ATOL)
    torch.testing.assert_close(
        out.encoder_last_hidden_state, cases["encoder_last_hidden_state"], atol=ATOL, rtol=ATOL
    )
    hidden = torch.stack(out.decoder_hidden_states)
    torch.testing.assert_close(hidden, cases["decoder_hidden_states"], atol=ATOL, rtol=ATOL)
    frames = cases["encoder_attention_mask"].shape[1]
    valid = (out.encoder_lens * frames).round().long()
    assert torch.equal(valid, cases["encoder_attention_mask"].sum(-1))


def test_labels_are_shifted_right_with_start_token_and_pad(fixture):
    _, model, cases = fixture
    shifted = shift_tokens_right(
        cases["labels"], model.config.pad_token_id, model.config.decoder_start_token_id
    )
    assert torch.equal(shifted, cases["decoder_input_ids"])


@pytest.fixture(params=["plain", "packed", "fast paths off"])
def decoding(request, monkeypatch):
    """Generation on plain weights, on weights packed for oneDNN (forced on tiny models), and
    with the fast paths off (the plain cache): returns generate's ``fast`` and the packing log."""
    packed = []
    if request.param == "packed":
        monkeypatch.setattr(packing, "PACK_MIN_BYTES", 0)
        original = packing.pack_weight
        monkeypatch.setattr(
            packing, "pack_weight", lambda *args: packed.append(1) or original(*args)
        )
    return request.param != "fast paths off", packed, request.param == "packed"


def test_greedy_ids_and_scores_match(fixture, decoding):
    _, model, cases = fixture
    fast, packed, packs = decoding
    out = model.generate(
        cases["input_values"],
        cases["attention_mask"],
        max_new_tokens=12,
        return_scores=True,
        fast=fast,
    )
    assert torch.equal(out.sequences, cases["greedy_ids"])
    torch.testing.assert_close(out.scores, cases["greedy_scores"], atol=ATOL, rtol=ATOL)
    assert bool(packed) == packs


def test_beam_ids_and_scores_match(fixture, decoding):
    _, model, cases = fixture
    fast, packed, packs = decoding
    out = model.generate(
        cases["input_values"],
        cases["attention_mask"],
        max_new_tokens=12,
        num_beams=4,
        early_stopping=True,
        return_scores=True,
        fast=fast,
    )
    assert torch.equal(out.sequences, cases["beam_ids"])
    torch.testing.assert_close(
        out.sequences_scores, cases["beam_sequences_scores"], atol=1e-5, rtol=1e-5
    )
    assert bool(packed) == packs


def test_incremental_decoding_with_cache_equals_full_forward(fixture):
    _, model, cases = fixture
    ids = cases["decoder_input_ids"]
    with torch.no_grad():
        encoded = model.encode(cases["input_values"], cases["attention_mask"])
        full = model(encoder_outputs=encoded, decoder_input_ids=ids).logits
        first = model(encoder_outputs=encoded, decoder_input_ids=ids[:, :3], use_cache=True)
        rest = model(
            encoder_outputs=encoded,
            decoder_input_ids=ids[:, 3:],
            past_key_values=first.past_key_values,
        )
    torch.testing.assert_close(torch.cat([first.logits, rest.logits], 1), full, atol=1e-5, rtol=0)


def test_save_then_load_gives_identical_outputs(fixture, tmp_path):
    name, model, cases = fixture
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "speech-encoder-decoder"
    assert saved["decoder"]["add_cross_attention"] and saved["decoder"]["is_decoder"]
    reloaded = SpeechEncoderDecoderModel.from_pretrained(tmp_path)
    with torch.no_grad():
        a = model(cases["input_values"], cases["attention_mask"], labels=cases["labels"]).logits
        b = reloaded(cases["input_values"], cases["attention_mask"], labels=cases["labels"]).logits
    assert torch.equal(a, b)
    original = set(torch.load(FIXTURES / name / "cases.pt", weights_only=True))
    assert "logits" in original


def test_config_json_round_trip_keeps_foreign_fields(tmp_path):
    config = SpeechEncoderDecoderConfig.from_dict(
        json.loads((FIXTURES / "sed_bart" / "config.json").read_text())
    )
    config.to_json(tmp_path / "config.json")
    again = json.loads((tmp_path / "config.json").read_text())
    original = json.loads((FIXTURES / "sed_bart" / "config.json").read_text())
    assert again["decoder"]["encoder_layers"] == original["decoder"]["encoder_layers"]
    assert again["decoder_start_token_id"] == 2 and again["pad_token_id"] == 1
    assert again["encoder"]["add_adapter"] is True


def tiny_encoder_config(hidden=16):
    return Wav2Vec2Config(
        model_type="wav2vec2-conformer",
        hidden_size=hidden,
        num_attention_heads=2,
        num_hidden_layers=1,
        intermediate_size=32,
        conv_dim=[8, 8],
        conv_stride=[5, 2],
        conv_kernel=[10, 3],
    )


def tiny_model(decoder_width=8):
    decoder = TransformerTextDecoderConfig(
        vocab_size=12, d_model=decoder_width, num_layers=1, num_heads=2, ffn_dim=16, dropout=0.0
    )
    config = SpeechEncoderDecoderConfig.from_encoder_decoder_configs(
        tiny_encoder_config(), decoder, decoder_start_token_id=1, pad_token_id=0, eos_token_id=2
    )
    torch.manual_seed(0)
    return SpeechEncoderDecoderModel(config).eval()


def test_projection_exists_only_when_widths_differ():
    assert tiny_model(decoder_width=8).enc_to_dec_proj.in_features == 16
    assert tiny_model(decoder_width=16).enc_to_dec_proj is None


def test_label_smoothing_and_ignored_labels_change_the_loss_as_expected():
    model = tiny_model()
    wav = torch.randn(2, 1600, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([[4, 5, 2], [6, 2, -100]])
    with torch.no_grad():
        out = model(wav, labels=labels)
        smooth = model(wav, labels=labels, label_smoothing=0.1).loss
    log_probs = out.logits.log_softmax(-1)
    valid = labels != -100
    picked = log_probs.gather(-1, labels.clamp(min=0)[..., None])[..., 0][valid]
    nll = -picked.mean()
    uniform = -log_probs.mean(-1)[valid].mean()
    torch.testing.assert_close(out.loss, nll)
    torch.testing.assert_close(smooth, 0.9 * nll + 0.1 * uniform)


def test_freeze_feature_encoder_stops_only_the_conv_front_end():
    model = tiny_model()
    before = {n for n, p in model.named_parameters() if not p.requires_grad}
    model.freeze_feature_encoder()
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad} - before
    conv = {n for n, _ in model.named_parameters() if n.startswith("encoder.feature_extractor.")}
    assert conv and frozen == conv


def test_sampling_is_reproducible_with_a_seed_and_returns_several_sequences():
    model = tiny_model()
    wav = torch.randn(2, 1600, generator=torch.Generator().manual_seed(2))
    kwargs = dict(max_new_tokens=6, do_sample=True, num_return_sequences=3, top_k=0, seed=7)
    a = model.generate(wav, **kwargs)
    b = model.generate(wav, **kwargs)
    assert a.shape[0] == 6 and torch.equal(a, b)
    assert (a[:, 0] == 1).all()


def test_beam_search_returns_sorted_hypotheses_per_utterance():
    model = tiny_model()
    wav = torch.randn(2, 1600, generator=torch.Generator().manual_seed(3))
    out = model.generate(
        wav, max_new_tokens=5, num_beams=3, num_return_sequences=3, return_scores=True
    )
    scores = out.sequences_scores.view(2, 3)
    assert out.sequences.shape[0] == 6
    assert (scores[:, :-1] >= scores[:, 1:]).all()


def test_beam_sampling_is_reproducible_and_keeps_its_hypotheses_sorted():
    model = tiny_model()
    wav = torch.randn(2, 1600, generator=torch.Generator().manual_seed(4))
    kwargs = dict(max_new_tokens=5, num_beams=3, num_return_sequences=2, do_sample=True)
    a = model.generate(wav, seed=11, return_scores=True, **kwargs)
    b = model.generate(wav, seed=11, return_scores=True, **kwargs)
    assert a.sequences.shape[0] == 4 and torch.equal(a.sequences, b.sequences)
    scores = a.sequences_scores.view(2, 2)
    assert (scores[:, 0] >= scores[:, 1]).all() and (scores < 0).all()


def test_padded_utterance_decodes_like_the_same_utterance_alone():
    encoder = Wav2Vec2Config(
        model_type="wav2vec2",
        hidden_size=16,
        num_attention_heads=2,
        num_hidden_layers=1,
        intermediate_size=32,
        conv_dim=[8, 8],
        conv_stride=[5, 2],
        conv_kernel=[10, 3],
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        num_conv_pos_embeddings=4,
        num_conv_pos_embedding_groups=2,
    )
    decoder = BertDecoderConfig(
        vocab_size=12,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        max_position_embeddings=32,
    )
    config = SpeechEncoderDecoderConfig.from_encoder_decoder_configs(
        encoder, decoder, decoder_start_token_id=1, pad_token_id=0, eos_token_id=2
    )
    torch.manual_seed(0)
    model = SpeechEncoderDecoderModel(config).eval()
    assert isinstance(model.decoder, BertDecoder)
    wav = torch.randn(2, 1600, generator=torch.Generator().manual_seed(4))
    wav[1, 1000:] = 0
    wav_lens = torch.tensor([1.0, 1000 / 1600])
    batch = model.generate(
        wav, wav_lens=wav_lens, max_new_tokens=5, num_beams=2, return_scores=True
    )
    alone = model.generate(wav[1:, :1000], max_new_tokens=5, num_beams=2, return_scores=True)
    n = alone.sequences.shape[1]
    assert torch.equal(batch.sequences[1, :n], alone.sequences[0])
    torch.testing.assert_close(
        batch.sequences_scores[1], alone.sequences_scores[0], atol=1e-4, rtol=0
    )


def test_from_encoder_decoder_pretrained_creates_and_logs_cross_attention(tmp_path, caplog):
    decoder = BertDecoder(
        BertDecoderConfig(
            vocab_size=12,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            add_cross_attention=False,
            is_decoder=False,
            bos_token_id=1,
            eos_token_id=2,
        )
    )
    decoder.save_pretrained(tmp_path / "bert")
    with caplog.at_level(logging.INFO):
        model = SpeechEncoderDecoderModel.from_encoder_decoder_pretrained(
            FIXTURES / "wav2vec2_layer", tmp_path / "bert", decoder_hidden_dropout_prob=0.0
        )
    assert "crossattention" in caplog.text
    assert model.config.decoder.hidden_dropout_prob == 0.0
    assert model.config.decoder_start_token_id == 1 and model.config.pad_token_id == 0
    layer = model.decoder.bert.encoder.layer[0]
    assert torch.equal(
        layer.attention.self.query.weight, decoder.bert.encoder.layer[0].attention.self.query.weight
    )
    assert model.enc_to_dec_proj.in_features == 32
    cases = torch.load(FIXTURES / "wav2vec2_layer" / "cases.pt", weights_only=True)
    encoded = model.encode(cases["input_values"], cases["attention_mask"])
    torch.testing.assert_close(
        encoded.frames,
        model.enc_to_dec_proj(cases["last_hidden_state"]),
        atol=ATOL,
        rtol=ATOL,
    )


def test_missing_start_token_is_a_clear_error():
    with pytest.raises(ValueError, match="decoder_start_token_id"):
        shift_tokens_right(torch.tensor([[3, 2]]), 0, None)


def test_beats_encoder_joins_with_its_patch_lengths_and_round_trips(tmp_path):
    beats = BEATsConfig(
        embed_dim=32,
        encoder_layers=1,
        encoder_embed_dim=32,
        encoder_ffn_embed_dim=64,
        encoder_attention_heads=4,
        conv_pos=8,
        conv_pos_groups=4,
    )
    decoder = TransformerTextDecoderConfig(
        vocab_size=12, d_model=16, num_layers=1, num_heads=2, ffn_dim=32, dropout=0.0
    )
    config = SpeechEncoderDecoderConfig.from_encoder_decoder_configs(
        beats, decoder, decoder_start_token_id=1, pad_token_id=0, eos_token_id=2
    )
    torch.manual_seed(0)
    model = SpeechEncoderDecoderModel(config).eval()
    assert model.enc_to_dec_proj.in_features == 32
    assert model.encoder.training is False and not model.encoder.freeze  # trainable
    wav = torch.randn(2, 16000, generator=torch.Generator().manual_seed(5))
    wav_lens = torch.tensor([1.0, 0.5])
    encoded = model.encode(wav, wav_lens=wav_lens)
    assert encoded.frames.shape == (2, 48, 16)
    assert (encoded.lengths * 48).tolist() == [48, 24]
    ids = model.generate(wav, wav_lens=wav_lens, max_new_tokens=4, num_beams=2)
    model.save_pretrained(tmp_path)
    again = SpeechEncoderDecoderModel.from_pretrained(tmp_path)
    assert torch.equal(again.generate(wav, wav_lens=wav_lens, max_new_tokens=4, num_beams=2), ids)


def test_decoder_without_cross_attention_is_rejected_with_advice():
    decoder = TransformerTextDecoderConfig(vocab_size=12, d_model=16, num_layers=1, num_heads=2)
    decoder.add_cross_attention = False
    config = SpeechEncoderDecoderConfig(encoder=tiny_encoder_config(), decoder=decoder)
    with pytest.raises(ValueError, match="add_cross_attention"):
        SpeechEncoderDecoderModel(config)


def test_fbank_conformer_encoder_joins_and_round_trips(tmp_path):
    encoder = FbankConformer(
        ConformerConfig(input_size=20, hidden_size=16, num_layers=1, num_heads=2, ffn_size=32)
    )
    decoder = TransformerTextDecoder(
        TransformerTextDecoderConfig(
            vocab_size=12, d_model=16, num_layers=1, num_heads=2, ffn_dim=32, dropout=0.0
        )
    )
    model = SpeechEncoderDecoderModel(encoder=encoder, decoder=decoder).eval()
    assert model.enc_to_dec_proj is None and model.config.decoder_start_token_id == 1
    wav = torch.randn(2, 8000, generator=torch.Generator().manual_seed(6))
    wav_lens = torch.tensor([1.0, 0.6])
    ids = model.generate(wav, wav_lens=wav_lens, max_new_tokens=4, num_beams=2)
    plain = model.generate(wav, wav_lens=wav_lens, max_new_tokens=4, num_beams=2, fast=False)
    assert torch.equal(ids, plain)
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["encoder"]["model_type"] == (
        "fbank-conformer"
    )
    again = SpeechEncoderDecoderModel.from_pretrained(tmp_path)
    assert isinstance(again.encoder, FbankConformer)
    assert torch.equal(again.generate(wav, wav_lens=wav_lens, max_new_tokens=4, num_beams=2), ids)
