"""BEATs reproduces the original unilm code (golden fixtures) and keeps its public surface."""

import logging
import math
from pathlib import Path

import pytest
import torch

from speechlobes.lobes.beats import (
    BEATs,
    BEATsConfig,
    GLU_Linear,
    RelativeBiasAttention,
    TransformerSentenceEncoderLayer,
    beats_encoder,
    get_activation_fn,
    quant_noise,
)
from speechlobes.lobes.beats.relative_bias import (
    bucket_relative_positions,
    gated_relative_bias,
    relative_position_buckets,
)
from speechlobes.nnet.activations import activation_fn
from speechlobes.nnet.attention import merge_heads, split_heads
from speechlobes.nnet.init import init_weights
from speechlobes.nnet.positional_conv import SamePad
from speechlobes.nnet.transformer import GradMultiply

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "beats"
CHECKPOINT = FIXTURES / "checkpoint.pt"
TOL = 1e-4
SMALL = {
    "embed_dim": 24,
    "encoder_layers": 2,
    "encoder_embed_dim": 32,
    "encoder_ffn_embed_dim": 48,
    "encoder_attention_heads": 4,
    "conv_pos": 8,
    "conv_pos_groups": 4,
    "relative_position_embedding": True,
    "num_buckets": 32,
    "max_distance": 40,
    "gru_rel_pos": True,
    "deep_norm": True,
}


@pytest.fixture(scope="module")
def cases():
    return torch.load(FIXTURES / "cases.pt", weights_only=True)


@pytest.fixture(scope="module")
def original_rule_model():
    return BEATs(CHECKPOINT, output_all_hiddens=True, padding_mask_rule="original")


@pytest.fixture(scope="module")
def geometric_model():
    return BEATs(CHECKPOINT, output_all_hiddens=True)


def max_error(a, b):
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


# ---------------------------------------------------------------- golden fixtures


def test_preprocess_matches_reference_fbank(original_rule_model, cases):
    assert max_error(original_rule_model.preprocess(cases["wav"]), cases["fbank"]) <= TOL


def test_original_rule_reproduces_batched_reference(original_rule_model, cases):
    captured = {}

    def capture_encoder_input(module, args):
        captured["input"] = args[0].clone()

    hook = original_rule_model.encoder.register_forward_pre_hook(capture_encoder_input)
    try:
        hiddens, mask = original_rule_model(cases["wav"], cases["wav_lens"])
    finally:
        hook.remove()
    assert torch.equal(mask, cases["out_padding_mask"])
    assert max_error(captured["input"], cases["encoder_input"]) <= TOL
    assert max_error(hiddens, cases["layer_results"]) <= TOL
    assert max_error(hiddens[-1], cases["features"]) <= TOL


def test_last_layer_output_without_all_hiddens(cases):
    model = BEATs(CHECKPOINT, padding_mask_rule="original")
    features, mask = model.extract_features(cases["wav"], cases["wav_lens"])
    assert max_error(features, cases["features"]) <= TOL
    assert torch.equal(mask, cases["out_padding_mask"])


@pytest.mark.parametrize("index", [0, 1, 2])
def test_single_utterances_match_reference(original_rule_model, cases, index):
    length = int(cases["wav_lengths"][index])
    wav = cases["wav"][index : index + 1, :length]
    hiddens, mask = original_rule_model(wav)
    assert mask is None
    assert max_error(hiddens, cases[f"layer_results_single_{index}"]) <= TOL
    assert max_error(hiddens[-1], cases[f"features_single_{index}"]) <= TOL
    _, full_mask = original_rule_model(wav, torch.ones(1))
    assert torch.equal(full_mask, cases[f"out_padding_mask_single_{index}"])


def test_forward_padding_mask_groups_like_the_original():
    model = BEATs(cfg=SMALL)
    samples = torch.tensor([[False] * 5 + [True] * 5, [False] * 2 + [True] * 8])
    grouped = model.forward_padding_mask(torch.zeros(2, 3, 1), samples)  # last sample dropped
    assert grouped.tolist() == [[False, False, True], [False, True, True]]


