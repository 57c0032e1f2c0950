import pytest
import torch
import torch.nn.functional as F

from speechlobes.nnet.losses import bce_loss, ctc_loss, length_mask, nll_loss


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


def test_length_mask_marks_valid_steps():
    mask = length_mask(torch.zeros(2, 4), torch.tensor([1.0, 0.5]))
    assert mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]


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
    got = ctc_loss(log_probs, targets, input_lens, target_lens, reduction="batch")
    assert torch.allclose(got, expected)
    mean = ctc_loss(log_probs, targets, input_lens, target_lens)
    assert torch.allclose(mean, (expected / torch.tensor([4.0, 2.0])).mean())


def test_unknown_reduction_is_refused(sequence_batch):
    log_probs, targets, _ = sequence_batch
    with pytest.raises(ValueError, match="reduction must be one of"):
        nll_loss(log_probs, targets, reduction="avg")
