import math

import pytest
import torch

from speechlobes.lobes.wav2vec2.positional import (
    RotaryEmbedding,
    apply_rotary,
    relative_scores_to_bias,
    relative_sinusoids,
)


def test_relative_sinusoids_rows_run_from_plus_to_minus_distance():
    table = relative_sinusoids(3, 4)  # distances 2, 1, 0, -1, -2
    assert table.shape == (5, 4)
    for row, r in enumerate([2, 1, 0, -1, -2]):
        expected = [math.sin(r), math.cos(r), math.sin(r / 100), math.cos(r / 100)]
        torch.testing.assert_close(table[row], torch.tensor(expected))


@pytest.mark.parametrize("T", [1, 2, 6])
def test_relative_bias_picks_the_score_of_distance_i_minus_j(T):
    scores = torch.randn(2, 3, T, 2 * T - 1)
    bias = relative_scores_to_bias(scores)
    for i in range(T):
        for j in range(T):
            assert torch.equal(bias[..., i, j], scores[..., i, (T - 1) - (i - j)])


def test_relative_bias_is_differentiable():
    scores = torch.randn(1, 1, 4, 7, requires_grad=True)
    relative_scores_to_bias(scores).sum().backward()
    # every distance column used by some (i, j) gets gradient 1 per use
    assert scores.grad.sum() == 16


def test_rotary_rotates_each_pair_by_position_times_frequency():
    rotary = RotaryEmbedding(head_dim=4, base=100.0)
    torch.testing.assert_close(rotary.inv_freq, torch.tensor([1.0, 0.1]))
    cos, sin = rotary(3)
    x = torch.randn(3, 4)
    out = apply_rotary(x, cos, sin)
    for t in range(3):
        for k, freq in enumerate([1.0, 0.1]):
            a, b = x[t, k], x[t, k + 2]
            angle = t * freq
            expected = (
                a * math.cos(angle) - b * math.sin(angle),
                b * math.cos(angle) + a * math.sin(angle),
            )
            torch.testing.assert_close(out[t, [k, k + 2]], torch.stack(list(expected)))


def test_rotary_keeps_norms_and_makes_scores_depend_on_offset_only():
    cos, sin = RotaryEmbedding(8)(10)
    q, k = torch.randn(8), torch.randn(8)
    qs = apply_rotary(q.expand(10, 8), cos, sin)
    ks = apply_rotary(k.expand(10, 8), cos, sin)
    torch.testing.assert_close(qs.norm(dim=-1), q.norm().expand(10))
    torch.testing.assert_close(qs[5] @ ks[3], qs[7] @ ks[5])
