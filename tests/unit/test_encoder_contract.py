"""The speech-encoder contract: every encoder takes (waveforms, relative lengths), returns
(frames, relative frame lengths), and gives each item of a padded batch its single run."""

from pathlib import Path

import pytest
import torch

from speechlobes.lobes.beats import BEATs
from speechlobes.lobes.conformer import ConformerConfig, FbankConformer
from speechlobes.lobes.encoder import SpeechEncoder
from speechlobes.lobes.hf_io import read_config
from speechlobes.lobes.wav2vec2 import ENCODER_MODELS, Wav2Vec2Config, Wav2Vec2Lobe
from speechlobes.processing.normalization import InputNormalization

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
HF = FIXTURES / "hf"
W2V2_LENGTHS = [2560, 1801, 2298, 1200]
FBANK_LENGTHS = [12000, 7201, 9345, 5000]


def hf_folder(name: str):
    return ENCODER_MODELS[read_config(HF / name)["model_type"]].from_pretrained(HF / name)


def conformer_with_adapter_and_group_norm():
    torch.manual_seed(0)
    config = Wav2Vec2Config(
        model_type="wav2vec2-conformer",
        hidden_size=16,
        num_attention_heads=2,
        num_hidden_layers=2,
        intermediate_size=32,
        conv_dim=[8, 8],
        conv_stride=[5, 2],
        conv_kernel=[10, 3],
        num_conv_pos_embeddings=4,
        num_conv_pos_embedding_groups=2,
        feat_extract_norm="group",
        conv_depthwise_kernel_size=7,
        add_adapter=True,
        num_adapter_layers=2,
        output_hidden_size=16,
    )
    return ENCODER_MODELS["wav2vec2-conformer"](config)


def fbank_conformer():
    torch.manual_seed(0)
    config = ConformerConfig(
        input_size=40, hidden_size=32, num_layers=2, num_heads=2, ffn_size=64, kernel_size=7
    )
    return FbankConformer(config, normalize=InputNormalization(norm_type="sentence"))


ENCODERS = {
    "beats": (lambda: BEATs(FIXTURES / "beats" / "checkpoint.pt"), FBANK_LENGTHS),
    "wav2vec2 group norm": (lambda: hf_folder("wav2vec2_group"), W2V2_LENGTHS),
    "wav2vec2 layer norm": (lambda: hf_folder("wav2vec2_layer"), W2V2_LENGTHS),
    "hubert": (lambda: hf_folder("hubert"), W2V2_LENGTHS),
    "wav2vec2-conformer relative": (lambda: hf_folder("w2v2_conformer_relpos"), W2V2_LENGTHS),
    "wav2vec2-conformer rotary": (lambda: hf_folder("w2v2_conformer_rotary"), W2V2_LENGTHS),
    "wav2vec2-conformer adapter": (conformer_with_adapter_and_group_norm, W2V2_LENGTHS),
    "wav2vec2 lobe": (lambda: Wav2Vec2Lobe(HF / "wav2vec2_group"), W2V2_LENGTHS),
    "fbank conformer": (fbank_conformer, FBANK_LENGTHS),
}


def padded_batch(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    longest = max(lengths)
    wavs = 0.3 * torch.randn(len(lengths), longest, generator=gen)
    wavs = wavs * (torch.arange(longest) < torch.tensor(lengths)[:, None])
    return wavs, torch.tensor(lengths) / longest


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_every_encoder_gives_each_padded_item_its_single_run(name):
    build, lengths = ENCODERS[name]
    encoder = build().eval()
    assert isinstance(encoder, SpeechEncoder)
    wavs, wav_lens = padded_batch(lengths)
    with torch.no_grad():
        frames, frame_lens = encoder.encode(wavs, wav_lens)
        assert frames.shape[:1] + frames.shape[2:] == (len(lengths), encoder.output_size)
        for index, length in enumerate(lengths):
            single, single_lens = encoder.encode(wavs[index : index + 1, :length])
            valid = single.shape[1]
            assert single_lens.tolist() == [1.0]
            assert round(float(frame_lens[index]) * frames.shape[1]) == valid, index
            torch.testing.assert_close(frames[index, :valid], single[0], atol=1e-4, rtol=0)


def test_without_lengths_every_frame_is_valid():
    encoder = hf_folder("hubert").eval()
    frames, frame_lens = encoder.encode(torch.randn(2, 1000))
    assert frame_lens.tolist() == [1.0, 1.0] and frames.shape[1] == 49


def test_reference_padding_reproduces_the_transformers_batch():
    cases = torch.load(HF / "w2v2_conformer_relpos" / "cases.pt", weights_only=True)
    encoder = hf_folder("w2v2_conformer_relpos")
    mask = cases["attention_mask"]
    wav_lens = mask.sum(-1) / mask.shape[1]
    with torch.no_grad():
        reference, frame_lens = encoder.encode(cases["input_values"], wav_lens, True)
        exact, _ = encoder.encode(cases["input_values"], wav_lens)
    torch.testing.assert_close(reference, cases["last_hidden_state"], atol=1e-4, rtol=0)
    assert torch.equal((frame_lens * 127).round().long(), cases["feat_lengths"])
    # transformers lets the padding leak through the depthwise convolution: the exact frames
    # of a padded item differ from it near the item's end
    assert (exact - reference).abs().max() > 1e-3


def test_freezing_the_feature_encoder_stops_only_the_front_end():
    for encoder, front in (
        (fbank_conformer(), "subsampling."),
        (conformer_with_adapter_and_group_norm(), "feature_extractor."),
        (BEATs(FIXTURES / "beats" / "checkpoint.pt", freeze=False), "patch_embedding."),
    ):
        before = {n for n, p in encoder.named_parameters() if not p.requires_grad}
        encoder.freeze_feature_encoder()
        frozen = {n for n, p in encoder.named_parameters() if not p.requires_grad} - before
        assert frozen == {n for n, _ in encoder.named_parameters() if n.startswith(front)}


def test_a_mask_in_place_of_lengths_is_a_clear_error():
    encoder = hf_folder("hubert")
    wavs = torch.randn(2, 1000)
    with pytest.raises(ValueError, match=r"wav_lens: expected relative lengths of shape \(2,\)"):
        encoder.encode(wavs, torch.ones(2, 1000, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"must lie in \(0, 1\]"):
        encoder.encode(wavs, torch.tensor([1.0, 1.5]))
