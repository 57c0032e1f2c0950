"""Linear layers on prepacked weights: same results as F.linear, only inside the block."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from speechlobes.lobes.text_decoders.gpt2 import Conv1D
from speechlobes.lobes.text_decoders.packing import Linear, pack_weight, prepacked_linears

needs_onednn = pytest.mark.skipif(
    pack_weight(torch.zeros(2, 2), 1) is None, reason="torch without oneDNN"
)


def test_linear_is_a_torch_linear_with_the_same_state_dict():
    layer = Linear(3, 2)
    assert isinstance(layer, nn.Linear)
    assert list(layer.state_dict()) == ["weight", "bias"]
    x = torch.randn(4, 3)
    assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))


@needs_onednn
@pytest.mark.parametrize("shape", [(8, 256), (3, 1, 256), (1, 256)])
def test_packed_products_match_f_linear(shape):
    torch.manual_seed(0)
    model = nn.Sequential(Linear(256, 1024), nn.GELU(), Linear(1024, 256, bias=False))
    x = torch.randn(*shape)
    with torch.no_grad():
        expected = model(x)
        with prepacked_linears(model, rows=8, min_bytes=0):
            assert all(layer.packed is not None for layer in (model[0], model[2]))
            packed = model(x)
    assert packed.shape == expected.shape
    torch.testing.assert_close(packed, expected, atol=1e-4, rtol=1e-5)
    assert model[0].packed is None and model[2].packed is None


@needs_onednn
def test_gpt2_conv1d_packs_its_transposed_weight():
    torch.manual_seed(0)
    layer = Conv1D(48, 32)
    x = torch.randn(5, 2, 32)
    with torch.no_grad():
        expected = layer(x)
        with prepacked_linears(layer, rows=10, min_bytes=0):
            assert layer.packed is not None
            packed = layer(x)
    torch.testing.assert_close(packed, expected, atol=1e-5, rtol=1e-5)
    assert layer.packed is None


def test_nothing_is_packed_with_gradients_autocast_or_small_weights():
    layer = Linear(16, 16)
    with prepacked_linears(layer, rows=4, min_bytes=0):
        assert layer.packed is None  # gradients enabled: the packed kernel has no backward
    with torch.no_grad(), prepacked_linears(layer, rows=4):
        assert layer.packed is None  # 1 KB of weights: below PACK_MIN_BYTES
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        with prepacked_linears(layer, rows=4, min_bytes=0):
            assert layer.packed is None


def test_weights_are_unpacked_when_the_block_raises():
    layer = Linear(4, 4)
    with pytest.raises(RuntimeError, match="boom"):
        with torch.no_grad(), prepacked_linears(layer, rows=1, min_bytes=0):
            raise RuntimeError("boom")
    assert layer.packed is None


@needs_onednn
def test_other_dtypes_behave_as_torch_linear_inside_the_block():
    layer = Linear(8, 8).double()
    x = torch.randn(2, 8, dtype=torch.float64)
    with torch.no_grad(), prepacked_linears(layer, rows=2, min_bytes=0):
        assert layer.packed is None  # float64 weights are not packed
        assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))
    layer.float()
    with torch.no_grad(), prepacked_linears(layer, rows=2, min_bytes=0):
        with pytest.raises(RuntimeError, match="same dtype"):  # as nn.Linear says
            layer(x.bfloat16())


@needs_onednn
@pytest.mark.parametrize("activation", [F.gelu, F.relu, F.silu])
def test_activations_fused_into_the_packed_product_equal_torchs(activation):
    torch.manual_seed(0)
    layer = Linear(64, 128)
    x = 3 * torch.randn(6, 1, 64)
    with torch.no_grad():
        assert torch.equal(layer.activated(x, activation), activation(layer(x)))
        with prepacked_linears(layer, rows=6, min_bytes=0):
            fused = layer.activated(x, activation)
            assert torch.equal(fused, activation(layer(x)))  # GELU, ReLU in the kernel
        torch.testing.assert_close(fused, activation(layer(x)), atol=1e-5, rtol=1e-5)
