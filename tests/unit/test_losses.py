import pytest
import torch
import torch.nn.functional as F

from speechlobes.nnet.losses import (
    AdditiveAngularMargin,
    AngularMargin,
    LogSoftmaxWrapper,
    bce_loss,
    classification_error,
    compute_length_mask,
    ctc_loss,
    l1_loss,
    mse_loss,
    nll_loss,
)


@pytest.fixture
def sequence_batch():
    generator = torch.Generator().manual_seed(0)
    log_probs = torch.log_softmax(torch.randn(3, 5, 7, generator=generator), dim=-1)
    targets = torch.randint(0, 7, (3, 5), generator=generator)
    lengths = torch.tensor([1.0, 0.6, 0.2])  # 5, 3, 1 valid steps
    return log_probs, targets, lengths


def valid_rows(tensor, lengths):
    return torch.cat(
        [tensor[i, :n] for i, n in enumerate((lengths * tensor.shape[1]).round().long())]
    )


def test_length_mask_marks_valid_steps_along_any_dimension():
    mask = compute_length_mask(torch.zeros(2, 4), torch.tensor([1.0, 0.5]))
    assert mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    data = torch.zeros(2, 3, 2)
    along_last = compute_length_mask(data, torch.tensor([0.5, 1.0]), len_dim=2)
    assert along_last[0].tolist() == [[1, 0]] * 3 and along_last[1].tolist() == [[1, 1]] * 3


def test_nll_mean_equals_torch_on_the_valid_tokens_only(sequence_batch):
    log_probs, targets, lengths = sequence_batch
    expected = F.nll_loss(valid_rows(log_probs, lengths), valid_rows(targets, lengths))
    assert torch.allclose(nll_loss(log_probs, targets, lengths), expected)


def test_nll_label_smoothing_matches_torch_cross_entropy(sequence_batch):
    log_probs, targets, _ = sequence_batch
    expected = F.cross_entropy(log_probs.reshape(-1, 7), targets.reshape(-1), label_smoothing=0.1)
    assert torch.allclose(nll_loss(log_probs, targets, label_smoothing=0.1), expected)


def test_nll_batch_reduction_is_per_utterance_mean(sequence_batch):
    log_probs, targets, lengths = sequence_batch
    per_utterance = nll_loss(log_probs, targets, lengths, reduction="batch")
    expected = -log_probs[2, 0, targets[2, 0]]
    assert per_utterance.shape == (3,) and torch.allclose(per_utterance[2], expected)


def test_nll_on_utterance_level_classes():
    log_probs = torch.log_softmax(torch.tensor([[2.0, 0.0], [0.0, 1.0]]), dim=-1)
    expected = F.nll_loss(log_probs, torch.tensor([0, 1]))
    assert torch.allclose(nll_loss(log_probs, torch.tensor([0, 1])), expected)


def test_bce_matches_torch_for_clips_and_masks_frames():
    generator = torch.Generator().manual_seed(1)
    logits, targets = (
        torch.randn(4, 6, generator=generator),
        torch.rand(4, 6, generator=generator).round(),
    )
    assert torch.allclose(
        bce_loss(logits, targets), F.binary_cross_entropy_with_logits(logits, targets)
    )
    frames, frame_targets = torch.randn(2, 4, 3, generator=generator), torch.ones(2, 4, 3)
    lengths = torch.tensor([1.0, 0.5])
    expected = F.binary_cross_entropy_with_logits(
        valid_rows(frames, lengths), valid_rows(frame_targets, lengths)
    )
    assert torch.allclose(bce_loss(frames, frame_targets, lengths), expected)


def test_ctc_uses_absolute_lengths_from_relative_ones():
    generator = torch.Generator().manual_seed(2)
    log_probs = torch.log_softmax(torch.randn(2, 10, 5, generator=generator), dim=-1)
    targets = torch.tensor([[1, 2, 3, 4], [2, 2, 0, 0]])
    input_lens, target_lens = torch.tensor([1.0, 0.8]), torch.tensor([1.0, 0.5])
    expected = F.ctc_loss(
        log_probs.transpose(0, 1),
        targets,
        torch.tensor([10, 8]),
        torch.tensor([4, 2]),
        reduction="none",
    )
    got = ctc_loss(log_probs, targets, input_lens, target_lens, 0, reduction="none")
    assert torch.allclose(got, expected)
    per_token = expected / torch.tensor([4.0, 2.0])  # SpeechBrain's "batch": per target token
    batch = ctc_loss(log_probs, targets, input_lens, target_lens, 0, reduction="batch")
    assert torch.allclose(batch, per_token)
    mean = ctc_loss(log_probs, targets, input_lens, target_lens, 0)
    assert torch.allclose(mean, per_token.mean())
    batchmean = ctc_loss(log_probs, targets, input_lens, target_lens, 0, "batchmean")
    assert torch.allclose(batchmean, expected.sum() / 2)


