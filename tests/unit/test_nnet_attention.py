"""The shared attention kernel equals the textbook softmax attention, masks included."""

import torch

from speechlobes.nnet.attention import (
    additive_mask,
    attend,
    attention_weights,
    merge_heads,
    split_heads,
)
from speechlobes.nnet.lengths import (
    conv_output_length,
    lengths_to_padding_mask,
    padding_mask_to_lengths,
    relative_to_absolute_lengths,
)
from speechlobes.nnet.positional_conv import SamePad, weight_norm_conv1d


def plain_attention(q, k, v, bias=None, pad=None, causal=False):
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    if bias is not None:
        scores = scores + bias
    if pad is not None:
        scores = scores.masked_fill(pad[:, None, None, :], float("-inf"))
    if causal:
        tq, tk = scores.shape[-2:]
        future = torch.ones(tq, tk, dtype=torch.bool).triu(tk - tq + 1)
        scores = scores.masked_fill(future, float("-inf"))
    return scores.softmax(-1) @ v


def test_attend_matches_plain_softmax_with_bias_and_padding():
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 7, 8, generator=gen) for _ in range(3))
    bias = torch.randn(1, 3, 7, 7, generator=gen)
    pad = lengths_to_padding_mask(torch.tensor([7, 4]), 7)
    expected = plain_attention(q, k, v, bias, pad)
    torch.testing.assert_close(attend(q, k, v, bias=bias, key_padding_mask=pad), expected)
    probs = attention_weights(q, k, bias=bias, key_padding_mask=pad)
    assert torch.all(probs[1, :, :, 4:] == 0)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 3, 7))


def test_padding_mask_over_a_strided_per_head_bias_broadcasts_to_every_item():
    bias = torch.randn(3, 7, 9)[..., :7]  # (heads, queries, keys), not contiguous
    pad = lengths_to_padding_mask(torch.tensor([7, 4]), 7)
    mask = additive_mask(pad, bias, False, 7, 7, torch.float32, torch.device("cpu"))
    assert mask.shape == (2, 3, 7, 7)
    torch.testing.assert_close(mask[0], bias)
    torch.testing.assert_close(mask[1, :, :, :4], bias[:, :, :4])
    assert torch.all(mask[1, :, :, 4:] == torch.finfo(torch.float32).min)


def test_attend_causal_with_cached_prefix_aligns_queries_to_the_end():
    gen = torch.Generator().manual_seed(1)
    q = torch.randn(2, 2, 3, 4, generator=gen)
    k, v = torch.randn(2, 2, 5, 4, generator=gen), torch.randn(2, 2, 5, 4, generator=gen)
    torch.testing.assert_close(attend(q, k, v, causal=True), plain_attention(q, k, v, causal=True))
    full_q = torch.randn(2, 2, 5, 4, generator=gen)
    torch.testing.assert_close(
        attend(full_q, k, v, causal=True), plain_attention(full_q, k, v, causal=True)
    )


def test_fully_padded_row_gives_finite_output():
    q = k = v = torch.randn(1, 1, 3, 4)
    out = attend(q, k, v, key_padding_mask=torch.ones(1, 3, dtype=torch.bool))
    assert torch.isfinite(out).all()


def test_split_and_merge_heads_round_trip():
    x = torch.randn(2, 5, 12)
    assert split_heads(x, 3).shape == (2, 3, 5, 4)
    torch.testing.assert_close(merge_heads(split_heads(x, 3)), x)


def test_length_arithmetic_matches_hand_computed_values():
    assert conv_output_length(16000, 400, 160) == 98
    assert conv_output_length(400, 10, 5) == 79
    assert conv_output_length(10, 3, 1, padding=1) == 10
    assert conv_output_length(20, 3, 1, dilation=2) == 16
    torch.testing.assert_close(
        conv_output_length(torch.tensor([16000, 399]), 400, 160), torch.tensor([98, 0])
    )
    lengths = relative_to_absolute_lengths(torch.tensor([1.0, 0.6, 0.815]), 16000)
    assert lengths.tolist() == [16000, 9600, 13040]
    mask = lengths_to_padding_mask(torch.tensor([2, 3]))
    assert mask.tolist() == [[False, False, True], [False, False, False]]
    assert padding_mask_to_lengths(mask).tolist() == [2, 3]


def test_weight_norm_conv_is_per_tap_and_loads_old_key_names():
    conv = weight_norm_conv1d(channels=4, kernel_size=3, groups=2)
    g = torch.rand(1, 1, 3) + 0.5
    v = torch.randn(4, 2, 3)
    conv.load_state_dict({"weight_g": g, "weight_v": v, "bias": torch.zeros(4)})
    expected = g * v / v.pow(2).sum(dim=(0, 1), keepdim=True).sqrt()
    torch.testing.assert_close(conv.weight, expected)
    assert SamePad(3)(conv(torch.randn(1, 4, 9))).shape == (1, 4, 9)
    assert SamePad(4, causal=True)(torch.randn(1, 4, 12)).shape == (1, 4, 9)
