"""Every lobe in bfloat16 the PyTorch way: ``model.to(torch.bfloat16)`` under inference_mode.

For each lobe, on the committed fixtures: float32 and bfloat16 waveforms are both accepted,
the output comes back in the model's dtype, and it has cosine >= 0.999 to the float32
model's output. Feature front ends keep their constant tables in full precision.
"""

from pathlib import Path

import pytest
import torch
from test_conformer import small_encoder
from test_text_decoders import tiny_decoders

import speechlobes.lobes.wav2vec2 as w2v
from speechlobes.lobes.beats import BEATs
from speechlobes.lobes.hf_io import read_config
from speechlobes.lobes.speech_encoder_decoder import SpeechEncoderDecoderModel
from speechlobes.nnet.precision import parameter_dtype
from speechlobes.processing.features import Fbank, MelSpectrogram
from speechlobes.processing.normalization import InputNormalization

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
HF = FIXTURES / "hf"
MIN_COSINE = 0.999
BF16 = torch.bfloat16


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().flatten(), b.double().flatten()
    return float(a @ b / (a.norm() * b.norm()))


def check_bf16(model: torch.nn.Module, run) -> None:
    """``run(model, input_dtype) -> output``: float32 reference, then the model in bfloat16
    with float32 and with bfloat16 inputs."""
    with torch.inference_mode():
        reference = run(model, torch.float32)
        assert reference.dtype == torch.float32
        model.to(BF16)
        for input_dtype in (torch.float32, BF16):
            out = run(model, input_dtype)
            assert out.dtype == BF16, input_dtype
            assert out.shape == reference.shape
            assert cosine(out, reference) >= MIN_COSINE, (input_dtype, cosine(out, reference))


def hf_cases(folder: str) -> dict:
    return torch.load(HF / folder / "cases.pt", weights_only=True)


HEADS = {
    "wav2vec2_group": "logits",
    "wav2vec2_layer": "logits",
    "w2v2_conformer_relpos": "logits",
    "w2v2_conformer_rotary": "logits",
    "hubert": "last_hidden_state",
    "seq_cls": "logits",
    "frame_cls": "logits",
    "xvector": "embeddings",
}


@pytest.mark.parametrize("folder", list(HEADS))
def test_wav2vec2_family_and_heads_run_in_bf16(folder):
    cases = hf_cases(folder)
    model = getattr(w2v, read_config(HF / folder)["architectures"][0]).from_pretrained(HF / folder)
    check_bf16(
        model,
        lambda m, dtype: getattr(
            m(cases["input_values"].to(dtype), cases["attention_mask"]), HEADS[folder]
        ),
    )


@pytest.mark.parametrize("folder", ["wav2vec2_group", "w2v2_conformer_rotary"])
def test_encoder_contract_runs_in_bf16_with_exact_padding(folder):
    """encode() takes the masked group norm and the exact-padding conformer paths."""
    cases = hf_cases(folder)
    lens = cases["attention_mask"].sum(-1) / cases["attention_mask"].shape[1]
    model = w2v.Wav2Vec2Lobe(HF / folder, output_norm=True)
    check_bf16(model, lambda m, dtype: m(cases["input_values"].to(dtype), lens).frames)


def test_pretraining_head_runs_in_bf16_and_keeps_its_loss_in_float32():
    cases = hf_cases("pretraining")
    model = w2v.Wav2Vec2ConformerForPreTraining.from_pretrained(HF / "pretraining")

    def run(m, dtype):
        out = m(
            cases["input_values"].to(dtype),
            cases["attention_mask"],
            mask_time_indices=cases["mask_time_indices"],
            sampled_negative_indices=cases["sampled_negative_indices"],
        )
        assert out.loss.dtype == torch.float32
        return out.projected_states

    check_bf16(model, run)


def test_beats_runs_in_bf16_from_float32_or_bf16_waveforms():
    cases = torch.load(FIXTURES / "beats" / "cases.pt", weights_only=True)
    model = BEATs(FIXTURES / "beats" / "checkpoint.pt")
    check_bf16(model, lambda m, dtype: m(cases["wav"].to(dtype), cases["wav_lens"])[0])
    assert model.fbank.mel_matrix.dtype == torch.float64  # the table is not rounded
    assert model.fbank.window.dtype == torch.float64


def test_beats_encode_and_all_hiddens_run_in_bf16():
    cases = torch.load(FIXTURES / "beats" / "cases.pt", weights_only=True)
    model = BEATs(FIXTURES / "beats" / "checkpoint.pt", output_all_hiddens=True)
    check_bf16(model, lambda m, dtype: m.encode(cases["wav"].to(dtype), cases["wav_lens"]).frames)