def test_unknown_reduction_is_refused(sequence_batch):
    log_probs, targets, _ = sequence_batch
    with pytest.raises(ValueError, match="reduction must be one of"):
        nll_loss(log_probs, targets, reduction="avg")


def test_bce_takes_a_trailing_singleton_and_masks_frames():
    generator = torch.Generator().manual_seed(3)
    logits, targets = torch.randn(2, 5, 1, generator=generator), torch.ones(2, 5)
    lengths = torch.tensor([1.0, 0.4])
    expected = F.binary_cross_entropy_with_logits(
        valid_rows(logits.squeeze(-1), lengths), valid_rows(targets, lengths)
    )
    assert torch.allclose(bce_loss(logits, targets, lengths), expected)
    per_utterance = bce_loss(logits, targets, lengths, reduction="batch")
    assert torch.allclose(
        per_utterance[1], F.binary_cross_entropy_with_logits(logits[1, :2, 0], targets[1, :2])
    )
    with pytest.raises(ValueError, match="length is only for"):
        bce_loss(torch.zeros(3), torch.zeros(3), length=torch.ones(3))
    smoothed = bce_loss(torch.zeros(1), torch.ones(1), label_smoothing=0.2)
    assert torch.allclose(
        smoothed, F.binary_cross_entropy_with_logits(torch.zeros(1), torch.tensor([0.9]))
    )


def test_frame_losses_cut_small_length_differences_and_refuse_large_ones():
    predictions, targets = torch.ones(2, 6, 3), torch.zeros(2, 5, 3)
    assert l1_loss(predictions, targets) == 1.0 and mse_loss(predictions, targets * 2) == 1.0
    with pytest.raises(ValueError, match="more than allowed_len_diff=3"):
        l1_loss(torch.ones(1, 9), torch.ones(1, 5))
    assert l1_loss(torch.ones(1, 9), torch.zeros(1, 5), allowed_len_diff=4) == 1.0


def test_reductions_and_class_weights(sequence_batch):
    log_probs, targets, lengths = sequence_batch
    none = nll_loss(log_probs, targets, lengths, reduction="none")
    assert none.shape == (3, 5) and (none[2, 1:] == 0).all()
    assert torch.allclose(nll_loss(log_probs, targets, lengths, reduction="sum"), none.sum())
    assert torch.allclose(
        nll_loss(log_probs, targets, lengths, reduction="batchmean"), none.sum() / 3
    )
    weight = torch.arange(1.0, 8.0)
    weighted = nll_loss(log_probs, targets, reduction="none", weight=weight)
    assert torch.allclose(
        weighted, nll_loss(log_probs, targets, reduction="none") * weight[targets]
    )


def test_classification_error_counts_wrong_argmax():
    probabilities = torch.tensor([[[0.9, 0.1], [0.1, 0.9], [0.6, 0.4]]])
    assert classification_error(probabilities, torch.tensor([[1, 1, 0]])) == pytest.approx(1 / 3)
    assert (
        classification_error(probabilities, torch.tensor([[1, 1, 1]]), torch.tensor([2 / 3])) == 0.5
    )


def test_additive_angular_margin_inside_log_softmax_wrapper():
    cosines = torch.tensor([[0.8, 0.1, -0.2], [0.3, 0.9, 0.0]])
    targets = torch.tensor([[0], [1]])
    plain = LogSoftmaxWrapper(AngularMargin(margin=0.0, scale=1.0))(cosines[:, None], targets)
    assert torch.allclose(plain, F.cross_entropy(cosines, targets[:, 0]))
    aam = AdditiveAngularMargin(margin=0.2, scale=30.0)(
        cosines, F.one_hot(targets[:, 0], 3).float()
    )
    assert torch.allclose(aam[0, 0], 30.0 * torch.cos(torch.acos(torch.tensor(0.8)) + 0.2))
    assert torch.allclose(aam[0, 1:], 30.0 * cosines[0, 1:])
    loss = LogSoftmaxWrapper(AdditiveAngularMargin(margin=0.2, scale=30.0))(
        cosines[:, None], targets
    )
    assert torch.allclose(loss, F.cross_entropy(aam, targets[:, 0]))