def test_geometric_rule_gives_each_item_its_single_run(geometric_model, cases):
    hiddens, mask = geometric_model(cases["wav"], cases["wav_lens"])
    assert (~mask).sum(dim=1).tolist() == [48, 24, 40]
    for index in range(3):
        single = cases[f"layer_results_single_{index}"]
        valid = single.shape[2]
        assert not mask[index, :valid].any() and mask[index, valid:].all()
        assert max_error(hiddens[:, index : index + 1, :valid], single) <= TOL


def test_geometric_rule_is_batch_independent_on_random_batches():
    torch.manual_seed(0)
    model = BEATs(cfg=SMALL)
    lengths = torch.tensor([2800, 5123, 9999, 4300])
    wav = torch.randn(4, int(lengths.max())) * 0.1
    wav = wav * (torch.arange(wav.shape[1]) < lengths[:, None])
    features, mask = model(wav, lengths / lengths.max())
    for index, length in enumerate(lengths.tolist()):
        single, _ = model(wav[index : index + 1, :length])
        valid = single.shape[1]
        assert valid == (~mask[index]).sum() == ((length - 400) // 160 + 1) // 16 * 8
        assert max_error(features[index, :valid], single[0]) <= TOL


def test_strict_load_accepts_shared_relative_table_keys():
    checkpoint = torch.load(CHECKPOINT, weights_only=True)
    model = BEATs(CHECKPOINT)
    tables = [layer.self_attn.relative_attention_bias for layer in model.encoder.layers]
    assert all(table is tables[0] for table in tables)
    reference = checkpoint["model"]["encoder.layers.1.self_attn.relative_attention_bias.weight"]
    assert torch.equal(tables[0].weight, reference)
    assert model.cfg == BEATsConfig.from_dict(checkpoint["cfg"])


# ---------------------------------------------------------------- relative bias and attention


def test_relative_buckets_match_reference_table():
    buckets = bucket_relative_positions(torch.arange(-12, 13), num_buckets=32, max_distance=40)
    assert buckets[12:].tolist() == [0, 17, 18, 19, 20, 21, 22, 23, 24, 24, 25, 25, 26]
    assert buckets[:13].flip(0).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 8, 9, 9, 10]
    far = bucket_relative_positions(torch.tensor([33, -33, 32, -32, 500]), 32, 40)
    assert far.tolist() == [31, 15, 30, 14, 31]


def test_relative_buckets_follow_the_log_formula():
    num_buckets, max_distance = 320, 800
    half, exact = num_buckets // 2, num_buckets // 4
    positions = torch.arange(-1500, 1500)
    buckets = bucket_relative_positions(positions, num_buckets, max_distance)
    for r, bucket in zip(positions.tolist(), buckets.tolist(), strict=True):
        distance = abs(r)
        part = distance
        if distance >= exact:
            ratio = math.log(distance / exact) / math.log(max_distance / exact)
            part = min(half - 1, exact + int(ratio * (half - exact)))
        assert bucket == part + (half if r > 0 else 0), r


def test_relative_buckets_are_cached_per_length():
    first = relative_position_buckets(37, 37, 32, 40)
    assert relative_position_buckets(37, 37, 32, 40) is first
    assert relative_position_buckets(38, 38, 32, 40).shape == (38, 38)


def test_gated_bias_follows_the_gate_formula():
    torch.manual_seed(0)
    query = torch.randn(2, 3, 5, 8)
    linear = torch.nn.Linear(8, 8)
    scale = torch.randn(1, 3, 1, 1)
    bias = torch.randn(3, 5, 5)
    gated = gated_relative_bias(query, linear, scale, bias)
    for b in range(2):
        for h in range(3):
            for i in range(5):
                y = linear(query[b, h, i])
                a, c = torch.sigmoid(y[:4].sum()), torch.sigmoid(y[4:].sum())
                gate = a * (c * scale[0, h, 0, 0] - 1) + 2
                assert torch.allclose(gated[b, h, i], gate * bias[h, i], atol=1e-6)
    pad = torch.tensor([[False] * 5, [False] * 3 + [True] * 2])
    masked = gated_relative_bias(query, linear, scale, bias, key_padding_mask=pad)
    assert torch.equal(masked[0], gated[0]) and torch.equal(masked[1, :, :, :3], gated[1, :, :, :3])
    assert (masked[1, :, :, 3:] == torch.finfo(torch.float32).min).all()