def test_fbank_conformer_runs_in_bf16_with_its_normalisation_in_full_precision():
    model = small_encoder()
    model.normalize = InputNormalization().train()
    wav = torch.randn(2, 16000, generator=torch.Generator().manual_seed(0))
    lens = torch.tensor([1.0, 0.7])
    model.normalize(model.features(wav), lens)  # global statistics from one batch
    model.normalize.eval()
    check_bf16(model, lambda m, dtype: m(wav.to(dtype), lens).frames)
    assert model.normalize.glob_mean.dtype == torch.float64


@pytest.mark.parametrize("name", ["bert", "bart", "mbart", "gpt2", "native"])
def test_text_decoders_run_in_bf16_over_float32_or_bf16_encoder_frames(name):
    decoder = tiny_decoders()[name].eval()
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 20, (2, 7), generator=generator)
    memory = torch.randn(2, 9, 16, generator=generator)
    lens = torch.tensor([1.0, 0.6])
    check_bf16(decoder, lambda m, dtype: m(ids, memory.to(dtype), lens).logits)


@pytest.mark.parametrize("folder", ["sed_bert", "sed_bart", "sed_gpt2"])
def test_speech_encoder_decoder_runs_in_bf16(folder):
    cases = hf_cases(folder)
    model = SpeechEncoderDecoderModel.from_pretrained(HF / folder)
    wav, mask = cases["input_values"], cases["attention_mask"]
    with torch.inference_mode():
        teacher = model(wav, mask, labels=cases["labels"]).loss
    check_bf16(model, lambda m, dtype: m(wav.to(dtype), mask, labels=cases["labels"]).logits)
    with torch.inference_mode():
        loss = model(wav, mask, labels=cases["labels"]).loss
    assert loss.dtype == torch.float32
    assert abs(loss.item() - teacher.item()) < 0.02 * teacher.item()


@pytest.mark.parametrize("folder", ["sed_bert", "sed_bart", "sed_gpt2"])
def test_bf16_greedy_ids_leave_float32_ones_only_at_near_ties(folder):
    """Greedy ids of the bfloat16 model equal the float32 ids up to the first step where the
    float32 model's two best tokens are within 0.1 nats (where bfloat16 rounding may pick
    either); every fixture agrees for at least the first two tokens."""
    cases = hf_cases(folder)
    model = SpeechEncoderDecoderModel.from_pretrained(HF / folder)
    wav, mask = cases["input_values"], cases["attention_mask"]
    with torch.inference_mode():
        ids = model.generate(wav, mask, max_new_tokens=12)
        log_probs = model(wav, mask, decoder_input_ids=ids[:, :-1]).logits.log_softmax(-1)
        best_two = log_probs.topk(2, dim=-1).values
        margins = best_two[..., 0] - best_two[..., 1]  # (batch, steps)
        low = model.to(BF16).generate(wav.to(BF16), mask, max_new_tokens=12)
    assert low.dtype == torch.long
    for row in range(ids.shape[0]):
        steps = min(ids.shape[1], low.shape[1])
        differ = (ids[row, :steps] != low[row, :steps]).nonzero().flatten()
        if len(differ) == 0:
            continue
        first = int(differ[0])
        assert first >= 3, (row, ids[row].tolist(), low[row].tolist())
        assert margins[row, first - 1] < 0.1, (row, first, margins[row].tolist())


def test_speech_encoder_decoder_greedy_ids_equal_float32_on_bart():
    cases = hf_cases("sed_bart")
    model = SpeechEncoderDecoderModel.from_pretrained(HF / "sed_bart")
    wav, mask = cases["input_values"], cases["attention_mask"]
    with torch.inference_mode():
        ids = model.generate(wav, mask, max_new_tokens=12)
        low = model.to(BF16).generate(wav, mask, max_new_tokens=12)
    assert torch.equal(ids, low)


def test_feature_tables_keep_their_dtype_but_follow_the_device():
    fbank = Fbank(num_mel_bins=40).to(BF16)
    mel = MelSpectrogram(n_mels=20).half()
    assert fbank.mel_matrix.dtype == torch.float64 and mel.mel_matrix.dtype == torch.float64
    fbank.to("meta")
    assert fbank.mel_matrix.device.type == "meta" and fbank.mel_matrix.dtype == torch.float64
    wav = torch.randn(1, 4000)
    torch.testing.assert_close(Fbank(num_mel_bins=40).to(BF16)(wav), Fbank(num_mel_bins=40)(wav))


def test_parameter_dtype_reads_the_first_floating_parameter():
    assert parameter_dtype(torch.nn.Linear(2, 2).to(BF16)) == BF16
    assert parameter_dtype(torch.nn.ReLU()) == torch.float32
    assert parameter_dtype(torch.nn.Embedding(3, 2).half()) == torch.float16
