"""The fbank Conformer: lengths arithmetic, padding invariance of the subsampling, and learning."""

import pytest
import torch
from torch import nn

from speechlobes.lobes.models.conformer import (
    ConformerConfig,
    Conv1dSubsampling,
    Conv2dSubsampling,
    FbankConformer,
)
from speechlobes.nnet.containers import LengthsSequential


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
def test_padded_utterance_valid_frames_depend_only_on_its_own_audio_without_conv_module_leak(
    subsampling,
):
    # With kernel_size 1 the conformer's depthwise conv cannot mix padded frames in, so the
    # valid frames of a padded item must equal the item run alone.
    torch.manual_seed(0)
    encoder = small_encoder(kernel_size=1, subsampling=subsampling)
    long, short = torch.randn(1, 80, 20), torch.randn(1, 40, 20)
    batch = torch.cat([long, torch.cat([short, torch.zeros(1, 40, 20)], dim=1)])
    out = encoder(batch, torch.tensor([1.0, 0.5]))
    alone = encoder(short)
    n = alone.shape[1]
    torch.testing.assert_close(out[1, :n], alone[0], atol=1e-5, rtol=1e-4)


def test_no_unused_parameters_so_ddp_needs_no_special_flag():
    encoder = small_encoder().train()
    encoder(torch.randn(2, 40, 20), torch.tensor([1.0, 0.7])).sum().backward()
    unused = [name for name, p in encoder.named_parameters() if p.grad is None]
    assert unused == []


def test_lengths_sequential_passes_lengths_only_to_stages_that_take_them():
    seen = {}

    class Recorder(nn.Module):
        def forward(self, x, lengths):
            seen["lengths"] = lengths
            return x * 2

    model = LengthsSequential(nn.Identity(), Recorder(), nn.Identity())
    lengths = torch.tensor([1.0, 0.25])
    out = model(torch.ones(2, 3), lengths)
    assert torch.equal(out, torch.full((2, 3), 2.0)) and seen["lengths"] is lengths


def test_conformer_ctc_learns_a_tiny_mapping():
    torch.manual_seed(0)
    model = LengthsSequential(small_encoder(dropout=0.0).train(), nn.Linear(16, 5))
    feats = torch.randn(4, 60, 20)
    targets = torch.tensor([[1, 2, 3], [2, 3, 4], [4, 1, 2], [3, 3, 1]])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        log_probs = model(feats).log_softmax(-1)
        frames = torch.full((4,), log_probs.shape[1])
        loss = nn.functional.ctc_loss(
            log_probs.transpose(0, 1), targets, frames, torch.full((4,), 3)
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]
