"""Text decoders: fixture numerics on stored encoder states, caching, folder I/O, checkpoint
keys.
"""

import logging
from pathlib import Path

import pytest
import torch

from speechlobes.lobes.hf_io import load_hf_state_dict, read_config
from speechlobes.lobes.text_decoders import (
    BartDecoder,
    BartDecoderConfig,
    BeamCache,
    BertDecoder,
    BertDecoderConfig,
    GPT2Decoder,
    GPT2DecoderConfig,
    KVCache,
    MBartDecoderConfig,
    TransformerTextDecoder,
    TransformerTextDecoderConfig,
)
from speechlobes.nnet.attention import attend

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hf"
CLASSES = {"bert": BertDecoder, "bart": BartDecoder, "gpt2": GPT2Decoder}


def tiny_decoders():
    """One small random decoder of every kind (dropout off), widths 16, vocabulary 20."""
    torch.manual_seed(0)
    return {
        "bert": BertDecoder(
            BertDecoderConfig(
                vocab_size=20,
                hidden_size=16,
                num_hidden_layers=2,
                num_attention_heads=2,
                intermediate_size=32,
                hidden_dropout_prob=0.0,
                attention_probs_dropout_prob=0.0,
            )
        ),
        "bart": BartDecoder(
            BartDecoderConfig(
                vocab_size=20,
                d_model=16,
                decoder_layers=2,
                decoder_attention_heads=2,
                decoder_ffn_dim=32,
                dropout=0.0,
                scale_embedding=True,
            )
        ),
        "mbart": BartDecoder(
            MBartDecoderConfig(
                vocab_size=20,
                d_model=16,
                decoder_layers=2,
                decoder_attention_heads=2,
                decoder_ffn_dim=32,
                dropout=0.0,
            )
        ),
        "gpt2": GPT2Decoder(
            GPT2DecoderConfig(
                vocab_size=20,
                n_embd=16,
                n_layer=2,
                n_head=2,
                resid_pdrop=0.0,
                embd_pdrop=0.0,
                attn_pdrop=0.0,
                scale_attn_by_inverse_layer_idx=True,
            )
        ),
        "native": TransformerTextDecoder(
            TransformerTextDecoderConfig(
                vocab_size=20, d_model=16, num_layers=2, num_heads=2, ffn_dim=32, dropout=0.0
            )
        ),
    }


