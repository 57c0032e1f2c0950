"""The fbank Conformer: lengths arithmetic, the encoder contract on padded batches, learning."""

import pytest
import torch
from torch import nn

from speechlobes.lobes.conformer import (
    ConformerConfig,
    Conv1dSubsampling,
    Conv2dSubsampling,
    FbankConformer,
)
from speechlobes.lobes.heads import FrameClassifier
from speechlobes.processing.normalization import InputNormalization


def small_encoder(**overrides):
    sizes = dict(input_size=20, hidden_size=16, num_layers=2, num_heads=2, ffn_size=32)
    sizes.update(kernel_size=3, dropout=0.0)
    sizes.update(overrides)
    return FbankConformer(ConformerConfig(**sizes)).eval()


@pytest.mark.parametrize("subsampling", [Conv2dSubsampling, Conv1dSubsampling])
def test_subsampling_length_matches_the_tensor_it_produces(subsampling):
    sub = subsampling(20, 16, channels=4)
    for frames in (7, 8, 9, 50, 101):
        assert sub(torch.randn(1, frames, 20)).shape == (1, subsampling.output_length(frames), 16)
    assert subsampling.output_length(torch.tensor([100, 7])).tolist() == [24, 1]


def test_conv1d_subsampling_is_local_in_time_so_a_last_frame_moves_only_the_last_output():
    sub = Conv1dSubsampling(20, 16, channels=4)
    x = torch.randn(1, 31, 20)
    base = sub(x)
    changed = x.clone()
    changed[:, 30] += 1.0  # frame 30 feeds only the last output of 15 stride-2 frames
    out = sub(changed)
    torch.testing.assert_close(out[:, :-1], base[:, :-1])
    assert not torch.allclose(out[:, -1], base[:, -1])


def test_unknown_subsampling_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="conv1d"):
        small_encoder(subsampling="conv3d")


@pytest.mark.parametrize("subsampling", ["conv2d", "conv1d"])
def test_padded_utterance_gets_the_frames_of_its_single_run(subsampling):
    # the depthwise convolution (kernel 7) and the sentence normalisation see only the
    # utterance's own frames, so padding changes nothing
    torch.manual_seed(0)
    encoder = small_encoder(kernel_size=7, subsampling=subsampling)
    encoder.normalize = InputNormalization(norm_type="sentence")
    long, short = torch.randn(1, 12800), torch.randn(1, 6000)
    batch = torch.cat([long, torch.cat([short, torch.zeros(1, 6800)], dim=1)])
    frames, frame_lens = encoder(batch, torch.tensor([1.0, 6000 / 12800]))
    alone, alone_lens = encoder(short)
    n = alone.shape[1]
    assert round(float(frame_lens[1]) * frames.shape[1]) == n and alone_lens.tolist() == [1.0]
    torch.testing.assert_close(frames[1, :n], alone[0], atol=1e-5, rtol=1e-4)


def test_no_unused_parameters_so_ddp_needs_no_special_flag():
    encoder = small_encoder().train()
    encoder(torch.randn(2, 6400), torch.tensor([1.0, 0.7])).frames.sum().backward()
    unused = [name for name, p in encoder.named_parameters() if p.grad is None]
    assert unused == []


def test_config_round_trips_and_sizes_are_checked(tmp_path):
    encoder = small_encoder()
    encoder.save_pretrained(tmp_path)
    again = FbankConformer.from_pretrained(tmp_path)
    assert again.config.extra.pop("architectures") == ["FbankConformer"]
    assert again.config == encoder.config
    wav = torch.randn(1, 4000)
    torch.testing.assert_close(again(wav).frames, encoder(wav).frames)
    try:
        FbankConformer(hidden_sise=8)
    except ValueError as error:
        assert "hidden_sise" in str(error)
    else:
        raise AssertionError("a misspelt size must be an error")


def test_conformer_ctc_learns_a_tiny_mapping():
    torch.manual_seed(0)
    encoder = small_encoder(dropout=0.0).train()
    encoder.normalize = InputNormalization(norm_type="sentence")
    model = FrameClassifier(encoder, nn.Linear(16, 5))
    wavs = torch.randn(4, 9600)
    targets = torch.tensor([[1, 2, 3], [2, 3, 4], [4, 1, 2], [3, 3, 1]])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        log_probs = model(wavs).log_softmax(-1)
        frames = torch.full((4,), log_probs.shape[1])
        loss = nn.functional.ctc_loss(
            log_probs.transpose(0, 1), targets, frames, torch.full((4,), 3)
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]
