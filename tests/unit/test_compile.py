"""Every lobe under ``torch.compile``: one graph, no graph break, same outputs as eager.

``torch._dynamo.explain`` captures the forward without compiling it and lists the breaks (a
data-dependent branch, a ``.tolist()``, an ``out=`` into a view...); each break costs a
compiled model a round trip through Python. (A ``fullgraph=True`` compile alone is not enough
of a check: the old per-item ``.tolist()`` of the group norm went through it, while explain
counted 8 breaks.) Then the lobe is
compiled with ``fullgraph=True`` on the ``aot_eager`` backend, which traces it through
AOTAutograd as inductor does (the same capture, the same handling of in-place writes) but runs
the traced graph eagerly, so no C++ compiler is needed; its output must equal eager's. Input
checks that read tensor values (lengths in (0, 1], BEATs' shortest input) are skipped when
compiling, by design, and tested eagerly elsewhere.
"""

import pytest
import torch
from test_bf16 import FIXTURES, HEADS, HF, hf_cases
from test_conformer import small_encoder
from test_text_decoders import tiny_decoders

import speechlobes.lobes.wav2vec2 as w2v
from speechlobes.lobes.beats import BEATs
from speechlobes.lobes.hf_io import read_config
from speechlobes.lobes.speech_encoder_decoder import SpeechEncoderDecoderModel


def check_one_graph(model: torch.nn.Module, run) -> None:
    """``run(callable) -> tensor``: no graph break, and the compiled output equals eager's."""
    torch._dynamo.reset()
    with torch.no_grad():
        explanation = torch._dynamo.explain(lambda: run(model))()
        reasons = [str(reason.reason).splitlines()[0] for reason in explanation.break_reasons]
        assert explanation.graph_break_count == 0, reasons
        assert explanation.graph_count == 1
        expected = run(model)
        compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
        got = run(compiled)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    torch._dynamo.reset()


@pytest.mark.parametrize("folder", list(HEADS))
def test_wav2vec2_family_and_heads_compile_to_one_graph(folder):
    cases = hf_cases(folder)
    model = getattr(w2v, read_config(HF / folder)["architectures"][0]).from_pretrained(HF / folder)
    wav, mask = cases["input_values"], cases["attention_mask"]
    check_one_graph(model.eval(), lambda m: getattr(m(wav, mask), HEADS[folder]))


@pytest.mark.parametrize("folder", ["wav2vec2_group", "w2v2_conformer_rotary"])
def test_wav2vec2_encoder_contract_compiles_to_one_graph(folder):
    """The lobe's encode() with relative lengths: the masked group norm, exact padding."""
    cases = hf_cases(folder)
    lens = cases["attention_mask"].sum(-1) / cases["attention_mask"].shape[1]
    model = w2v.Wav2Vec2Lobe(HF / folder, output_norm=True)
    check_one_graph(model, lambda m: m(cases["input_values"], lens).frames)


def test_beats_compiles_to_one_graph():
    cases = torch.load(FIXTURES / "beats" / "cases.pt", weights_only=True)
    model = BEATs(FIXTURES / "beats" / "checkpoint.pt")
    check_one_graph(model, lambda m: m(cases["wav"], cases["wav_lens"])[0])


def test_fbank_conformer_compiles_to_one_graph():
    wav = torch.randn(2, 16000, generator=torch.Generator().manual_seed(0))
    lens = torch.tensor([1.0, 0.7])
    check_one_graph(small_encoder(), lambda m: m(wav, lens).frames)


@pytest.mark.parametrize("name", ["bert", "bart", "mbart", "gpt2", "native"])
def test_text_decoders_compile_to_one_graph(name):
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 20, (2, 7), generator=generator)
    memory = torch.randn(2, 9, 16, generator=generator)
    lens = torch.tensor([1.0, 0.6])
    check_one_graph(tiny_decoders()[name].eval(), lambda m: m(ids, memory, lens).logits)


@pytest.mark.parametrize("folder", ["sed_bert", "sed_bart", "sed_gpt2"])
def test_speech_encoder_decoder_training_forward_compiles_to_one_graph(folder):
    cases = hf_cases(folder)
    model = SpeechEncoderDecoderModel.from_pretrained(HF / folder).eval()
    wav, mask, labels = cases["input_values"], cases["attention_mask"], cases["labels"]
    check_one_graph(model, lambda m: m(wav, mask, labels=labels).logits)
