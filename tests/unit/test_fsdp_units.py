"""FSDP2 units: which submodules are blocks, frozen units, precision policies, and a bf16
sharded conformer (BatchNorm inside its blocks) against the unsharded float32 one, in 2
forked gloo processes."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from speechlobes import fsdp
from speechlobes.lobes.conformer import ConformerConfig, FbankConformer
from speechlobes.lobes.speech_encoder_decoder import (
    SpeechEncoderDecoderConfig,
    SpeechEncoderDecoderModel,
)
from speechlobes.lobes.text_decoders.transformer import TransformerTextDecoderConfig
from speechlobes.lobes.wav2vec2 import Wav2Vec2Config


def small_conformer() -> FbankConformer:
    torch.manual_seed(0)
    sizes = dict(input_size=20, hidden_size=16, num_layers=2, num_heads=2, ffn_size=32)
    return FbankConformer(ConformerConfig(**sizes, kernel_size=3, dropout=0.0))


def test_the_layer_stacks_of_lobes_are_found_without_naming_them():
    assert [type(b).__name__ for b in fsdp.find_blocks(small_conformer())] == ["ConformerLayer"] * 2
    encoder = Wav2Vec2Config(
        model_type="wav2vec2-conformer", hidden_size=16, num_attention_heads=2,
        num_hidden_layers=2, intermediate_size=32, conv_dim=[8, 8], conv_stride=[5, 2],
        conv_kernel=[10, 3],
    )  # fmt: skip
    decoder = TransformerTextDecoderConfig(vocab_size=12, d_model=8, num_layers=3, num_heads=2)
    config = SpeechEncoderDecoderConfig.from_encoder_decoder_configs(
        encoder, decoder, decoder_start_token_id=1, pad_token_id=0, eos_token_id=2
    )
    names = [type(b).__name__ for b in fsdp.find_blocks(SpeechEncoderDecoderModel(config))]
    assert names.count("ConformerLayer") == 2 and names.count("DecoderBlock") == 3


def test_declared_and_named_block_classes_and_a_name_matching_nothing():
    class Declared(nn.Module):
        _no_split_modules = ["Linear"]

        def __init__(self):
            super().__init__()
            self.proj, self.norm = nn.Linear(2, 2), nn.LayerNorm(2)

    assert [type(b).__name__ for b in fsdp.find_blocks(Declared())] == ["Linear"]
    assert fsdp.find_blocks(small_conformer(), ["torch.nn.modules.linear.Linear"])
    with pytest.raises(ValueError, match="fsdp_block_classes: 'Nope' matches no submodule"):
        fsdp.shard_modules(nn.ModuleDict({"m": small_conformer()}), "cpu", "fp32", ["Nope"])


def test_frozen_submodules_outside_blocks_become_units_and_blocks_are_left_out():
    model = small_conformer()
    model.subsampling.requires_grad_(False)
    blocks = fsdp.find_blocks(model)
    blocks[0].requires_grad_(False)
    assert fsdp.frozen_units(model, blocks) == [model.subsampling]


def test_precision_policies_cast_blocks_only_and_reduce_in_float32():
    for precision, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        blocks, rest = fsdp.precision_policies(precision)
        assert (blocks.param_dtype, blocks.reduce_dtype) == (dtype, torch.float32)
        assert rest.param_dtype is None and rest.reduce_dtype == torch.float32
    assert fsdp.precision_policies("fp32")[0].param_dtype is None
    with pytest.raises(ValueError, match="precision must be one of"):
        fsdp.precision_policies("int8")


def _sharded_bf16_conformer(rank: int, folder: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1")
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo")
    reference, model = small_conformer(), small_conformer()
    wavs = 0.3 * torch.randn(2, 8000, generator=torch.Generator().manual_seed(rank))
    expected, _ = reference(wavs)
    fsdp.shard_modules(nn.ModuleDict({"encoder": model}), "cpu", "bf16")
    norm = model.encoder.layers[0].conv_module.batch_norm
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, _ = model(wavs)
    got.float().square().mean().backward()
    error = ((got.float() - expected).abs().max() / expected.abs().max()).item()
    grads_finite = all(torch.isfinite(p.grad.to_local()).all() for p in model.parameters())
    with open(os.path.join(folder, f"rank{rank}"), "w") as handle:
        handle.write(f"{error} {grads_finite} {fsdp.is_sharded(norm)} {got.dtype}")
    torch.distributed.destroy_process_group()


def test_a_bf16_sharded_conformer_with_batchnorm_runs_close_to_float32(tmp_path, monkeypatch):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        monkeypatch.setenv("MASTER_PORT", str(probe.getsockname()[1]))
    mp.start_processes(
        _sharded_bf16_conformer, args=(str(tmp_path),), nprocs=2, join=True, start_method="fork"
    )
    for rank in (0, 1):
        error, finite, norm_unit, dtype = (tmp_path / f"rank{rank}").read_text().split()
        assert float(error) < 0.05  # bf16 weights and activations: ~3 significant digits
        assert (finite, norm_unit, dtype) == ("True", "True", "torch.float32")
