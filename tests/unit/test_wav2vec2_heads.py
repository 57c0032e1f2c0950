"""Heads of the Wav2Vec2 family against the transformers fixtures (4.x weighted-sum semantics)."""

from pathlib import Path

import pytest
import torch

import speechlobes.lobes.wav2vec2 as w2v
from speechlobes.lobes.hf_io import read_config

FIXTURES = Path(__file__).parents[1] / "fixtures" / "hf"
ATOL = 1e-4


def _load(folder: str):
    cases = torch.load(FIXTURES / folder / "cases.pt", weights_only=True)
    cls = getattr(w2v, read_config(FIXTURES / folder)["architectures"][0])
    return cases, cls.from_pretrained(FIXTURES / folder)


def _err(ours, ref) -> float:
    assert ours.shape == ref.shape
    return (ours.float() - ref.float()).abs().max().item()


@pytest.mark.parametrize(
    "folder", ["wav2vec2_group", "wav2vec2_layer", "w2v2_conformer_relpos", "w2v2_conformer_rotary"]
)
def test_ctc_logits_and_loss_match_reference(folder):
    cases, model = _load(folder)
    with torch.no_grad():
        out = model(cases["input_values"], cases["attention_mask"], labels=cases["ctc_labels"])
    assert _err(out.logits, cases["logits"]) < ATOL
    assert torch.equal(out.logits.argmax(-1), cases["logits"].argmax(-1))
    torch.testing.assert_close(out.loss, cases["ctc_loss"], rtol=1e-5, atol=1e-4)


def test_ctc_without_mask_uses_all_frames():
    cases, model = _load("wav2vec2_group")
    with torch.no_grad():
        out = model(cases["input_values"], labels=cases["ctc_labels"])
    assert _err(out.logits, cases["logits_nomask"]) < ATOL
    torch.testing.assert_close(out.loss, cases["ctc_loss_nomask"], rtol=1e-5, atol=1e-4)


def test_ctc_rejects_labels_outside_the_vocabulary():
    cases, model = _load("wav2vec2_layer")
    with pytest.raises(ValueError, match="vocab_size 32"):
        model(cases["input_values"], labels=torch.tensor([[40]]))


def test_sequence_classification_matches_v4_reference():
    cases, model = _load("seq_cls")
    with torch.no_grad():
        out = model(cases["input_values"], cases["attention_mask"], labels=cases["labels"])
        hidden, _ = model.encode_hidden(
            cases["input_values"], cases["attention_mask"], False, False
        )
        pooled = model.pool(hidden, cases["attention_mask"])
    assert _err(out.logits, cases["logits_v4"]) < ATOL
    assert _err(pooled, cases["pooled_output_v4"]) < ATOL
    torch.testing.assert_close(out.loss, cases["loss_v4"], rtol=1e-5, atol=1e-4)


def test_frame_classification_matches_reference_and_loss_uses_label_argmax():
    cases, model = _load("frame_cls")
    one_hot = torch.nn.functional.one_hot(torch.arange(3 * 127).view(3, 127) % 4, 4).float()
    with torch.no_grad():
        out = model(cases["input_values"], cases["attention_mask"], labels=one_hot)
    assert _err(out.logits, cases["logits"]) < ATOL
    expected = torch.nn.functional.cross_entropy(
        cases["logits"].view(-1, 4), one_hot.view(-1, 4).argmax(1)
    )
    torch.testing.assert_close(out.loss, expected, rtol=1e-4, atol=1e-4)


def test_xvector_matches_v4_reference_at_every_stage():
    cases, model = _load("xvector")
    mask = cases["attention_mask"]
    with torch.no_grad():
        out = model(cases["input_values"], mask, labels=cases["labels"])
        hidden, _ = model.encode_hidden(cases["input_values"], mask, False, False)
        hidden = model.projector(hidden)
        for layer in model.tdnn:
            hidden = layer(hidden)
        pooled = model.statistics_pooling(hidden, mask)
    assert _err(hidden, cases["tdnn_output_v4"]) < ATOL
    assert _err(pooled, cases["statistic_pooling_v4"]) < ATOL
    assert _err(out.embeddings, cases["embeddings_v4"]) < ATOL
    assert _err(out.logits, cases["logits_v4"]) < ATOL
    torch.testing.assert_close(out.loss, cases["loss_v4"], rtol=1e-5, atol=1e-4)
    assert torch.equal(model.tdnn_lengths(cases["feat_lengths"]), cases["tdnn_lengths"])


