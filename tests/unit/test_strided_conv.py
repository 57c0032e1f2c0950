"""The time-major strided convolution and the Wav2Vec2 feature encoder built on it equal
``nn.Conv1d`` / ``nn.GroupNorm`` in values and gradients, items kept apart, dtypes kept."""

import pytest
import torch
from torch import nn

from speechlobes.lobes.wav2vec2 import Wav2Vec2Config
from speechlobes.lobes.wav2vec2.blocks import FeatureEncoder, channel_moments, group_norm_over_time
from speechlobes.nnet.strided_conv import conv1d_rows


def _rows_of(x: torch.Tensor, slots: int) -> torch.Tensor:
    """(batch, channels, time) -> time-major rows, each item zero-padded to ``slots``."""
    padded = nn.functional.pad(x, (0, slots - x.shape[-1]))
    return padded.transpose(1, 2).reshape(-1, x.shape[1])


# (in, out, taps, stride): blocks of taps (3/2, 2/2, 5/2, 1/2), thin inputs (waveform 10/5)
SHAPES = [(6, 5, 3, 2), (6, 5, 2, 2), (4, 7, 5, 2), (4, 3, 1, 2), (1, 8, 10, 5), (2, 16, 3, 1)]


@pytest.mark.parametrize(("channels", "out", "taps", "stride"), SHAPES)
def test_rows_equal_conv1d_per_item_in_values_and_gradients(channels, out, taps, stride):
    gen = torch.Generator().manual_seed(taps * 10 + stride)
    conv = nn.Conv1d(channels, out, taps, stride=stride)
    x = torch.randn(3, channels, 23, generator=gen, requires_grad=True)
    slots = 24 if stride == 2 else 25
    frames = (23 - taps) // stride + 1
    got = conv1d_rows(_rows_of(x, slots), conv.weight, conv.bias, stride)
    got = got.view(3, slots // stride, out)[:, :frames]
    expected = conv(x).transpose(1, 2)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)

    upstream = torch.randn(expected.shape, generator=gen)
    ours = torch.autograd.grad((got * upstream).sum(), (x, conv.weight, conv.bias))
    reference = torch.autograd.grad((expected * upstream).sum(), (x, conv.weight, conv.bias))
    for mine, theirs in zip(ours, reference, strict=True):
        torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=1e-5)


def test_rows_without_bias_and_under_bf16_autocast():
    conv = nn.Conv1d(6, 5, 3, stride=2, bias=False)
    x = torch.randn(2, 6, 12)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = conv1d_rows(_rows_of(x, 12), conv.weight, None, 2).view(2, 6, 5)[:, :5]
    assert got.dtype == torch.bfloat16
    expected = conv(x).transpose(1, 2)
    cosine = nn.functional.cosine_similarity(got.float().flatten(), expected.flatten(), dim=0)
    assert cosine > 0.999


def test_rows_must_divide_by_the_stride_and_match_the_channels():
    weight = torch.randn(5, 6, 3)
    with pytest.raises(ValueError, match="multiple of stride 2"):
        conv1d_rows(torch.randn(7, 6), weight, None, 2)
    with pytest.raises(ValueError, match="6 channels"):
        conv1d_rows(torch.randn(8, 4), weight, None, 2)


def test_channel_moments_are_each_items_biased_float32_statistics():
    frames = torch.randn(2, 5000, 7, dtype=torch.float64) * 3 + 100
    frames[1, 3000:] = 1e4  # beyond item 1's length: must not count
    low = frames.to(torch.bfloat16)
    mean, variance = channel_moments(low, torch.tensor([5000, 3000]), chunk=512)
    assert mean.dtype == variance.dtype == torch.float32 and mean.shape == (2, 7)
    for item, length in enumerate((5000, 3000)):
        reference = low[item, :length].double()
        torch.testing.assert_close(mean[item].double(), reference.mean(0), rtol=1e-6, atol=1e-4)
        torch.testing.assert_close(
            variance[item].double(), reference.var(0, unbiased=False), rtol=1e-4, atol=1e-4
        )


