"""Oracle tests: what we save loads in transformers and every search option gives its ids."""

from pathlib import Path

import pytest
import torch
import transformers

from speechlobes.lobes.speech_encoder_decoder import (
    SpeechEncoderDecoderConfig,
    SpeechEncoderDecoderModel,
)
from speechlobes.lobes.text_decoders.bart import BartDecoder, MBartDecoderConfig
from speechlobes.lobes.wav2vec2 import Wav2Vec2Config

pytestmark = pytest.mark.oracle("transformers")

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hf"


def randomise(model: torch.nn.Module, seed: int) -> None:
    """Non-trivial weights everywhere (norm gains around 1, biases non-zero)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name.lower() and name.endswith("weight"):
                param.copy_(0.6 + 0.8 * torch.rand(param.shape, generator=gen))
            elif param.dim() == 1:
                param.copy_(0.1 * torch.randn(param.shape, generator=gen))
            else:
                param.copy_(torch.randn(param.shape, generator=gen) / param.shape[-1] ** 0.5)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """An MBart-decoder model of ours, saved, and the same folder loaded by transformers."""
    encoder = Wav2Vec2Config(
        model_type="wav2vec2",
        hidden_size=24,
        num_attention_heads=2,
        num_hidden_layers=1,
        intermediate_size=32,
        conv_dim=[16, 16],
        conv_stride=[5, 2],
        conv_kernel=[10, 3],
        conv_bias=True,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        num_conv_pos_embeddings=4,
        num_conv_pos_embedding_groups=2,
        add_adapter=True,
        output_hidden_size=24,
        num_adapter_layers=1,
    )
    decoder = MBartDecoderConfig(
        vocab_size=40,
        d_model=16,
        decoder_layers=2,
        decoder_attention_heads=2,
        decoder_ffn_dim=32,
        dropout=0.0,
        max_position_embeddings=40,
        scale_embedding=True,
        tie_word_embeddings=False,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
    )
    config = SpeechEncoderDecoderConfig.from_encoder_decoder_configs(
        encoder, decoder, decoder_start_token_id=2, pad_token_id=1, eos_token_id=2, bos_token_id=0
    )
    ours = SpeechEncoderDecoderModel(config).eval()
    assert isinstance(ours.decoder, BartDecoder) and ours.enc_to_dec_proj is not None
    randomise(ours, 0)
    folder = tmp_path_factory.mktemp("sed_mbart")
    ours.save_pretrained(folder)
    theirs = transformers.SpeechEncoderDecoderModel.from_pretrained(folder).eval()
    gen = torch.Generator().manual_seed(1)
    wav = torch.randn(3, 2400, generator=gen)
    mask = torch.ones(3, 2400, dtype=torch.long)
    mask[1, 1500:], mask[2, 2000:] = 0, 0
    wav = wav * mask
    return ours, theirs, wav, mask


def test_saved_model_gives_transformers_the_same_loss_and_logits(pair):
    ours, theirs, wav, mask = pair
    labels = torch.tensor([[5, 6, 7, 2], [8, 9, 2, -100], [10, 2, -100, -100]])
    with torch.no_grad():
        a = ours(wav, mask, labels=labels)
        b = theirs(input_values=wav, attention_mask=mask, labels=labels)
    torch.testing.assert_close(a.logits, b.logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(a.loss, b.loss, atol=1e-5, rtol=1e-5)


SEARCHES = [
    dict(),
    dict(num_beams=4, early_stopping=True),
    dict(num_beams=3, early_stopping=False, length_penalty=0.5),
    dict(num_beams=3, early_stopping="never", length_penalty=2.0),
    dict(num_beams=4, num_return_sequences=3),
    dict(no_repeat_ngram_size=2, min_length=6),
    dict(num_beams=2, no_repeat_ngram_size=1, min_length=4),
]


@pytest.mark.parametrize(
    "options", SEARCHES, ids=lambda o: ",".join(map(str, o.items())) or "greedy"
)
def test_search_ids_equal_transformers_generate(pair, options):
    ours, theirs, wav, mask = pair
    ids = ours.generate(wav, mask, max_new_tokens=10, **options)
    expected = theirs.generate(input_values=wav, attention_mask=mask, max_new_tokens=10, **options)
    assert torch.equal(ids, expected)


@pytest.mark.parametrize(
    "options",
    [
        dict(do_sample=True, top_k=0),
        dict(do_sample=True, temperature=0.7, top_k=5, top_p=0.9, num_return_sequences=2),
        dict(do_sample=True, num_beams=3, top_k=10),
    ],
    ids=["plain", "tempered-topk-topp", "beam-sample"],
)
def test_sampling_draws_what_transformers_draws_from_the_same_global_seed(pair, options):
    """Same seed, same ids. Pinned to the release in tests/oracles.py on purpose: the order in
    which a search draws its random numbers is not a contract of transformers (beam-sample draws
    differently in 5.25.0 than in 5.23.0). A failure here after a refresh of the lock says that
    the draw order moved, not that sampling is wrong."""
    ours, theirs, wav, mask = pair
    torch.manual_seed(123)
    ids = ours.generate(wav, mask, max_new_tokens=8, **options)
    torch.manual_seed(123)
    expected = theirs.generate(input_values=wav, attention_mask=mask, max_new_tokens=8, **options)
    assert torch.equal(ids, expected)


def test_gpt2_language_model_becomes_a_decoder_like_transformers_does(tmp_path):
    gpt2 = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(vocab_size=30, n_embd=32, n_layer=1, n_head=2, n_positions=32)
    )
    gpt2.save_pretrained(tmp_path / "gpt2")
    ours = SpeechEncoderDecoderModel.from_encoder_decoder_pretrained(
        FIXTURES / "w2v2_conformer_rotary",
        tmp_path / "gpt2",
        decoder_start_token_id=5,
        pad_token_id=0,
    ).eval()
    assert ours.enc_to_dec_proj is None
    ours.save_pretrained(tmp_path / "joined")
    theirs = transformers.SpeechEncoderDecoderModel.from_pretrained(tmp_path / "joined").eval()
    cases = torch.load(FIXTURES / "w2v2_conformer_rotary" / "cases.pt", weights_only=True)
    labels = torch.tensor([[3, 4, 9], [7, 8, 1], [2, 2, 2]])
    with torch.no_grad():
        a = ours(cases["input_values"], cases["attention_mask"], labels=labels).logits
        b = theirs(
            input_values=cases["input_values"],
            attention_mask=cases["attention_mask"],
            labels=labels,
        ).logits
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    lm_weight = ours.decoder.transformer.h[0].attn.c_attn.weight
    assert torch.equal(lm_weight, gpt2.transformer.h[0].attn.c_attn.weight)


def test_folder_saved_by_transformers_loads_with_the_same_outputs(pair, tmp_path):
    ours, theirs, wav, mask = pair
    theirs.save_pretrained(tmp_path)
    again = SpeechEncoderDecoderModel.from_pretrained(tmp_path)
    ids = torch.tensor([[2, 5, 6, 7], [2, 8, 9, 1]]).repeat(2, 1)[:3]
    with torch.no_grad():
        a = again(wav, mask, decoder_input_ids=ids).logits
        b = theirs(input_values=wav, attention_mask=mask, decoder_input_ids=ids).logits
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["sed_bert", "sed_bart", "sed_gpt2"])
def test_fixture_saved_by_us_loads_in_transformers_with_the_same_logits(name, tmp_path):
    ours = SpeechEncoderDecoderModel.from_pretrained(FIXTURES / name)
    ours.save_pretrained(tmp_path)
    theirs = transformers.SpeechEncoderDecoderModel.from_pretrained(tmp_path).eval()
    cases = torch.load(FIXTURES / name / "cases.pt", weights_only=True)
    with torch.no_grad():
        out = theirs(
            input_values=cases["input_values"],
            attention_mask=cases["attention_mask"],
            labels=cases["labels"],
        )
    torch.testing.assert_close(out.logits, cases["logits"], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("options", [dict(), dict(num_beams=3)], ids=["greedy", "beam"])
def test_forced_bos_token_equals_transformers_generate_on_the_bart_fixture(options):
    folder = FIXTURES / "sed_bart"
    ours = SpeechEncoderDecoderModel.from_pretrained(folder)
    theirs = transformers.SpeechEncoderDecoderModel.from_pretrained(folder).eval()
    cases = torch.load(folder / "cases.pt", weights_only=True)
    wav, mask = cases["input_values"], cases["attention_mask"]
    forced = 11
    assert cases["greedy_ids"][:, 1].ne(forced).all()
    ids = ours.generate(wav, mask, max_new_tokens=8, forced_bos_token_id=forced, **options)
    expected = theirs.generate(
        input_values=wav,
        attention_mask=mask,
        max_new_tokens=8,
        forced_bos_token_id=forced,
        **options,
    )
    assert ids[:, 1].eq(forced).all()
    assert torch.equal(ids, expected)


def test_forced_bos_token_saved_with_the_model_is_the_generation_default(tmp_path):
    model = SpeechEncoderDecoderModel.from_pretrained(FIXTURES / "sed_bart")
    model.config.forced_bos_token_id = 9
    model.save_pretrained(tmp_path)
    ours = SpeechEncoderDecoderModel.from_pretrained(tmp_path)
    theirs = transformers.SpeechEncoderDecoderModel.from_pretrained(tmp_path).eval()
    assert ours.config.forced_bos_token_id == theirs.generation_config.forced_bos_token_id == 9
    cases = torch.load(FIXTURES / "sed_bart" / "cases.pt", weights_only=True)
    wav, mask = cases["input_values"], cases["attention_mask"]
    ids = ours.generate(wav, mask, max_new_tokens=6)
    assert ids[:, 1].eq(9).all()
    expected = theirs.generate(input_values=wav, attention_mask=mask, max_new_tokens=6)
    assert torch.equal(ids, expected)