def test_attention_equals_plain_softmax_with_gated_bias_and_padding():
    torch.manual_seed(0)
    attention = RelativeBiasAttention(
        32, 4, has_relative_attention_bias=True, num_buckets=32, max_distance=40, gru_rel_pos=True
    ).eval()
    x = torch.randn(2, 9, 32)
    pad = torch.zeros(2, 9, dtype=torch.bool)
    pad[1, 6:] = True
    out, weights = attention(x, pad, need_weights=True)
    position_bias = attention.position_bias(9)
    q = split_heads(attention.q_proj(x), 4)
    k = split_heads(attention.k_proj(x), 4)
    v = split_heads(attention.v_proj(x), 4)
    bias = gated_relative_bias(q, attention.grep_linear, attention.grep_a, position_bias)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(8) + bias
    probs = scores.masked_fill(pad[:, None, None, :], float("-inf")).softmax(-1)
    assert max_error(weights, probs) <= 1e-5
    assert max_error(out, attention.out_proj(merge_heads(probs @ v))) <= 1e-5
    assert weights[1, :, :, 6:].abs().max() == 0


# ---------------------------------------------------------------- errors and formats


def test_unknown_config_field_is_an_error_unless_not_strict():
    with pytest.raises(ValueError, match="unknown fields \\['bogus'\\]"):
        BEATs(cfg={**SMALL, "bogus": 1})
    model = BEATs(cfg={**SMALL, "bogus": 1}, strict=False)
    assert model.cfg.extra == {"bogus": 1} and model.cfg.encoder_layers == 2


