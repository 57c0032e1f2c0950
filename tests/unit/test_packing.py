"""Decoding on prepacked weights: same results as F.linear, only inside the block, the model
code untouched."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from speechlobes.lobes.text_decoders.attention import Attention
from speechlobes.lobes.text_decoders.gpt2 import TransposedLinear
from speechlobes.lobes.text_decoders.packing import pack_weight, packed_products

needs_onednn = pytest.mark.skipif(
    pack_weight(torch.zeros(2, 2), 1) is None, reason="torch without oneDNN"
)


def swapped(module: nn.Module) -> list[str]:
    """Names of the submodules whose methods the block replaced on the instance."""
    return [
        name for name, sub in module.named_modules() if set(vars(sub)) & {"forward", "project_self"}
    ]


@needs_onednn
@pytest.mark.parametrize("shape", [(8, 256), (3, 1, 256), (1, 256)])
def test_packed_products_match_f_linear(shape):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 1024), nn.GELU(), nn.Linear(1024, 256, bias=False))
    x = torch.randn(*shape)
    with torch.no_grad():
        expected = model(x)
        with packed_products(model, rows=8, min_bytes=0):
            assert swapped(model) == ["0", "2"]
            packed = model(x)
    assert packed.shape == expected.shape
    torch.testing.assert_close(packed, expected, atol=1e-4, rtol=1e-5)
    assert swapped(model) == []


@needs_onednn
def test_gpt2_transposed_linear_packs_its_transposed_weight():
    torch.manual_seed(0)
    layer = TransposedLinear(48, 32)
    x = torch.randn(5, 2, 32)
    with torch.no_grad():
        expected = layer(x)
        with packed_products(layer, rows=10, min_bytes=0):
            assert swapped(layer) == [""]
            packed = layer(x)
    torch.testing.assert_close(packed, expected, atol=1e-5, rtol=1e-5)
    assert swapped(layer) == []


@needs_onednn
def test_query_key_value_are_one_packed_product():
    torch.manual_seed(0)
    attention = Attention(64, num_heads=4).eval()
    x = torch.randn(6, 1, 64)
    with torch.no_grad():
        expected = attention.project_self(x)
        with packed_products(attention, rows=6, min_bytes=0):
            assert "" in swapped(attention)  # project_self replaced on the instance
            fused = attention.project_self(x)
    for got, want in zip(fused, expected, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_nothing_is_packed_with_gradients_autocast_or_small_weights():
    layer = nn.Linear(16, 16)
    with packed_products(layer, rows=4, min_bytes=0):
        assert swapped(layer) == []  # gradients enabled: the packed kernel has no backward
    with torch.no_grad(), packed_products(layer, rows=4):
        assert swapped(layer) == []  # 1 KB of weights: below PACK_MIN_BYTES
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        with packed_products(layer, rows=4, min_bytes=0):
            assert swapped(layer) == []


@needs_onednn
def test_weights_are_unpacked_when_the_block_raises():
    layer = nn.Linear(4, 4)
    with pytest.raises(RuntimeError, match="boom"):
        with torch.no_grad(), packed_products(layer, rows=1, min_bytes=0):
            assert swapped(layer) == [""]
            raise RuntimeError("boom")
    assert swapped(layer) == []


@needs_onednn
def test_other_dtypes_behave_as_torch_linear_inside_the_block():
    layer = nn.Linear(8, 8).double()
    x = torch.randn(2, 8, dtype=torch.float64)
    with torch.no_grad(), packed_products(layer, rows=2, min_bytes=0):
        assert swapped(layer) == []  # float64 weights are not packed
        assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))
    layer.float()
    with torch.no_grad(), packed_products(layer, rows=2, min_bytes=0):
        with pytest.raises(RuntimeError, match="same dtype"):  # as nn.Linear says
            layer(x.bfloat16())


@needs_onednn
@pytest.mark.parametrize("activation", [F.gelu, F.relu, F.silu])
def test_an_activation_named_after_a_linear_joins_its_packed_product(activation):
    class FeedForward(nn.Module):
        linear_then_activation = ("fc1", "act")

        def __init__(self):
            super().__init__()
            self.fc1, self.act = nn.Linear(64, 128), activation

        def forward(self, x):
            return self.act(self.fc1(x))

    torch.manual_seed(0)
    block = FeedForward()
    x = 3 * torch.randn(6, 1, 64)
    with torch.no_grad():
        expected = block(x)
        with packed_products(block, rows=6, min_bytes=0):
            fused = activation in (F.gelu, F.relu)
            assert (block.act is not activation) == fused  # the product applies it
            result = block(x)
        assert block.act is activation and swapped(block) == []
    # SiLU is not fused (the packed product, then torch's); GELU and ReLU in the kernel are
    # torch's, to the float rounding of the product
    torch.testing.assert_close(result, expected, atol=1e-5, rtol=1e-5)