def test_pretraining_losses_and_codes_match_reference():
    cases, model = _load("pretraining")
    with torch.no_grad():
        out = model(
            cases["input_values"],
            cases["attention_mask"],
            mask_time_indices=cases["mask_time_indices"],
            sampled_negative_indices=cases["sampled_negative_indices"],
        )
        features = model.wav2vec2_conformer(
            cases["input_values"], cases["attention_mask"]
        ).extract_features
        _, _, codes = model.quantizer(features, cases["mask_time_indices"])
    assert torch.equal(codes, cases["codevector_idx"])
    for key in ("projected_states", "projected_quantized_states"):
        assert _err(getattr(out, key), cases[key]) < ATOL, key
    for key in ("loss", "contrastive_loss", "diversity_loss", "codevector_perplexity"):
        torch.testing.assert_close(getattr(out, key), cases[key], rtol=1e-5, atol=1e-4, msg=key)
    quantized = out.projected_quantized_states
    negatives = quantized.reshape(-1, quantized.shape[-1])[cases["sampled_negative_indices"]]
    assert torch.equal((negatives == quantized[:, :, None]).all(-1), cases["neg_is_pos"])


def test_sampled_negatives_are_other_masked_frames_of_the_same_row():
    mask = torch.zeros(3, 40, dtype=torch.bool)
    mask[0, 3:15] = mask[1, 20:23] = mask[2, ::3] = True
    gen = torch.Generator().manual_seed(0)
    indices = w2v.sample_negative_indices(mask, 7, generator=gen)
    for row in range(3):
        for frame in torch.nonzero(mask[row]).flatten():
            picked = indices[row, frame] - row * 40
            assert mask[row, picked].all() and not (picked == frame).any()


def test_pretraining_trains_with_gumbel_codes_and_gives_gradients():
    _, model = _load("pretraining")
    cases = torch.load(FIXTURES / "pretraining" / "cases.pt", weights_only=True)
    model.train()
    torch.manual_seed(0)
    mask = cases["mask_time_indices"]
    out = model(
        cases["input_values"],
        cases["attention_mask"],
        mask_time_indices=mask,
        sampled_negative_indices=w2v.sample_negative_indices(mask, 5),
    )
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert model.quantizer.weight_proj.weight.grad.abs().sum() > 0
    assert model.wav2vec2_conformer.masked_spec_embed.grad.abs().sum() > 0


def test_ctc_head_starts_from_a_base_checkpoint_only_when_not_strict(tmp_path):
    w2v.HubertModel.from_pretrained(FIXTURES / "hubert").save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"missing keys \['lm_head.bias', 'lm_head.weight'\]"):
        w2v.HubertForCTC.from_pretrained(tmp_path)
    model = w2v.HubertForCTC.from_pretrained(tmp_path, strict=False)
    base = w2v.HubertModel.from_pretrained(FIXTURES / "hubert")
    assert torch.equal(
        model.hubert.encoder.layers[0].attention.q_proj.weight,
        base.encoder.layers[0].attention.q_proj.weight,
    )


@pytest.mark.parametrize("folder", ["seq_cls", "xvector", "pretraining", "w2v2_conformer_rotary"])
def test_head_save_reload_reproduces_the_state(folder, tmp_path):
    _, model = _load(folder)
    model.save_pretrained(tmp_path, max_shard_size="100KB")
    again = type(model).from_pretrained(tmp_path)
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_training_mode_applies_seeded_spec_augment():
    cases, model = _load("w2v2_conformer_relpos")
    model.config.mask_time_prob = 0.5
    model.config.mask_time_length = 3
    model.train()

    def run(seed):
        torch.manual_seed(seed)
        return model(cases["input_values"], cases["attention_mask"]).logits

    assert torch.equal(run(1), run(1))
    assert not torch.allclose(run(1), run(2))


def test_gradient_checkpointing_gives_the_same_gradients():
    cases, model = _load("wav2vec2_layer")
    model.config.apply_spec_augment = False
    model.train()

    def grads():
        model.zero_grad()
        model(
            cases["input_values"], cases["attention_mask"], labels=cases["ctc_labels"]
        ).loss.backward()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    plain = grads()
    model.gradient_checkpointing_enable()
    for a, b in zip(plain, grads(), strict=True):
        torch.testing.assert_close(a, b)


def test_frozen_feature_encoder_gets_no_gradient():
    cases, model = _load("wav2vec2_group")
    model.freeze_feature_encoder()
    model(
        cases["input_values"], cases["attention_mask"], labels=cases["ctc_labels"]
    ).loss.backward()
    assert all(p.grad is None for p in model.wav2vec2.feature_extractor.parameters())
    assert model.lm_head.weight.grad is not None