def test_checkpoint_key_mismatch_lists_the_keys(tmp_path, caplog):
    checkpoint = torch.load(CHECKPOINT, weights_only=True)
    state = dict(checkpoint["model"])
    del state["encoder.layers.1.fc1.bias"]
    state["encoder.extra.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pt"
    torch.save({"cfg": checkpoint["cfg"], "model": state}, path)
    with pytest.raises(ValueError, match="missing keys.*fc1.bias.*unexpected keys.*extra.weight"):
        BEATs(path)
    with caplog.at_level(logging.WARNING):
        BEATs(path, strict=False)
    assert "encoder.extra.weight" in caplog.text


def test_non_beats_file_is_a_clear_error(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(ValueError, match="expected a dict with 'cfg' and 'model'"):
        BEATs(path)
    with pytest.raises(FileNotFoundError):
        BEATs(tmp_path / "absent.pt")


def test_audio_shorter_than_one_patch_is_an_error():
    model = BEATs(cfg=SMALL)
    model(torch.randn(1, 2800))
    with pytest.raises(ValueError, match="at least 2800 samples"):
        model(torch.randn(1, 2799))
    with pytest.raises(ValueError, match="batch items \\[1\\]"):
        model(torch.randn(2, 8000), torch.tensor([1.0, 0.3]))


def test_invalid_options_are_errors():
    with pytest.raises(ValueError, match="padding_mask_rule"):
        BEATs(cfg=SMALL, padding_mask_rule="nearest")
    with pytest.raises(ValueError, match="deep_norm and layer_norm_first"):
        BEATs(cfg={**SMALL, "layer_norm_first": True})
    with pytest.raises(ValueError, match="output_all_hiddens"):
        BEATs(cfg={**SMALL, "finetuned_model": True}, output_all_hiddens=True)


def test_own_format_round_trip(tmp_path, cases):
    model = BEATs(CHECKPOINT, padding_mask_rule="original")
    model.save_pretrained(tmp_path / "beats")
    loaded = BEATs.from_pretrained(tmp_path / "beats", padding_mask_rule="original", freeze=True)
    features, _ = loaded(cases["wav"], cases["wav_lens"])
    assert max_error(features, cases["features"]) <= TOL
    assert loaded.freeze and not any(p.requires_grad for p in loaded.parameters())
    trainable = BEATs.from_pretrained(tmp_path / "beats", dropout=0.0)  # HF-style: trainable
    assert trainable.cfg.dropout == 0.0 and all(p.requires_grad for p in trainable.parameters())
    with pytest.raises(FileNotFoundError, match="config.json"):
        BEATs.from_pretrained(tmp_path)


def test_cfg_overrides_checkpoint_fields():
    model = BEATs(CHECKPOINT, cfg={"encoder_layerdrop": 0.0, "dropout": 0.0})
    assert model.cfg.encoder_layerdrop == 0.0 and model.encoder.layerdrop == 0.0
    assert model.cfg.encoder_embed_dim == 64


# ---------------------------------------------------------------- training behaviour


def test_frozen_model_stays_in_eval_without_gradients(cases):
    model = BEATs(CHECKPOINT)
    model.train()
    assert not model.training and not model.encoder.layers[0].training
    features, _ = model(cases["wav"][:1])
    assert not features.requires_grad


def test_unfrozen_model_gets_gradients_on_every_parameter(cases):
    model = BEATs(CHECKPOINT, freeze=False, cfg={"encoder_layerdrop": 0.0})
    model.train()
    assert model.training
    features, _ = model(cases["wav"], cases["wav_lens"])
    features.square().mean().backward()
    no_grad = [
        name for name, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0
    ]
    assert no_grad == []


def test_model_evaluated_in_inference_mode_first_still_trains(cases):
    # the relative-position buckets are cached per length: built under inference mode they
    # once became inference tensors, and the next training step on that length failed
    relative_position_buckets.cache_clear()
    model = BEATs(CHECKPOINT, freeze=False, cfg={"encoder_layerdrop": 0.0})
    with torch.inference_mode():
        model.eval()(cases["wav"])
    features, _ = model.train()(cases["wav"])
    features.square().mean().backward()
    assert model.encoder.layers[0].self_attn.relative_attention_bias.weight.grad.abs().sum() > 0


def test_layer_drop_skips_layers_in_training_only():
    torch.manual_seed(0)
    model = BEATs(cfg={**SMALL, "encoder_layerdrop": 1.0, "dropout": 0.0}, freeze=False)
    model.output_all_hiddens = True
    wav = torch.randn(1, 4000)
    model.train()
    hiddens, _ = model(wav)
    assert torch.equal(hiddens[0], hiddens[-1])
    model.eval()
    hiddens, _ = model(wav)
    assert max_error(hiddens[0], hiddens[-1]) > 0.1


def test_layer_wise_gradient_decay_scales_input_gradient():
    torch.manual_seed(0)
    cfg = BEATsConfig(**{**SMALL, "dropout": 0.0, "attention_dropout": 0.0})
    encoder = beats_encoder(cfg)
    x = torch.randn(1, 6, 32)
    grads = []
    for ratio in (1.0, 0.5):
        encoder.gradient_scale = ratio
        leaf = x.clone().requires_grad_(True)
        encoder(leaf)[0].sum().backward()
        grads.append(leaf.grad)
    assert torch.allclose(grads[1], grads[0] * 0.25, atol=1e-5)  # two layers


def test_finetuned_predictor_returns_masked_mean_probabilities():
    torch.manual_seed(0)
    model = BEATs(cfg={**SMALL, "finetuned_model": True, "predictor_class": 5})
    wav = torch.randn(2, 8000)
    probs, mask = model(wav, torch.tensor([1.0, 0.5]))
    assert probs.shape == (2, 5) and probs.min() > 0 and probs.max() < 1
    model.predictor, predictor = None, model.predictor
    features, _ = model(wav, torch.tensor([1.0, 0.5]))
    valid = ~mask[1]
    expected = torch.sigmoid(predictor(features[1, valid]).mean(0))
    assert max_error(probs[1], expected) <= 1e-5


def test_pre_layer_norm_encoder_runs_and_normalises_output():
    model = BEATs(
        cfg={**SMALL, "deep_norm": False, "layer_norm_first": True, "activation_fn": "glu"}
    )
    features, _ = model(torch.randn(2, 4000))
    assert features.shape == (2, 8, 32)
    assert max_error(features.mean(-1), torch.zeros(2, 8)) < 1e-5  # final LayerNorm, unit affine
    assert max_error(features.std(-1, unbiased=False), torch.ones(2, 8)) < 1e-3


# ---------------------------------------------------------------- small components


def test_activations():
    x = torch.linspace(-3, 3, 13)
    gelu, gelu_accurate = get_activation_fn("gelu"), get_activation_fn("gelu_accurate")
    assert torch.allclose(gelu(x), 0.5 * x * (1 + torch.erf(x / math.sqrt(2))), atol=1e-6)
    tanh_form = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    assert torch.allclose(gelu_accurate(x), tanh_form, atol=1e-6)
    assert get_activation_fn("relu")(x).min() == 0
    assert torch.equal(get_activation_fn("linear")(x), x)
    assert torch.equal(get_activation_fn("glu")(x), x)  # the gate lives in GLU_Linear
    assert torch.allclose(activation_fn("swish")(x), x * torch.sigmoid(x), atol=1e-6)
    with pytest.warns(UserWarning, match="gelu_accurate"):
        get_activation_fn("gelu_fast")(x)
    with pytest.raises(ValueError, match="'swishy' not supported"):
        get_activation_fn("swishy")


def test_glu_linear_gates_second_half():
    glu = GLU_Linear(4, 3, "sigmoid")
    x = torch.randn(2, 5, 4)
    y = glu.linear(x)
    assert torch.allclose(glu(x), y[..., :3] * torch.sigmoid(y[..., 3:]))
    bilinear = GLU_Linear(4, 3, "bilinear", bias_in_glu=False)
    y = bilinear.linear(x)
    assert bilinear.linear.bias is None and torch.allclose(bilinear(x), y[..., :3] * y[..., 3:])


def test_grad_multiply_and_same_pad():
    x = torch.randn(3, requires_grad=True)
    out = GradMultiply.apply(x, 0.25)
    assert torch.equal(out, x)
    out.sum().backward()
    assert torch.equal(x.grad, torch.full((3,), 0.25))
    assert SamePad(4, causal=True)(torch.zeros(1, 2, 10)).shape[-1] == 7
    assert SamePad(5)(torch.zeros(1, 2, 10)).shape[-1] == 10


def test_quant_noise_drops_blocks_in_training_only():
    torch.manual_seed(0)
    layer = quant_noise(torch.nn.Linear(16, 4, bias=False), p=0.5, block_size=8)
    original = layer.parametrizations.weight.original
    layer.eval()
    assert torch.equal(layer.weight, original)
    layer.train()
    noisy = layer.weight.view(4, 2, 8)
    kept = noisy.abs().sum(-1) > 0
    assert 0 < kept.sum() < 8
    assert torch.allclose(noisy[kept], 2 * original.view(4, 2, 8)[kept])
    unchanged = torch.nn.Linear(16, 4)
    assert quant_noise(unchanged, 0.0, 8) is unchanged
    with pytest.raises(ValueError, match="multiple of 8"):
        quant_noise(torch.nn.Linear(12, 4), 0.1, 8)


def test_bert_initialisation_sets_bert_statistics():
    torch.manual_seed(0)
    layer = TransformerSentenceEncoderLayer(256, 512, 4)
    init_weights(layer, std=0.02)
    assert abs(layer.fc1.weight.std().item() - 0.02) < 2e-3
    assert abs(layer.self_attn.q_proj.weight.std().item() - 0.02) < 2e-3
    assert layer.fc1.bias.abs().max() == 0
