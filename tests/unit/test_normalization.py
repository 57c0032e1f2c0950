"""InputNormalization: statistics over valid frames only, running global stats, checkpoints."""

import pytest
import torch

from speechlobes.processing.normalization import InputNormalization

LENGTHS = torch.tensor([1.0, 0.6, 0.3])


def _valid_frames(feats: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
    return [
        row[: round(float(length) * feats.shape[1])]
        for row, length in zip(feats, lengths, strict=True)
    ]


def _batch(seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (
        torch.randn(3, 50, 4, generator=generator, dtype=torch.float64)
        * torch.tensor([1.0, 2.0, 5.0, 0.5])
        + 3.0
    )


def test_sentence_norm_gives_each_row_zero_mean_unit_variance_and_can_keep_padding():
    feats = _batch(0)
    out = InputNormalization(norm_type="sentence", avoid_padding_norm=True)(feats, LENGTHS)
    for row, valid in enumerate(_valid_frames(out, LENGTHS)):
        torch.testing.assert_close(valid.mean(0), torch.zeros(4, dtype=torch.float64))
        torch.testing.assert_close(valid.var(0, unbiased=False), torch.ones(4, dtype=torch.float64))
        kept = valid.shape[0]
        assert torch.equal(out[row, kept:], feats[row, kept:])


def test_batch_norm_pools_valid_frames_of_all_rows():
    feats = _batch(1)
    out = InputNormalization(norm_type="batch", std_norm=False)(feats, LENGTHS)
    pooled = torch.cat(_valid_frames(feats, LENGTHS))
    torch.testing.assert_close(out[0], feats[0] - pooled.mean(0))


def test_global_norm_accumulates_exact_statistics_of_all_valid_training_frames():
    norm = InputNormalization().train()
    assert norm.update_until_epoch == 2 and not norm.avoid_padding_norm  # SpeechBrain's defaults
    batches = [_batch(seed) for seed in range(3)]
    lengths = [LENGTHS, torch.tensor([0.2, 1.0, 0.5]), torch.ones(3)]
    for feats, rel in zip(batches, lengths, strict=True):
        norm(feats, rel)
    seen = torch.cat(
        [
            frame
            for feats, rel in zip(batches, lengths, strict=True)
            for frame in _valid_frames(feats, rel)
        ]
    )
    assert int(norm.count) == seen.shape[0]
    torch.testing.assert_close(norm.glob_mean, seen.mean(0))
    torch.testing.assert_close(norm.glob_std, seen.std(0, unbiased=False))
    expected = (batches[0] - seen.mean(0)) / seen.std(0, unbiased=False)
    torch.testing.assert_close(norm.eval()(batches[0]), expected)


def test_global_norm_is_frozen_in_eval_and_from_update_until_epoch_on():
    norm = InputNormalization(update_until_epoch=2).train()
    norm(_batch(0), epoch=1)
    state = {key: value.clone() for key, value in norm.state_dict().items()}
    norm(_batch(1), epoch=2)  # epoch == update_until_epoch: no more updates
    norm.eval()(_batch(2))
    for key, value in norm.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_global_norm_with_avg_factor_is_an_exponential_moving_average():
    norm = InputNormalization(avg_factor=0.1, std_norm=False).train()
    first, second = (
        torch.zeros(1, 4, 1, dtype=torch.float64),
        torch.ones(1, 4, 1, dtype=torch.float64),
    )
    norm(first)
    norm(second)
    torch.testing.assert_close(norm.glob_mean, torch.tensor([0.1], dtype=torch.float64))
    torch.testing.assert_close(norm.glob_std, torch.tensor([0.3], dtype=torch.float64))


def test_global_norm_without_statistics_refuses_eval():
    with pytest.raises(RuntimeError, match="no global statistics"):
        InputNormalization().eval()(_batch(0))


def test_global_statistics_survive_state_dict_and_checkpointer_round_trip(tmp_path):
    checkpoints = pytest.importorskip("speechlobes.checkpoints")
    trained = InputNormalization().train()
    trained(_batch(0), LENGTHS)
    fresh = InputNormalization()
    fresh.load_state_dict(trained.state_dict())
    torch.testing.assert_close(fresh.eval()(_batch(5)), trained.eval()(_batch(5)))

    checkpointer = checkpoints.Checkpointer(tmp_path, {"normalizer": trained})
    checkpointer.save_checkpoint()
    recovered = InputNormalization()
    checkpoints.Checkpointer(tmp_path, {"normalizer": recovered}).recover_if_possible()
    assert torch.equal(recovered.glob_mean, trained.glob_mean)
    assert torch.equal(recovered.count, trained.count)


def test_float32_features_keep_their_dtype_and_match_float64():
    feats = _batch(3)
    out32 = InputNormalization(norm_type="sentence")(feats.float(), LENGTHS)
    assert out32.dtype == torch.float32
    torch.testing.assert_close(
        out32.double(), InputNormalization(norm_type="sentence")(feats, LENGTHS), atol=1e-5, rtol=0
    )


def test_speechbrain_documented_values():
    inputs = torch.arange(9).view(3, 3).float()
    lengths = torch.ones(3)
    sentence = InputNormalization(norm_type="sentence")(inputs, lengths)
    torch.testing.assert_close(sentence[0], torch.tensor([-1.2247, 0.0, 1.2247]), atol=1e-4, rtol=0)
    batch = InputNormalization(norm_type="batch")(inputs, lengths)
    torch.testing.assert_close(
        batch[0], torch.tensor([-1.5492, -1.1619, -0.7746]), atol=1e-4, rtol=0
    )
    norm = InputNormalization(norm_type="global")
    assert abs(norm(inputs, lengths).mean()) < 1e-6
    means = [norm(inputs + shift, lengths).mean().item() for shift in (1, 0, -1)]
    assert means == pytest.approx([0.1901, -0.1270, -0.3735], abs=1e-4)
    assert abs(norm(inputs, lengths).mean()) < 1e-6


def test_padding_is_normalised_unless_avoid_padding_norm():
    feats = _batch(4)
    plain = InputNormalization(norm_type="sentence")(feats, LENGTHS)
    kept = InputNormalization(norm_type="sentence", avoid_padding_norm=True)(feats, LENGTHS)
    torch.testing.assert_close(plain[:, :15], kept[:, :15])
    assert torch.equal(kept[2, 15:], feats[2, 15:]) and not torch.equal(
        plain[2, 15:], feats[2, 15:]
    )


def test_length_dim_selects_the_time_dimension():
    feats = _batch(5)  # (batch, time, features)
    channels_first = feats.transpose(1, 2)
    norm = InputNormalization(norm_type="sentence", length_dim=2)
    torch.testing.assert_close(
        norm(channels_first, LENGTHS).transpose(1, 2),
        InputNormalization(norm_type="sentence")(feats, LENGTHS),
    )


def test_loads_speechbrain_statistics_with_an_integer_count():
    norm = InputNormalization()
    norm.load_state_dict(
        {"glob_mean": torch.tensor([1.0, 2.0]), "glob_std": torch.tensor([2.0, 4.0]), "count": 10}
    )
    out = norm.eval()(torch.tensor([[[3.0, 6.0]]]))
    assert out.tolist() == [[[1.0, 1.0]]] and int(norm.count) == 10