@pytest.mark.parametrize("name", ["sed_bert", "sed_bart", "sed_gpt2"])
def test_decoder_alone_reproduces_fixture_logits_and_hidden_states(name):
    folder = FIXTURES / name
    values = read_config(folder)["decoder"]
    cls = CLASSES[values["model_type"]]
    decoder = cls(cls.config_from_dict(values)).eval()
    state = {k[8:]: v for k, v in load_hf_state_dict(folder).items() if k.startswith("decoder.")}
    decoder.load_checkpoint(state, str(folder))
    cases = torch.load(folder / "cases.pt", weights_only=True)
    mask = cases["encoder_attention_mask"]
    with torch.no_grad():
        out = decoder(
            cases["decoder_input_ids"],
            cases["encoder_last_hidden_state"],
            mask.sum(-1) / mask.shape[1],  # relative lengths of the encoder frames
            output_hidden_states=True,
        )
    torch.testing.assert_close(out.logits, cases["logits"], atol=1e-4, rtol=1e-4)
    hidden = torch.stack(out.hidden_states)
    torch.testing.assert_close(hidden, cases["decoder_hidden_states"], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("cache_class", [KVCache, BeamCache])
@pytest.mark.parametrize("kind", ["bert", "bart", "mbart", "gpt2", "native"])
def test_step_by_step_cache_equals_full_forward(kind, cache_class):
    decoder = tiny_decoders()[kind].eval()
    gen = torch.Generator().manual_seed(1)
    encoder = torch.randn(2, 9, 16, generator=gen)
    lengths = torch.tensor([1.0, 6 / 9])  # the second utterance's last 3 frames are padding
    ids = torch.randint(3, 20, (2, 5), generator=gen)
    with torch.no_grad():
        full = decoder(ids, encoder, lengths).logits
        # three rows per utterance (beams)
        cache = cache_class(encoder, lengths).reorder(torch.arange(2).repeat_interleave(3))
        rows = ids.repeat_interleave(3, dim=0)
        steps = [decoder(rows[:, t : t + 1], cache=cache).logits for t in range(5)]
    assert cache.length == 5
    if cache_class is BeamCache:  # the beams share their utterance's encoder keys/values
        assert all(key.shape[0] == 2 for key, _ in cache.memory_kv.values())
    torch.testing.assert_close(torch.cat(steps, 1), full.repeat_interleave(3, 0), atol=1e-5, rtol=0)


@pytest.mark.parametrize("capacity", [0, 3, 8])
def test_cache_buffers_survive_growth_and_reordering(capacity):
    """Steps written in place (capacity reserved, outgrown or not), then rows swapped mid-way."""
    decoder = tiny_decoders()["mbart"].eval()
    gen = torch.Generator().manual_seed(4)
    encoder = torch.randn(1, 7, 16, generator=gen)
    ids = torch.randint(3, 20, (2, 6), generator=gen)
    with torch.no_grad():
        full = decoder(ids, encoder).logits
        cache = BeamCache(encoder, capacity=capacity).reorder(torch.tensor([0, 0]))
        swapped = ids.flip(0)
        steps = [decoder(swapped[:, :1], cache=cache).logits]
        steps.append(decoder(swapped[:, 1:3], cache=cache).logits)
        cache.reorder(torch.tensor([1, 0]))  # the rows trade places: continue with ids' order
        steps.append(decoder(ids[:, 3:], cache=cache).logits)
    assert cache.length == 6
    head = torch.cat(steps[:2], 1).flip(0)
    torch.testing.assert_close(torch.cat([head, steps[2]], 1), full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("beam_cache", [False, True])
def test_cache_with_gradients_matches_the_full_forward_gradient(beam_cache):
    decoder = tiny_decoders()["native"].train(False)
    gen = torch.Generator().manual_seed(5)
    encoder = torch.randn(2, 5, 16, generator=gen)
    ids = torch.randint(3, 20, (2, 4), generator=gen)
    decoder(ids, encoder).logits.square().sum().backward()
    expected = [p.grad.clone() for p in decoder.parameters()]
    decoder.zero_grad()
    cache = BeamCache(encoder, capacity=8) if beam_cache else decoder.new_cache(encoder)
    steps = [decoder(ids[:, t : t + 1], cache=cache).logits for t in range(4)]
    torch.cat(steps, 1).square().sum().backward()  # earlier steps were not overwritten
    for got, want in zip((p.grad for p in decoder.parameters()), expected, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kind", ["bert", "bart", "mbart", "gpt2", "native"])
def test_padded_encoder_frames_are_ignored(kind):
    decoder = tiny_decoders()[kind].eval()
    gen = torch.Generator().manual_seed(2)
    encoder = torch.randn(1, 9, 16, generator=gen)
    lengths = torch.tensor([5 / 9])
    ids = torch.tensor([[1, 4, 7]])
    with torch.no_grad():
        masked = decoder(ids, encoder, lengths).logits
        other = encoder.clone()
        other[:, 5:] = 100.0
        changed = decoder(ids, other, lengths).logits
        trimmed = decoder(ids, encoder[:, :5]).logits
    torch.testing.assert_close(masked, changed, atol=1e-5, rtol=0)
    torch.testing.assert_close(masked, trimmed, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="memory_lens: expected relative lengths"):
        decoder(ids, encoder, torch.zeros(1, 9, dtype=torch.bool))  # a padding mask


@pytest.mark.parametrize("kind", ["bert", "bart", "mbart", "gpt2", "native"])
def test_attention_maps_are_causal_distributions(kind):
    decoder = tiny_decoders()[kind].eval()
    encoder = torch.randn(2, 6, 16)
    out = decoder(torch.tensor([[1, 4, 7], [1, 5, 5]]), encoder, output_attentions=True)
    weights = out.attentions[0]
    assert weights.shape == (2, 2, 3, 3)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, 3))
    assert torch.all(weights.triu(1) == 0)
    assert out.cross_attentions[1].shape == (2, 2, 3, 6)


@pytest.mark.parametrize("kind", ["bert", "bart", "mbart", "gpt2", "native"])
def test_save_and_load_round_trip_without_tied_copies(kind, tmp_path):
    decoder = tiny_decoders()[kind].eval()
    decoder.save_pretrained(tmp_path)
    stored = load_hf_state_dict(tmp_path)
    assert not set(decoder.tied_keys) & set(stored)
    again = type(decoder).from_pretrained(tmp_path).eval()
    ids, encoder = torch.tensor([[1, 4, 7]]), torch.randn(1, 6, 16)
    assert torch.equal(decoder(ids, encoder).logits, again(ids, encoder).logits)
    assert type(again.config) is type(decoder.config)


def test_language_model_checkpoint_gets_fresh_cross_attention_and_a_log(tmp_path, caplog):
    plain = GPT2Decoder(
        GPT2DecoderConfig(vocab_size=20, n_embd=16, n_layer=1, n_head=2, add_cross_attention=False)
    )
    state = plain.checkpoint_state_dict()
    # a GPT2Model checkpoint of an older transformers: no prefix, causal-mask buffers stored
    old = {k.removeprefix("transformer."): v for k, v in state.items()}
    old["h.0.attn.bias"] = torch.ones(1, 1, 8, 8)
    old["h.0.attn.masked_bias"] = torch.tensor(-1e4)
    decoder = GPT2Decoder(GPT2DecoderConfig(vocab_size=20, n_embd=16, n_layer=1, n_head=2))
    with caplog.at_level(logging.INFO):
        decoder.load_checkpoint(old, "gpt2-folder")
    assert "crossattention.c_attn.weight" in caplog.text and "gpt2-folder" in caplog.text
    assert torch.equal(
        decoder.transformer.h[0].attn.c_attn.weight, plain.transformer.h[0].attn.c_attn.weight
    )


def test_bert_checkpoint_with_gamma_beta_names_and_pretraining_heads_loads():
    source = tiny_decoders()["bert"]
    state = {}
    for key, tensor in source.checkpoint_state_dict().items():
        key = key.replace("LayerNorm.weight", "LayerNorm.gamma").replace(
            "LayerNorm.bias", "LayerNorm.beta"
        )
        state[key] = tensor
    state["cls.seq_relationship.weight"] = torch.zeros(2, 16)
    state["bert.pooler.dense.weight"] = torch.zeros(16, 16)
    target = BertDecoder(source.config)
    target.load_checkpoint(state, "bert-base")
    for (name, a), b in zip(source.state_dict().items(), target.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_unknown_or_missing_weights_are_errors_that_name_the_source():
    decoder = tiny_decoders()["bart"]
    state = decoder.checkpoint_state_dict()
    with pytest.raises(ValueError, match="my-folder.*unexpected.*model.decoder.extra"):
        decoder.load_checkpoint({**state, "model.decoder.extra": torch.zeros(1)}, "my-folder")
    del state["model.decoder.layers.0.fc1.weight"]
    with pytest.raises(ValueError, match="missing.*fc1.weight"):
        decoder.load_checkpoint(state, "my-folder")


def test_positions_beyond_the_table_are_a_clear_error():
    decoder = tiny_decoders()["bart"]
    cache = decoder.new_cache()
    with pytest.raises(ValueError, match="max_position_embeddings"):
        decoder(torch.ones(1, 1030, dtype=torch.long), cache=cache)


def test_bart_and_mbart_differ_only_in_normalisation_placement():
    bart, mbart = tiny_decoders()["bart"], tiny_decoders()["mbart"]
    assert not hasattr(bart.model.decoder, "layer_norm")
    assert mbart.model.decoder.layer_norm.normalized_shape == (16,)
    assert bart.architecture == "BartForCausalLM" and mbart.architecture == "MBartForCausalLM"


class CopyingCache:
    """Reference: every row owns a copy of its history, reordering copies rows."""

    def __init__(self):
        self.keys = None

    def append(self, key):
        self.keys = key if self.keys is None else torch.cat([self.keys, key], dim=2)

    def reorder(self, rows):
        self.keys = self.keys.index_select(0, rows)


def grouped_cache(batch, capacity=0):
    return BeamCache(torch.zeros(batch, 3, 4), capacity=capacity)  # memory: one per utterance


@pytest.mark.parametrize("capacity", [0, 2, 16])
@pytest.mark.parametrize("parents", ["random", "first beam"])
def test_beam_reordering_records_slots_instead_of_copying(capacity, parents):
    gen = torch.Generator().manual_seed(6)
    batch, beams, steps = 2, 3, 12
    cache, reference = grouped_cache(batch, capacity), CopyingCache()
    compacted = False
    for step in range(steps):
        key = torch.randn(batch * beams, 2, 1 + (step == 0), 4, generator=gen)
        for layer in range(2):
            cache.append(layer, key + layer, key + layer)
        reference.append(key)
        chosen = torch.randint(0, beams, (batch, beams), generator=gen)
        if parents == "first beam":  # every beam continues beam 0: one live entry per step
            chosen = torch.zeros_like(chosen)
        rows = (chosen + torch.arange(batch)[:, None] * beams).view(-1)
        cache.reorder(rows)
        reference.reorder(rows)
        assert cache.group == beams
        keys, values = cache.keys_values(1)
        torch.testing.assert_close(keys, reference.keys + 1, atol=0, rtol=0)
        torch.testing.assert_close(values, reference.keys + 1, atol=0, rtol=0)
        # entries read by no row are dropped once they are a third of some utterance's entries
        histories = cache.slots[:, : cache.length].reshape(batch, -1)
        live = max(len(set(unit.tolist())) for unit in histories)
        entries = cache.entries[0]
        assert cache.entries == {0: entries, 1: entries}
        assert entries == live or 3 * live > 2 * entries
        compacted |= entries < cache.length * beams
    assert cache.length == steps + 1
    assert compacted


def test_grouped_attention_sees_each_rows_own_history_only():
    gen = torch.Generator().manual_seed(7)
    batch, beams, heads = 2, 2, 2
    cache, reference = grouped_cache(batch), CopyingCache()
    for step in range(4):
        new = 2 if step == 3 else 1
        key = torch.randn(batch * beams, heads, new, 4, generator=gen)
        query = torch.randn(batch * beams, heads, new, 4, generator=gen)
        reference.append(key)
        out = cache.attend_self(0, query, key, key)
        want = attend(query, reference.keys, reference.keys, causal=new > 1)
        torch.testing.assert_close(out, want, atol=1e-6, rtol=1e-6)
        rows = torch.tensor([1, 1, 3, 2])
        cache.reorder(rows)
        reference.reorder(rows)
    assert cache.group == beams


def test_reorderings_that_leave_the_groups_copy_the_histories():
    gen = torch.Generator().manual_seed(8)
    cache, reference = grouped_cache(2), CopyingCache()
    for rows in ([1, 0, 2, 3], [2, 3, 0, 1], [0, 0, 1, 1, 2, 2, 3, 3], [1, 0, 3, 2, 5, 4, 7, 6]):
        key = torch.randn(
            len(rows) if reference.keys is None else reference.keys.shape[0], 1, 1, 4, generator=gen
        )
        cache.append(0, key, key)
        cache.append(1, key, key)
        reference.append(key)
        cache.reorder(torch.tensor(rows))
        reference.reorder(torch.tensor(rows))
        torch.testing.assert_close(cache.keys_values(0)[0], reference.keys, atol=0, rtol=0)
    # rows across utterances forced a copy; rows added within their utterances regroup in place
    assert cache.group == 4 and cache.keys_values(0)[0].shape == (8, 1, 4, 4)


def test_keys_with_gradients_ungroup_the_cache_first():
    cache, reference = grouped_cache(1), CopyingCache()
    key = torch.randn(2, 1, 1, 4)
    cache.append(0, key, key)
    reference.append(key)
    cache.reorder(torch.tensor([1, 0]))
    reference.reorder(torch.tensor([1, 0]))
    assert cache.group == 2
    more = torch.randn(2, 1, 1, 4, requires_grad=True)
    cache.append(0, more, more)
    reference.append(more)
    assert cache.group == 1
    keys = cache.keys_values(0)[0]
    torch.testing.assert_close(keys, reference.keys, atol=0, rtol=0)
    keys.sum().backward()
    assert torch.equal(more.grad, torch.ones_like(more))
