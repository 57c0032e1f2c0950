"""The SpeechBrain-style Wav2Vec2Lobe wrapper: (wav, wav_lens) -> (frames, frame_lens)."""

from pathlib import Path

import pytest
import torch
from hyperpyyaml import load_hyperpyyaml

from speechlobes.lobes.wav2vec2 import Wav2Vec2Lobe

FIXTURES = Path(__file__).parents[1] / "fixtures" / "hf"


def _cases(folder):
    cases = torch.load(FIXTURES / folder / "cases.pt", weights_only=True)
    wav_lens = cases["input_lengths"].float() / cases["input_values"].shape[1]
    return cases, wav_lens


def test_frozen_lobe_with_reference_padding_equals_reference_encoder_output():
    cases, wav_lens = _cases("w2v2_conformer_relpos")
    lobe = Wav2Vec2Lobe(FIXTURES / "w2v2_conformer_relpos", normalize_wav=False)
    features, frame_lens = lobe(cases["input_values"], wav_lens, reference_padding=True)
    assert not features.requires_grad
    torch.testing.assert_close(features, cases["last_hidden_state"], atol=1e-4, rtol=0)
    assert torch.equal((frame_lens * 127).round().long(), cases["feat_lengths"])


def test_padded_items_get_their_single_run_frames():
    cases, wav_lens = _cases("w2v2_conformer_relpos")
    lobe = Wav2Vec2Lobe(FIXTURES / "w2v2_conformer_relpos", normalize_wav=False)
    features, _ = lobe(cases["input_values"], wav_lens)
    index = int(cases["single_index"])
    single = cases["single_last_hidden_state"]
    torch.testing.assert_close(features[index, : len(single)], single, atol=1e-4, rtol=0)


def test_normalising_already_normalised_audio_changes_nothing_noticeable():
    cases, wav_lens = _cases("wav2vec2_layer")
    lobe = Wav2Vec2Lobe(FIXTURES / "wav2vec2_layer")
    torch.testing.assert_close(
        lobe(cases["input_values"], wav_lens).frames,
        cases["last_hidden_state"],
        atol=1e-4,
        rtol=0,
    )


def test_group_norm_checkpoints_normalise_each_item_over_its_own_frames():
    # transformers' group norm spans the padded row, so a padded item differs from its single
    # run (with or without an attention mask); the lobe gives every item its single run
    cases, wav_lens = _cases("wav2vec2_group")
    lobe = Wav2Vec2Lobe(FIXTURES / "wav2vec2_group", normalize_wav=False)
    features, _ = lobe(cases["input_values"], wav_lens)
    index = int(cases["single_index"])
    single = cases["single_last_hidden_state"]
    torch.testing.assert_close(features[index, : len(single)], single, atol=1e-4, rtol=0)
    assert (
        features[index, : len(single)] - cases["last_hidden_state"][index, : len(single)]
    ).abs().max() > 1e-3


def test_all_hiddens_are_stacked_layer_first_and_end_with_the_output():
    cases, wav_lens = _cases("hubert")
    lobe = Wav2Vec2Lobe(FIXTURES / "hubert", output_all_hiddens=True, normalize_wav=False)
    hidden, _ = lobe(cases["input_values"], wav_lens)
    assert hidden.shape == (3, 3, 127, 32)
    # item 0 fills the batch: its single run is the unmasked reference
    reference = cases["hidden_states_nomask"][:, 0]
    torch.testing.assert_close(hidden[:, 0], reference, atol=1e-4, rtol=0)


def test_fine_tuning_lobe_trains_encoder_but_not_feature_extractor():
    cases, wav_lens = _cases("wav2vec2_layer")
    lobe = Wav2Vec2Lobe(FIXTURES / "wav2vec2_layer", freeze=False, freeze_feature_extractor=True)
    lobe.train()
    lobe(cases["input_values"], wav_lens).frames.pow(2).mean().backward()
    assert all(p.grad is None for p in lobe.model.feature_extractor.parameters())
    assert lobe.model.encoder.layers[0].attention.q_proj.weight.grad is not None


def test_frozen_lobe_stays_in_eval_mode():
    lobe = Wav2Vec2Lobe(FIXTURES / "hubert", layerdrop=0.5).train()
    assert lobe.training and not lobe.model.training
    assert not any(p.requires_grad for p in lobe.parameters())


def test_lobe_is_usable_from_yaml():
    yaml = f"""
encoder: !new:speechlobes.lobes.wav2vec2.Wav2Vec2Lobe
    source: {FIXTURES / "w2v2_conformer_rotary"}
    freeze: True
    output_norm: True
"""
    lobe = load_hyperpyyaml(yaml)["encoder"]
    out, _ = lobe(torch.randn(2, 2000), torch.tensor([1.0, 0.5]))
    assert out.shape == (2, 99, 32)
    torch.testing.assert_close(out.mean(-1), torch.zeros(2, 99), atol=1e-5, rtol=0)


def test_non_family_folder_is_rejected(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ValueError, match="'bert'"):
        Wav2Vec2Lobe(tmp_path)