def test_channel_moments_of_an_item_without_frames_are_its_first_slot():
    frames = torch.randn(2, 6, 3)
    mean, variance = channel_moments(frames, torch.tensor([6, 0]))
    torch.testing.assert_close(mean[1], frames[1, 0])
    torch.testing.assert_close(variance[1], torch.zeros(3))


def test_group_norm_over_time_uses_each_items_own_frames():
    norm = nn.GroupNorm(4, 4)
    nn.init.normal_(norm.weight)
    nn.init.normal_(norm.bias)
    x = torch.randn(2, 10, 4)  # (batch, slots, channels); item 1 has 6 real frames
    got = group_norm_over_time(x, torch.tensor([10, 6]), norm)
    torch.testing.assert_close(got[0], norm(x[0].t()[None])[0].t())
    torch.testing.assert_close(got[1, :6], norm(x[1, :6].t()[None])[0].t())


def _config(norm: str) -> Wav2Vec2Config:
    return Wav2Vec2Config(
        hidden_size=16, num_attention_heads=2, num_hidden_layers=1, intermediate_size=32,
        conv_dim=[8, 8, 8], conv_stride=[5, 2, 2], conv_kernel=[10, 3, 2],
        feat_extract_norm=norm, conv_bias=norm == "layer",
    )  # fmt: skip


def _reference_stack(encoder: FeatureEncoder, wav: torch.Tensor) -> torch.Tensor:
    """The textbook channel-first stack: Conv1d, the norm, GELU per layer."""
    x = wav[:, None, :]
    for layer in encoder.conv_layers:
        x = layer.conv(x)
        if layer.norm == "group":
            x = layer.layer_norm(x)
        elif layer.norm == "layer":
            x = layer.layer_norm(x.transpose(1, 2)).transpose(1, 2)
        x = layer.activation(x)
    return x


@pytest.mark.parametrize("norm", ["group", "layer"])
@pytest.mark.parametrize("samples", [400, 437, 1203])
def test_feature_encoder_equals_the_channel_first_stack(norm, samples):
    torch.manual_seed(0)
    encoder = FeatureEncoder(_config(norm))
    wav = torch.randn(3, samples, requires_grad=True)
    got, expected = encoder(wav), _reference_stack(encoder, wav)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    ours = torch.autograd.grad(got.square().sum(), [wav, *encoder.parameters()])
    theirs = torch.autograd.grad(expected.square().sum(), [wav, *encoder.parameters()])
    for mine, reference in zip(ours, theirs, strict=True):
        torch.testing.assert_close(mine, reference, atol=1e-4, rtol=1e-4)


def test_feature_encoder_group_norm_with_lengths_gives_each_item_its_single_run():
    torch.manual_seed(0)
    encoder = FeatureEncoder(_config("group"))
    wav = torch.randn(2, 1203)
    wav[1, 700:] = 0
    batch = encoder(wav, torch.tensor([1203, 700]))
    single = encoder(wav[1:, :700])
    torch.testing.assert_close(batch[1:, :, : single.shape[-1]], single, atol=1e-5, rtol=1e-5)
    # an item shorter than the receptive field has no frame: finite, its neighbour unchanged
    with_a_stub = encoder(wav, torch.tensor([1203, 2]))
    assert torch.isfinite(with_a_stub).all()
    torch.testing.assert_close(with_a_stub[0], batch[0])


def test_feature_encoder_names_the_receptive_field_for_a_too_short_waveform():
    encoder = FeatureEncoder(_config("layer"))
    assert encoder.receptive_field == 30  # (((1 - 1) * 2 + 2 - 1) * 2 + 3 - 1) * 5 + 10
    assert encoder(torch.randn(1, 30)).shape == (1, 8, 1)
    with pytest.raises(ValueError, match=r"29 samples.*receptive field \(30 samples\)"):
        encoder(torch.randn(1, 29))
