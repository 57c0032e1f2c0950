"""SpeechEncoderDecoder: any speechlobes speech encoder + any text decoder with cross-attention.

The encoder (any speech encoder of the contract, :mod:`speechlobes.lobes.encoder`: Wav2Vec2,
HuBERT, Wav2Vec2-Conformer with their length-reducing adapter, BEATs, the fbank Conformer)
turns waveforms into frames; ``enc_to_dec_proj`` maps their width to the decoder's when the
two differ; the decoder (BERT, GPT-2, BART/MBart or our Transformer decoder) attends to the
valid frames. Hugging Face ``SpeechEncoderDecoderModel`` folders load (``encoder.*``,
``decoder.*``, ``enc_to_dec_proj.*``) and what we save loads in transformers (except our own
decoder, BEATs and the fbank Conformer, which transformers does not know).

Lengths: ``wav_lens`` (relative, SpeechBrain's convention) give every utterance of a padded
batch the frames of its single run; transformers' ``attention_mask`` (1 = sample) reproduces
transformers' padded-batch outputs instead (``reference_padding`` of the contract).

Training: ``model(wavs, wav_lens=wav_lens, labels=labels).loss``; the decoder input is the
labels shifted right behind ``decoder_start_token_id`` with -100 replaced by ``pad_token_id``.
Generation: ``model.generate(wavs, wav_lens=wav_lens, num_beams=4)``; the search itself is
:mod:`speechlobes.decoders.seq2seq`; ``generate`` switches on the fast paths of decoding (the
beam cache and packed weights, :mod:`speechlobes.lobes.text_decoders`).

Example:
    >>> from speechlobes.lobes.wav2vec2 import Wav2Vec2Config
    >>> from speechlobes.lobes.text_decoders import TransformerTextDecoderConfig
    >>> encoder = Wav2Vec2Config(model_type="wav2vec2-conformer", hidden_size=16,
    ...     num_attention_heads=2, num_hidden_layers=1, intermediate_size=32,
    ...     conv_dim=[8, 8], conv_stride=[5, 2], conv_kernel=[10, 3])
    >>> decoder = TransformerTextDecoderConfig(vocab_size=12, d_model=8, num_layers=1,
    ...     num_heads=2, ffn_dim=16)
    >>> config = SpeechEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder,
    ...     decoder_start_token_id=1, pad_token_id=0, eos_token_id=2)
    >>> model = SpeechEncoderDecoderModel(config).eval()
    >>> wav, labels = torch.randn(2, 1600), torch.tensor([[4, 5, 2], [6, 2, -100]])
    >>> model(wav, labels=labels).logits.shape
    torch.Size([2, 3, 12])
    >>> model.generate(wav, max_new_tokens=3, num_beams=2).shape[0]
    2
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from speechlobes.decoders.seq2seq import SearchOptions, SearchOutput, search
from speechlobes.lobes.encoder import EncoderOutput, SpeechEncoder
from speechlobes.lobes.hf_io import read_config
from speechlobes.lobes.pretrained import PretrainedMixin, load_state_dict_checked
from speechlobes.lobes.speech_encoder_decoder.config import (
    TOKEN_ID_FIELDS,
    SpeechEncoderDecoderConfig,
    decoder_class,
    encoder_class,
    token_id_defaults,
)
from speechlobes.lobes.text_decoders import BeamCache, TextDecoder, packed_products

GENERATION_CONFIG = "generation_config.json"
PARTS = {"encoder.": "encoder", "decoder.": "decoder", "enc_to_dec_proj.": "proj"}


@dataclass
class Seq2SeqLMOutput:
    """Forward result; ``encoder_last_hidden_state`` is after ``enc_to_dec_proj`` and
    ``encoder_lens`` are its relative lengths."""

    loss: torch.Tensor | None
    logits: torch.Tensor
    past_key_values: Any = None
    decoder_hidden_states: tuple[torch.Tensor, ...] | None = None
    decoder_attentions: tuple[torch.Tensor, ...] | None = None
    cross_attentions: tuple[torch.Tensor, ...] | None = None
    encoder_last_hidden_state: torch.Tensor | None = None
    encoder_lens: torch.Tensor | None = None


def shift_tokens_right(
    labels: torch.Tensor, pad_token_id: int | None, decoder_start_token_id: int | None
) -> torch.Tensor:
    """Decoder inputs for teacher forcing: start token + labels[:-1], -100 -> pad id."""
    if decoder_start_token_id is None or pad_token_id is None:
        raise ValueError(
            "SpeechEncoderDecoderConfig: set decoder_start_token_id and pad_token_id to train "
            f"from labels (got {decoder_start_token_id} and {pad_token_id})"
        )
    shifted = labels.new_full(labels.shape, decoder_start_token_id)
    shifted[:, 1:] = labels[:, :-1]
    return shifted.masked_fill(shifted == -100, pad_token_id)


def check_right_padded(attention_mask: torch.Tensor | None) -> None:
    """Decoder inputs must be right-padded (then causal attention never sees the padding)."""
    if attention_mask is not None and bool((attention_mask[:, 1:] > attention_mask[:, :-1]).any()):
        raise ValueError(
            "decoder_attention_mask: left-padded decoder inputs are not supported; pad on the "
            "right (the labels' -100 positions) and the mask is not needed"
        )


class SpeechEncoderDecoderModel(PretrainedMixin, nn.Module):
    """Speech encoder + text decoder (see the module docstring for an example).

    Args:
        config: builds both parts randomly initialised (those not given).
        encoder, decoder: ready modules to wrap; without ``config`` both are required and the
            config is derived from theirs (token ids from the decoder's).
    """

    config_class = SpeechEncoderDecoderConfig
    architecture = "SpeechEncoderDecoderModel"

    def __init__(
        self,
        config: SpeechEncoderDecoderConfig | None = None,
        encoder: SpeechEncoder | None = None,
        decoder: TextDecoder | None = None,
    ):
        super().__init__()
        if config is None:
            if encoder is None or decoder is None:
                raise ValueError("give a config, or both an encoder and a decoder")
            config = SpeechEncoderDecoderConfig.from_encoder_decoder_configs(
                encoder.config, decoder.config, **token_id_defaults(decoder.config)
            )
        self.config = config
        if encoder is None:
            encoder = encoder_class(config.encoder.model_type).from_config(config.encoder)
        if decoder is None:
            decoder = decoder_class(config.decoder.model_type).from_config(config.decoder)
        self.encoder, self.decoder = encoder, decoder
        if not getattr(self.decoder.config, "add_cross_attention", False):
            raise ValueError(
                "the decoder config has add_cross_attention=False: build the config with "
                "SpeechEncoderDecoderConfig.from_encoder_decoder_configs or set it to True"
            )
        width = self.encoder.output_size
        cross_width = config.decoder.extra.get("cross_attention_hidden_size")
        if cross_width is not None and cross_width != width:
            raise ValueError(
                f"decoder cross_attention_hidden_size ({cross_width}) must equal the encoder "
                f"output width ({width})"
            )
        self.enc_to_dec_proj = None
        if width != self.decoder.hidden_size and cross_width is None:
            self.enc_to_dec_proj = nn.Linear(width, self.decoder.hidden_size)

    # --- construction and folders

    @classmethod
    def from_encoder_decoder_pretrained(
        cls,
        encoder_folder: str | Path | None = None,
        decoder_folder: str | Path | None = None,
        **kwargs: Any,
    ) -> SpeechEncoderDecoderModel:
        """Join a pretrained encoder folder and a pretrained decoder folder.

        ``encoder_<field>`` / ``decoder_<field>`` keywords override fields of the sub-configs
        (``encoder_model`` / ``decoder_model`` pass ready modules instead of folders); other
        keywords set top-level fields (token ids). Token ids default to the decoder's
        (start: its ``decoder_start_token_id`` or else ``bos_token_id``). Cross-attention
        weights the decoder checkpoint lacks are created (and logged).
        """
        encoder_kwargs = {k[8:]: kwargs.pop(k) for k in list(kwargs) if k.startswith("encoder_")}
        decoder_kwargs = {k[8:]: kwargs.pop(k) for k in list(kwargs) if k.startswith("decoder_")}
        if "start_token_id" in decoder_kwargs:  # decoder_start_token_id is a top-level field
            kwargs["decoder_start_token_id"] = decoder_kwargs.pop("start_token_id")
        encoder = encoder_kwargs.pop("model", None)
        if encoder is None:
            if encoder_folder is None:
                raise ValueError("give encoder_folder or encoder_model")
            encoder = load_encoder(encoder_folder, **encoder_kwargs)
        decoder = decoder_kwargs.pop("model", None)
        if decoder is None:
            if decoder_folder is None:
                raise ValueError("give decoder_folder or decoder_model")
            model_type = read_config(decoder_folder).get("model_type", "")
            decoder = decoder_class(model_type).from_pretrained(
                decoder_folder, is_decoder=True, add_cross_attention=True, **decoder_kwargs
            )
        config = SpeechEncoderDecoderConfig.from_encoder_decoder_configs(
            encoder.config, decoder.config, **{**token_id_defaults(decoder.config), **kwargs}
        )
        return cls(config, encoder=encoder, decoder=decoder)

    @classmethod
    def from_pretrained(
        cls, folder: str | Path, strict: bool = True, **overrides: Any
    ) -> SpeechEncoderDecoderModel:
        """Load a Hugging Face ``SpeechEncoderDecoderModel`` folder (or one we saved).

        Token ids in ``generation_config.json``, when present, take precedence over config.json's
        (as in transformers, where that file holds the generation defaults).
        """
        model = super().from_pretrained(folder, strict, **overrides)
        generation = Path(folder) / GENERATION_CONFIG
        if generation.is_file():
            values = json.loads(generation.read_text(encoding="utf-8"))
            for key in TOKEN_ID_FIELDS:
                if values.get(key) is not None:
                    setattr(model.config, key, values[key])
        return model

    def load_checkpoint(
        self, state_dict: dict[str, torch.Tensor], source: str = "checkpoint", strict: bool = True
    ) -> tuple[list[str], list[str]]:
        """Load ``encoder.*``, ``decoder.*`` and ``enc_to_dec_proj.*`` tensors into the parts."""
        parts: dict[str, dict[str, torch.Tensor]] = {"encoder": {}, "decoder": {}, "proj": {}}
        for key, tensor in state_dict.items():
            prefix = next((p for p in PARTS if key.startswith(p)), None)
            if prefix is None:
                raise ValueError(f"{source}: unexpected tensor {key} (not encoder/decoder/proj)")
            parts[PARTS[prefix]][key[len(prefix) :]] = tensor
        if self.enc_to_dec_proj is None and parts["proj"]:
            raise ValueError(f"{source}: enc_to_dec_proj weights but the widths already match")
        results = [
            self.encoder.load_checkpoint(parts["encoder"], source, strict),
            self.decoder.load_checkpoint(parts["decoder"], source, strict),
        ]
        if self.enc_to_dec_proj is not None:
            results.append(load_state_dict_checked(self.enc_to_dec_proj, parts["proj"], source))
        return [k for r in results for k in r[0]], [k for r in results for k in r[1]]

    def checkpoint_state_dict(self) -> dict[str, torch.Tensor]:
        state = {f"encoder.{k}": v for k, v in self.encoder.checkpoint_state_dict().items()}
        state.update({f"decoder.{k}": v for k, v in self.decoder.checkpoint_state_dict().items()})
        if self.enc_to_dec_proj is not None:
            state.update(
                {f"enc_to_dec_proj.{k}": v for k, v in self.enc_to_dec_proj.state_dict().items()}
            )
        return state

    def save_pretrained(self, folder: str | Path, **kwargs: Any) -> None:
        """Write config.json, generation_config.json and the weights (HF layout)."""
        super().save_pretrained(folder, **kwargs)
        generation = {
            key: getattr(self.config, key)
            for key in TOKEN_ID_FIELDS
            if key != "forced_bos_token_id" or self.config.forced_bos_token_id is not None
        }
        (Path(folder) / GENERATION_CONFIG).write_text(json.dumps(generation, indent=2) + "\n")

    def freeze_feature_encoder(self) -> None:
        """No gradients into the encoder's convolutional front end."""
        self.encoder.freeze_feature_encoder()

    # --- forward

    @staticmethod
    def waveforms(*given: torch.Tensor | None) -> torch.Tensor:
        """The one waveform batch among ``inputs``, ``input_values`` and ``input_features``."""
        waveforms = [x for x in given if x is not None]
        if len(waveforms) != 1:
            raise ValueError("pass exactly one of inputs, input_values, input_features")
        return waveforms[0]

    def encode(
        self,
        inputs: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        wav_lens: torch.Tensor | None = None,
    ) -> EncoderOutput:
        """Waveforms (batch, samples) -> encoder frames (projected to the decoder width) and
        their relative lengths. Lengths: relative ``wav_lens``, or transformers'
        ``attention_mask`` for transformers' padded-batch numerics."""
        if attention_mask is not None and wav_lens is not None:
            raise ValueError("give wav_lens or attention_mask, not both")
        reference = attention_mask is not None
        if reference:
            wav_lens = attention_mask.sum(-1).float() / attention_mask.shape[-1]
        frames, frame_lens = self.encoder.encode(inputs, wav_lens, reference_padding=reference)
        if self.enc_to_dec_proj is not None:
            frames = self.enc_to_dec_proj(frames)
        return EncoderOutput(frames, frame_lens)

    def forward(
        self,
        inputs: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: EncoderOutput | None = None,
        past_key_values: Any = None,
        labels: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        input_values: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
        label_smoothing: float = 0.0,
        wav_lens: torch.Tensor | None = None,
    ) -> Seq2SeqLMOutput:
        """Teacher-forced decoder logits and, with ``labels``, the cross-entropy loss.

        inputs / input_values / input_features: (batch, samples) waveforms (one of them);
        ``wav_lens`` (relative) or ``attention_mask`` (batch, samples), 1 = real sample (see
        the module docstring). ``encoder_outputs`` (from :meth:`encode`) skips the encoder.
        ``past_key_values`` (a decoder cache, also returned with ``use_cache``) makes
        ``decoder_input_ids`` the new steps only. The loss ignores labels equal to -100.
        ``decoder_attention_mask`` may only mark right padding, which causal attention never
        sees.
        """
        if encoder_outputs is None:
            waveforms = self.waveforms(inputs, input_values, input_features)
            encoder_outputs = self.encode(waveforms, attention_mask, wav_lens)
        frames, frame_lens = encoder_outputs
        check_right_padded(decoder_attention_mask)
        if decoder_input_ids is None:
            if labels is None:
                raise ValueError("pass decoder_input_ids or labels")
            decoder_input_ids = shift_tokens_right(
                labels, self.config.pad_token_id, self.config.decoder_start_token_id
            )
        cache = past_key_values
        if cache is None and use_cache:
            cache = self.decoder.new_cache(frames, frame_lens)
        out = self.decoder(
            decoder_input_ids,
            None if cache is not None else frames,
            frame_lens,
            cache=cache,
            output_attentions=bool(output_attentions),
            output_hidden_states=bool(output_hidden_states),
        )
        loss = None
        if labels is not None:  # in float32 also for a bfloat16 / float16 model
            loss = F.cross_entropy(
                out.logits.reshape(-1, out.logits.shape[-1]).float(),
                labels.reshape(-1),
                ignore_index=-100,
                label_smoothing=label_smoothing,
            )
        return Seq2SeqLMOutput(
            loss=loss,
            logits=out.logits,
            past_key_values=cache,
            decoder_hidden_states=out.hidden_states,
            decoder_attentions=out.attentions,
            cross_attentions=out.cross_attentions,
            encoder_last_hidden_state=frames,
            encoder_lens=frame_lens,
        )

    # --- generation (the StepModel protocol of speechlobes.decoders.seq2seq)

    def step(self, tokens: torch.Tensor, cache: Any) -> tuple[torch.Tensor, Any]:
        """Next-token logits (rows, vocab) after ``tokens`` (rows, new), cache updated."""
        return self.decoder(tokens, cache=cache).logits[:, -1], cache

    def reorder(self, cache: Any, rows: torch.Tensor) -> Any:
        return cache.reorder(rows)

    def default_forced_bos_token_id(self) -> int | None:
        """The config's ``forced_bos_token_id``, else the decoder config's (transformers reads
        generation settings the outer config leaves unset from the decoder's)."""
        if self.config.forced_bos_token_id is not None:
            return self.config.forced_bos_token_id
        return getattr(self.config.decoder, "extra", {}).get("forced_bos_token_id")

    @torch.inference_mode()
    def generate(
        self,
        inputs: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        max_new_tokens: int = 20,
        min_length: int = 0,
        num_beams: int = 1,
        length_penalty: float = 1.0,
        early_stopping: bool | str = False,
        no_repeat_ngram_size: int = 0,
        num_return_sequences: int = 1,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int = 50,
        top_p: float = 1.0,
        forced_bos_token_id: int | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        return_scores: bool = False,
        input_values: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
        wav_lens: torch.Tensor | None = None,
        fast: bool = True,
    ) -> torch.Tensor | SearchOutput:
        """Token ids (batch * num_return_sequences, length) starting with the start token.

        Greedy by default, beam search with ``num_beams > 1``, sampling with ``do_sample``
        (``seed`` or ``generator`` make it reproducible; else the global RNG is used). With
        ``return_scores`` a :class:`SearchOutput` is returned (per-step scores for greedy and
        sampling, ``sequences_scores`` for beams). Options follow transformers' ``generate``;
        ``forced_bos_token_id`` defaults to the config's, else to the decoder config's.
        Lengths: ``wav_lens`` (relative) or transformers' ``attention_mask`` (see the module
        docstring). ``fast`` decodes with the beam cache and packed weights (same results as
        the plain cache and weights, to float rounding).
        """
        waveforms = self.waveforms(inputs, input_values, input_features)
        if self.config.decoder_start_token_id is None:
            raise ValueError("SpeechEncoderDecoderConfig.decoder_start_token_id is not set")
        options = SearchOptions(
            max_new_tokens=max_new_tokens,
            min_length=min_length,
            num_beams=num_beams,
            length_penalty=length_penalty,
            early_stopping=early_stopping,
            no_repeat_ngram_size=no_repeat_ngram_size,
            num_return_sequences=num_return_sequences,
            do_sample=do_sample,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            eos_token_id=self.config.eos_token_id,
            pad_token_id=self.config.pad_token_id,
            forced_bos_token_id=(
                forced_bos_token_id
                if forced_bos_token_id is not None
                else self.default_forced_bos_token_id()
            ),
        )
        if seed is not None:
            generator = torch.Generator(device=waveforms.device).manual_seed(seed)
        frames, frame_lens = self.encode(waveforms, attention_mask, wav_lens)
        batch = frames.shape[0]
        prompt = torch.full(
            (batch, 1), self.config.decoder_start_token_id, dtype=torch.long, device=frames.device
        )
        rows = batch * max(num_beams, num_return_sequences)
        if fast:
            cache = BeamCache(frames, frame_lens, capacity=prompt.shape[1] + max_new_tokens)
            products = packed_products(self.decoder, rows)
        else:
            cache, products = self.decoder.new_cache(frames, frame_lens), nullcontext()
        with products:
            result = search(self, cache, prompt, options, generator, return_scores)
        return result if return_scores else result.sequences


def load_encoder(folder: str | Path, **overrides: Any) -> nn.Module:
    """A pretrained speech encoder from a folder, by the ``model_type`` of its config.json: a
    Hugging Face Wav2Vec2/HuBERT/Conformer folder (any head class), or a BEATs or fbank
    Conformer folder written by ``save_pretrained`` (``overrides``: see ``from_pretrained``)."""
    values = read_config(folder)
    # BEATs folders written before configs named their model type hold its fields alone
    model_type = values.get("model_type", "beats" if "input_patch_size" in values else None)
    return encoder_class(model_type).from_pretrained(folder, **overrides)
