"""Oracle tests against transformers (the release in tests/oracles.py): checkpoints we write load
in transformers with identical outputs, including layouts the fixtures do not cover."""

from pathlib import Path

import pytest
import torch
import transformers

import speechlobes.lobes.wav2vec2 as w2v
from speechlobes.lobes.hf_io import read_config

pytestmark = pytest.mark.oracle("transformers")

FIXTURES = Path(__file__).parents[1] / "fixtures" / "hf"
TINY = dict(
    hidden_size=16,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=24,
    conv_dim=[8, 8, 8],
    conv_stride=[5, 2, 2],
    conv_kernel=[10, 3, 3],
    num_conv_pos_embeddings=6,
    num_conv_pos_embedding_groups=2,
    vocab_size=12,
    hidden_dropout=0.0,
    attention_dropout=0.0,
    activation_dropout=0.0,
    feat_proj_dropout=0.0,
    final_dropout=0.0,
    layerdrop=0.0,
    conv_depthwise_kernel_size=5,
    tdnn_dim=[8, 8],
    tdnn_kernel=[3, 1],
    tdnn_dilation=[2, 1],
    xvector_output_dim=6,
    classifier_proj_size=4,
    codevector_dim=8,
    proj_codevector_dim=8,
    num_codevectors_per_group=4,
)

pytestmark = pytest.mark.oracle("transformers")


def _randomise(model: torch.nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                low = 0.6 if "norm" in name and name.endswith("weight") else -0.5
                tensor.copy_(torch.rand(tensor.shape, generator=gen) * 0.8 + low)
                if "running_var" in name:
                    tensor.abs_().add_(0.5)


def _batch():
    gen = torch.Generator().manual_seed(3)
    wav = torch.randn(2, 3000, generator=gen)
    mask = torch.ones(2, 3000, dtype=torch.long)
    mask[1, 2100:] = 0
    return wav * mask, mask


def _compare(ours, folder, arch):
    hf = getattr(transformers, arch).from_pretrained(folder, attn_implementation="eager").eval()
    wav, mask = _batch()
    if ours.config.use_weighted_layer_sum:
        # transformers 5.x weighs a pre-LayerNorm last hidden state (we follow 4.x): compare
        # the encoders, whose outputs do not depend on that choice
        ours, hf = ours.base_model, hf.base_model
    with torch.no_grad():
        a = ours.eval()(wav, mask)
        b = hf(wav, attention_mask=mask)
    for key in ("last_hidden_state", "logits", "embeddings", "projected_states"):
        if getattr(b, key, None) is not None:
            torch.testing.assert_close(
                getattr(a, key), getattr(b, key), atol=1e-4, rtol=1e-4, msg=key
            )
            return
    raise AssertionError(f"nothing compared for {arch}")


LAYOUTS = [
    ("Wav2Vec2Model", dict(model_type="wav2vec2")),
    (
        "Wav2Vec2Model",
        dict(model_type="wav2vec2", do_stable_layer_norm=True, feat_extract_norm="layer"),
    ),
    (
        "Wav2Vec2Model",
        dict(model_type="wav2vec2", add_adapter=True, num_adapter_layers=2, output_hidden_size=12),
    ),
    (
        "Wav2Vec2ForCTC",
        dict(
            model_type="wav2vec2",
            add_adapter=True,
            num_adapter_layers=1,
            do_stable_layer_norm=True,
            feat_extract_norm="layer",
        ),
    ),
    ("HubertModel", dict(model_type="hubert", conv_pos_batch_norm=True)),
    ("HubertModel", dict(model_type="hubert", feat_proj_layer_norm=False, hidden_act="gelu_new")),
    (
        "HubertForCTC",
        dict(model_type="hubert", do_stable_layer_norm=True, feat_extract_norm="layer"),
    ),
    ("HubertForSequenceClassification", dict(model_type="hubert", use_weighted_layer_sum=False)),
    (
        "Wav2Vec2ConformerModel",
        dict(model_type="wav2vec2-conformer", position_embeddings_type=None, hidden_act="swish"),
    ),
    (
        "Wav2Vec2ConformerModel",
        dict(
            model_type="wav2vec2-conformer",
            position_embeddings_type="rotary",
            rotary_embedding_base=500,
        ),
    ),
    (
        "Wav2Vec2ConformerModel",
        dict(model_type="wav2vec2-conformer", add_adapter=True, num_adapter_layers=2),
    ),
    ("Wav2Vec2ForXVector", dict(model_type="wav2vec2")),
    (
        "Wav2Vec2ForAudioFrameClassification",
        dict(model_type="wav2vec2", do_stable_layer_norm=True, feat_extract_norm="layer"),
    ),
    ("Wav2Vec2ForPreTraining", dict(model_type="wav2vec2")),
]


@pytest.mark.parametrize(
    ("arch", "fields"), LAYOUTS, ids=[f"{a}-{i}" for i, (a, _) in enumerate(LAYOUTS)]
)
def test_checkpoint_written_by_us_loads_in_transformers_with_equal_outputs(arch, fields, tmp_path):
    config = w2v.Wav2Vec2Config(**TINY, **fields)
    model = getattr(w2v, arch)(config)
    _randomise(model, seed=len(arch))
    model.save_pretrained(tmp_path)
    _compare(model, tmp_path, arch)


@pytest.mark.parametrize(
    "folder",
    [
        "wav2vec2_group",
        "hubert",
        "w2v2_conformer_relpos",
        "w2v2_conformer_rotary",
        "xvector",
        "seq_cls",
    ],
)
def test_fixture_resaved_by_us_loads_in_transformers(folder, tmp_path):
    arch = read_config(FIXTURES / folder)["architectures"][0]
    model = getattr(w2v, arch).from_pretrained(FIXTURES / folder)
    model.save_pretrained(tmp_path, max_shard_size="60KB")
    _compare(model, tmp_path, arch)


def test_legacy_bin_resaved_as_bin_loads_in_transformers(tmp_path):
    model = w2v.Wav2Vec2ForCTC.from_pretrained(FIXTURES / "wav2vec2_group" / "legacy_bin")
    model.save_pretrained(tmp_path, safe_serialization=False)
    _compare(model, tmp_path, "Wav2Vec2ForCTC")


def test_checkpoint_written_by_transformers_loads_in_ours(tmp_path):
    config = transformers.Wav2Vec2ConformerConfig(
        **{k: v for k, v in TINY.items()}, add_adapter=True, num_adapter_layers=1
    )
    torch.manual_seed(0)
    hf = transformers.Wav2Vec2ConformerForCTC(config).eval()
    hf.save_pretrained(tmp_path)
    ours = w2v.Wav2Vec2ConformerForCTC.from_pretrained(tmp_path)
    wav, mask = _batch()
    with torch.no_grad():
        torch.testing.assert_close(
            ours(wav, mask).logits, hf(wav, attention_mask=mask).logits, atol=1e-4, rtol=1e-4
        )
